"""The manual resend rule (SPEC §4–§5): the same code again, at most the province's limit.

A resend never moves the deadline and never counts against the filing; the noon
resend is separate and not counted here.
"""

from datetime import datetime

import sqlalchemy as sa

from portal import deadlines
from portal.delivery import pacing
from portal.extensions import db
from portal.filings import send_codes
from portal.messages import Outcome
from portal.models import (
    MessageKind,
    Province,
    Verification,
    VerificationStatus,
)
from portal.protection.personal_data import id_last6_digests, phone_digests
from portal.rules_cache import ProvinceSettings


def resend(
    province: Province | ProvinceSettings, phone: str, id_last6: str, now: datetime
) -> Outcome:
    pending = db.session.scalars(
        sa.select(Verification).where(
            Verification.province_slug == province.slug,
            Verification.phone_digest.in_(phone_digests(phone)),
            Verification.id_digest.in_(id_last6_digests(id_last6)),
            Verification.status == VerificationStatus.PENDING,
        )
    ).all()
    if not pending:
        return Outcome.RESEND_NOTHING_PENDING
    outcomes = {resend_verification(verification, province, now) for verification in pending}
    return min(outcomes, key=_PREFERENCE.index)


# With several pending filings for one phone, the answer is the best that happened.
_PREFERENCE = [Outcome.RESEND_SENT, Outcome.RESEND_LIMIT_REACHED, Outcome.RESEND_NOTHING_PENDING]


def resend_verification(
    verification: Verification, province: Province | ProvinceSettings, now: datetime
) -> Outcome:
    """Send one verification's code again, if it is still pending and under its limit.

    Used by the public resend page and by an admin; both count against the limit. A resend
    that would be over the phone's daily pacing limit is refused as over the limit, uncounted.
    """
    if not deadlines.code_is_live(verification.filing, verification, now):
        return Outcome.RESEND_NOTHING_PENDING
    if pacing.daily_cap_reached(verification.phone_digest, now):
        return Outcome.RESEND_LIMIT_REACHED
    if not _count_resend(verification, province.resend_limit):
        if verification.status != VerificationStatus.PENDING:
            return Outcome.RESEND_NOTHING_PENDING
        return Outcome.RESEND_LIMIT_REACHED
    send_codes([verification], MessageKind.RESEND, now)
    return Outcome.RESEND_SENT


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
