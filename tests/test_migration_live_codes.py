"""Migration `verifications_hot` moves the live codes and their noon resends off the
verifications table, and back (portal/models.py `LiveCode`)."""

from datetime import datetime

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from portal.extensions import db
from tests.test_migrations import empty_database, fresh_app  # noqa: F401  (fixtures)

NOON = datetime(2026, 12, 2, 4, 0)
old_verifications = sa.table(
    "verifications",
    *(
        sa.column(name)
        for name in (
            "id", "filing_id", "province_slug", "phone_digest", "phone_masked", "code_digest",
            "id_digest", "id_masked", "status", "wrong_id_count", "resend_count", "noon_resent",
        )
    ),
    sa.column("roles", sa.JSON),
    sa.column("noon_resend_at", sa.DateTime),
)  # fmt: skip


def load_verifications() -> None:
    """At `sweep_tables`: a pending code due for its noon resend, one already resent, and one
    verified."""
    db.session.execute(
        sa.text(
            "INSERT INTO providers (id, name, api_key_digest, webhook_secret_sealed, active,"
            " created_at) VALUES (1, 'p', 'k', 's', true, :t)"
        ),
        {"t": NOON},
    )
    db.session.execute(
        sa.text(
            "INSERT INTO filings (id, provider_id, reference, province_slug, type, status,"
            " content, created_at) VALUES ('F', 1, 'R', 'tianjin', 'new_filing',"
            " 'pending_verification', '{}', :t)"
        ),
        {"t": NOON},
    )
    for number, (status, resent) in enumerate(
        [("pending", False), ("pending", True), ("verified", True)], 1
    ):
        db.session.execute(
            old_verifications.insert().values(
                id=number, filing_id="F", province_slug="tianjin", phone_digest=f"p{number}",
                phone_masked="139****0001", code_digest=f"code-{number}", id_digest="i",
                id_masked="1***9", status=status, wrong_id_count=0, resend_count=0,
                noon_resent=resent, roles=["entity"], noon_resend_at=NOON,
            )
        )  # fmt: skip
    db.session.commit()


def verification_indexes() -> set[str]:
    return {index["name"] for index in sa.inspect(db.engine).get_indexes("verifications")}


def fillfactor() -> list[str] | None:
    if db.engine.dialect.name != "postgresql":
        return None
    return db.session.scalar(
        sa.text("SELECT reloptions FROM pg_class WHERE relname = 'verifications'")
    )


def test_the_pending_codes_move_to_live_codes_with_their_noon_resends_and_back(fresh_app):  # noqa: F811
    upgrade(revision="sweep_tables")
    load_verifications()

    upgrade()
    db.session.remove()
    live = db.session.execute(
        sa.text(
            "SELECT verification_id, province_slug, code_digest, noon_resend_at"
            " FROM live_codes ORDER BY verification_id"
        )
    ).all()
    assert [tuple(row[:3]) for row in live] == [(1, "tianjin", "code-1"), (2, "tianjin", "code-2")]
    assert [row[3] is not None for row in live] == [True, False]
    assert not verification_indexes() & {
        "uq_verifications_live_code",
        "ix_verifications_pending_noon",
    }
    assert fillfactor() in (None, ["fillfactor=85"])
    db.session.remove()

    downgrade(revision="sweep_tables")
    db.session.remove()
    assert "live_codes" not in sa.inspect(db.engine).get_table_names()
    assert verification_indexes() >= {"uq_verifications_live_code", "ix_verifications_pending_noon"}
    assert fillfactor() is None
