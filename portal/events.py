"""Status-change events (SPEC §6), written by one `INSERT … SELECT` from the filings' rows.

An event keeps what its change left, the status and the return reason; the webhook body
and the API describe the rest of the filing when they are built. An expiry sweep writes up
to hundreds of thousands of events at once: building each filing's whole document there
(its verifications and their texts' states, in JSON) was a third of the sweep's time
(docs/performance.md).
"""

from datetime import datetime

import sqlalchemy as sa

from portal import id_lists
from portal.extensions import db
from portal.models import Event, Filing

EVENT_TYPE = "filing.status_changed"

# A new event's id, made by the database (as `models._new_id`: 32 hex digits).
_NEW_ID = {
    "postgresql": sa.func.replace(sa.cast(sa.func.gen_random_uuid(), sa.Text), "-", ""),
    "sqlite": sa.func.lower(sa.func.hex(sa.func.randomblob(16))),
}


def record_status_changes(filing_ids: list[str], now: datetime) -> list[str]:
    """An event for each filing's current status (flushed); returns the new events' ids."""
    if not filing_ids:
        return []
    columns = {
        Event.id: _NEW_ID[db.session.get_bind().dialect.name],
        Event.filing_id: Filing.id,
        Event.provider_id: Filing.provider_id,
        Event.type: sa.literal(EVENT_TYPE),
        Event.status: Filing.status,
        Event.return_reason: Filing.return_reason,
        Event.occurred_at: sa.literal(now, Event.occurred_at.type),
        Event.next_attempt_at: sa.literal(now, Event.next_attempt_at.type),
        Event.attempts: sa.literal(0),
    }
    rows = sa.select(*columns.values()).where(id_lists.among(Filing.id, filing_ids))
    statement = sa.insert(Event).from_select([column.key for column in columns], rows)
    return list(db.session.scalars(statement.returning(Event.id)))
