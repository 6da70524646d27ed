"""How a filing and its events are shown to their provider: the API's answers and the
webhook payloads (portal/events.py builds the same document in SQL; tests/test_events.py
holds the two equal)."""

from portal.api.schemas import EventOut, FilingOut, VerificationOut, WebhookAttemptOut
from portal.clock import iso_shanghai
from portal.models import Event, Filing


def describe(filing: Filing) -> FilingOut:
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
            VerificationOut(phone=v.phone_masked, roles=v.roles, status=v.status)
            for v in filing.verifications
        ],
    )


def describe_event(event: Event) -> EventOut:
    return EventOut(
        event_id=event.id,
        type=event.type,
        occurred_at=iso_shanghai(event.occurred_at),
        delivered_at=iso_shanghai(event.delivered_at),
        filing=event.payload,
        attempts=[
            WebhookAttemptOut(
                attempted_at=iso_shanghai(attempt.attempted_at),
                status_code=attempt.status_code,
                error=attempt.error,
            )
            for attempt in event.deliveries
        ],
    )
