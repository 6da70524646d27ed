"""Personal data at rest (SPEC §10): the two suites, a switch and a rotation without downtime,
`data reseal`, the masked ID, the retention erasure, and the migration of an existing database."""

import base64
import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from portal import create_app, filings, providers, review, sweeps
from portal.api.schemas import FilingIn
from portal.clock import SHANGHAI, utcnow
from portal.extensions import db
from portal.messages import CONSOLE, Outcome
from portal.models import Filing, Provider, Province, Record, Verification
from portal.protection import resealing, sealing
from portal.protection.personal_data import (
    mask_id,
    phone_digest,
    verification_code,
    verification_phone,
)
from portal.protection.resealing import SEALED
from portal.resend import resend
from portal.settings import SettingsError
from portal.verification import verify
from tests.factories import ID_A, ID_B, new_filing_body, principal
from tests.test_admin import admins, sign_in  # noqa: F401  (admins is a fixture)

PHONE_A, PHONE_B = "13900000001", "13900000002"


def derived(suite: str, key: str, purpose: str) -> bytes:
    mac = hmac.HMAC(key.encode(), hashes.SM3() if suite == "sm" else hashes.SHA256())
    mac.update(purpose.encode())
    return mac.finalize()


def payload(token: str) -> tuple[bytes, bytes]:
    raw = token.split(".")[2]
    raw = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    return raw[:12], raw[12:]


# --- the suites ----------------------------------------------------------------------------


def test_standard_seals_with_aes_256_gcm_and_digests_with_hmac_sha256(app):
    token = sealing.seal("13900000001", "verifications.phone_sealed:F1")
    nonce, sealed = payload(token)
    key = derived("standard", "test-secret", "seal:aes-256-gcm")
    opened = AESGCM(key).decrypt(nonce, sealed, b"standard:verifications.phone_sealed:F1")
    assert opened == b"13900000001"
    mac = hmac.HMAC(derived("standard", "test-secret", "digest:phone"), hashes.SHA256())
    mac.update(b"13900000001")
    assert sealing.digest("phone", "13900000001") == mac.finalize().hex()


def test_sm_seals_with_sm4_gcm_and_digests_with_hmac_sm3(app):
    """The algorithms of GB/T 39786-2021, checked against cryptography's own SM4 and SM3."""
    app.config["CRYPTO_SUITE"] = "sm"
    token = sealing.seal("13900000001", "verifications.phone_sealed:F1")
    assert token.startswith(f"sm.{sealing.key_id('test-secret')}.")
    nonce, sealed = payload(token)
    key = derived("sm", "test-secret", "seal:sm4-gcm")[:16]
    decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, sealed[-16:])).decryptor()
    decryptor.authenticate_additional_data(b"sm:verifications.phone_sealed:F1")
    assert decryptor.update(sealed[:-16]) + decryptor.finalize() == b"13900000001"
    mac = hmac.HMAC(derived("sm", "test-secret", "digest:phone"), hashes.SM3())
    mac.update(b"13900000001")
    assert sealing.digest("phone", "13900000001") == mac.finalize().hex()


@pytest.mark.parametrize("suite", sealing.SUITES)
def test_a_value_sealed_under_one_suite_opens_after_a_switch_to_the_other(app, suite):
    app.config["CRYPTO_SUITE"] = suite
    token = sealing.seal("秘密", "t.c:1")
    stored = sealing.digest("phone", PHONE_A)
    app.config["CRYPTO_SUITE"] = next(other for other in sealing.SUITES if other != suite)
    assert sealing.unseal(token, "t.c:1") == "秘密"
    assert sealing.matches(stored, "phone", PHONE_A)
    assert sealing.digest("phone", PHONE_A) != stored


