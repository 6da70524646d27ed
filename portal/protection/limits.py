"""Rate limits (SPEC §5): per client address on the applicant forms, per API key on the
API, and per phone: verify and resend posts, and a cool-down after repeated wrong codes.

Flask-Limiter counts per address and per key before the view runs, in Redis when
`REDIS_URL` is set (else in memory; if Redis stops answering, in memory, and no request
fails for it). Per-phone limits are taken by the views themselves, after the captcha was
right, so that nobody can use up a phone's limits with posts that cost them nothing;
and they are counted in the database (`PhoneCount`, one conditional upsert a count), so
that a Redis restart gives no phone a fresh budget of wrong codes. The cool-down's slot is taken
before the attempt (parallel attempts cannot overrun it) and given back when the attempt
was not a miss. A phone over a limit is refused for a while; its filing is never failed
by it. docs/security.md gives the arithmetic behind the numbers.
"""

import hashlib
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
API_CALLS_PER_KEY = "300 per minute"
# Per phone, counting only posts whose captcha was right.
VERIFY_POSTS_PER_PHONE = PhoneLimit("verify", 10, timedelta(hours=1))
RESEND_POSTS_PER_PHONE = PhoneLimit("resend", 5, timedelta(hours=1))
# Wrong codes per phone: 5 per 2 h keeps a guesser's odds over a 24 h code below 1 in 10,000.
MISSES_PER_PHONE = PhoneLimit("misses", 5, timedelta(hours=2))
PHONE_LIMITS = (VERIFY_POSTS_PER_PHONE, RESEND_POSTS_PER_PHONE, MISSES_PER_PHONE)

FORM_VIEWS = {"verify_page", "resend_page", "link_page"}
PAGE_VIEWS = {"verify_page", "resend_page", "link_page", "captcha_image", "captcha_refresh"}

__all__ = ["RateLimitExceeded", "init_app", "take", "give_back", "retry_after"]


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


def _api_key() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
    return "address:" + client_address()


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
        Limit(
            API_CALLS_PER_KEY,
            key_function=_api_key,
            scope="api",
            shared=True,
            exempt_when=lambda: request.blueprint != "api",
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


def _enabled() -> bool:
    return bool(current_app.config["RATELIMIT_ENABLED"])


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
