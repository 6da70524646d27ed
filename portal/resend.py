"""The manual resend rule (SPEC §4–§5): the same code again, at most the province's limit.

A resend never moves the deadline and never counts against the filing; the noon
resend is separate and not counted here.
"""

from datetime import datetime

import sqlalchemy as sa

from portal.extensions import db
from portal.filings import send_code
from portal.messages import Outcome
from portal.models import (
    Filing,
    FilingStatus,
    MessageKind,
    Province,
    Verification,
    VerificationStatus,
)
from portal.personal_data import id_last6_digest


def resend(province: Province, phone: str, id_last6: str, now: datetime) -> Outcome:
    pending = db.session.scalars(
        sa.select(Verification)
        .join(Filing)
        .where(
            Verification.province_slug == province.slug,
            Verification.phone == phone,
            Verification.id_digest == id_last6_digest(id_last6),
            Verification.status == VerificationStatus.PENDING,
            Filing.status == FilingStatus.PENDING_VERIFICATION,
            sa.or_(Filing.deadline.is_(None), Filing.deadline > now),
        )
    ).all()
    if not pending:
        return Outcome.RESEND_NOTHING_PENDING
    sent = [v for v in pending if _count_resend(v, province.resend_limit)]
    for verification in sent:
        send_code(verification, MessageKind.RESEND, now)
    return Outcome.RESEND_SENT if sent else Outcome.RESEND_LIMIT_REACHED


def _count_resend(verification: Verification, limit: int) -> bool:
    return bool(
        db.session.execute(
            sa.update(Verification)
            .where(
                Verification.id == verification.id,
                Verification.status == VerificationStatus.PENDING,
                Verification.resend_count < limit,
            )
            .values(resend_count=Verification.resend_count + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
    )
