"""Image captchas, with an audio alternative: the answer stays on the server, each
challenge is used once.

A challenge's id is kept in the session (the last few, so two open tabs both
work) and posted back with the form; checking deletes it, whatever the answer.
The image and the audio clip are made on demand, only for the session's own
challenges; the periodic sweep deletes challenges that expired unused.
"""

import secrets
from datetime import datetime, timedelta
from io import BytesIO

import sqlalchemy as sa
from captcha.audio import AudioCaptcha
from captcha.image import ImageCaptcha
from flask import current_app, session

from portal.extensions import db
from portal.models import CaptchaChallenge

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
LENGTH = 4
LIFETIME = timedelta(minutes=5)
KEPT_PER_SESSION = 3

_images = ImageCaptcha(width=160, height=60)
# The bundled voices read digits and upper-case letters: every character of ALPHABET.
_voices = AudioCaptcha()


def new_challenge(now: datetime) -> str:
    answer = current_app.config["CAPTCHA_TEST_ANSWER"] or "".join(
        secrets.choice(ALPHABET) for _ in range(LENGTH)
    )
    challenge = CaptchaChallenge(answer=answer, created_at=now)
    db.session.add(challenge)
    db.session.flush()
    session["captchas"] = [*session.get("captchas", [])[-(KEPT_PER_SESSION - 1) :], challenge.id]
    return challenge.id


def image(challenge_id: str) -> BytesIO | None:
    answer = _answer(challenge_id)
    return _images.generate(answer) if answer else None


def audio(challenge_id: str) -> BytesIO | None:
    """The answer read aloud as a WAV clip (~0.25 s of CPU to make)."""
    answer = _answer(challenge_id)
    return BytesIO(_voices.generate(answer.upper())) if answer else None


def _answer(challenge_id: str) -> str | None:
    """The answer of one of this session's challenges."""
    if challenge_id not in session.get("captchas", []):
        return None
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
    ids = session.get("captchas", [])
    if not challenge_id or challenge_id not in ids:
        return False
    session["captchas"] = [kept for kept in ids if kept != challenge_id]
    row = db.session.execute(
        sa.delete(CaptchaChallenge)
        .where(CaptchaChallenge.id == challenge_id)
        .returning(CaptchaChallenge.answer, CaptchaChallenge.created_at)
    ).first()
    if row is None or not answer:
        return False
    # Bytes: compare_digest refuses str holding non-ASCII (a 500 found by tests/test_fuzz.py).
    return row.created_at > now - LIFETIME and secrets.compare_digest(
        row.answer.upper().encode(), answer.strip().upper().encode()
    )
