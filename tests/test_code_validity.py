"""Each code's own validity (SPEC §4): it runs from the code's own first sending, the filing is
returned when a code it still needs has expired, and a code none of whose texts could be sent
runs from the filing's acceptance, so that no filing waits forever."""

from contextlib import ExitStack
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from portal import sweeps
from portal.clock import SHANGHAI
from portal.delivery import outbox, relay
from portal.extensions import db
from portal.messages import Outcome
from portal.models import Filing, MessageStatus, Province, SmsMessage, Verification
from portal.resend import resend
from portal.verification import verify
from tests.servers import Endpoint
from tests.test_migrations import empty_database, fresh_app  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("allow_local_callbacks")

ACCEPTED = datetime(2026, 11, 2, 14, tzinfo=SHANGHAI)
FIRST, SECOND = "13900000001", "13900000002"
ID_LAST6 = {FIRST: "011239", SECOND: "31002X"}


class Refusing:
    """The test gateway, refusing every text to the phones in `down` (a connection error)."""

    def __init__(self, gateway):
        self.gateway = gateway
        self.down: set[str] = set()

    def send(self, text):
        if text.phone in self.down:
            raise ConnectionError("gateway down")
        return self.gateway.send(text)


@pytest.fixture
def gateway(app, monkeypatch) -> Refusing:
    refusing = Refusing(app.extensions["sms"])
    monkeypatch.setitem(app.extensions, "sms", refusing)
    return refusing


@pytest.fixture
def receiver(provider):
    """The provider's callback URL points at a real local endpoint answering 200."""
    with ExitStack() as stack:
        endpoint = stack.enter_context(Endpoint(()))
        provider[0].callback_url = endpoint.url
        db.session.commit()
        yield endpoint


def expiry(phone: str) -> datetime | None:
    db.session.rollback()
    return db.session.scalars(
        sa.select(Verification.expires_at).where(
            Verification.phone_masked == f"{phone[:3]}****{phone[-4:]}"
        )
    ).one()


def filing_of(filing_id: str) -> Filing:
    db.session.rollback()
    return db.session.get(Filing, filing_id, populate_existing=True)


def attempt(phone: str, codes: dict[str, str], now: datetime) -> Outcome:
    outcome = verify("tianjin", phone, codes[phone], ID_LAST6[phone], now).outcome
    db.session.commit()
    return outcome


@pytest.fixture
def sent_an_hour_apart(clock, gateway, submit_filing, sent_codes):
    """The standard filing, accepted at 14:00: the first phone's text goes at once, the
    second phone's an hour later (its gateway refused it until then). Returns its id and codes."""
    clock.now = ACCEPTED
    gateway.down = {SECOND}
    filing_id = submit_filing()["id"]
    gateway.down = set()
    clock.now = ACCEPTED + timedelta(hours=1)
    relay.relay(clock.now)
    assert set(sent_codes()) == {FIRST, SECOND}
    return filing_id, sent_codes()


def test_each_code_runs_from_its_own_first_sending(sent_an_hour_apart, client, provider):
    filing_id, _ = sent_an_hour_apart
    assert expiry(FIRST) == ACCEPTED + timedelta(hours=24)
    assert expiry(SECOND) == ACCEPTED + timedelta(hours=25)
    assert filing_of(filing_id).deadline == ACCEPTED + timedelta(hours=24)
    shown = client.get(f"/api/v1/filings/{filing_id}", headers=provider[1]).get_json()
    assert shown["deadline"] == "2026-11-03T14:00:00+08:00"


def test_once_the_first_phone_verifies_the_second_code_is_good_until_its_own_expiry(
    sent_an_hour_apart, client, provider
):
    filing_id, codes = sent_an_hour_apart
    assert attempt(FIRST, codes, ACCEPTED + timedelta(hours=2)) is Outcome.VERIFIED_OTHERS_PENDING
    assert filing_of(filing_id).deadline == ACCEPTED + timedelta(hours=25)
    shown = client.get(f"/api/v1/filings/{filing_id}", headers=provider[1]).get_json()
    assert shown["deadline"] == "2026-11-03T15:00:00+08:00"

    assert sweeps.expire(ACCEPTED + timedelta(hours=24, minutes=30)) == []
    late = ACCEPTED + timedelta(hours=24, minutes=30)
    assert attempt(SECOND, codes, late) is Outcome.ALL_VERIFIED
    assert filing_of(filing_id).status == "under_review"


