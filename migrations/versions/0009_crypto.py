"""personal data at rest: sealed phones and names, keyed digests, masked IDs, retention

Converts an existing database in place (SPEC §10), in batches, with the app's
DATA_KEY and CRYPTO_SUITE: phones and principals' names are sealed, with a digest
where a lookup needs one and a masked form to show; the codes' Fernet seals are
sealed again under the suite; webhook secrets are sealed; masked IDs are masked again
so that they hide the last six. `final_at` is filled in from the filings' last
events. docs/performance.md has the time it takes per 100,000 filings.

SQLite cannot drop a table other tables reference while foreign keys are on, so no
table is rebuilt: columns are added, filled, dropped and renamed in place. SQLite
cannot add a NOT NULL column without a default either: there the new NOT NULL
columns keep a DEFAULT '' (never used: the app always writes them).

Revision ID: crypto
Revises: pruning
"""

import base64
import hashlib
import hmac
import json

import sqlalchemy as sa
from alembic import op
from cryptography.fernet import Fernet, MultiFernet
from flask import current_app

from portal.protection import sealing
from portal.protection.personal_data import mask_id, mask_phone, phone_digest

revision = "crypto"
down_revision = "pruning"
branch_labels = None
depends_on = None

BATCH = 1000
FINAL = ("approved", "rejected", "returned")

filings = sa.table(
    "filings",
    sa.column("id", sa.String),
    sa.column("content", sa.JSON),
    sa.column("personal_data_sealed", sa.Text),
)
verifications = sa.table(
    "verifications",
    sa.column("id", sa.Integer),
    sa.column("filing_id", sa.String),
    sa.column("phone", sa.String),
    sa.column("code_sealed", sa.String),
    sa.column("code_resealed", sa.String),
    sa.column("id_masked", sa.String),
    sa.column("phone_sealed", sa.String),
    sa.column("phone_digest", sa.String),
    sa.column("phone_masked", sa.String),
)
records = sa.table(
    "records",
    sa.column("domain", sa.String),
    sa.column("principal_phone", sa.String),
    sa.column("principal_phone_sealed", sa.String),
    sa.column("principal_phone_digest", sa.String),
)
providers = sa.table(
    "providers",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("webhook_secret", sa.String),
    sa.column("webhook_secret_sealed", sa.String),
)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _required(name: str, type_) -> sa.Column:
    """A NOT NULL column added to a table that has rows: see the docstring for SQLite."""
    if _sqlite():
        return sa.Column(name, type_, nullable=False, server_default="")
    return sa.Column(name, type_, nullable=True)


def _now_required(table: str, *names: str) -> None:
    if not _sqlite():
        for name in names:
            op.alter_column(table, name, nullable=False)


def _fernet() -> MultiFernet:
    """The codes' seal before the suites (Fernet keyed from each DATA_KEY)."""

    def one(key: str) -> Fernet:
        derived = hmac.new(key.encode(), b"seal", hashlib.sha256).digest()
        return Fernet(base64.urlsafe_b64encode(derived))

    return MultiFernet([one(key) for key in current_app.config["DATA_KEYS"]])


def _place(table: str, column: str, row_key: str) -> str:
    return f"{table}.{column}:{row_key}"


def _batches(table: sa.TableClause, key: sa.ColumnClause, *columns: sa.ColumnClause):
    """Every row, BATCH at a time, in key order."""
    connection = op.get_bind()
    last = None
    while True:
        statement = sa.select(key, *columns).order_by(key).limit(BATCH)
        if last is not None:
            statement = statement.where(key > last)
        rows = connection.execute(statement).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _update(table: sa.TableClause, key: str, rows: list[dict]) -> None:
    """Executemany: the SET columns are the rows' other keys."""
    statement = sa.update(table).where(table.c[key] == sa.bindparam("row_key"))
    op.get_bind().execute(statement, rows)


def _remask_id(masked: str) -> str:
    """The old mask showed the first three and last four; a 7-character one was whole and a
    6-character ID's repeated its third character: those show nothing now."""
    return "*" * len(masked) if len(masked) <= 7 else mask_id(masked)


