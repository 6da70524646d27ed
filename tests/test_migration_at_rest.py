"""Migration `crypto` converts an existing database in place, and back (SPEC §10)."""

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask_migrate import downgrade, upgrade

from portal import providers
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import Outcome
from portal.models import Filing, Provider, Record, Verification
from portal.protection import sealing
from portal.protection.personal_data import (
    filing_principals,
    id_last6_digest,
    phone_matches,
    verification_code,
    verification_phone,
)
from portal.verification import verify
from tests.factories import ID_A
from tests.test_migrations import empty_database, fresh_app  # noqa: F401  (fixtures)

T0 = datetime(2026, 11, 1, 2, 0)
DECIDED = datetime(2026, 11, 3, 4, 5, 6)

old_providers = sa.table(
    "providers",
    *(sa.column(name) for name in ("id", "name", "api_key_digest", "webhook_secret", "active")),
    sa.column("created_at", sa.DateTime),
)
old_filings = sa.table(
    "filings",
    *(sa.column(n) for n in ("id", "provider_id", "reference", "province_slug", "type", "status")),
    sa.column("content", sa.JSON),
    sa.column("created_at", sa.DateTime),
    sa.column("deadline", sa.DateTime),
)
old_verifications = sa.table(
    "verifications",
    *(
        sa.column(name)
        for name in (
            "filing_id",
            "province_slug",
            "phone",
            "code_digest",
            "code_sealed",
            "id_digest",
            "id_masked",
            "status",
            "wrong_id_count",
            "resend_count",
            "noon_resent",
        )
    ),
    sa.column("roles", sa.JSON),
    sa.column("noon_resend_at", sa.DateTime),
)
old_records = sa.table(
    "records", sa.column("domain"), sa.column("principal_phone"), sa.column("filing_id"),
    sa.column("recorded_at", sa.DateTime),
)  # fmt: skip
old_events = sa.table(
    "events",
    *(sa.column(name) for name in ("id", "filing_id", "provider_id", "type", "attempts")),
    sa.column("payload", sa.JSON),
    sa.column("occurred_at", sa.DateTime),
)


def old_fernet() -> Fernet:
    key = hmac.new(b"test-secret", b"seal", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def old_principal(name: str, phone: str, masked: str) -> dict:
    return {"name": name, "phone": phone, "id_type": "resident_id", "id_masked": masked}


def old_content(name: str, phone: str) -> dict:
    return {
        "entity": {
            "name": "示例科技有限公司",
            "principal": old_principal(name, phone, "120***********1239"),
        },
        "websites": [
            {
                "domain": "a.example.cn",
                "name": "示例网",
                "principal": old_principal("李四", "13900000002", "1234567"),
            }
        ],
    }


def load_old_rows() -> None:
    """What a database at 0003 holds: plaintext phones and names, a Fernet-sealed code."""
    later = utcnow().replace(tzinfo=None) + timedelta(hours=12)
    statements = [
        sa.insert(old_providers).values(
            id=1, name="老接入商", api_key_digest="k" * 64, webhook_secret="old-secret", active=True, created_at=T0
        ),
        sa.insert(old_filings).values(
            id="F-DECIDED", provider_id=1, reference="OLD-1", province_slug="tianjin", type="new_filing",
            status="approved", content=old_content("张三", "13900000009"), created_at=T0,
        ),
        sa.insert(old_filings).values(
            id="F-PENDING", provider_id=1, reference="OLD-2", province_slug="tianjin", type="new_filing",
            status="pending_verification", content=old_content("王五", "13900000001"), created_at=T0,
            deadline=later,
        ),
        sa.insert(old_verifications).values(
            filing_id="F-PENDING", province_slug="tianjin", phone="13900000001", roles=["entity"],
            code_digest=sealing.digest("code", "123456"),
            code_sealed=old_fernet().encrypt(b"123456").decode(),
            id_digest=id_last6_digest(ID_A[-6:]), id_masked="120***********1239", status="pending",
            wrong_id_count=0, resend_count=0, noon_resend_at=later, noon_resent=False,
        ),
        sa.insert(old_records).values(
            domain="a.example.cn", principal_phone="13900000002", filing_id="F-DECIDED", recorded_at=T0
        ),
        sa.insert(old_events).values(
            id="E1", filing_id="F-DECIDED", provider_id=1, type="filing.status_changed", attempts=0,
            payload={}, occurred_at=DECIDED,
        ),
    ]  # fmt: skip
    for statement in statements:
        db.session.execute(statement)
    db.session.commit()


@pytest.fixture
def converted(fresh_app):  # noqa: F811
    upgrade(revision="0003")
    load_old_rows()
    upgrade()
    db.session.remove()
    return fresh_app


def raw_text() -> str:
    tables = ("providers", "filings", "verifications", "records")
    return " ".join(
        str(row)
        for table in tables
        for row in db.session.execute(sa.text(f"SELECT * FROM {table}"))
    )


def test_the_migration_seals_phones_names_codes_and_secrets_in_place(converted):
    for plain in (
        "13900000001",
        "13900000002",
        "13900000009",
        "张三",
        "李四",
        "王五",
        "old-secret",
    ):
        assert plain not in raw_text()
    pending = db.session.scalars(sa.select(Verification)).one()
    assert verification_phone(pending) == "13900000001"
    assert verification_code(pending) == "123456"
    assert (pending.phone_masked, pending.id_masked) == ("139****0001", "120***************")
    decided = db.session.get(Filing, "F-DECIDED")
    assert filing_principals(decided) == {
        "entity": {"name": "张三", "phone": "13900000009"},
        "websites": [{"name": "李四", "phone": "13900000002"}],
    }
    assert decided.content["entity"]["principal"] == {
        "phone_masked": "139****0009",
        "id_type": "resident_id",
        "id_masked": "120***************",
    }
    assert decided.content["websites"][0]["principal"]["id_masked"] == "*******"
    assert decided.final_at == DECIDED.replace(tzinfo=UTC)
    assert db.session.get(Filing, "F-PENDING").final_at is None
    assert phone_matches(
        db.session.get(Record, "a.example.cn").principal_phone_digest, "13900000002"
    )
    assert providers.webhook_secret(db.session.get(Provider, 1)) == "old-secret"


def test_a_code_sent_before_the_migration_verifies_after_it(converted):
    result = verify("tianjin", "13900000001", "123456", ID_A[-6:], utcnow())
    assert result.outcome == Outcome.ALL_VERIFIED


def test_the_migration_runs_back_to_plaintext(converted):
    downgrade(revision="0003")
    db.session.remove()
    row = db.session.execute(
        sa.text("SELECT phone, code_sealed, id_masked FROM verifications")
    ).one()
    assert row.phone == "13900000001"
    assert old_fernet().decrypt(row.code_sealed.encode()) == b"123456"
    content = db.session.execute(
        sa.select(old_filings.c.content).where(old_filings.c.id == "F-DECIDED")
    ).scalar_one()
    assert content["entity"]["principal"]["name"] == "张三"
    assert content["websites"][0]["principal"]["phone"] == "13900000002"
    assert db.session.scalar(sa.text("SELECT principal_phone FROM records")) == "13900000002"
    assert db.session.scalar(sa.text("SELECT webhook_secret FROM providers")) == "old-secret"
