"""Callback URLs (SPEC §10): loopback, private, link-local and metadata targets refused when
saved (console, CLI) and when resolved at sending time, the webhook connecting to the address
checked; the event log shows a generic reason, never an internal host's own error text."""

import ipaddress
import json
import socket
from datetime import datetime

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from portal import create_app, settings
from portal.delivery import webhooks
from portal.extensions import db
from portal.messages import CALLBACK_REFUSED
from portal.models import AuditEntry, Provider
from portal.protection import callback_urls
from portal.protection.callback_urls import Refusal, Refused
from portal.settings import SettingsError
from tests.servers import Endpoint, server_tls
from tests.test_admin import admins, csrf, sign_in  # noqa: F401 (admins is a fixture)
from tests.test_migrations import empty_database  # noqa: F401 (a fixture)
from tests.test_settings import PRODUCTION
from tests.test_webhooks import the_event, verify_every_phone

PUBLIC = "93.184.216.34"

FORBIDDEN = [
    "http://127.0.0.1/hook",
    "http://127.8.9.10:8080/hook",
    "http://[::1]/hook",
    "http://localhost/hook",  # the real resolver: /etc/hosts says 127.0.0.1
    "http://2130706433/hook",  # 127.0.0.1 written as one number
    "http://0x7f000001/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
    "http://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://[fd12:3456::1]/hook",
    "http://100.64.0.1/hook",  # shared address space (carrier NAT)
    "http://169.254.1.1/hook",
    "http://[fe80::1]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://0.0.0.0/hook",
    "http://[::]/hook",
    "http://224.0.0.1/hook",
    "http://[ff02::1]/hook",
    "http://240.0.0.1/hook",
    "http://192.0.2.1/hook",  # documentation range
]
METADATA = FORBIDDEN[16:19]
INVALID = ["ftp://hooks.example.cn/", "hooks.example.cn/icp", "https://", "https://a:b@hooks.cn/"]


@pytest.fixture
def dns(monkeypatch):
    """Names this test resolves itself, `dns["hooks.test"] = ["127.0.0.1"]`; others as usual."""
    names: dict[str, list[str]] = {}
    real = callback_urls.resolve

    def resolve(host: str, port: int):
        if host in names:
            return [ipaddress.ip_address(address) for address in names[host]]
        return real(host, port)

    monkeypatch.setattr(callback_urls, "resolve", resolve)
    return names


def refusal(url: str) -> Refusal | None:
    try:
        callback_urls.check(url)
    except Refused as refused:
        return refused.refusal
    return None


# --- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", FORBIDDEN)
def test_forbidden_targets_are_refused(app, url):
    assert refusal(url) is Refusal.PRIVATE


@pytest.mark.parametrize("url", INVALID)
def test_urls_that_are_not_plain_http_are_refused(app, url):
    assert refusal(url) is Refusal.INVALID


def test_a_public_address_is_accepted(app):
    target = callback_urls.check(f"https://{PUBLIC}/hook?provider=1")
    assert (target.address, target.port, target.path) == (PUBLIC, 443, "/hook?provider=1")


def test_a_name_is_refused_if_any_of_its_addresses_is_private(app, dns):
    dns["hooks.test"] = [PUBLIC, "10.0.0.8"]
    assert refusal("https://hooks.test/hook") is Refusal.PRIVATE
    dns["hooks.test"] = [PUBLIC, "2606:2800:220:1::1"]
    assert refusal("https://hooks.test/hook") is None


def test_production_takes_https_only(app):
    app.config["PRODUCTION"] = True
    assert refusal(f"http://{PUBLIC}/hook") is Refusal.NOT_HTTPS
    assert refusal(f"https://{PUBLIC}/hook") is None


@pytest.mark.usefixtures("allow_local_callbacks")
def test_allowing_private_targets_lets_loopback_through_but_never_metadata(app):
    assert refusal("http://127.0.0.1:8080/hook") is None
    assert refusal("http://10.1.2.3/hook") is None
    for url in METADATA:
        assert refusal(url) is Refusal.PRIVATE


def test_allowing_private_targets_is_refused_in_production(tmp_path):
    with pytest.raises(SettingsError, match="CALLBACK_ALLOW_PRIVATE"):
        settings.from_env({**PRODUCTION, "CALLBACK_ALLOW_PRIVATE": "true"}, str(tmp_path))


