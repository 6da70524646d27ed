"""The tamper-evident audit log (SPEC §10): the chain, `flask audit verify` against entries
edited, deleted and inserted in the database, key rotation and suite switch, retention, and
the audit page's filters and export."""

import csv
import io
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, hmac
from flask_migrate import upgrade

from portal import audit, create_app, settings
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Admin, AuditChain, AuditEntry
from tests.test_admin import admins, csrf, sign_in, signed_out_csrf  # noqa: F401 (admins is a fixture)
from tests.test_migrations import empty_database  # noqa: F401 (a fixture)

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def record_entries(admin: Admin, count: int, start: datetime = NOW) -> None:
    for n in range(count):
        audit.record(admin, "update_rule", f"thing {n}", start + timedelta(seconds=n))
        db.session.commit()


def verify_command(app) -> tuple[int, dict]:
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    return result.exit_code, json.loads(result.output.strip().splitlines()[-1])


def tamper(sql: str, **params) -> None:
    """Change the database behind the portal's back, as someone with database access could."""
    db.session.execute(sa.text(sql), params)
    db.session.commit()


@pytest.fixture
def boss(admins):
    return admins["national"]


# --- the chain and `flask audit verify` ----------------------------------------------------


def test_verify_passes_an_untouched_chain(app, boss):
    record_entries(boss, 5)

    assert verify_command(app) == (0, {"entries": 5, "intact": True})


def test_verify_passes_an_empty_log(app):
    assert verify_command(app) == (0, {"entries": 0, "intact": True})


def test_each_entry_chains_to_the_one_before(app, boss):
    record_entries(boss, 3)

    entries = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert [e.seq for e in entries] == [1, 2, 3]
    assert len({e.mac for e in entries}) == 3
    assert all(len(e.mac) == 64 and e.suite == "standard" for e in entries)
    chain = db.session.get(AuditChain, audit.CHAIN_ID)
    assert (chain.head_seq, chain.head_mac, chain.anchor_seq) == (3, entries[-1].mac, 1)


def test_verify_names_an_entry_edited_in_the_database(app, boss):
    record_entries(boss, 5)
    tamper("UPDATE audit_entries SET target = 'nothing to see' WHERE seq = 3")

    code, shown = verify_command(app)

    assert code == 1
    assert shown["intact"] is False
    assert shown["first_mismatch"]["seq"] == 3
    assert "changed" in shown["first_mismatch"]["problem"]


@pytest.mark.parametrize("column, value", [("at", "2020-01-01 00:00:00"), ("address", "10.0.0.1")])
def test_verify_notices_any_field_changed(app, boss, column, value):
    record_entries(boss, 3)
    tamper(f"UPDATE audit_entries SET {column} = :value WHERE seq = 2", value=value)

    code, shown = verify_command(app)

    assert (code, shown["first_mismatch"]["seq"]) == (1, 2)


def test_verify_names_the_entry_after_one_deleted_from_the_middle(app, boss):
    record_entries(boss, 5)
    tamper("DELETE FROM audit_entries WHERE seq = 3")

    code, shown = verify_command(app)

    assert code == 1
    assert shown["first_mismatch"]["seq"] == 4
    assert "seq 3" in shown["first_mismatch"]["problem"]


def test_verify_names_an_entry_inserted_in_the_middle(app, boss):
    """The later entries renumbered to make room, a forged entry put in their place."""
    record_entries(boss, 5)
    for seq in (5, 4, 3):
        tamper("UPDATE audit_entries SET seq = seq + 1 WHERE seq = :seq", seq=seq)
    original = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.seq == 4))
    tamper(
        "INSERT INTO audit_entries (seq, at, admin_id, admin_username, action, target,"
        " suite, key_id, mac) VALUES (3, :at, :admin, 'boss', 'approve', 'filing forged',"
        " 'standard', :key_id, :mac)",
        at=original.at.replace(tzinfo=None),
        admin=boss.id,
        key_id=original.key_id,
        mac=original.mac,
    )

    code, shown = verify_command(app)

    assert code == 1
    assert shown["first_mismatch"]["seq"] == 3


def test_verify_notices_the_newest_entries_cut_off(app, boss):
    record_entries(boss, 5)
    tamper("DELETE FROM audit_entries WHERE seq >= 4")

    code, shown = verify_command(app)

    assert code == 1
    assert "missing" in shown["first_mismatch"]["problem"]


