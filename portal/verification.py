"""The verify rules (SPEC §4–§5): one attempt of code + phone + ID last six.

A wrong code or phone never counts against a filing. A wrong ID with the right
phone and code counts; the fifth fails the verification and returns the filing.
Every change is an atomic `UPDATE … WHERE` under a lock on the filing row, so
parallel attempts give one success and an exact count. The personal link
(`verify_by_link`) names the phone and code by its token; the rest is the same.
"""

from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa

from portal import deadlines, live_codes, personal_links
from portal.extensions import db
from portal.filings import change_status, lock
from portal.messages import Outcome
from portal.models import (
    Filing,
    FilingStatus,
    ReturnReason,
    UTCDateTime,
    Verification,
    VerificationStatus,
)
from portal.protection import sealing
from portal.protection.personal_data import id_last6_matches, phone_digests

MAX_WRONG_IDS = 5


@dataclass(frozen=True)
class VerifyResult:
    outcome: Outcome
    pending_phones: tuple[str, ...] = ()
    # The verification the phone and code named, if any: the attempt joins its timeline.
    verification_id: int | None = None


def verify(province: str, phone: str, code: str, id_last6: str, now: datetime) -> VerifyResult:
    candidate = _find(province, phone, code)
    if candidate is None:
        _as_costly_as_a_wrong_id(id_last6, now)
        return VerifyResult(Outcome.NOT_FOUND)
    return replace(_check(candidate, id_last6, now), verification_id=candidate.id)


def verify_by_link(province: str, token: str, id_last6: str, now: datetime) -> VerifyResult:
    """An attempt through the personal link: the token stands for the phone and the code."""
    candidate = live_link(province, token, now)
    if candidate is None:
        return VerifyResult(Outcome.NOT_FOUND)
    return replace(_check(candidate, id_last6, now), verification_id=candidate.id)


def live_link(province: str, token: str, now: datetime) -> Verification | None:
    """The verification a link opens while its code is live; None for a token that is unknown,
    expired or used, alike."""
    candidate = db.session.scalar(
        sa.select(Verification).where(
            Verification.province_slug == province,
            Verification.link_digest.in_(personal_links.digests(token)),
            Verification.status == VerificationStatus.PENDING,
        )
    )
    if candidate is None or not deadlines.code_is_live(candidate.filing, candidate, now):
        return None
    return candidate


def _as_costly_as_a_wrong_id(id_last6: str, now: datetime) -> None:
    """An unknown phone or a wrong code takes the steps a wrong ID takes (the ID digests,
    the filing lock and the counted update, one statement), on no row: the answer's timing
    does not tell which of the three was wrong (docs/security.md has the measurement)."""
    id_last6_matches("", id_last6)
    db.session.execute(_COUNT_WRONG_ID, {"locked_filing": "", "counted": 0, "at": now})


def _check(candidate: "Verification | sa.Row", id_last6: str, now: datetime) -> VerifyResult:
    """`candidate` is the lookup's row (`_FOUND`) or, from a link, the Verification."""
    id_matches = id_last6_matches(candidate.id_digest, id_last6)
    if candidate.status == VerificationStatus.VERIFIED:
        return VerifyResult(Outcome.ALREADY_VERIFIED if id_matches else Outcome.NOT_FOUND)
    if not id_matches:
        return _count_wrong_id(candidate, now)
    filing = lock(candidate.filing_id)
    if not deadlines.code_is_live(filing, candidate, now):
        return VerifyResult(Outcome.NOT_FOUND)
    return _mark_verified(candidate, filing, now)


_verifications = Verification.__table__
_filings = Filing.__table__

# What `_check` reads of the verification the values name; a Core select (no ORM object).
_FOUND = (
    _verifications.c.id,
    _verifications.c.filing_id,
    _verifications.c.status,
    _verifications.c.id_digest,
    _verifications.c.expires_at,
)
# Built once: building these per request cost more than running them.
_FIND = (
    sa.select(*_FOUND)
    .where(
        _verifications.c.province_slug == sa.bindparam("province"),
        _verifications.c.phone_digest.in_(sa.bindparam("phones", expanding=True)),
        _verifications.c.code_digest.in_(sa.bindparam("codes", expanding=True)),
        _verifications.c.status.in_([VerificationStatus.PENDING, VerificationStatus.VERIFIED]),
    )
    .order_by(sa.case((_verifications.c.status == VerificationStatus.PENDING, 0), else_=1))
    .limit(1)
)


