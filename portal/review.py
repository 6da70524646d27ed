"""The administration's review of a filing once its phones are verified (SPEC §7).

Approval puts the filing's websites on record with their principals' phones,
which is what a later `new_access` filing is checked against.
"""

from datetime import datetime

import sqlalchemy as sa

from portal.extensions import db
from portal.filings import change_status, lock
from portal.models import Filing, FilingStatus, FilingType, Record
from portal.protection.personal_data import filing_principals, sealed_record_phone


class NotUnderReview(Exception):
    pass


# Approving these takes websites off the record; approving any other type puts them on it.
REMOVES_FROM_RECORD = {FilingType.CANCEL_FILING, FilingType.CANCEL_WEBSITE}


def approve(filing: Filing, note: str, now: datetime) -> None:
    _decide(filing, FilingStatus.APPROVED, note, now)
    domains = [site["domain"] for site in filing.content.get("websites", [])]
    if filing.type in REMOVES_FROM_RECORD:
        db.session.execute(sa.delete(Record).where(Record.domain.in_(domains)))
        return
    principals = filing_principals(filing)
    for site, principal in zip(
        filing.content.get("websites", []), principals["websites"], strict=True
    ):
        db.session.merge(
            Record(
                domain=site["domain"],
                **sealed_record_phone(site["domain"], principal["phone"]),
                filing_id=filing.id,
                recorded_at=now,
            )
        )


def reject(filing: Filing, note: str, now: datetime) -> None:
    _decide(filing, FilingStatus.REJECTED, note, now)


def _decide(filing: Filing, status: FilingStatus, note: str, now: datetime) -> None:
    locked = lock(filing.id)
    if locked.status != FilingStatus.UNDER_REVIEW:
        raise NotUnderReview(filing.id)
    locked.review_note = note
    change_status(locked, status, now)