def test_a_sealed_value_opens_only_for_its_own_row_unaltered_and_with_its_key(app):
    token = sealing.seal("13900000001", "verifications.phone_sealed:F1")
    with pytest.raises(sealing.Unsealable):
        sealing.unseal(token, "verifications.phone_sealed:F2")
    nonce, sealed = payload(token)
    flipped = bytes([sealed[0] ^ 1]) + sealed[1:]
    altered = token.rsplit(".", 1)[0] + "." + base64.urlsafe_b64encode(nonce + flipped).decode()
    with pytest.raises(sealing.Unsealable):
        sealing.unseal(altered, "verifications.phone_sealed:F1")
    for garbage in (f"standard.{sealing.key_id('test-secret')}.not*base64", "plain", ""):
        with pytest.raises(sealing.Unsealable):
            sealing.unseal(garbage, "verifications.phone_sealed:F1")
    app.config["DATA_KEYS"] = ("another-key",)
    with pytest.raises(sealing.Unsealable, match="DATA_KEY does not hold"):
        sealing.unseal(token, "verifications.phone_sealed:F1")


def test_an_unknown_suite_refuses_to_start(env):
    with pytest.raises(SettingsError, match="CRYPTO_SUITE"):
        create_app({**env, "CRYPTO_SUITE": "aes"})


def test_a_suite_this_openssl_lacks_refuses_to_start(env, monkeypatch):
    def no_sm4(key):
        raise UnsupportedAlgorithm("SM4 is not supported by this backend")

    monkeypatch.setattr(sealing.algorithms, "SM4", no_sm4)
    with pytest.raises(SettingsError, match="CRYPTO_SUITE=sm cannot run on this OpenSSL"):
        create_app({**env, "CRYPTO_SUITE": "sm"})
    assert create_app({**env, "CRYPTO_SUITE": "standard"}).config["CRYPTO_SUITE"] == "standard"


def test_the_suite_is_standard_unless_set(env):
    env.pop("CRYPTO_SUITE", None)
    assert create_app(env).config["CRYPTO_SUITE"] == "standard"
    assert create_app({**env, "CRYPTO_SUITE": "sm"}).config["CRYPTO_SUITE"] == "sm"


@pytest.mark.parametrize(
    "number, masked",
    [
        ("120101199001011239", "120***************"),
        ("G1234567", "G1******"),
        ("1234567", "1******"),
        ("123456", "******"),
    ],
)
def test_the_masked_id_always_hides_the_last_six(number, masked):
    assert mask_id(number) == masked


# --- a switch and a rotation without downtime -----------------------------------------------


def test_a_journey_under_sm(app, submit_filing, sent_codes):
    app.config["CRYPTO_SUITE"] = "sm"
    filing = submit_filing()
    codes = sent_codes()
    stored = db.session.scalars(sa.select(Verification)).all()
    assert all(v.phone_sealed.startswith("sm.") and v.code_sealed.startswith("sm.") for v in stored)
    assert db.session.get(Filing, filing["id"]).personal_data_sealed.startswith("sm.")
    first = verify("tianjin", PHONE_A, codes[PHONE_A], ID_A[-6:], utcnow())
    second = verify("tianjin", PHONE_B, codes[PHONE_B], ID_B[-6:], utcnow())
    assert (first.outcome, second.outcome) == (
        Outcome.VERIFIED_OTHERS_PENDING,
        Outcome.ALL_VERIFIED,
    )


def test_codes_issued_before_a_suite_switch_still_verify_and_resend(app, submit_filing, sent_codes):
    submit_filing()
    codes = sent_codes()
    app.config["CRYPTO_SUITE"] = "sm"  # a restart with CRYPTO_SUITE=sm
    assert (
        resend(db.session.get(Province, "tianjin"), PHONE_B, ID_B[-6:], utcnow())
        == Outcome.RESEND_SENT
    )
    db.session.commit()
    assert sent_codes()[PHONE_B] == codes[PHONE_B]
    result = verify("tianjin", PHONE_A, codes[PHONE_A], ID_A[-6:], utcnow())
    assert result.outcome == Outcome.VERIFIED_OTHERS_PENDING


def _sealed_values() -> list[str]:
    db.session.expire_all()
    values = []
    for sealed in SEALED:
        values += db.session.scalars(sa.select(sealed.column).where(sealed.column.is_not(None)))
    return values