def test_the_filing_is_returned_when_the_first_code_it_still_needs_expires(sent_an_hour_apart):
    filing_id, codes = sent_an_hour_apart
    late = ACCEPTED + timedelta(hours=24, minutes=30)
    assert attempt(SECOND, codes, late) is Outcome.NOT_FOUND, "before any sweep"

    assert sweeps.expire(ACCEPTED + timedelta(hours=24) - timedelta(seconds=1)) == []
    assert sweeps.expire(ACCEPTED + timedelta(hours=24)) == [filing_id]
    db.session.commit()
    filing = filing_of(filing_id)
    assert (filing.status, filing.return_reason) == ("returned", "expired")
    statuses = {v.status for v in filing.verifications}
    assert statuses == {"expired"}


def test_a_second_code_past_its_own_expiry_is_refused_by_verify_and_resend(sent_an_hour_apart):
    filing_id, codes = sent_an_hour_apart
    db.session.execute(
        sa.update(Filing).where(Filing.id == filing_id).values(deadline=None)
    )  # even were the filing's deadline lost, the code's own expiry holds
    db.session.commit()
    late = ACCEPTED + timedelta(hours=25)
    tianjin = db.session.get(Province, "tianjin")
    assert resend(tianjin, SECOND, ID_LAST6[SECOND], late) is Outcome.RESEND_NOTHING_PENDING
    assert attempt(SECOND, codes, late) is Outcome.NOT_FOUND


def test_resend_moves_neither_a_code_nor_the_filing(sent_an_hour_apart, clock):
    filing_id, _ = sent_an_hour_apart
    clock.now = ACCEPTED + timedelta(hours=3)
    tianjin = db.session.get(Province, "tianjin")
    for phone in (FIRST, SECOND):
        assert resend(tianjin, phone, ID_LAST6[phone], clock.now) is Outcome.RESEND_SENT
        db.session.commit()
    assert expiry(FIRST) == ACCEPTED + timedelta(hours=24)
    assert expiry(SECOND) == ACCEPTED + timedelta(hours=25)
    assert filing_of(filing_id).deadline == ACCEPTED + timedelta(hours=24)


def give_up_every_text(clock, monkeypatch) -> None:
    """The relay tries each text still queued until its last attempt has failed."""
    monkeypatch.setattr(outbox, "SMS_RETRY_DELAYS", (0,) * len(outbox.SMS_RETRY_DELAYS))
    for _ in range(outbox.SMS_MAX_ATTEMPTS):
        relay.relay(clock.now)


def test_a_filing_none_of_whose_texts_could_be_sent_is_returned_from_acceptance(
    clock, gateway, submit_filing, receiver, monkeypatch
):
    clock.now = ACCEPTED
    gateway.down = {FIRST, SECOND}
    filing_id = submit_filing()["id"]
    assert filing_of(filing_id).deadline is None, "still being retried"
    clock.now = ACCEPTED + timedelta(hours=2)
    give_up_every_text(clock, monkeypatch)

    statuses = db.session.scalars(sa.select(SmsMessage.status)).all()
    assert statuses == [MessageStatus.FAILED] * 2
    assert expiry(FIRST) == expiry(SECOND) == ACCEPTED + timedelta(hours=24)
    assert filing_of(filing_id).deadline == ACCEPTED + timedelta(hours=24)

    assert sweeps.expire(ACCEPTED + timedelta(hours=24)) == [filing_id]
    db.session.commit()
    filing = filing_of(filing_id)
    assert (filing.status, filing.return_reason) == ("returned", "expired")
    (posted,) = receiver.requests
    assert posted.json()["filing"]["id"] == filing_id
    assert posted.json()["filing"]["return_reason"] == "expired"