def test_verify_notices_the_chain_row_rewound_to_hide_a_cut(app, boss):
    record_entries(boss, 5)
    third = db.session.scalar(sa.select(AuditEntry.mac).where(AuditEntry.seq == 3))
    tamper("DELETE FROM audit_entries WHERE seq >= 4")
    tamper("UPDATE audit_chain SET head_seq = 3, head_mac = :mac", mac=third)

    code, shown = verify_command(app)

    assert code == 1
    assert "chain" in shown["first_mismatch"]


def test_verify_notices_the_chain_row_deleted(app, boss):
    record_entries(boss, 2)
    tamper("DELETE FROM audit_chain")

    code, shown = verify_command(app)

    assert (code, shown["intact"]) == (1, False)
    assert "chain" in shown["first_mismatch"]


def test_verify_notices_the_oldest_entries_cut_off(app, boss):
    record_entries(boss, 5)
    second = db.session.scalar(sa.select(AuditEntry.mac).where(AuditEntry.seq == 2))
    tamper("DELETE FROM audit_entries WHERE seq <= 2")
    tamper("UPDATE audit_chain SET anchor_seq = 3, anchor_mac = :mac", mac=second)

    code, shown = verify_command(app)

    assert code == 1
    assert "chain" in shown["first_mismatch"]


def test_concurrent_appends_never_fork_the_chain(app, boss):
    """Two requests at once: each append takes the next seq after the other's."""
    boss_id = boss.id
    errors = []

    def append(n: int) -> None:
        try:
            with app.app_context():
                admin = db.session.get(Admin, boss_id)
                for i in range(15):
                    audit.record(admin, "update_rule", f"thread {n} #{i}", utcnow())
                    db.session.commit()
                db.session.remove()
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=append, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    seqs = db.session.scalars(sa.select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
    assert seqs == list(range(1, 31))
    assert verify_command(app) == (0, {"entries": 30, "intact": True})


# --- suites and keys -----------------------------------------------------------------------


def test_a_suite_switch_and_a_key_rotation_keep_old_entries_verifiable(app, boss):
    record_entries(boss, 2)
    app.config.update(CRYPTO_SUITE="sm", DATA_KEYS=("new-key", "test-secret"))
    record_entries(boss, 2, NOW + timedelta(minutes=1))

    entries = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert [e.suite for e in entries] == ["standard", "standard", "sm", "sm"]
    assert entries[0].key_id != entries[2].key_id
    assert entries[2].key_id == audit.key_id("new-key")
    app.config.update(CRYPTO_SUITE="standard")
    assert verify_command(app) == (0, {"entries": 4, "intact": True})

    app.config.update(DATA_KEYS=("new-key",))
    code, shown = verify_command(app)
    assert (code, shown["first_mismatch"]["seq"]) == (1, 1)
    assert "no longer holds" in shown["first_mismatch"]["problem"]


@pytest.mark.parametrize("suite, algorithm", [("standard", hashes.SHA256), ("sm", hashes.SM3)])
def test_an_entrys_mac_is_the_suites_hmac_of_the_previous_mac_and_the_entry(
    app, boss, suite, algorithm
):
    """As docs/security.md says: HMAC(HMAC(DATA_KEY, "audit"), previous mac ‖ canonical)."""
    app.config.update(CRYPTO_SUITE=suite)
    record_entries(boss, 2)
    first, second = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq)).all()

    def keyed(key: bytes, message: bytes) -> bytes:
        mac = hmac.HMAC(key, algorithm())
        mac.update(message)
        return mac.finalize()

    key = keyed(b"test-secret", b"audit")
    assert first.mac == keyed(key, audit._canonical(first)).hex()
    assert second.mac == keyed(key, first.mac.encode() + audit._canonical(second)).hex()


def test_under_the_sm_suite_entries_are_macd_with_hmac_sm3(app, boss):
    """An entry made under `sm` does not verify as HMAC-SHA256: its suite is part of it."""
    app.config.update(CRYPTO_SUITE="sm")
    record_entries(boss, 1)
    tamper("UPDATE audit_entries SET suite = 'standard'")

    code, shown = verify_command(app)

    assert (code, shown["first_mismatch"]["seq"]) == (1, 1)


# --- retention -----------------------------------------------------------------------------


