"""Status-change events (SPEC §6), written by one `INSERT … SELECT` from the filings' rows.

An event keeps what its change left, the status and the return reason; the webhook body
and the API describe the rest of the filing when they are built. An expiry sweep writes up
to hundreds of thousands of events at once: building each filing's whole document there
(its verifications and their texts' states, in JSON) was a third of the sweep's time
(docs/performance.md).
"""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from portal.extensions import db
from portal.models import UTCDateTime

EVENT_TYPE = "filing.status_changed"

_INSERT = """
INSERT INTO events (id, filing_id, provider_id, type, status, return_reason, occurred_at,
    next_attempt_at, attempts)
SELECT {event_id}, id, provider_id, :type, status, return_reason, :now, :now, 0
FROM filings WHERE id {among}
RETURNING id
"""

_STATEMENTS = {
    "postgresql": _INSERT.format(
        event_id="replace(gen_random_uuid()::text, '-', '')",
        # One array parameter, not one parameter a filing (see `portal.sweeps.among`).
        among="= ANY(:filing_ids)",
    ),
    "sqlite": _INSERT.format(event_id="lower(hex(randomblob(16)))", among="IN :filing_ids"),
}


def record_status_changes(filing_ids: list[str], now: datetime) -> list[str]:
    """An event for each filing's current status (flushed); returns the new events' ids."""
    if not filing_ids:
        return []
    dialect = db.session.get_bind().dialect.name
    filing_ids_parameter = (
        sa.bindparam("filing_ids", type_=postgresql.ARRAY(sa.String))
        if dialect == "postgresql"
        else sa.bindparam("filing_ids", expanding=True)
    )
    statement = sa.text(_STATEMENTS[dialect]).bindparams(
        filing_ids_parameter,
        sa.bindparam("now", type_=UTCDateTime),
    )
    return list(
        db.session.scalars(statement, {"filing_ids": filing_ids, "now": now, "type": EVENT_TYPE})
    )