def test_reseal_brings_every_value_under_the_new_key_and_suite(
    app, provider, submit_filing, sent_codes
):
    filing = submit_filing()
    codes = sent_codes()
    for phone, number in ((PHONE_A, ID_A), (PHONE_B, ID_B)):
        verify("tianjin", phone, codes[phone], number[-6:], utcnow())
    db.session.commit()
    review.approve(db.session.get(Filing, filing["id"]), "好", utcnow())
    db.session.commit()
    before = _sealed_values()
    app.config.update(DATA_KEYS=("new-key", "test-secret"), CRYPTO_SUITE="sm")

    result = app.test_cli_runner().invoke(args=["data", "reseal", "--batch", "1"])

    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert counts == {
        "verifications.phone_sealed": 2,
        "verifications.code_sealed": 2,
        "filings.personal_data_sealed": 1,
        "records.principal_phone_sealed": 1,
        "providers.webhook_secret_sealed": 1,
        "admins.totp_secret": 0,
    }
    after = _sealed_values()
    assert len(after) == len(before) == 7
    assert all(value.startswith(f"sm.{sealing.key_id('new-key')}.") for value in after)
    again = app.test_cli_runner().invoke(args=["data", "reseal"])
    assert set(json.loads(again.output).values()) == {0}

    app.config["DATA_KEYS"] = ("new-key",)  # the old key dropped: everything still opens
    for v in db.session.scalars(sa.select(Verification)):
        assert verification_code(v) == codes[verification_phone(v)]
        assert v.phone_digest == phone_digest(verification_phone(v))
    assert providers.webhook_secret(db.session.scalars(sa.select(Provider)).one())
    record = db.session.get(Record, "a.example.cn")
    assert record.principal_phone_digest == phone_digest(PHONE_B)
    access = new_filing_body("ACCESS", type="new_access")
    access["websites"][0]["principal"] = principal("13700000000", ID_B)
    with pytest.raises(filings.IntakeError, match="on record with another principal phone"):
        filings.submit(provider[0], FilingIn(**access), utcnow())


def test_reseal_names_a_value_it_cannot_open(app, submit_filing):
    submit_filing()
    app.config["DATA_KEYS"] = ("new-key",)  # the old key dropped before resealing
    result = app.test_cli_runner().invoke(args=["data", "reseal"])
    assert result.exit_code == 1
    assert "cannot open verifications.phone_sealed:" in result.output
    assert "DATA_KEY" in result.output


# --- retention -----------------------------------------------------------------------------


def _decided(submit_filing, sent_codes, reference: str, decided_at) -> str:
    """A filing verified now and approved at `decided_at`; returns its id."""
    filing = submit_filing(new_filing_body(reference))
    codes = sent_codes()
    for phone, number in ((PHONE_A, ID_A), (PHONE_B, ID_B)):
        verify("tianjin", phone, codes[phone], number[-6:], utcnow())
        db.session.commit()
    review.approve(db.session.get(Filing, filing["id"]), "好", decided_at)
    db.session.commit()
    return filing["id"]


def _personal_state(filing_id: str) -> dict:
    db.session.expire_all()
    filing = db.session.get(Filing, filing_id)
    return {
        "erased_at": filing.personal_data_erased_at,
        "sealed": filing.personal_data_sealed is not None,
        "verifications": [
            (v.phone_sealed is not None, v.code_sealed is not None, v.phone_masked, v.id_masked)
            for v in filing.verifications
        ],
        "content": filing.content,
    }


def test_retention_erases_personal_data_at_the_boundary(app, submit_filing, sent_codes):
    decided_at = utcnow()
    filing_id = _decided(submit_filing, sent_codes, "R-1", decided_at)
    kept = _personal_state(filing_id)
    boundary = decided_at + timedelta(days=30)

    assert sweeps.erase_personal_data(boundary - timedelta(seconds=1)) == 0
    db.session.commit()
    assert _personal_state(filing_id) == kept

    assert sweeps.erase_personal_data(boundary) == 1
    db.session.commit()
    erased = _personal_state(filing_id)
    assert erased["erased_at"] == boundary and not erased["sealed"]
    assert erased["verifications"] == [
        (False, False, "139****0001", "120***************"),
        (False, False, "139****0002", "110***************"),
    ]
    assert erased["content"] == kept["content"], "the masked forms stay"
    assert sweeps.erase_personal_data(boundary + timedelta(days=1)) == 0


