"""Image captchas, with an audio alternative: the answer stays on the server, each
challenge is used once.

A challenge's id is bound to the session that asked for it (`_bound_id`: a nonce and a
MAC of it under the session's own random id, so any number of open tabs work and a page
writes nothing to the session once it has its id) and posted back with the form; checking
deletes it, whatever the answer. Its answer
is kept in Redis when there is one, else in the database (`CaptchaChallenge`).
With Redis, images come ready-made from a pool workers keep filled (see `POOL_SIZE`);
otherwise the image, and always the audio clip, are made on demand, only for the
session's own challenges. The periodic sweep deletes challenges that expired unused.
"""

import contextlib
import hmac
import secrets
from datetime import datetime, timedelta
from io import BytesIO

import sqlalchemy as sa
from captcha.audio import AudioCaptcha
from captcha.image import ImageCaptcha
from flask import current_app, session
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import RedisError

from portal import queues
from portal.extensions import db
from portal.models import CaptchaChallenge

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
LENGTH = 4
LIFETIME = timedelta(minutes=5)

_images = ImageCaptcha(width=160, height=60)
# The bundled voices read digits and upper-case letters: every character of ALPHABET.
_voices = AudioCaptcha()


def new_challenge(now: datetime) -> str:
    challenge_id = _bound_id()
    redis = _redis()
    if redis is not None:
        try:
            _new_in_redis(redis, challenge_id, now)
            return challenge_id
        except RedisError:
            pass  # then in the database, at once
    db.session.add(CaptchaChallenge(id=challenge_id, answer=_new_answer(), created_at=now))
    db.session.flush()
    return challenge_id


# A challenge id is NONCE_LENGTH hex characters and the first TAG_LENGTH of their HMAC under
# the secret key with the session's id ("sid", drawn at the session's first challenge and
# then kept in its signed cookie). Another session's ids fail the check, as the list of its
# ids in the cookie did, without signing the cookie anew on every page.
NONCE_LENGTH = 20
TAG_LENGTH = 12


