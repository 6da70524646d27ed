"""Migrations `due_lists` and `filings_hot`: the pending filings and those due for erasure move
to lists of their own, what nodes of the older code did in between is caught up, and the
indexes of filings that named `status`, `deadline` or `final_at` go (and come back)."""

from datetime import datetime

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from portal.extensions import db
from tests.test_migrations import empty_database, fresh_app  # noqa: F401  (fixtures)

AT = datetime(2026, 12, 2, 4, 0)
DEADLINE = datetime(2026, 12, 3, 4, 0)
DECIDED = datetime(2026, 11, 1, 4, 0)
filings = sa.table(
    "filings",
    *(
        sa.column(name)
        for name in (
            "id", "provider_id", "reference", "province_slug", "type", "status", "content",
            "created_at", "deadline", "final_at", "personal_data_erased_at",
        )
    ),
)  # fmt: skip


def add_filing(filing_id: str, status: str, **columns) -> None:
    db.session.execute(
        filings.insert().values(
            id=filing_id, provider_id=1, reference=filing_id, province_slug="tianjin",
            type="new_filing", status=status, content="{}", created_at=AT, **columns,
        )
    )  # fmt: skip


def lists() -> tuple[dict, dict]:
    db.session.remove()
    pending = db.session.execute(sa.text("SELECT filing_id, deadline FROM pending_filings"))
    due = db.session.execute(sa.text("SELECT filing_id, final_at FROM erasure_due"))
    return {key: _naive(at) for key, at in pending}, {key: _naive(at) for key, at in due}


def _naive(at) -> datetime | None:
    return datetime.fromisoformat(at) if isinstance(at, str) else at


def filing_indexes() -> dict[str, list[str]]:
    return {
        index["name"]: index["column_names"]
        for index in sa.inspect(db.engine).get_indexes("filings")
    }


def event_keys() -> list[str]:
    return [key["referred_table"] for key in sa.inspect(db.engine).get_foreign_keys("events")]


def test_the_lists_are_filled_kept_by_the_triggers_caught_up_and_the_status_indexes_go(
    fresh_app,  # noqa: F811
):
    upgrade(revision="events_status")
    db.session.execute(
        sa.text(
            "INSERT INTO providers (id, name, api_key_digest, webhook_secret_sealed, active,"
            " created_at) VALUES (1, 'p', 'k', 's', true, :t)"
        ),
        {"t": AT},
    )
    add_filing("PENDING", "pending_verification", deadline=DEADLINE)
    add_filing("REVIEW", "under_review", deadline=DEADLINE)
    add_filing("DECIDED", "approved", final_at=DECIDED)
    add_filing("ERASED", "approved", final_at=DECIDED, personal_data_erased_at=AT)
    db.session.commit()

    upgrade(revision="due_lists")
    assert lists() == ({"PENDING": DEADLINE}, {"DECIDED": DECIDED})

    # A node of the older code takes a filing in, its text goes, and it decides another:
    # the triggers list the first; the decision writes neither list.
    add_filing("NEW", "pending_verification")
    db.session.commit()
    assert lists()[0] == {"PENDING": DEADLINE, "NEW": None}
    db.session.execute(filings.update().where(filings.c.id == "NEW").values(deadline=DEADLINE))
    db.session.execute(
        filings.update()
        .where(filings.c.id == "PENDING")
        .values(status="returned", final_at=AT, deadline=DEADLINE)
    )
    db.session.commit()
    assert lists() == ({"PENDING": DEADLINE, "NEW": DEADLINE}, {"DECIDED": DECIDED})

    upgrade()
    assert lists() == ({"NEW": DEADLINE}, {"DECIDED": DECIDED, "PENDING": AT})
    named = {column for columns in filing_indexes().values() for column in columns}
    assert not named & {"status", "return_reason", "deadline", "final_at"}
    assert event_keys() == []
    if db.engine.dialect.name == "postgresql":
        options = db.session.scalar(
            sa.text("SELECT reloptions FROM pg_class WHERE relname = 'filings'")
        )
        assert options == ["fillfactor=85"]
    db.session.remove()

    downgrade(revision="events_status")
    db.session.remove()
    assert not {"pending_filings", "erasure_due"} & set(sa.inspect(db.engine).get_table_names())
    assert filing_indexes()["ix_filings_pending_deadline"] == ["deadline", "id"]
    assert "ix_filings_final_unerased" in filing_indexes()
    assert sorted(event_keys()) == ["filings", "providers"]
    add_filing("AFTER", "pending_verification")  # no trigger left to write a dropped table
    db.session.commit()