def test_retention_is_counted_from_the_final_status_not_the_submission(
    app, submit_filing, sent_codes
):
    now = utcnow()
    decided_id = _decided(submit_filing, sent_codes, "LATER", now + timedelta(days=20))
    submit_filing(new_filing_body("PENDING"))
    assert sweeps.erase_personal_data(now + timedelta(days=45)) == 0
    assert sweeps.erase_personal_data(now + timedelta(days=50)) == 1
    db.session.commit()
    pending = db.session.scalar(sa.select(Filing).where(Filing.reference == "PENDING"))
    assert pending.personal_data_sealed is not None and pending.personal_data_erased_at is None
    assert db.session.get(Filing, decided_id).personal_data_erased_at is not None


def test_retention_erases_in_batches_in_one_sweep(app, submit_filing, monkeypatch):
    monkeypatch.setattr(sweeps, "ERASE_CHUNK", 2)
    for number in range(5):
        submit_filing(new_filing_body(f"EXPIRING-{number}"))
    deadline = db.session.scalar(sa.select(sa.func.max(Filing.deadline)))
    assert len(sweeps.expire(deadline)) == 5
    db.session.commit()
    counts = sweeps.run_due(deadline + timedelta(days=30))
    assert counts["personal_data_erased"] == 5
    unerased = sa.select(sa.func.count()).where(Verification.phone_sealed.is_not(None))
    assert db.session.scalar(unerased) == 0


def test_the_retention_period_is_a_setting(env):
    assert create_app(env).config["PERSONAL_DATA_RETENTION_DAYS"] == 30
    assert (
        create_app({**env, "PERSONAL_DATA_RETENTION_DAYS": "7"}).config[
            "PERSONAL_DATA_RETENTION_DAYS"
        ]
        == 7
    )
    with pytest.raises(SettingsError, match="PERSONAL_DATA_RETENTION_DAYS"):
        create_app({**env, "PERSONAL_DATA_RETENTION_DAYS": "a month"})


@pytest.mark.usefixtures("admins")
def test_the_console_says_the_data_was_erased_and_still_finds_the_filing_by_phone(
    app, client, submit_filing, sent_codes
):
    filing_id = _decided(submit_filing, sent_codes, "R-CONSOLE", utcnow() - timedelta(days=31))
    sign_in(client, "tj-admin")
    before = client.get(f"/admin/filings/{filing_id}").get_data(as_text=True)
    assert "张三" in before and "李四" in before
    sweeps.run_due(utcnow())

    page = client.get(f"/admin/filings/{filing_id}").get_data(as_text=True)

    erased_on = utcnow().astimezone(SHANGHAI).date().isoformat()
    assert CONSOLE["personal_data_erased"].format(date=erased_on) in page
    assert "张三" not in page and "李四" not in page
    assert "139****0001" in page and "120***************" in page
    found = client.get(f"/admin/filings?phone={PHONE_A}").get_data(as_text=True)
    assert "R-CONSOLE" in found


def test_reseal_never_brings_back_a_value_erased_while_it_ran(app, submit_filing, monkeypatch):
    submit_filing()
    app.config["CRYPTO_SUITE"] = "sm"
    opened = sealing.unseal
    calls = []

    def erased_meanwhile(token: str, place: str) -> str:
        """The first value opened: both phones are erased before the batch is written."""
        if not calls:
            db.session.execute(sa.update(Verification).values(phone_sealed=None))
        calls.append(place)
        return opened(token, place)

    monkeypatch.setattr(sealing, "unseal", erased_meanwhile)
    counts = resealing.reseal(1000)

    assert counts["verifications.phone_sealed"] == 2, "both were read as stale"
    assert db.session.scalars(sa.select(Verification.phone_sealed)).all() == [None, None]
