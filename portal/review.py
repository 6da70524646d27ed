"""The administration's review of a filing once its phones are verified (SPEC §7).

Approval puts the filing's websites on record with their principals' phones, which is
what a later `new_access` filing is checked against, so it records only a phone that
this filing checked by SMS: a website whose phone went unchecked (a type or a scope
that skips the check, a province not yet live) is not put on record, and whatever
record it had stays as it was.
"""

from datetime import datetime

import sqlalchemy as sa

from portal.extensions import db
from portal.filings import change_status, lock
from portal.models import Filing, FilingStatus, FilingType, Record, VerificationStatus
from portal.protection.personal_data import sealed_record_phone, verification_phone


class NotUnderReview(Exception):
    pass


# Approving these takes websites off the record; approving any other type records the
# phones it verified.
REMOVES_FROM_RECORD = {FilingType.CANCEL_FILING, FilingType.CANCEL_WEBSITE}


def approve(filing: Filing, note: str, now: datetime) -> None:
    _decide(filing, FilingStatus.APPROVED, note, now)
    domains = [site["domain"] for site in filing.content.get("websites", [])]
    if filing.type in REMOVES_FROM_RECORD:
        db.session.execute(sa.delete(Record).where(Record.domain.in_(domains)))
        return
    for domain, phone in verified_website_phones(filing).items():
        db.session.merge(
            Record(
                domain=domain,
                **sealed_record_phone(domain, phone),
                filing_id=filing.id,
                recorded_at=now,
            )
        )


def verified_website_phones(filing: Filing) -> dict[str, str]:
    """Domain → its principal's phone, for the websites whose phone this filing verified."""
    return {
        role.removeprefix("website:"): verification_phone(verification)
        for verification in filing.verifications
        if verification.status == VerificationStatus.VERIFIED
        for role in verification.roles
        if role.startswith("website:")
    }


def reject(filing: Filing, note: str, now: datetime) -> None:
    _decide(filing, FilingStatus.REJECTED, note, now)


def _decide(filing: Filing, status: FilingStatus, note: str, now: datetime) -> None:
    locked = lock(filing.id)
    if locked.status != FilingStatus.UNDER_REVIEW:
        raise NotUnderReview(filing.id)
    locked.review_note = note
    change_status(locked, status, now)
