"""The sweep prunes what has outlived its period (portal/pruning.py), at the boundary."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from portal import pruning, sweeps
from portal.extensions import db
from portal.models import (
    Event,
    Filing,
    SmsMessage,
    Verification,
    VerifyAttempt,
    WebhookDelivery,
)

NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def attempt(at: datetime, verification_id: int | None = None) -> VerifyAttempt:
    return VerifyAttempt(
        province_slug="tianjin",
        verification_id=verification_id,
        outcome="NOT_FOUND",
        client_address="127.0.0.*",
        attempted_at=at,
    )


def filing_closed_at(provider, status: str, closed_at: datetime) -> Filing:
    """A filing that reached `status` at `closed_at`, with everything its timeline holds: an
    attempt, a text sent and one failed, an event delivered after a failed try and one never
    delivered."""
    filing = Filing(
        id=uuid.uuid4().hex,
        provider_id=provider.id,
        reference=uuid.uuid4().hex,
        province_slug="tianjin",
        type="new_filing",
        status=status,
        content={},
        created_at=closed_at - timedelta(hours=2),
        final_at=closed_at,
    )
    verification = Verification(
        filing=filing,
        province_slug="tianjin",
        phone_sealed="sealed",
        phone_digest="digest",
        phone_masked="139****0001",
        roles=["entity"],
        code_digest=uuid.uuid4().hex,
        code_sealed="sealed",
        id_digest="digest",
        id_masked="120***********0012",
        status="verified",
        noon_resend_at=closed_at,
    )
    sent = SmsMessage(
        verification=verification, kind="initial", status="sent", created_at=filing.created_at
    )
    failed = SmsMessage(
        verification=verification, kind="resend", status="failed", created_at=filing.created_at
    )
    db.session.add(verification)
    db.session.flush()
    delivered = Event(
        filing_id=filing.id,
        provider_id=provider.id,
        type="filing.status_changed",
        occurred_at=closed_at,
        status="approved",
        delivered_at=closed_at + timedelta(minutes=1),
        deliveries=[
            WebhookDelivery(attempted_at=closed_at, status_code=500),
            WebhookDelivery(attempted_at=closed_at + timedelta(minutes=1), status_code=200),
        ],
    )
    never_delivered = Event(
        filing_id=filing.id,
        provider_id=provider.id,
        type="filing.status_changed",
        occurred_at=closed_at - timedelta(hours=1),
        status="approved",
        deliveries=[WebhookDelivery(attempted_at=closed_at - timedelta(hours=1), error="HTTP 500")],
    )
    db.session.add_all(
        [filing, sent, failed, delivered, never_delivered, attempt(closed_at, verification.id)]
    )
    db.session.commit()
    return filing


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def timeline_rows(filing: Filing) -> dict[str, int]:
    verification_ids = sa.select(Verification.id).where(Verification.filing_id == filing.id)
    event_ids = sa.select(Event.id).where(Event.filing_id == filing.id)

    def rows(*where) -> int:
        return db.session.scalar(sa.select(sa.func.count()).where(*where))

    return {
        "attempts": rows(VerifyAttempt.verification_id.in_(verification_ids)),
        "texts": rows(SmsMessage.verification_id.in_(verification_ids)),
        "events": rows(Event.filing_id == filing.id),
        "webhook_attempts": rows(WebhookDelivery.event_id.in_(event_ids)),
    }


WHOLE = {"attempts": 1, "texts": 2, "events": 2, "webhook_attempts": 3}
# The failed text, both events and the attempt of the event never delivered stay.
PRUNED = {"attempts": 0, "texts": 1, "events": 2, "webhook_attempts": 1}


def test_attempts_that_named_no_verification_are_kept_30_days(app):
    kept = NOW - pruning.ABUSE_TRACES_KEPT
    db.session.add_all([attempt(kept - SECOND), attempt(kept), attempt(kept + SECOND)])
    db.session.commit()
    assert pruning.prune(NOW) == 1
    assert sorted(db.session.scalars(sa.select(VerifyAttempt.attempted_at))) == [
        kept,
        kept + SECOND,
    ]


@pytest.mark.parametrize("status", ["approved", "rejected", "returned"])
def test_a_filing_closed_180_days_ago_loses_its_delivery_details_and_keeps_its_story(
    app, provider, status
):
    boundary = NOW - pruning.DETAILS_KEPT
    # Its last webhook attempt came a minute after the status change: older than 180 days too.
    old = filing_closed_at(provider[0], status, boundary - timedelta(minutes=1) - SECOND)
    recent = filing_closed_at(provider[0], status, boundary)
    pruning.prune(NOW)
    assert timeline_rows(old) == PRUNED
    assert timeline_rows(recent) == WHOLE
    assert count(Filing) == 2 and count(Verification) == 2


def test_a_filing_still_open_keeps_its_delivery_details_however_old(app, provider):
    under_review = filing_closed_at(provider[0], "under_review", NOW - timedelta(days=400))
    pruning.prune(NOW)
    assert timeline_rows(under_review) == WHOLE


def test_a_late_status_change_keeps_the_details(app, provider):
    """Rows older than 180 days stay while the filing's last status change is younger."""
    filing = filing_closed_at(provider[0], "approved", NOW - timedelta(days=300))
    filing.final_at = NOW - timedelta(days=10)  # as change_status sets it
    db.session.add(
        Event(
            filing_id=filing.id,
            provider_id=provider[0].id,
            type="filing.status_changed",
            occurred_at=NOW - timedelta(days=10),
            status="approved",
        )
    )
    db.session.commit()
    pruning.prune(NOW)
    assert timeline_rows(filing) == {**WHOLE, "events": 3}


def test_pruning_goes_in_batches_and_a_backlog_drains_over_sweeps(app, monkeypatch):
    monkeypatch.setattr(pruning, "BATCH", 2)
    monkeypatch.setattr(pruning, "BATCHES_PER_SWEEP", 2)
    db.session.add_all([attempt(NOW - timedelta(days=40 + n)) for n in range(5)])
    db.session.commit()
    assert pruning.prune(NOW) == 4
    assert pruning.prune(NOW) == 1
    assert count(VerifyAttempt) == 0


def test_the_sweep_prunes_and_says_how_many(app, provider):
    filing_closed_at(provider[0], "approved", NOW - timedelta(days=200))
    db.session.add(attempt(NOW - timedelta(days=31)))
    db.session.commit()
    assert sweeps.run_due(NOW)["pruned"] == 1 + 1 + 1 + 2
