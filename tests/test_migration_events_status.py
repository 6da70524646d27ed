"""Migration `events_status` keeps each event's status and return reason from its payload, and
drops the payload (portal/models.py `Event`); the downgrade writes a payload back."""

import json
from datetime import datetime

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from portal.extensions import db
from tests.test_migrations import empty_database, fresh_app  # noqa: F401  (fixtures)

AT = datetime(2026, 12, 1, 4, 0)
old_events = sa.table(
    "events",
    *(sa.column(name) for name in ("id", "filing_id", "provider_id", "type", "attempts")),
    sa.column("occurred_at", sa.DateTime),
    sa.column("payload", sa.JSON),
)
PAYLOADS = {
    "E-REVIEW": {"id": "F", "status": "under_review", "return_reason": None, "verifications": []},
    "E-RETURN": {"id": "F", "status": "returned", "return_reason": "expired", "verifications": []},
    "E-BARE": {},
}


def load_events() -> None:
    """At `verifications_hot`: a filing returned, an event of each of its changes, and one
    whose payload has no status."""
    db.session.execute(
        sa.text(
            "INSERT INTO providers (id, name, api_key_digest, webhook_secret_sealed, active,"
            " created_at) VALUES (1, 'p', 'k', 's', true, :t)"
        ),
        {"t": AT},
    )
    db.session.execute(
        sa.text(
            "INSERT INTO filings (id, provider_id, reference, province_slug, type, status,"
            " return_reason, content, created_at) VALUES ('F', 1, 'R', 'tianjin', 'new_filing',"
            " 'returned', 'expired', '{}', :t)"
        ),
        {"t": AT},
    )
    for event_id, payload in PAYLOADS.items():
        db.session.execute(
            old_events.insert().values(
                id=event_id, filing_id="F", provider_id=1, type="filing.status_changed",
                attempts=0, occurred_at=AT, payload=payload,
            )
        )  # fmt: skip
    db.session.commit()


def event_columns() -> set[str]:
    return {column["name"] for column in sa.inspect(db.engine).get_columns("events")}


def test_each_event_keeps_its_payloads_status_and_gets_it_back(fresh_app):  # noqa: F811
    upgrade(revision="verifications_hot")
    load_events()

    upgrade()
    db.session.remove()
    kept = db.session.execute(
        sa.text("SELECT id, status, return_reason FROM events ORDER BY id")
    ).all()
    assert [tuple(row) for row in kept] == [
        ("E-BARE", "returned", None),
        ("E-RETURN", "returned", "expired"),
        ("E-REVIEW", "under_review", None),
    ]
    assert "payload" not in event_columns()
    db.session.remove()

    downgrade(revision="verifications_hot")
    db.session.remove()
    assert not {"status", "return_reason"} & event_columns()
    payloads = dict(db.session.execute(sa.text("SELECT id, payload FROM events")).all())
    review = payloads["E-REVIEW"]
    review = json.loads(review) if isinstance(review, str) else review
    assert review == {
        "id": "F",
        "reference": "R",
        "province": "tianjin",
        "type": "new_filing",
        "status": "under_review",
        "return_reason": None,
        "verifications": [],
    }
