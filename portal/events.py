"""Status-change events (SPEC §6), written by one `INSERT … SELECT` from the filings' rows.

An expiry sweep returns up to hundreds of thousands of filings at once; building each
event's payload in Python (ORM load, pydantic, JSON) took most of its time. The database
builds the same document the API shows (`portal.api.description.describe`, tests/test_events.py holds them
equal): masked phones, times in +08:00 as Python's `isoformat` writes them. One statement
per dialect, so the whole document can be read in one place.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from portal.extensions import db
from portal.models import UTCDateTime

EVENT_TYPE = "filing.status_changed"

# Times are stored as naive UTC; Asia/Shanghai has been UTC+8 all year since 1991.
_POSTGRESQL_ISO = """to_char({0} + interval '8 hours', CASE WHEN mod(extract(microseconds FROM {0})::bigint,
    1000000) = 0 THEN 'YYYY-MM-DD"T"HH24:MI:SS' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US' END) || '+08:00'"""
# SQLite's date functions round to the millisecond: they get the whole seconds only.
_SQLITE_ISO = """strftime('%Y-%m-%dT%H:%M:%S', substr({0}, 1, 19), '+8 hours')
    || CASE WHEN substr({0}, 21, 6) IN ('', '000000') THEN '' ELSE substr({0}, 20, 7) END
    || '+08:00'"""
# The state of the latest text to the phone (`portal.api.description.latest_deliveries`).
_DELIVERY = """(SELECT coalesce(m.delivery, m.status) FROM sms_messages m
    WHERE m.verification_id = v.id ORDER BY m.id DESC LIMIT 1)"""

_INSERT = """
INSERT INTO events (id, filing_id, provider_id, type, occurred_at, next_attempt_at, attempts, payload)
SELECT {event_id}, f.id, f.provider_id, :type, :now, :now, 0, {object}(
    'id', f.id, 'reference', f.reference, 'province', f.province_slug, 'type', f.type,
    'status', f.status, 'return_reason', f.return_reason,
    'created_at', {created_at}, 'deadline', {deadline},
    'verifications', {verifications})
FROM filings f {join} WHERE f.id {among}
RETURNING id
"""

_STATEMENTS = {
    "postgresql": _INSERT.format(
        event_id="replace(gen_random_uuid()::text, '-', '')",
        # One array parameter, not one parameter a filing (see `portal.sweeps.among`).
        among="= ANY(:filing_ids)",
        object="json_build_object",
        created_at=_POSTGRESQL_ISO.format("f.created_at"),
        deadline=_POSTGRESQL_ISO.format("f.deadline"),
        # The chunk's verifications aggregated in one pass, not a subquery a filing.
        verifications="coalesce(v.list, '[]'::json)",
        join=f"""LEFT JOIN (SELECT v.filing_id, json_agg(json_build_object('phone', v.phone_masked,
            'roles', v.roles, 'status', v.status, 'delivery', {_DELIVERY}) ORDER BY v.id) AS list
            FROM verifications v WHERE v.filing_id = ANY(:filing_ids) GROUP BY v.filing_id) v
            ON v.filing_id = f.id""",
    ),
    "sqlite": _INSERT.format(
        event_id="lower(hex(randomblob(16)))",
        among="IN :filing_ids",
        object="json_object",
        created_at=_SQLITE_ISO.format("f.created_at"),
        deadline=_SQLITE_ISO.format("f.deadline"),
        # SQLite aggregates rows in the order its subquery gives them.
        verifications=f"""(SELECT json_group_array(json_object('phone', v.phone_masked,
            'roles', json(v.roles), 'status', v.status, 'delivery', {_DELIVERY}))
            FROM (SELECT * FROM verifications WHERE filing_id = f.id ORDER BY id) v)""",
        join="",
    ),
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
