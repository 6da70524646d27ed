"""Rate limits (SPEC §5): per client address on the applicant forms, per provider on the
API (and per address for unknown API keys), and per phone: verify and resend posts, and a
cool-down after repeated wrong codes.

Flask-Limiter counts per address before the view runs; the API's counters are taken by
the API once it knows whose key it holds. Both are kept in Redis when
`REDIS_URL` is set (else in memory; if Redis stops answering, in memory, and no request
fails for it). Per-phone limits are taken by the views themselves, after the captcha was
right, so that nobody can use up a phone's limits with posts that cost them nothing;
and they are counted in the database (`PhoneCount`, one conditional upsert a count), so
that a Redis restart gives no phone a fresh budget of wrong codes. The cool-down's slot is taken
before the attempt (parallel attempts cannot overrun it) and given back when the attempt
was not a miss. A phone over a limit is refused for a while; its filing is never failed
by it. docs/security.md gives the arithmetic behind the numbers.
"""

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import Flask, current_app, g, request
from flask_limiter import Limit, Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy.dialects import postgresql, sqlite

from portal.extensions import db
from portal.models import PhoneCount
from portal.protection import sealing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhoneLimit:
    """At most `amount` per phone in a window of `window`, which starts at the first one."""

    scope: str
    amount: int
    window: timedelta


FORM_POSTS_PER_ADDRESS = "10 per minute;60 per hour"
# Form pages and captcha images: each page stores a challenge, each image costs ~4 ms of CPU.
PAGES_PER_ADDRESS = "60 per minute"
# An audio clip costs ~0.25 s of CPU.
AUDIO_PER_ADDRESS = "10 per minute"
# The API counts a call against its provider once the key is known to be theirs. Unknown
# keys are counted per address, which is refused before any key is looked up once past it:
# a flood of made-up keys costs a counter read each, no bucket of its own, no lookup.
API_CALLS_PER_PROVIDER = parse("300 per minute")
UNKNOWN_API_KEYS_PER_ADDRESS = parse("20 per minute")
# Per phone, counting only posts whose captcha was right.
VERIFY_POSTS_PER_PHONE = PhoneLimit("verify", 10, timedelta(hours=1))
RESEND_POSTS_PER_PHONE = PhoneLimit("resend", 5, timedelta(hours=1))
# Wrong codes per phone: 5 per 2 h keeps a guesser's odds over a 24 h code below 1 in 10,000.
MISSES_PER_PHONE = PhoneLimit("misses", 5, timedelta(hours=2))
PHONE_LIMITS = (VERIFY_POSTS_PER_PHONE, RESEND_POSTS_PER_PHONE, MISSES_PER_PHONE)

FORM_VIEWS = {"verify_page", "resend_page", "link_page"}
PAGE_VIEWS = {"verify_page", "resend_page", "link_page", "captcha_image", "captcha_refresh"}

__all__ = [
    "RateLimitExceeded",
    "init_app",
    "take",
    "give_back",
    "retry_after",
    "api_address_allowed",
    "count_unknown_api_key",
    "take_api_call",
]


def client_address() -> str:
    """The client's address; an IPv6 client is counted by its /64, which one host can hold."""
    address = request.remote_addr or ""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if parsed.version == 4:
        return str(parsed)
    if parsed.ipv4_mapped:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.ip_network(f"{parsed}/64", strict=False))


def _view() -> str:
    return (request.endpoint or "").rpartition(".")[2]


def _applicant(views: set[str]) -> Callable[[], bool]:
    """An `exempt_when`: true unless the request is for one of these applicant views."""

    def exempt() -> bool:
        return not (request.blueprint or "").startswith("province_") or _view() not in views

    return exempt


def _limits() -> list[Limit]:
    return [
        Limit(
            FORM_POSTS_PER_ADDRESS,
            key_function=client_address,
            scope=lambda endpoint: "address:" + _view(),
            shared=True,
            methods=["POST"],
            exempt_when=_applicant(FORM_VIEWS),
        ),
        Limit(
            PAGES_PER_ADDRESS,
            key_function=client_address,
            scope="address:pages",
            shared=True,
            methods=["GET"],
            exempt_when=_applicant(PAGE_VIEWS),
        ),
        Limit(
            AUDIO_PER_ADDRESS,
            key_function=client_address,
            scope="address:audio",
            shared=True,
            exempt_when=_applicant({"captcha_audio"}),
        ),
    ]


def init_app(app: Flask) -> None:
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "portal")
    # Redis down: count in memory rather than fail the request.
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    limiter = Limiter(client_address, default_limits=_limits())
    limiter.init_app(app)
    app.extensions["rate_limiter"] = limiter
    app.extensions["rate_limiter_fallback"] = FixedWindowRateLimiter(MemoryStorage())


def _enabled() -> bool:
    return bool(current_app.config["RATELIMIT_ENABLED"])