def test_pruning_keeps_entries_inside_retention_and_the_rest_verifiable(app, boss):
    cutoff = NOW - timedelta(days=365)
    for at in (cutoff - timedelta(days=30), cutoff - timedelta(seconds=1), cutoff, NOW):
        audit.record(boss, "update_rule", f"at {at}", at)
        db.session.commit()

    assert audit.prune(NOW) == 2

    kept = db.session.scalars(sa.select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
    assert kept == [3, 4]
    assert verify_command(app) == (0, {"entries": 2, "intact": True})
    record_entries(boss, 1, NOW + timedelta(minutes=1))
    assert verify_command(app) == (0, {"entries": 3, "intact": True})


def test_pruning_in_batches_moves_the_anchor_each_time(app, boss, monkeypatch):
    monkeypatch.setattr(audit, "PRUNE_BATCH", 2)
    record_entries(boss, 5, NOW - timedelta(days=400))
    record_entries(boss, 1)

    assert audit.prune(NOW) == 5

    assert verify_command(app) == (0, {"entries": 1, "intact": True})
    assert db.session.get(AuditChain, audit.CHAIN_ID, populate_existing=True).anchor_seq == 6


def test_the_sweep_prunes_the_audit_log(app, boss):
    record_entries(boss, 1, utcnow() - timedelta(days=366))
    record_entries(boss, 1, utcnow())

    result = app.test_cli_runner().invoke(args=["sweep"])

    assert json.loads(result.output.strip().splitlines()[-1])["audit_pruned"] == 1


@pytest.mark.parametrize("days", ["179", "0", "half a year"])
def test_audit_retention_under_six_months_is_refused_at_start(env, days):
    with pytest.raises(RuntimeError, match="AUDIT_RETENTION_DAYS"):
        create_app({**env, "AUDIT_RETENTION_DAYS": days})


def test_audit_retention_defaults_to_a_year_and_may_be_six_months(tmp_path):
    assert settings.from_env({}, str(tmp_path))["AUDIT_RETENTION_DAYS"] == 365
    six_months = settings.from_env({"AUDIT_RETENTION_DAYS": "180"}, str(tmp_path))
    assert six_months["AUDIT_RETENTION_DAYS"] == 180


# --- an existing database ------------------------------------------------------------------


def test_entries_written_before_the_chain_are_kept_and_counted_as_unchained(env, empty_database):
    app = create_app({**env, "DATABASE_URL": empty_database})
    with app.app_context():
        upgrade(revision="0003")
        tamper(
            "INSERT INTO admins (username, password_hash, active, session_token, failed_signins,"
            " created_at) VALUES ('old', 'x', true, 'token', 0, :at)",
            at=NOW.replace(tzinfo=None),
        )
        for target in ("first", "second"):
            tamper(
                "INSERT INTO audit_entries (at, admin_id, admin_username, action, target)"
                " VALUES (:at, 1, 'old', 'update_rule', :target)",
                at=NOW.replace(tzinfo=None),
                target=target,
            )
        upgrade()

        assert verify_command(app) == (0, {"entries": 0, "intact": True, "unchained": 2})
        record_entries(db.session.get(Admin, 1), 2)
        assert verify_command(app) == (0, {"entries": 2, "intact": True, "unchained": 2})
        assert audit.prune(NOW + timedelta(days=366)) == 4
        db.session.remove()
        db.engine.dispose()


# --- who, when, what, from where: the console ----------------------------------------------


def test_a_console_action_records_the_admin_and_address(client, admins, provider):
    sign_in(client, "boss")
    client.post(
        f"/admin/providers/{provider[0].id}/rotate_secret", data={"csrf_token": csrf(client)}
    )

    entry = db.session.scalar(
        sa.select(AuditEntry).where(AuditEntry.action == "provider_rotate_secret")
    )
    assert (entry.admin_username, entry.action, entry.address) == (
        "boss",
        "provider_rotate_secret",
        "127.0.0.1",
    )


def test_viewing_a_filings_detail_is_audited(client, admins, submit_filing):
    filing = submit_filing()
    sign_in(client, "tj-admin")

    assert client.get(f"/admin/filings/{filing['id']}").status_code == 200

    entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action != "sign_in"))
    assert (entry.action, entry.target, entry.province_slug, entry.admin_username) == (
        "view_filing",
        f"filing {filing['id']}",
        "tianjin",
        "tj-admin",
    )


def test_viewing_another_provinces_filing_is_not_found_and_not_audited(
    client,
    admins,
    submit_filing,
):
    filing = submit_filing()
    sign_in(client, "gs-admin")

    assert client.get(f"/admin/filings/{filing['id']}").status_code == 404
    actions = db.session.scalars(sa.select(AuditEntry.action)).all()
    assert actions == ["sign_in"]


def test_signing_in_and_out_are_in_the_chained_log(app, client, admins):
    client.post(
        "/admin/login",
        data={"username": "tj-admin", "password": "wrong", "csrf_token": signed_out_csrf(client)},
    )
    sign_in(client, "tj-admin")
    client.post("/admin/logout", data={"csrf_token": csrf(client)})

    entries = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert [
        (e.action, e.admin_username, e.target, e.province_slug, e.address) for e in entries
    ] == [
        ("sign_in", "tj-admin", "admin tj-admin", "tianjin", "127.0.0.1"),
        ("sign_out", "tj-admin", "admin tj-admin", "tianjin", "127.0.0.1"),
    ]  # a failed try is the sign-in throttle's to count, not an action of an account
    assert verify_command(app) == (0, {"entries": 2, "intact": True})


