"""The codes of the pending verifications (SPEC §4): unique in their province, and each one's
noon resend once it falls due.

A verification reserves its code as it is inserted (portal/models.py `Verification`, or
intake's one statement for a filing's verifications, portal/filings.py `_issue_codes`) and
frees it here when it leaves pending: verified, failed or expired. Kept off the
verifications table so that no index there names `status` and its status changes are HOT.
"""

from datetime import datetime

import sqlalchemy as sa

from portal.extensions import db
from portal.models import Filing, FilingStatus, LiveCode, Verification, VerificationStatus


def held(province_slug: str, digests: list[str]) -> set[str]:
    """Those of the code digests a pending verification of the province holds."""
    return set(
        db.session.scalars(
            sa.select(LiveCode.code_digest).where(
                LiveCode.province_slug == province_slug, LiveCode.code_digest.in_(digests)
            )
        )
    )


def release(verifications: sa.ColumnElement[bool]) -> None:
    """Free the codes of the verifications that match: they are no longer pending."""
    release_ids(LiveCode.verification_id.in_(sa.select(Verification.id).where(verifications)))


def release_ids(verification_ids: sa.ColumnElement[bool]) -> None:
    """Free the codes of the verifications whose ids match (a condition on
    `LiveCode.verification_id`, e.g. the ids an UPDATE returned): matched by this table's own
    key, without reading the verifications again."""
    db.session.execute(
        sa.delete(LiveCode).where(verification_ids).execution_options(synchronize_session=False)
    )


def take_noon_resends(now: datetime) -> list[int]:
    """The verifications whose noon resend is due while their filing is open, each claimed
    once: its due time is cleared in the same statement, so two sweeps never both send it.
    One whose filing is past its deadline keeps its entry until the expiry frees the code."""
    still_open = (
        sa.select(Verification.id)
        .join(Filing, Filing.id == Verification.filing_id)
        .where(
            Verification.id == LiveCode.verification_id,
            Verification.status == VerificationStatus.PENDING,
            Filing.status == FilingStatus.PENDING_VERIFICATION,
            sa.or_(Filing.deadline.is_(None), Filing.deadline > now),
        )
        .exists()
    )
    return list(
        db.session.scalars(
            sa.update(LiveCode)
            .where(LiveCode.noon_resend_at <= now, still_open)
            .values(noon_resend_at=None)
            .returning(LiveCode.verification_id)
            .execution_options(synchronize_session=False)
        )
    )