def _counters() -> tuple[FixedWindowRateLimiter, FixedWindowRateLimiter]:
    return (
        current_app.extensions["rate_limiter"].limiter,
        current_app.extensions["rate_limiter_fallback"],
    )


def _on_counters(action: Callable[[FixedWindowRateLimiter], object]):
    """Run against the shared counters, or this process's when they cannot be reached."""
    shared, local = _counters()
    try:
        return action(shared)
    except Exception:
        log.warning("rate-limit storage unreachable; counting in memory", exc_info=True)
        return action(local)


def _phone_key(phone: str) -> str:
    """Counters are keyed by a keyed digest: the table holds no phone number."""
    return sealing.digest("rate-limit:phone", phone)


def _row(limit: PhoneLimit, phone: str):
    return sa.and_(PhoneCount.phone_key == _phone_key(phone), PhoneCount.scope == limit.scope)


def take(limit: PhoneLimit, phone: str, now: datetime) -> bool:
    """Count one against the phone's limit; false while it is used up (`retry_after` says how
    long)."""
    if not _enabled():
        return True
    if _count_one(limit, phone, now):
        return True
    window_start = db.session.scalar(sa.select(PhoneCount.window_start).where(_row(limit, phone)))
    g.retry_after = max(math.ceil((window_start + limit.window - now).total_seconds()), 1)
    return False


def _count_one(limit: PhoneLimit, phone: str, now: datetime) -> bool:
    """One upsert whose update is conditional (parallel requests cannot overrun it): a new
    window when the last is over, else one more while under the limit."""
    window_over = PhoneCount.window_start <= now - limit.window
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(PhoneCount).values(
        phone_key=_phone_key(phone), scope=limit.scope, window_start=now, count=1
    )
    counted = db.session.scalar(
        statement.on_conflict_do_update(
            index_elements=[PhoneCount.phone_key, PhoneCount.scope],
            set_={
                "count": sa.case((window_over, 1), else_=PhoneCount.count + 1),
                "window_start": sa.case((window_over, now), else_=PhoneCount.window_start),
            },
            where=sa.or_(window_over, PhoneCount.count < limit.amount),
        ).returning(PhoneCount.count)
    )
    return counted is not None


def give_back(limit: PhoneLimit, phone: str, now: datetime) -> None:
    """The attempt `take` counted was not what the limit counts: give its slot back."""
    if not _enabled():
        return
    db.session.execute(
        sa.update(PhoneCount)
        .where(
            _row(limit, phone),
            PhoneCount.count > 0,
            PhoneCount.window_start > now - limit.window,
        )
        .values(count=PhoneCount.count - 1)
        .execution_options(synchronize_session=False)
    )


def delete_finished_windows(now: datetime) -> None:
    """The periodic sweep drops counts whose window is over: they count for nothing."""
    longest = max(limit.window for limit in PHONE_LIMITS)
    db.session.execute(sa.delete(PhoneCount).where(PhoneCount.window_start <= now - longest))


def _unknown_key_identifiers() -> tuple[str, str, str]:
    return (current_app.config["RATELIMIT_KEY_PREFIX"], "api-unknown-keys", client_address())


def api_address_allowed() -> bool:
    """False for an address past its unknown API keys: refused before a key is looked up."""
    return _within(UNKNOWN_API_KEYS_PER_ADDRESS, _unknown_key_identifiers(), hit=False)


def count_unknown_api_key() -> None:
    _within(UNKNOWN_API_KEYS_PER_ADDRESS, _unknown_key_identifiers(), hit=True)


def take_api_call(provider_id: int) -> bool:
    """Count a call against its (authenticated) provider; false past the provider's limit."""
    identifiers = (current_app.config["RATELIMIT_KEY_PREFIX"], "api-calls", str(provider_id))
    return _within(API_CALLS_PER_PROVIDER, identifiers, hit=True)


def _within(item: RateLimitItem, identifiers: tuple[str, ...], hit: bool) -> bool:
    """Whether a request fits the limit (counting it when `hit`); when it does not, the
    seconds until it would are kept for `retry_after`."""
    if not _enabled():
        return True
    if hit:
        fits = _on_counters(lambda counter: counter.hit(item, *identifiers))
    else:
        fits = _on_counters(lambda counter: counter.test(item, *identifiers))
    if fits:
        return True
    g.retry_after = _seconds_left(item, identifiers)
    return False


def _seconds_left(item: RateLimitItem, identifiers: tuple[str, ...]) -> int:
    reset_at, _ = _on_counters(lambda counter: counter.get_window_stats(item, *identifiers))
    return max(int(reset_at - time.time()) + 1, 1)


def retry_after() -> int | None:
    """Seconds until the limit that refused this request lets it through again."""
    if "retry_after" in g:
        return g.retry_after
    try:
        breached = current_app.extensions["rate_limiter"].current_limit
        if breached is not None:
            return max(int(breached.reset_at - time.time()), 1)
    except Exception:
        log.warning("rate-limit storage unreachable; no Retry-After", exc_info=True)
    return None