def _find(province: str, phone: str, code: str) -> sa.Row | None:
    """The verification these values name: a pending one first, else one already verified."""
    values = {
        "province": province,
        "phones": phone_digests(phone),
        "codes": sealing.digests("code", code),
    }
    return db.session.execute(_FIND, values).first()


_AT = sa.bindparam("at", type_=UTCDateTime())
# A wrong ID in one statement: the filing's lock, taken by the uncorrelated EXISTS before the
# verification's row is read (PostgreSQL rereads either if it changed meanwhile), the code's
# liveness as `deadlines.code_is_live` has it, and the counted update. The dummy of a wrong
# code or phone is the same statement on no row.
_LOCKED_LIVE_FILING = (
    sa.select(_filings.c.id)
    .where(
        _filings.c.id == sa.bindparam("locked_filing"),
        _filings.c.status == FilingStatus.PENDING_VERIFICATION,
        sa.or_(_filings.c.deadline.is_(None), _filings.c.deadline > _AT),
    )
    .with_for_update()
    .exists()
)
_COUNT_WRONG_ID = (
    sa.update(_verifications)
    .where(
        _verifications.c.id == sa.bindparam("counted"),
        _verifications.c.status == VerificationStatus.PENDING,
        _verifications.c.wrong_id_count < MAX_WRONG_IDS,
        sa.or_(_verifications.c.expires_at.is_(None), _verifications.c.expires_at > _AT),
        _LOCKED_LIVE_FILING,
    )
    .values(wrong_id_count=_verifications.c.wrong_id_count + 1)
    .returning(_verifications.c.wrong_id_count)
)


def _count_wrong_id(candidate: "Verification | sa.Row", now: datetime) -> VerifyResult:
    values = {"locked_filing": candidate.filing_id, "counted": candidate.id, "at": now}
    count = db.session.execute(_COUNT_WRONG_ID, values).scalar()
    if count is None or count < MAX_WRONG_IDS:
        return VerifyResult(Outcome.NOT_FOUND)
    filing = lock(candidate.filing_id)  # locked already: the filing to return
    _close_verifications(filing.id, VerificationStatus.FAILED)
    change_status(filing, FilingStatus.RETURNED, now, ReturnReason.VERIFICATION_FAILED)
    return VerifyResult(Outcome.FAILED)


def _mark_verified(
    candidate: "Verification | sa.Row", filing: Filing, now: datetime
) -> VerifyResult:
    changed = db.session.execute(
        sa.update(Verification)
        .where(Verification.id == candidate.id, Verification.status == VerificationStatus.PENDING)
        .values(status=VerificationStatus.VERIFIED, verified_at=now)
    ).rowcount
    if not changed:
        return _lost_race(candidate.id)
    live_codes.release(Verification.id == candidate.id)
    still_pending = db.session.scalars(
        sa.select(Verification.phone_masked)
        .where(
            Verification.filing_id == filing.id, Verification.status == VerificationStatus.PENDING
        )
        .order_by(Verification.id)
    ).all()
    if still_pending:
        deadlines.refresh([filing.id])
        return VerifyResult(Outcome.VERIFIED_OTHERS_PENDING, tuple(still_pending))
    change_status(filing, FilingStatus.UNDER_REVIEW, now)
    return VerifyResult(Outcome.ALL_VERIFIED)


def _lost_race(verification_id: int) -> VerifyResult:
    """Changed since it was read: verified in parallel, or closed with its filing (SQLite
    reads take no row lock, so a parallel return can land between the read and the write)."""
    status = db.session.scalar(
        sa.select(Verification.status).where(Verification.id == verification_id)
    )
    if status == VerificationStatus.VERIFIED:
        return VerifyResult(Outcome.ALREADY_VERIFIED)
    return VerifyResult(Outcome.NOT_FOUND)


def _close_verifications(filing_id: str, status: VerificationStatus) -> None:
    """A returned filing's pending verifications can no longer be completed."""
    live_codes.release(Verification.filing_id == filing_id)
    db.session.execute(
        sa.update(Verification)
        .where(
            Verification.filing_id == filing_id, Verification.status == VerificationStatus.PENDING
        )
        .values(status=status)
    )