# --- when saved: the console and the CLI ---------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1/hook", *METADATA])
def test_the_console_refuses_to_save_a_forbidden_callback(client, admins, provider, url):
    sign_in(client, "boss")
    before = provider[0].callback_url

    response = client.post(
        f"/admin/providers/{provider[0].id}/callback",
        data={"callback_url": url, "csrf_token": csrf(client)},
        follow_redirects=True,
    )

    assert CALLBACK_REFUSED["PRIVATE"] in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Provider, provider[0].id).callback_url == before
    assert db.session.scalars(sa.select(AuditEntry.action)).all() == ["sign_in"]


def test_the_console_saves_a_public_callback(client, admins, provider):
    sign_in(client, "boss")

    client.post(
        f"/admin/providers/{provider[0].id}/callback",
        data={"callback_url": f"https://{PUBLIC}/hook", "csrf_token": csrf(client)},
    )

    db.session.expire_all()
    assert db.session.get(Provider, provider[0].id).callback_url == f"https://{PUBLIC}/hook"


def test_the_console_refuses_a_new_provider_with_a_forbidden_callback(client, admins):
    sign_in(client, "boss")

    response = client.post(
        "/admin/providers",
        data={
            "name": "内网接入商",
            "callback_url": "http://169.254.169.254/",
            "csrf_token": csrf(client, "/admin/providers"),
        },
    )

    assert CALLBACK_REFUSED["PRIVATE"] in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(Provider).where(Provider.name == "内网接入商")) is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://[fd00:ec2::254]/"])
def test_the_cli_refuses_to_create_a_provider_with_a_forbidden_callback(app, url):
    result = app.test_cli_runner().invoke(
        args=["providers", "create", "内网接入商", "--callback-url", url]
    )

    assert result.exit_code == 2
    assert "refused: private address" in result.output
    assert db.session.scalar(sa.select(Provider).where(Provider.name == "内网接入商")) is None


def test_the_cli_saves_a_name_that_does_not_resolve_yet(app):
    result = app.test_cli_runner().invoke(
        args=["providers", "create", "新接入商", "--callback-url", "https://hooks.invalid/icp"]
    )

    assert result.exit_code == 0, result.output
    assert "api_key" in json.loads(result.output.strip().splitlines()[-1])


# --- when sending --------------------------------------------------------------------------


def event_log(client, provider, filing_id: str) -> list[dict]:
    """The attempts of the filing's one event, as its provider reads them through the API."""
    response = client.get(f"/api/v1/filings/{filing_id}/events", headers=provider[1])
    (event,) = response.get_json()["events"]
    return event["attempts"]


def test_a_name_that_resolves_to_loopback_only_at_sending_time_is_refused(
    client,
    admins,
    provider,
    dns,
    clock,
    submit_filing,
    sent_codes,
):
    """DNS rebinding: public when the URL is saved, 127.0.0.1 when the webhook is sent."""
    with Endpoint() as receiver:
        url = f"http://rebind.test:{receiver.url.rsplit(':', 1)[1]}"
        dns["rebind.test"] = [PUBLIC]
        sign_in(client, "boss")
        client.post(
            f"/admin/providers/{provider[0].id}/callback",
            data={"callback_url": url, "csrf_token": csrf(client)},
        )
        db.session.expire_all()
        assert db.session.get(Provider, provider[0].id).callback_url == url
        filing = submit_filing()

        dns["rebind.test"] = ["127.0.0.1"]
        verify_every_phone(sent_codes, clock.now)

        assert receiver.requests == []
    (attempt,) = event_log(client, provider, filing["id"])
    assert (attempt["status_code"], attempt["error"]) == (None, "refused: private address")
    assert the_event(filing["id"]).next_attempt_at is not None, "tried again later"


@pytest.mark.usefixtures("allow_local_callbacks")
def test_the_webhook_goes_to_the_address_checked_under_the_name_of_the_url(
    provider, dns, clock, submit_filing, sent_codes
):
    """The system resolver knows no `hooks.test`: only the checked address can be reached."""
    with Endpoint() as receiver:
        port = receiver.url.rsplit(":", 1)[1].split("/")[0]
        dns["hooks.test"] = ["127.0.0.1"]
        provider[0].callback_url = f"http://hooks.test:{port}/hook?p=1"
        db.session.commit()
        filing = submit_filing()

        verify_every_phone(sent_codes, clock.now)

    (request,) = receiver.requests
    assert request.headers["Host"] == f"hooks.test:{port}"
    assert request.path == "/hook?p=1"
    assert the_event(filing["id"]).delivered_at == clock.now