def _bound_id() -> str:
    if "sid" not in session:
        session["sid"] = secrets.token_hex(16)
    nonce = secrets.token_hex(NONCE_LENGTH // 2)
    return nonce + _tag(current_app.secret_key, session["sid"], nonce)


def _tag(key: str, session_id: str, nonce: str) -> str:
    message = f"captcha:{session_id}:{nonce}".encode()
    return hmac.new(key.encode(), message, "sha256").hexdigest()[:TAG_LENGTH]


def is_own(challenge_id: str | None) -> bool:
    """True for an id this session was given (used or not), under the secret key or, while
    the session's cookie is still taken, one of its fallbacks."""
    session_id = session.get("sid")
    if not session_id or not challenge_id or len(challenge_id) != NONCE_LENGTH + TAG_LENGTH:
        return False
    nonce, tag = challenge_id[:NONCE_LENGTH], challenge_id[NONCE_LENGTH:].encode()
    keys = (current_app.secret_key, *(current_app.config["SECRET_KEY_FALLBACKS"] or ()))
    return any(hmac.compare_digest(tag, _tag(key, session_id, nonce).encode()) for key in keys)


def unused(challenge_id: str | None) -> bool:
    """True for one of this session's challenges that is still to be answered."""
    return _answer(challenge_id) is not None


# With Redis, a challenge's answer is kept there (`captcha:challenge:<id>`, with its time)
# and used up by GETDEL: a page then writes nothing to the database. Without Redis, or while
# it fails, the answer is a database row; a challenge is looked for in Redis, then there.
def _new_in_redis(redis: Redis, challenge_id: str, now: datetime) -> None:
    """One round trip: the script takes an image from the pool (or, with none, keeps the
    answer drawn here) and stores the challenge; the image never leaves Redis."""
    answer, created_at = _new_answer(), now.isoformat()
    if not _pool_size():
        redis.set(_challenge_key(challenge_id), f"{answer}|{created_at}", ex=REDIS_EXPIRY)
        return
    keys = [_pool_key(), _challenge_key(challenge_id), _image_key(challenge_id), REFILL_LOCK]
    args = [answer, created_at, REDIS_EXPIRY, IMAGE_TTL, REFILL_BELOW, REFILL_LOCK_SECONDS]
    if _NEW_CHALLENGE(keys=keys, args=args, client=redis):
        queues.rq_queue(queues.MAINTENANCE).enqueue("portal.jobs.refill_captchas")


# KEYS: the pool, the challenge, its image, the refill lock. ARGV: the answer for when the
# pool is empty, the time, the two expiries, REFILL_BELOW, the lock's seconds. A pool entry
# is "<answer>\0<png>". It answers 1 when the caller is to queue a refill: the pool is low
# and the lock was free (one refill job at a time, not one per page).
_NEW_CHALLENGE = Script(
    None,
    b"""
local entry = redis.call('LPOP', KEYS[1])
local answer = ARGV[1]
if entry then
  local cut = string.find(entry, '\\0', 1, true)
  answer = string.sub(entry, 1, cut - 1)
  redis.call('SET', KEYS[3], string.sub(entry, cut + 1), 'EX', ARGV[4])
end
redis.call('SET', KEYS[2], answer .. '|' .. ARGV[2], 'EX', ARGV[3])
if redis.call('LLEN', KEYS[1]) < tonumber(ARGV[5])
    and redis.call('SET', KEYS[4], 1, 'NX', 'EX', ARGV[6]) then
  return 1
end
return 0
""",
)


def _challenge_key(challenge_id: str) -> str:
    return f"captcha:challenge:{challenge_id}"


def _from_redis(challenge_id: str, use_up: bool) -> tuple[str, datetime] | None:
    redis = _redis()
    if redis is None:
        return None
    key = _challenge_key(challenge_id)
    try:
        kept = redis.getdel(key) if use_up else redis.get(key)
    except RedisError:
        return None
    if kept is None:
        return None
    answer, _, created_at = kept.decode().partition("|")
    return answer, datetime.fromisoformat(created_at)


def _new_answer() -> str:
    return current_app.config["CAPTCHA_TEST_ANSWER"] or "".join(
        secrets.choice(ALPHABET) for _ in range(LENGTH)
    )


def image(challenge_id: str) -> BytesIO | None:
    """The image of one of this session's challenges: from Redis while it keeps it (a Redis
    read), else made now from the stored answer (~4 ms of CPU) and kept there."""
    if not is_own(challenge_id):
        return None
    if png := _pooled_image(challenge_id):
        return BytesIO(png)
    answer = _answer(challenge_id)
    if not answer:
        return None
    drawn = _images.generate(answer)
    if _redis() is not None:
        _keep_image(challenge_id, drawn.getvalue())  # a reload reads it, not draws it again
    return drawn


# With Redis, images are made ahead by workers: a pool of (answer, PNG) pairs that a page
# takes one from and a job refills (`portal.jobs.refill_captchas`). The pool moves the
# CPU off the request, it does not remove it: when workers cannot keep up, pages make
# their images on demand as the embedded default does. An image, pooled or drawn on demand, is
# kept for its challenge for IMAGE_TTL (a reload reads it again); after that it is remade.
POOL_SIZE = 2000  # the default of CAPTCHA_POOL_SIZE
REFILL_BELOW = 500
REFILL_BATCH = 500
IMAGE_TTL = 60
REFILL_LOCK = "captcha:refilling"
REFILL_LOCK_SECONDS = 30
# Redis drops an unused challenge a minute after its lifetime (solve() checks the lifetime).
REDIS_EXPIRY = int(LIFETIME.total_seconds()) + 60


def _redis() -> Redis | None:
    queue = queues.rq_queue(queues.MAINTENANCE)
    return queue.connection if queue is not None else None


def _pool_size() -> int:
    return current_app.config.get("CAPTCHA_POOL_SIZE", POOL_SIZE)


def _pool_key() -> str:
    # Test answers (load runs) get a pool of their own: its images show that answer.
    return "captcha:pool:test" if current_app.config["CAPTCHA_TEST_ANSWER"] else "captcha:pool"


def _image_key(challenge_id: str) -> str:
    return f"captcha:image:{challenge_id}"


def _keep_image(challenge_id: str, png: bytes) -> None:
    with contextlib.suppress(RedisError):  # else made on demand when asked for
        _redis().set(_image_key(challenge_id), png, ex=IMAGE_TTL)


def _pooled_image(challenge_id: str) -> bytes | None:
    redis = _redis()
    if redis is None:
        return None
    try:
        return redis.get(_image_key(challenge_id))
    except RedisError:
        return None


def refill_pool() -> int:
    """Make images until the pool holds POOL_SIZE (at most REFILL_BATCH a call); how many made."""
    redis = _redis()
    if redis is None:
        return 0
    try:
        wanted = min(_pool_size() - redis.llen(_pool_key()), REFILL_BATCH)
        made = []
        for _ in range(max(wanted, 0)):
            answer = _new_answer()
            made.append(answer.encode() + b"\0" + _images.generate(answer).getvalue())
        if made:
            redis.rpush(_pool_key(), *made)
        return len(made)
    finally:
        redis.delete(REFILL_LOCK)


def audio(challenge_id: str) -> BytesIO | None:
    """The answer read aloud as a WAV clip (~0.25 s of CPU to make)."""
    answer = _answer(challenge_id)
    return BytesIO(_voices.generate(answer.upper())) if answer else None


def _answer(challenge_id: str | None) -> str | None:
    """The answer of one of this session's challenges."""
    if not is_own(challenge_id):
        return None
    if kept := _from_redis(challenge_id, use_up=False):
        return kept[0]
    return db.session.scalar(
        sa.select(CaptchaChallenge.answer).where(CaptchaChallenge.id == challenge_id)
    )


def delete_expired(now: datetime) -> int:
    """Delete the challenges past their lifetime that nobody used; flushes, the caller commits."""
    return db.session.execute(
        sa.delete(CaptchaChallenge)
        .where(CaptchaChallenge.created_at <= now - LIFETIME)
        .execution_options(synchronize_session=False)
    ).rowcount


def solve(challenge_id: str | None, answer: str | None, now: datetime) -> bool:
    """Use up the challenge; true when it was this session's, fresh and answered right."""
    if not is_own(challenge_id):
        return False
    row = _from_redis(challenge_id, use_up=True) or _used_up_in_database(challenge_id)
    if row is None or not answer:
        return False
    expected, created_at = row
    # Bytes: compare_digest refuses str holding non-ASCII (a 500 found by tests/test_fuzz.py).
    return created_at > now - LIFETIME and secrets.compare_digest(
        expected.upper().encode(), answer.strip().upper().encode()
    )


def _used_up_in_database(challenge_id: str) -> tuple[str, datetime] | None:
    return db.session.execute(
        sa.delete(CaptchaChallenge)
        .where(CaptchaChallenge.id == challenge_id)
        .returning(CaptchaChallenge.answer, CaptchaChallenge.created_at)
    ).first()
