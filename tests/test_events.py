"""The status-change events' payloads, built by the database (portal/events.py), are the
document the API shows for the filing (`portal.api.description.describe`), on both backends."""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from portal import events
from portal.api.description import describe
from portal.clock import utcnow
from portal.extensions import db
from portal.models import (
    Delivery,
    Event,
    Filing,
    Province,
    SmsMessage,
    Verification,
    VerificationStatus,
)
from tests.factories import ID_A, ID_B, ID_C, new_filing_body, principal


def payload_of(filing_id: str) -> tuple[dict, dict]:
    """The event the database writes for the filing, and the API's description of it."""
    (event_id,) = events.record_status_changes([filing_id], utcnow())
    db.session.commit()
    db.session.expire_all()
    event = db.session.get(Event, event_id)
    return event.payload, describe(db.session.get(Filing, filing_id)).model_dump(mode="json")


@pytest.mark.parametrize(
    "deadline",
    [
        datetime(2026, 3, 1, 16, 30, 5, 123456, tzinfo=UTC),  # 00:30:05.123456 the next day +08:00
        datetime(2026, 3, 1, 4, 0, 0, tzinfo=UTC),  # no fraction: isoformat leaves it out
        datetime(2026, 3, 1, 4, 0, 0, 500000, tzinfo=UTC),
        None,
    ],
)
def test_the_payload_is_the_filings_description(submit_filing, deadline):
    shared = principal("13900000001", ID_A)
    body = new_filing_body(
        entity={"name": "公司", "principal": shared},
        websites=[
            {"domain": "a.example.cn", "name": "甲", "principal": principal("13900000002", ID_B)},
            {"domain": "b.example.cn", "name": "乙", "principal": shared},
            {"domain": "c.example.cn", "name": "丙", "principal": principal("13900000003", ID_C)},
        ],
    )
    filing_id = submit_filing(body)["id"]
    filing = db.session.get(Filing, filing_id)
    filing.deadline = deadline
    filing.created_at = datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=UTC)
    first = db.session.scalars(
        sa.select(Verification).where(Verification.filing_id == filing_id).order_by(Verification.id)
    ).first()
    first.status = VerificationStatus.VERIFIED
    db.session.commit()

    from_sql, described = payload_of(filing_id)

    assert from_sql == described
    assert [v["phone"] for v in from_sql["verifications"]] == [
        "139****0001",
        "139****0002",
        "139****0003",
    ]
    assert from_sql["verifications"][0]["roles"] == ["entity", "website:b.example.cn"]
    assert from_sql["created_at"] == "2026-03-01T07:59:59.999999+08:00"


def test_a_filing_without_verifications_has_an_empty_list(submit_filing):
    db.session.get(Province, "tianjin").live_from = None
    db.session.commit()
    filing_id = submit_filing()["id"]

    from_sql, described = payload_of(filing_id)

    assert from_sql == described
    assert from_sql["verifications"] == []
    assert from_sql["deadline"] is None


def test_each_filing_gets_one_event_with_an_id_of_its_own(submit_filing):
    filing_ids = [submit_filing(new_filing_body(f"REF-{n}"))["id"] for n in range(3)]

    event_ids = events.record_status_changes(filing_ids, utcnow())
    db.session.commit()

    assert len(set(event_ids)) == 3
    assert all(len(event_id) == 32 and int(event_id, 16) >= 0 for event_id in event_ids)
    rows = db.session.execute(sa.select(Event.filing_id, Event.type, Event.attempts)).all()
    assert sorted(rows) == sorted((f, "filing.status_changed", 0) for f in filing_ids)


def test_each_verifications_delivery_is_its_latest_texts(submit_filing):
    """The payload and the API agree on `delivery`: the latest text's receipt, else its status."""
    filing_id = submit_filing()["id"]
    first, second = db.session.scalars(sa.select(SmsMessage).order_by(SmsMessage.id)).all()
    first.delivery = Delivery.UNDELIVERED
    second.delivery = Delivery.DELIVERED
    db.session.add(
        SmsMessage(verification_id=first.verification_id, kind="resend", created_at=utcnow())
    )
    db.session.commit()

    from_sql, described = payload_of(filing_id)

    assert from_sql == described
    assert [v["delivery"] for v in from_sql["verifications"]] == ["queued", "delivered"]