def _split_content(content: dict) -> tuple[dict, dict]:
    def masked(p: dict) -> dict:
        return {
            "phone_masked": mask_phone(p["phone"]),
            "id_type": p["id_type"],
            "id_masked": _remask_id(p["id_masked"]),
        }

    def personal(p: dict) -> dict:
        return {"name": p["name"], "phone": p["phone"]}

    stored = {**content, "websites": []}
    principals: dict = {"websites": []}
    if content.get("entity"):
        stored["entity"] = {**content["entity"], "principal": masked(content["entity"]["principal"])}
        principals["entity"] = personal(content["entity"]["principal"])
    for site in content.get("websites", []):
        stored["websites"].append({**site, "principal": masked(site["principal"])})
        principals["websites"].append(personal(site["principal"]))
    return stored, principals


def _join_content(content: dict, principals: dict | None) -> dict:
    def whole(p: dict, person: dict | None) -> dict:
        person = person or {"name": "", "phone": ""}
        return {"name": person["name"], "phone": person["phone"], "id_type": p["id_type"], "id_masked": p["id_masked"]}

    joined = {**content, "websites": []}
    if content.get("entity"):
        person = principals and principals.get("entity")
        joined["entity"] = {**content["entity"], "principal": whole(content["entity"]["principal"], person)}
    for index, site in enumerate(content.get("websites", [])):
        person = principals["websites"][index] if principals else None
        joined["websites"].append({**site, "principal": whole(site["principal"], person)})
    return joined


def upgrade():
    _upgrade_filings()
    _upgrade_verifications()
    _upgrade_records()
    _upgrade_providers()


def _upgrade_filings():
    op.add_column("filings", sa.Column("personal_data_sealed", sa.Text(), nullable=True))
    op.add_column("filings", sa.Column("final_at", sa.DateTime(), nullable=True))
    op.add_column("filings", sa.Column("personal_data_erased_at", sa.DateTime(), nullable=True))
    for rows in _batches(filings, filings.c.id, filings.c.content):
        converted = []
        for filing_id, content in rows:
            stored, principals = _split_content(content)
            place = _place("filings", "personal_data_sealed", filing_id)
            sealed = sealing.seal(json.dumps(principals, ensure_ascii=False), place)
            converted.append({"row_key": filing_id, "content": stored, "personal_data_sealed": sealed})
        _update(filings, "id", converted)
    op.execute(
        sa.text(
            "UPDATE filings SET final_at = coalesce((SELECT max(e.occurred_at) FROM events e"
            " WHERE e.filing_id = filings.id), created_at) WHERE status IN :final"
        ).bindparams(sa.bindparam("final", FINAL, expanding=True))
    )
    op.create_index(
        "ix_filings_final_unerased",
        "filings",
        ["final_at"],
        sqlite_where=sa.text("personal_data_erased_at IS NULL"),
        postgresql_where=sa.text("personal_data_erased_at IS NULL"),
    )


def _upgrade_verifications():
    op.add_column("verifications", sa.Column("phone_sealed", sa.String(128), nullable=True))
    op.add_column("verifications", _required("phone_digest", sa.String(64)))
    op.add_column("verifications", _required("phone_masked", sa.String(16)))
    op.add_column("verifications", sa.Column("code_resealed", sa.String(256), nullable=True))
    fernet = _fernet()
    columns = (verifications.c.filing_id, verifications.c.phone, verifications.c.code_sealed, verifications.c.id_masked)
    for rows in _batches(verifications, verifications.c.id, *columns):
        converted = [
            {
                "row_key": verification_id,
                "phone_sealed": sealing.seal(phone, _place("verifications", "phone_sealed", filing_id)),
                "phone_digest": phone_digest(phone),
                "phone_masked": mask_phone(phone),
                "code_resealed": sealing.seal(
                    fernet.decrypt(code.encode()).decode(),
                    _place("verifications", "code_sealed", filing_id),
                ),
                "id_masked": _remask_id(id_masked),
            }
            for verification_id, filing_id, phone, code, id_masked in rows
        ]
        _update(verifications, "id", converted)
    _now_required("verifications", "phone_digest", "phone_masked")
    op.drop_index("ix_verifications_lookup", table_name="verifications")
    op.drop_column("verifications", "phone")
    op.drop_column("verifications", "code_sealed")
    op.alter_column("verifications", "code_resealed", new_column_name="code_sealed")
    op.create_index("ix_verifications_lookup", "verifications", ["province_slug", "phone_digest", "code_digest"])