def test_a_code_never_sent_runs_from_acceptance_beside_one_that_was(
    clock, gateway, submit_filing, sent_codes, monkeypatch
):
    """The rule per code: one phone's text went out an hour after acceptance, the other's
    never could; the second code's validity runs from acceptance and the filing falls due
    then, whichever phone verifies first."""
    clock.now = ACCEPTED
    gateway.down = {FIRST, SECOND}
    filing_id = submit_filing()["id"]
    gateway.down = {SECOND}
    clock.now = ACCEPTED + timedelta(hours=1)
    give_up_every_text(clock, monkeypatch)

    assert expiry(FIRST) == ACCEPTED + timedelta(hours=25)
    assert expiry(SECOND) == ACCEPTED + timedelta(hours=24)
    assert filing_of(filing_id).deadline == ACCEPTED + timedelta(hours=24)
    assert attempt(FIRST, sent_codes(), ACCEPTED + timedelta(hours=2)) is (
        Outcome.VERIFIED_OTHERS_PENDING
    )
    assert filing_of(filing_id).deadline == ACCEPTED + timedelta(hours=24)
    assert sweeps.expire(ACCEPTED + timedelta(hours=24)) == [filing_id]


def test_the_validity_migration_gives_stuck_codes_an_expiry_from_acceptance(fresh_app):  # noqa: F811
    """Migration 0013 on a database whose filings ran from their first text: a pending code
    with a text sent expires with its filing's deadline; one whose only text failed for good
    (it waited forever until then) expires, with its filing, at acceptance + validity."""
    upgrade(revision="outbox")
    tables = sa.MetaData()
    tables.reflect(db.engine, only=["providers", "filings", "verifications", "sms_messages"])
    providers, filings, verifications, texts = (
        tables.tables[name] for name in ("providers", "filings", "verifications", "sms_messages")
    )
    accepted, deadline = datetime(2026, 11, 2, 6), datetime(2026, 11, 3, 6, 5)
    db.session.execute(
        providers.insert().values(
            id=1,
            name="接入商",
            api_key_digest="k" * 64,
            webhook_secret_sealed="s",
            active=True,
            created_at=accepted,
        )
    )
    for number, (filing_id, text_status) in enumerate(
        [("F-SENT", "sent"), ("F-STUCK", "failed")], 1
    ):
        db.session.execute(
            filings.insert().values(
                id=filing_id, provider_id=1, reference=f"R{number}", province_slug="tianjin",
                type="new_filing", status="pending_verification", content={}, created_at=accepted,
                deadline=deadline if text_status == "sent" else None,
            )
        )  # fmt: skip
        db.session.execute(
            verifications.insert().values(
                id=number, filing_id=filing_id, province_slug="tianjin", roles=["entity"],
                code_digest=f"code-{number}", id_digest=f"id-{number}", id_masked="120***1239",
                phone_digest=f"phone-{number}", phone_masked="139****0001",
                status="pending", wrong_id_count=0, resend_count=0, noon_resend_at=deadline,
                noon_resent=False,
            )
        )  # fmt: skip
        db.session.execute(
            texts.insert().values(
                verification_id=number, kind="first", status=text_status, attempts=1,
                created_at=accepted,
            )
        )  # fmt: skip
    db.session.commit()

    upgrade(revision="validity")
    expiry_of = dict(
        db.session.execute(sa.text("SELECT filing_id, expires_at FROM verifications")).all()
    )
    deadline_of = dict(db.session.execute(sa.text("SELECT id, deadline FROM filings")).all())
    from_acceptance = accepted + timedelta(hours=24)
    assert {filing: _naive(at) for filing, at in expiry_of.items()} == {
        "F-SENT": deadline,
        "F-STUCK": from_acceptance,
    }
    assert {filing: _naive(at) for filing, at in deadline_of.items()} == {
        "F-SENT": deadline,
        "F-STUCK": from_acceptance,
    }


def _naive(value) -> datetime:
    """SQLite's raw `SELECT` gives the stored text; PostgreSQL a datetime."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
