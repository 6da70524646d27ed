"""When a code expires and when its filing falls due (SPEC §4, Time rules):

    "The code is valid 24 h (province setting) from its first sending. … Each code's
    validity runs from its own first sending; the filing is returned when a code it still
    needs has expired. No filing waits forever: if none of a filing's texts could be
    handed to a gateway by the end of their retries, its deadline runs from acceptance."

Each verification keeps its own `expires_at`: set when its first text is handed to a
gateway (a timeout counts: the text may have arrived), or, when every text of it has failed
for good with none handed over, acceptance + validity. The rule is applied per code: in a
filing where one code went out and another never could, the first runs from its sending and
the second from acceptance. Once set, an expiry never moves (a resend sends the same code).

`Filing.deadline` is derived: the earliest expiry among the codes the filing still needs
(its pending verifications). It moves later when the phone whose code expires first
verifies, and stays as it was once the filing leaves pending verification. The sweep and
the console read it; verify, resend and the personal link check both it and the code's own.

Locks follow verify's order: a filing's row first, then its verifications. Writing a code's
expiry before locking its filing deadlocked against a verify of that code (PostgreSQL).
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa

from portal import rules_cache
from portal.extensions import db
from portal.models import (
    Filing,
    FilingStatus,
    MessageStatus,
    SmsMessage,
    Verification,
    VerificationStatus,
)


def code_is_live(filing: Filing, verification: Verification, now: datetime) -> bool:
    """The code may still be entered or resent: its filing awaits codes and neither the
    filing's deadline nor the code's own expiry has passed, whatever the sweeps have done.
    A wrong ID's counted update has the same rule in SQL (`verification._COUNT_WRONG_ID`;
    tests/test_verification.py holds the two equal at every edge)."""
    return (
        filing.status == FilingStatus.PENDING_VERIFICATION
        and _before(now, filing.deadline)
        and _before(now, verification.expires_at)
    )


def _before(now: datetime, expiry: datetime | None) -> bool:
    return expiry is None or now < expiry


def start(verifications: Iterable[Verification], sent_at: datetime) -> None:
    """Texts handed to a gateway at `sent_at`: the codes among them sent for the first time
    start their validity, and their filings' deadlines follow. One statement per validity."""
    by_hours: dict[int, set[int]] = {}
    filing_ids: set[str] = set()
    for verification in verifications:
        hours = rules_cache.province(verification.province_slug).code_validity_hours
        by_hours.setdefault(hours, set()).add(verification.id)
        filing_ids.add(verification.filing_id)
    _lock_filings(filing_ids)
    for hours, verification_ids in by_hours.items():
        db.session.execute(
            sa.update(Verification)
            .where(Verification.id.in_(verification_ids), Verification.expires_at.is_(None))
            .values(expires_at=sent_at + timedelta(hours=hours))
            .execution_options(synchronize_session=False)
        )
    refresh(filing_ids)


def give_up(message: SmsMessage) -> None:
    """A text failed for good. If its code has no other text still to send or sent, none of
    its texts could be handed over: its validity runs from the filing's acceptance."""
    verification = message.verification
    others = sa.select(SmsMessage.id).where(
        SmsMessage.verification_id == verification.id,
        SmsMessage.id != message.id,
        SmsMessage.status.in_([MessageStatus.QUEUED, MessageStatus.SENT]),
    )
    if verification.expires_at is not None or db.session.scalar(others.exists().select()):
        return
    filing = verification.filing
    _lock_filings([filing.id])
    hours = rules_cache.province(filing.province_slug).code_validity_hours
    db.session.execute(
        sa.update(Verification)
        .where(Verification.id == verification.id, Verification.expires_at.is_(None))
        .values(expires_at=filing.created_at + timedelta(hours=hours))
        .execution_options(synchronize_session=False)
    )
    refresh([filing.id])


def _lock_filings(filing_ids: Iterable[str]) -> None:
    """Row locks on these filings until commit, taken in id order (no lock of a row is
    waited for while holding one that a verify of the same filing wants first)."""
    db.session.execute(
        sa.select(Filing.id)
        .where(Filing.id.in_(list(filing_ids)))
        .order_by(Filing.id)
        .with_for_update()
    )


def refresh(filing_ids: Iterable[str]) -> None:
    """Each filing still pending verification falls due when the first of its pending codes
    expires (none yet while no pending code has an expiry)."""
    filing_ids = list(filing_ids)
    if not filing_ids:
        return
    earliest = (
        sa.select(sa.func.min(Verification.expires_at))
        .where(
            Verification.filing_id == Filing.id,
            Verification.status == VerificationStatus.PENDING,
        )
        .scalar_subquery()
    )
    db.session.execute(
        sa.update(Filing)
        .where(Filing.id.in_(filing_ids), Filing.status == FilingStatus.PENDING_VERIFICATION)
        .values(deadline=earliest)
        .execution_options(synchronize_session=False)
    )
