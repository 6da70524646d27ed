"""A list of ids in one statement (`WHERE id IN …`), bound as each database takes it best.

The sweeps hand thousands of ids from one statement to the next. On PostgreSQL one
parameter a value cost ~0.7 s a statement for 30,000 of them (bind, send, parse, plan), and an
array parameter cost the client ~20 ms a statement of 10,000 for psycopg to quote each
element (1.4 s of an expiry of 100,000): the ids go as one comma-joined string, which the
server splits. SQLite binds at most 32,766 parameters a statement.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from portal.extensions import db

SQLITE_PARAMETERS = 30_000


def among(column: sa.ColumnElement, values: list) -> sa.ColumnElement[bool]:
    """`column IN values`. On PostgreSQL `= ANY(string_to_array(…))` of one text parameter:
    the ids (hex digests and integers) hold no comma. The server folds the array into a
    constant when it plans, so the planner sees the ids as if they were written out."""
    if _dialect() == "postgresql":
        joined = sa.bindparam(None, ",".join(str(value) for value in values), type_=sa.Text)
        array = sa.func.string_to_array(joined, ",", type_=postgresql.ARRAY(sa.Text))
        return column == sa.any_(sa.cast(array, postgresql.ARRAY(column.type)))
    return column.in_(values)


def in_parts(values: list) -> list[list]:
    """`values` whole on PostgreSQL; in parts SQLite can bind."""
    if _dialect() == "postgresql":
        return [values] if values else []
    size = SQLITE_PARAMETERS
    return [values[start : start + size] for start in range(0, len(values), size)]


def _dialect() -> str:
    return db.session.get_bind().dialect.name