def _upgrade_records():
    op.add_column("records", _required("principal_phone_sealed", sa.String(128)))
    op.add_column("records", _required("principal_phone_digest", sa.String(64)))
    for rows in _batches(records, records.c.domain, records.c.principal_phone):
        converted = [
            {
                "row_key": domain,
                "principal_phone_sealed": sealing.seal(phone, _place("records", "principal_phone_sealed", domain)),
                "principal_phone_digest": phone_digest(phone),
            }
            for domain, phone in rows
        ]
        _update(records, "domain", converted)
    _now_required("records", "principal_phone_sealed", "principal_phone_digest")
    op.drop_column("records", "principal_phone")


def _upgrade_providers():
    op.add_column("providers", _required("webhook_secret_sealed", sa.String(256)))
    for rows in _batches(providers, providers.c.id, providers.c.name, providers.c.webhook_secret):
        converted = [
            {
                "row_key": provider_id,
                "webhook_secret_sealed": sealing.seal(secret, _place("providers", "webhook_secret_sealed", name)),
            }
            for provider_id, name, secret in rows
        ]
        _update(providers, "id", converted)
    _now_required("providers", "webhook_secret_sealed")
    op.drop_column("providers", "webhook_secret")


def downgrade():
    """Back to plaintext (the masked IDs stay masked the new way; erased data stays erased)."""
    _downgrade_providers()
    _downgrade_records()
    _downgrade_verifications()
    _downgrade_filings()


def _downgrade_providers():
    op.add_column("providers", _required("webhook_secret", sa.String(128)))
    for rows in _batches(providers, providers.c.id, providers.c.name, providers.c.webhook_secret_sealed):
        opened = [
            {
                "row_key": provider_id,
                "webhook_secret": sealing.unseal(sealed, _place("providers", "webhook_secret_sealed", name)),
            }
            for provider_id, name, sealed in rows
        ]
        _update(providers, "id", opened)
    _now_required("providers", "webhook_secret")
    op.drop_column("providers", "webhook_secret_sealed")


def _downgrade_records():
    op.add_column("records", _required("principal_phone", sa.String(11)))
    for rows in _batches(records, records.c.domain, records.c.principal_phone_sealed):
        opened = [
            {
                "row_key": domain,
                "principal_phone": sealing.unseal(sealed, _place("records", "principal_phone_sealed", domain)),
            }
            for domain, sealed in rows
        ]
        _update(records, "domain", opened)
    _now_required("records", "principal_phone")
    op.drop_column("records", "principal_phone_digest")
    op.drop_column("records", "principal_phone_sealed")


def _downgrade_verifications():
    op.add_column("verifications", _required("phone", sa.String(11)))
    op.add_column("verifications", _required("code_resealed", sa.String(256)))
    fernet = _fernet()
    columns = (verifications.c.filing_id, verifications.c.phone_sealed, verifications.c.code_sealed)
    for rows in _batches(verifications, verifications.c.id, *columns):
        opened = []
        for verification_id, filing_id, phone, code in rows:
            if phone is not None:
                phone = sealing.unseal(phone, _place("verifications", "phone_sealed", filing_id))
            if code is not None:
                code = sealing.unseal(code, _place("verifications", "code_sealed", filing_id))
            opened.append(
                {
                    "row_key": verification_id,
                    "phone": phone or "",
                    "code_resealed": fernet.encrypt(code.encode()).decode() if code else "",
                }
            )
        _update(verifications, "id", opened)
    _now_required("verifications", "phone", "code_resealed")
    op.drop_index("ix_verifications_lookup", table_name="verifications")
    op.drop_column("verifications", "code_sealed")
    op.alter_column("verifications", "code_resealed", new_column_name="code_sealed")
    op.drop_column("verifications", "phone_masked")
    op.drop_column("verifications", "phone_digest")
    op.drop_column("verifications", "phone_sealed")
    op.create_index("ix_verifications_lookup", "verifications", ["province_slug", "phone", "code_digest"])


def _downgrade_filings():
    for rows in _batches(filings, filings.c.id, filings.c.content, filings.c.personal_data_sealed):
        opened = []
        for filing_id, content, sealed in rows:
            place = _place("filings", "personal_data_sealed", filing_id)
            principals = json.loads(sealing.unseal(sealed, place)) if sealed else None
            opened.append({"row_key": filing_id, "content": _join_content(content, principals)})
        _update(filings, "id", opened)
    op.drop_index("ix_filings_final_unerased", table_name="filings")
    op.drop_column("filings", "personal_data_erased_at")
    op.drop_column("filings", "final_at")
    op.drop_column("filings", "personal_data_sealed")
