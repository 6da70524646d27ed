"""Status-change events (portal/events.py): each keeps the status its change left, and the
webhook body and the API describe the filing with that status, the rest as it stands."""

import json

import pytest
import sqlalchemy as sa

from portal import events, filings
from portal.api.description import describe
from portal.clock import utcnow
from portal.delivery import webhooks
from portal.extensions import db
from portal.models import (
    Delivery,
    Event,
    Filing,
    FilingStatus,
    Province,
    ReturnReason,
    SmsMessage,
    Verification,
    VerificationStatus,
)
from tests.factories import ID_A, ID_B, ID_C, new_filing_body, principal


def body_filing(event_id: str) -> dict:
    """The filing as the event's webhook body gives it."""
    db.session.expire_all()
    return json.loads(webhooks.body(db.session.get(Event, event_id)))["filing"]


def described(filing_id: str) -> dict:
    return describe(db.session.get(Filing, filing_id)).model_dump(mode="json")


def change(filing_id: str, status: FilingStatus, reason: str | None = None) -> str:
    """The filing moved to `status` as the portal moves it; the new event's id."""
    of_filing = sa.select(Event.id).where(Event.filing_id == filing_id)
    before = set(db.session.scalars(of_filing))
    filings.change_status(filings.lock(filing_id), status, utcnow(), reason)
    db.session.commit()
    (event_id,) = set(db.session.scalars(of_filing)) - before
    return event_id


def verify_all(filing_id: str) -> None:
    db.session.execute(
        sa.update(Verification)
        .where(Verification.filing_id == filing_id)
        .values(status=VerificationStatus.VERIFIED)
    )
    db.session.commit()


def test_the_body_is_the_filings_description(submit_filing):
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
    verify_all(filing_id)

    event_id = change(filing_id, FilingStatus.UNDER_REVIEW)

    sent = body_filing(event_id)
    assert sent == described(filing_id)
    assert sent["status"] == "under_review"
    assert [v["phone"] for v in sent["verifications"]] == [
        "139****0001",
        "139****0002",
        "139****0003",
    ]
    assert sent["verifications"][0]["roles"] == ["entity", "website:b.example.cn"]


def test_an_event_keeps_the_status_its_change_left_after_the_filing_moves_on(submit_filing):
    filing_id = submit_filing()["id"]
    verify_all(filing_id)
    to_review = change(filing_id, FilingStatus.UNDER_REVIEW)
    approved = change(filing_id, FilingStatus.APPROVED)

    sent = body_filing(to_review)
    assert (sent["status"], sent["return_reason"]) == ("under_review", None)
    assert body_filing(approved)["status"] == "approved"
    assert sent == {**described(filing_id), "status": "under_review"}


def test_a_return_keeps_its_reason(submit_filing):
    filing_id = submit_filing()["id"]

    event_id = change(filing_id, FilingStatus.RETURNED, ReturnReason.VERIFICATION_FAILED)

    row = db.session.get(Event, event_id)
    assert (row.status, row.return_reason) == ("returned", "verification_failed")
    assert body_filing(event_id)["return_reason"] == "verification_failed"


def test_the_apis_event_list_gives_each_event_its_own_status(client, provider, submit_filing):
    filing_id = submit_filing()["id"]
    verify_all(filing_id)
    change(filing_id, FilingStatus.UNDER_REVIEW)
    change(filing_id, FilingStatus.REJECTED)

    _, headers = provider
    answer = client.get(f"/api/v1/filings/{filing_id}/events", headers=headers)

    assert answer.status_code == 200
    listed = answer.get_json()["events"]
    assert [e["filing"]["status"] for e in listed] == ["under_review", "rejected"]
    assert listed[0]["filing"] == {**described(filing_id), "status": "under_review"}


def test_a_filing_without_verifications_has_an_empty_list(submit_filing):
    db.session.get(Province, "tianjin").live_from = None
    db.session.commit()
    filing_id = submit_filing()["id"]
    (event_id,) = events.record_status_changes([filing_id], utcnow())
    db.session.commit()

    sent = body_filing(event_id)

    assert sent == described(filing_id)
    assert sent["verifications"] == []
    assert sent["deadline"] is None


def test_each_filing_gets_one_event_with_an_id_of_its_own(submit_filing):
    filing_ids = [submit_filing(new_filing_body(f"REF-{n}"))["id"] for n in range(3)]

    event_ids = events.record_status_changes(filing_ids, utcnow())
    db.session.commit()

    assert len(set(event_ids)) == 3
    assert all(len(event_id) == 32 and int(event_id, 16) >= 0 for event_id in event_ids)
    rows = db.session.execute(
        sa.select(Event.filing_id, Event.type, Event.status, Event.return_reason, Event.attempts)
    ).all()
    expected = [(f, "filing.status_changed", "pending_verification", None, 0) for f in filing_ids]
    assert sorted(rows) == sorted(expected)


@pytest.mark.parametrize("receipt", [Delivery.DELIVERED, Delivery.UNDELIVERED])
def test_each_verifications_delivery_is_its_latest_texts_when_sent(submit_filing, receipt):
    """`delivery` is the latest text's receipt, else its status, as the body is built: a
    receipt that arrives after the change is in the body sent after it."""
    filing_id = submit_filing()["id"]
    (event_id,) = events.record_status_changes([filing_id], utcnow())
    db.session.commit()
    first, second = db.session.scalars(sa.select(SmsMessage).order_by(SmsMessage.id)).all()
    first.delivery = Delivery.UNDELIVERED
    second.delivery = receipt
    db.session.add(
        SmsMessage(verification_id=first.verification_id, kind="resend", created_at=utcnow())
    )
    db.session.commit()

    sent = body_filing(event_id)

    assert sent == described(filing_id)
    assert [v["delivery"] for v in sent["verifications"]] == ["queued", receipt.value]


def test_an_event_written_by_the_older_code_is_sent_with_its_payloads_status(submit_filing):
    """During a rolling upgrade a node of the code before migration 0018 writes the whole
    filing into `payload` and no status."""
    filing_id = submit_filing()["id"]
    filing = db.session.get(Filing, filing_id)
    older = Event(
        id="e" * 32,
        filing_id=filing_id,
        provider_id=filing.provider_id,
        type=events.EVENT_TYPE,
        occurred_at=utcnow(),
        payload={**described(filing_id), "status": "returned", "return_reason": "expired"},
    )
    db.session.add(older)
    db.session.commit()

    sent = body_filing(older.id)

    assert (sent["status"], sent["return_reason"]) == ("returned", "expired")
    assert sent == {**described(filing_id), "status": "returned", "return_reason": "expired"}