@pytest.fixture
def logged(admins):
    """Entries by two admins, two actions, two days, two provinces."""
    day_one = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    for admin, action, at, province in [
        (admins["tianjin"], "resend", day_one, "tianjin"),
        (admins["national"], "approve", day_one, "tianjin"),
        (admins["national"], "approve", day_one + timedelta(days=1), "tianjin"),
        (admins["gansu"], "approve", day_one + timedelta(days=1), "gansu"),
    ]:
        audit.record(
            admin, action, f"{action} by {admin.username} at {at:%d}", at, province_slug=province
        )
    db.session.commit()


def audit_targets(client, query: str = "") -> set[str]:
    text = client.get(f"/admin/audit{query}").get_data(as_text=True)
    return {line for line in ("resend by tj-admin at 30", "approve by boss at 30",
                              "approve by boss at 01", "approve by gs-admin at 01") if line in text}  # fmt: skip


def test_audit_page_filters_by_actor_action_and_date(client, logged):
    sign_in(client, "boss")

    assert len(audit_targets(client)) == 4
    assert audit_targets(client, "?actor=boss") == {
        "approve by boss at 30",
        "approve by boss at 01",
    }
    assert audit_targets(client, "?action=resend") == {"resend by tj-admin at 30"}
    assert audit_targets(client, "?date_from=2026-12-01&date_to=2026-12-01") == {
        "approve by boss at 01",
        "approve by gs-admin at 01",
    }
    assert audit_targets(client, "?date_to=2026-11-30&action=approve") == {"approve by boss at 30"}


def test_audit_page_filters_stay_within_the_admins_province(client, logged):
    sign_in(client, "gs-admin")

    assert audit_targets(client) == {"approve by gs-admin at 01"}
    assert audit_targets(client, "?actor=boss") == set()


def test_audit_page_answers_htmx_with_the_table_alone(client, logged):
    sign_in(client, "boss")

    response = client.get("/admin/audit?actor=boss", headers={"HX-Request": "true"})

    assert "HX-Request" in response.headers["Vary"]
    assert "<form" not in response.get_data(as_text=True)
    assert "approve by boss at 01" in response.get_data(as_text=True)


def test_bad_filter_values_are_ignored_not_an_error(client, logged):
    sign_in(client, "boss")

    response = client.get("/admin/audit?date_from=yesterday&action=nonsense")

    assert response.status_code == 200
    assert "approve by boss at 01" in response.get_data(as_text=True)


def test_audit_export_holds_the_filtered_rows_and_is_audited(client, logged):
    sign_in(client, "tj-admin")

    response = client.get("/admin/audit.csv?action=approve")

    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert [row["target"] for row in rows] == ["approve by boss at 30", "approve by boss at 01"]
    assert rows[0]["at"] == "2026-11-30T10:00:00+08:00"
    export = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "export_audit"))
    assert (export.admin_username, export.province_slug) == ("tj-admin", "tianjin")
    assert export.after == {"filters": {"action": "approve"}}
    assert verify_command(client.application)[1]["intact"] is True


def test_audit_export_writes_a_formula_as_text(client, admins):
    audit.record(admins["national"], "create_account", "=HYPERLINK(1)", NOW)
    db.session.commit()
    sign_in(client, "boss")

    text = client.get("/admin/audit.csv").get_data(as_text=True)

    assert "'=HYPERLINK(1)" in text


def test_audit_export_pages_through_many_entries(client, admins, monkeypatch):
    monkeypatch.setattr("portal.admin.console.AUDIT_CSV_PAGE", 3)
    record_entries(admins["national"], 7)
    sign_in(client, "boss")

    text = client.get("/admin/audit.csv").get_data(as_text=True)

    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert [row["seq"] for row in rows] == [str(n) for n in range(1, 10)]
    assert [row["action"] for row in rows[-2:]] == ["sign_in", "export_audit"], (
        "the sign-in and the export are in the log it exports"
    )


def test_the_audit_page_lists_newest_first(client, admins):
    record_entries(admins["national"], 3)
    sign_in(client, "boss")

    text = client.get("/admin/audit").get_data(as_text=True)

    assert text.index("thing 2") < text.index("thing 1") < text.index("thing 0")
    assert "<td>修改备案类型核验规则</td>" in text, "actions read in Chinese"
