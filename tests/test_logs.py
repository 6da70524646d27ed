"""Logs hold no code, ID number, ID last six or full phone number (issue 5), whatever logs them."""

import logging
import re

import pytest
import sqlalchemy as sa

from portal import personal_links
from portal.delivery.gateways.http import HttpGateway
from portal.extensions import db
from portal.messages import Outcome
from portal.models import Verification
from portal.protection.personal_data import verification_code, verification_phone
from portal.protection.redacted_logs import redact
from tests.factories import CAPTCHA, ID_A, ID_B, form_fields, new_filing_body

PHONE_A, ID_A_LAST6 = "13900000001", "011239"
PHONE_B, ID_B_LAST6 = "13900000002", "31002X"
CLOSED_PORT_GATEWAY = "http://127.0.0.1:1/sms"


@pytest.mark.parametrize(
    ("given", "logged"),
    [
        ("您的备案短信核验码为123456，24小时内有效", "您的备案短信核验码为******，24小时内有效"),
        ("code=654321&phone=13912345678", "code=******&phone=139****5678"),
        ("to +8613912345678 and 86-13912345678", "to 139****5678 and 139****5678"),
        ("id 11010519491231002X last 31002x", "id ****************** last ******"),
        ("id 120101199001011239.", "id ******************."),
        (
            "GET /tianjin/verify?phone=13900000001 HTTP/1.1",
            "GET /tianjin/verify?phone=139****0001 HTTP/1.1",
        ),
        (
            "请打开 https://b.cn/tianjin/v/Ab3_-x123456789z 填写",
            "请打开 https://b.cn/tianjin/v/**************** 填写",
        ),
        ("POST /gansu/v/q1-2 HTTP/1.1", "POST /gansu/v/**************** HTTP/1.1"),
    ],
)
def test_codes_phones_and_ids_are_redacted(given, logged):
    assert redact(given) == logged


@pytest.mark.parametrize(
    "kept",
    [
        "filing 3f2a123456bc7d8e9f00112233445566",
        "attempts 12345 and 1234567",
        "2026-11-01 12:00:00,123",
        "sms-42 to 139****0001",
        "port 5432",
    ],
)
def test_other_text_is_kept(kept):
    assert redact(kept) == kept


@pytest.fixture
def journey_env(env, tmp_path):
    env["SMS_BACKEND"] = "console"
    return env


def _secrets(codes: list[str]) -> list[str]:
    return [PHONE_A, PHONE_B, ID_A, ID_B, ID_A_LAST6, ID_B_LAST6, *codes]


def _logged(caplog) -> str:
    parts = []
    for record in caplog.records:
        parts += [record.getMessage(), record.exc_text or "", record.stack_info or ""]
    return "\n".join(parts) + "\n" + caplog.text


def test_a_whole_journey_logs_no_secret(journey_env, app, client, provider, caplog, capsys):
    """Submission, SMS by the console backend, verify, a failing gateway and an exception."""
    caplog.set_level(logging.DEBUG)
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom/<phone>")
    def boom(phone):
        raise RuntimeError(f"code {codes[PHONE_B]} for {phone}, ID {ID_B}")

    headers = provider[1]
    assert (
        client.post("/api/v1/filings", json=new_filing_body(), headers=headers).status_code == 201
    )
    console_lines = [
        r.getMessage() for r in caplog.records if r.name == "portal.delivery.gateways.console"
    ]
    assert len(console_lines) == 2
    assert any("139****0001" in line for line in console_lines)
    assert all("核验码为******" in line for line in console_lines)
    assert all("/tianjin/v/**************** " in line for line in console_lines)

    verifications = list(db.session.scalars(sa.select(Verification)))
    codes = {verification_phone(v): verification_code(v) for v in verifications}
    links = [personal_links.path(v, codes[verification_phone(v)]) for v in verifications]
    assert client.get(f"/{links[0]}").status_code == 200
    fields = form_fields(client.get("/tianjin/verify").get_data(as_text=True))
    values = {"code": codes[PHONE_A], "phone": PHONE_A, "id_last6": ID_A_LAST6}
    response = client.post("/tianjin/verify", data={**fields, "captcha": CAPTCHA, **values})
    assert Outcome.VERIFIED_OTHERS_PENDING.message in response.get_data(as_text=True)

    app.extensions["sms"] = HttpGateway(CLOSED_PORT_GATEWAY, timeout=1)
    fields = form_fields(client.get("/tianjin/resend").get_data(as_text=True))
    values = {"phone": PHONE_B, "id_last6": ID_B_LAST6}
    response = client.post("/tianjin/resend", data={**fields, "captcha": CAPTCHA, **values})
    assert Outcome.RESEND_SENT.message in response.get_data(as_text=True)
    assert any("not sent (attempt 1, retried later)" in r.getMessage() for r in caplog.records)

    assert client.get(f"/boom/{PHONE_B}").status_code == 500
    exception_logs = [r for r in caplog.records if r.exc_text and "RuntimeError" in r.exc_text]
    assert exception_logs and "139****0002" in exception_logs[0].exc_text

    logging.getLogger("somewhere.else").warning(
        "phone %s code %s id %s", PHONE_A, codes[PHONE_A], ID_A
    )

    logged = _logged(caplog)
    printed = "".join(capsys.readouterr())
    tokens = [link.rsplit("/", 1)[1] for link in links]
    for secret in _secrets(list(codes.values())) + tokens:
        assert secret not in logged, secret
        assert secret not in printed, secret
    assert re.search(r"phone 139\*\*\*\*0001 code \*{6} id \*{18}", logged)