def test_a_saved_loopback_callback_is_refused_at_sending_time(
    client, provider, clock, submit_filing, sent_codes
):
    """The provider fixture's URL, http://127.0.0.1:9/hook, was written past the checks."""
    filing = submit_filing()

    verify_every_phone(sent_codes, clock.now)

    (attempt,) = event_log(client, provider, filing["id"])
    assert attempt["error"] == "refused: private address"


@pytest.mark.usefixtures("allow_local_callbacks")
def test_the_event_log_shows_connection_failed_not_the_hosts_error_text(
    client, provider, clock, submit_filing, sent_codes
):
    filing = submit_filing()

    verify_every_phone(sent_codes, clock.now)

    (attempt,) = event_log(client, provider, filing["id"])
    assert attempt["error"] == "connection failed"
    text = json.dumps(event_log(client, provider, filing["id"]))
    assert "127.0.0.1" not in text and "Errno" not in text and "refused" not in text


@pytest.mark.usefixtures("allow_local_callbacks")
def test_a_receiver_that_never_answers_is_a_timeout(
    client, provider, clock, monkeypatch, submit_filing, sent_codes
):
    monkeypatch.setattr(webhooks, "TIMEOUT_SECONDS", 0.2)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never answers
        provider[0].callback_url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        db.session.commit()
        filing = submit_filing()

        verify_every_phone(sent_codes, clock.now)

    (attempt,) = event_log(client, provider, filing["id"])
    assert attempt["error"] == "timeout"


@pytest.fixture
def https_receiver(tmp_path, monkeypatch):
    """An https receiver on 127.0.0.1 whose certificate names `hooks.test`, trusted."""
    tls, certificate = server_tls("hooks.test", tmp_path)
    monkeypatch.setattr(webhooks, "CA_CERTS", str(certificate))
    with Endpoint(tls=tls) as receiver:
        yield receiver


@pytest.mark.usefixtures("allow_local_callbacks")
@pytest.mark.parametrize("name, delivered", [("hooks.test", True), ("other.test", False)])
def test_over_https_the_certificate_is_checked_against_the_urls_name(
    client, provider, dns, clock, https_receiver, submit_filing, sent_codes, name, delivered
):
    """Connected to the checked address, TLS still sends and verifies the URL's name (SNI)."""
    port = https_receiver.url.rsplit(":", 1)[1].split("/")[0]
    dns[name] = ["127.0.0.1"]
    provider[0].callback_url = f"https://{name}:{port}/hook"
    db.session.commit()
    filing = submit_filing()

    verify_every_phone(sent_codes, clock.now)

    (attempt,) = event_log(client, provider, filing["id"])
    if delivered:
        assert attempt["status_code"] == 200
        assert https_receiver.requests[0].headers["Host"] == f"hooks.test:{port}"
    else:
        assert (attempt["error"], https_receiver.requests) == ("TLS failed", [])


def test_the_upgrade_replaces_raw_error_texts_already_in_the_event_log(env, empty_database):
    """Attempts recorded before the generic reasons kept the receiver's error text."""
    app = create_app({**env, "DATABASE_URL": empty_database})
    with app.app_context():
        upgrade(revision="0003")
        at = {"at": datetime(2026, 11, 30, 2, 0)}
        for statement in (
            "INSERT INTO providers (name, api_key_digest, webhook_secret, active, created_at)"
            " VALUES ('p', 'd', 's', true, :at)",
            "INSERT INTO filings (id, provider_id, reference, province_slug, type, status,"
            " content, created_at) VALUES ('f', 1, 'R', 'tianjin', 'new_filing',"
            " 'under_review', '{}', :at)",
            "INSERT INTO events (id, filing_id, provider_id, type, occurred_at, payload,"
            " attempts) VALUES ('e', 'f', 1, 'filing.status_changed', :at, '{}', 3)",
            "INSERT INTO webhook_deliveries (event_id, attempted_at, status_code, error) VALUES"
            " ('e', :at, NULL, 'ConnectionError: HTTPConnectionPool(host=''10.0.0.5'')'),"
            " ('e', :at, NULL, 'ReadTimeout: read timed out (host db.internal)'),"
            " ('e', :at, 500, 'HTTP 500'), ('e', :at, 200, NULL)",
        ):
            db.session.execute(sa.text(statement), at)
        db.session.commit()

        upgrade()

        errors = db.session.scalars(sa.text("SELECT error FROM webhook_deliveries ORDER BY id"))
        assert list(errors) == ["connection failed", "timeout", "HTTP 500", None]
        db.session.remove()
        db.engine.dispose()
