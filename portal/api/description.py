"""How a filing and its events are shown to their provider: the API's answers and the
webhook bodies."""

from typing import TYPE_CHECKING

import sqlalchemy as sa

from portal.api.schemas import EventOut, FilingOut, VerificationOut, WebhookAttemptOut
from portal.clock import iso_shanghai
from portal.extensions import db
from portal.models import Event, Filing, MessageStatus, SmsMessage

if TYPE_CHECKING:
    from portal.filings import IssuedCode


def describe(
    filing: Filing, delivery: dict[int, str] | None = None, verifications: list | None = None
) -> FilingOut:
    """The filing as its provider sees it; `delivery` is each verification's latest text's
    state when the caller holds it (`taken_in`), read otherwise; `verifications` are its
    verifications when the caller holds them (`taken_in`), loaded otherwise."""
    if verifications is None:
        verifications = filing.verifications
    if delivery is None:
        delivery = latest_deliveries([v.id for v in verifications])
    return FilingOut(
        id=filing.id,
        reference=filing.reference,
        province=filing.province_slug,
        type=filing.type,
        status=filing.status,
        return_reason=filing.return_reason,
        created_at=iso_shanghai(filing.created_at),
        deadline=iso_shanghai(filing.deadline),
        verifications=[
            VerificationOut(
                phone=v.phone_masked,
                roles=v.roles,
                status=v.status,
                delivery=delivery.get(v.id),
            )
            for v in verifications
        ],
    )


def taken_in(filing: Filing, codes: list["IssuedCode"]) -> FilingOut:
    """A filing just taken in, from what its intake holds (before the commit expires it):
    the codes it issued, each with one text, queued."""
    return describe(filing, {code.id: MessageStatus.QUEUED for code in codes}, codes)


def latest_deliveries(verification_ids: list[int]) -> dict[int, str]:
    """The state of the latest text to each verification's phone: its receipt's word
    (delivered, undelivered), else its status (queued, sent, failed). A text withdrawn unsent
    never went to the phone, so it is not the latest."""
    if not verification_ids:
        return {}
    latest = (
        sa.select(sa.func.max(SmsMessage.id))
        .where(
            SmsMessage.verification_id.in_(verification_ids),
            SmsMessage.status != MessageStatus.WITHDRAWN,
        )
        .group_by(SmsMessage.verification_id)
    )
    rows = db.session.execute(
        sa.select(
            SmsMessage.verification_id, sa.func.coalesce(SmsMessage.delivery, SmsMessage.status)
        ).where(SmsMessage.id.in_(latest))
    )
    return dict(rows.all())


def as_changed(event: Event, filing: FilingOut) -> dict:
    """The filing with the status and return reason the event's change left; the rest as it
    stands (after a change the verifications' statuses no longer move; a text's receipt can
    still arrive)."""
    status, return_reason = event.changed_to
    return {**filing.model_dump(mode="json"), "status": status, "return_reason": return_reason}


def describe_event(event: Event, filing: FilingOut) -> EventOut:
    """The event, with its filing as `filing` (the filing's description now) shows it."""
    return EventOut(
        event_id=event.id,
        type=event.type,
        occurred_at=iso_shanghai(event.occurred_at),
        delivered_at=iso_shanghai(event.delivered_at),
        filing=as_changed(event, filing),
        attempts=[
            WebhookAttemptOut(
                attempted_at=iso_shanghai(attempt.attempted_at),
                status_code=attempt.status_code,
                error=attempt.error,
            )
            for attempt in event.deliveries
        ],
    )
