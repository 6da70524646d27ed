"""Migration `events_status` adds the events' status and return reason beside the payload,
which the events written before keep (portal/models.py `Event.changed_to`); the downgrade
writes a payload for the events without one."""

import json
from datetime import datetime

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from portal.extensions import db
from portal.models import Event
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
}


def load_events() -> None:
    """At `verifications_hot`: a filing returned, and an event of each of its changes."""
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


def test_the_events_before_read_their_status_from_the_payload_and_the_new_get_one_back(fresh_app):  # noqa: F811
    upgrade(revision="verifications_hot")
    load_events()

    upgrade()
    db.session.remove()
    kept = {event.id: event.changed_to for event in db.session.scalars(sa.select(Event))}
    assert kept == {"E-REVIEW": ("under_review", None), "E-RETURN": ("returned", "expired")}
    assert db.session.scalars(sa.select(Event.status)).all() == [None, None]
    db.session.execute(
        sa.text(
            "INSERT INTO events (id, filing_id, provider_id, type, attempts, occurred_at, status)"
            " VALUES ('E-NEW', 'F', 1, 'filing.status_changed', 0, :t, 'pending_verification')"
        ),
        {"t": AT},
    )
    db.session.commit()
    db.session.remove()

    downgrade(revision="verifications_hot")
    db.session.remove()
    assert not {"status", "return_reason"} & event_columns()
    payloads = {
        event_id: json.loads(payload) if isinstance(payload, str) else payload
        for event_id, payload in db.session.execute(sa.text("SELECT id, payload FROM events"))
    }
    assert payloads["E-REVIEW"] == PAYLOADS["E-REVIEW"]
    assert payloads["E-NEW"] == {
        "id": "F",
        "reference": "R",
        "province": "tianjin",
        "type": "new_filing",
        "status": "pending_verification",
        "return_reason": None,
        "verifications": [],
    }
