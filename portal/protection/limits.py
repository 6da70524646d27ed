"""Rate limits (SPEC §5): per client address and per phone on the applicant forms, per
provider on the API (and per address for unknown API keys), and a cool-down for a phone
after repeated wrong codes.

Flask-Limiter counts requests before the view runs. The cool-down counts only misses,
so it is taken by the verify view itself: a slot is reserved before the attempt
(atomically, so parallel requests cannot overrun it) and given back when the attempt
was not a miss. A cooling phone is refused for a while; its filing is never failed by
it. Counters live in Redis when `REDIS_URL` is set (shared by all processes), else in
memory; if Redis stops answering they go on in memory, and no request fails for it.
docs/security.md gives the arithmetic behind the numbers.
"""

import ipaddress
import logging
import re
import time
import unicodedata
from collections.abc import Callable

from flask import Flask, current_app, g, request
from flask_limiter import Limit, Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import HTTPException

from portal.protection import sealing
from portal.protection.personal_data import PHONE_PATTERN

log = logging.getLogger(__name__)

FORM_POSTS_PER_ADDRESS = "10 per minute;60 per hour"
VERIFY_POSTS_PER_PHONE = "10 per hour"
RESEND_POSTS_PER_PHONE = "5 per hour"
# Form pages and captcha images: each page stores a challenge, each image costs ~4 ms of CPU.
PAGES_PER_ADDRESS = "60 per minute"
# An audio clip costs ~0.25 s of CPU.
AUDIO_PER_ADDRESS = "10 per minute"
# The API counts a call against its provider once the key is known to be theirs. Unknown
# keys are counted per address, which is refused before any key is looked up once past it:
# a flood of made-up keys costs a counter read each, no bucket of its own, no lookup.
API_CALLS_PER_PROVIDER = parse("300 per minute")
UNKNOWN_API_KEYS_PER_ADDRESS = parse("20 per minute")
# Wrong codes per phone: 5 per 2 h keeps a guesser's odds over a 24 h code below 1 in 10,000.
MISSES_PER_PHONE = parse("5 per 2 hours")

_PHONE = re.compile(PHONE_PATTERN, re.ASCII)

FORM_VIEWS = {"verify_page", "resend_page"}
PAGE_VIEWS = {"verify_page", "resend_page", "captcha_image", "captcha_refresh"}

__all__ = [
    "RateLimitExceeded",
    "init_app",
    "reserve_miss",
    "refund_miss",
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


def form_phone() -> str:
    """The posted phone read as the form reads it (full-width digits too); '' unless valid."""
    try:
        posted = request.form.get("phone", "")
    except HTTPException:  # a body too large: the view answers it
        return ""
    phone = unicodedata.normalize("NFKC", posted).strip()
    return phone if _PHONE.match(phone) else ""


def _phone_key(phone: str) -> str:
    """Counters are keyed by a keyed digest: Redis holds no phone number."""
    return sealing.digest("rate-limit:phone", phone)[:32]


def _posted_phone_key() -> str:
    phone = form_phone()
    return _phone_key(phone) if phone else ""


def _view() -> str:
    return (request.endpoint or "").rpartition(".")[2]


def _applicant(views: set[str]) -> Callable[[], bool]:
    """An `exempt_when`: true unless the request is for one of these applicant views."""

    def exempt() -> bool:
        return not (request.blueprint or "").startswith("province_") or _view() not in views

    return exempt


def _per_phone(view: str) -> Callable[[], bool]:
    applicant = _applicant({view})
    return lambda: applicant() or not form_phone()


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
            VERIFY_POSTS_PER_PHONE,
            key_function=_posted_phone_key,
            scope="phone:verify",
            shared=True,
            methods=["POST"],
            exempt_when=_per_phone("verify_page"),
        ),
        Limit(
            RESEND_POSTS_PER_PHONE,
            key_function=_posted_phone_key,
            scope="phone:resend",
            shared=True,
            methods=["POST"],
            exempt_when=_per_phone("resend_page"),
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


def _miss_identifiers(phone: str) -> tuple[str, str, str]:
    return (current_app.config["RATELIMIT_KEY_PREFIX"], "misses", _phone_key(phone))


def reserve_miss(phone: str) -> bool:
    """Take one of the phone's allowed misses before an attempt; false while it cools down."""
    if not _enabled():
        return True
    identifiers = _miss_identifiers(phone)
    if _on_counters(lambda counter: counter.hit(MISSES_PER_PHONE, *identifiers)):
        return True
    g.retry_after = _seconds_left(MISSES_PER_PHONE, identifiers)
    return False


def refund_miss(phone: str) -> None:
    """The attempt was not a miss: give its reserved slot back."""
    if not _enabled():
        return
    key = MISSES_PER_PHONE.key_for(*_miss_identifiers(phone))
    _on_counters(lambda counter: counter.storage.incr(key, MISSES_PER_PHONE.get_expiry(), -1))


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
