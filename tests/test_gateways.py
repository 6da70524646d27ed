"""Each gateway through its official SDK against a local stand-in that checks the request's
signature (tests/cloud_standins.py), and the portal sending its texts through them."""

import json

import pytest
import sqlalchemy as sa

from portal import personal_links
from portal.delivery import gateway_from_config
from portal.delivery.gateways import Accepted, Refused, TimedOut
from portal.delivery.gateways.aliyun import AliyunGateway
from portal.delivery.gateways.tencent import TencentGateway
from portal.delivery.texts import Text
from portal.extensions import db
from portal.models import SmsMessage, Verification
from portal.protection.personal_data import verification_code, verification_phone
from portal.settings import SettingsError
from tests.cloud_standins import (
    ALIYUN_KEY,
    TENCENT_KEY,
    AliyunStandIn,
    TencentStandIn,
    aliyun_settings,
)

TEXT = Text(
    message_id="sms-42",
    phone="13900000001",
    body="…",
    code="123456",
    link="tianjin/v/GcFVVRCRSwgvhkBY",
)


def aliyun(stand_in: AliyunStandIn, secret: str = ALIYUN_KEY[1], timeout: float = 2.0):
    return AliyunGateway(
        ALIYUN_KEY[0], secret, "天津通管局", "SMS_123456789", stand_in.endpoint, "http", timeout
    )


def tencent(stand_in: TencentStandIn, secret: str = TENCENT_KEY[1], timeout: float = 2.0):
    return TencentGateway(
        TENCENT_KEY[0],
        secret,
        "1400000001",
        "天津通管局",
        "1234567",
        endpoint=stand_in.endpoint,
        protocol="http",
        timeout=timeout,
    )


GATEWAYS = {
    "aliyun": (lambda **options: AliyunStandIn(*ALIYUN_KEY, **options), aliyun),
    "tencent": (lambda **options: TencentStandIn(*TENCENT_KEY, **options), tencent),
}


def test_aliyun_sends_the_template_with_the_code_and_link():
    with AliyunStandIn(*ALIYUN_KEY) as stand_in:
        accepted = aliyun(stand_in).send(TEXT)

    (sent,) = stand_in.sent
    assert sent.signature_valid
    assert accepted == Accepted("aliyun", sent.gateway_id)
    assert sent.params["x-acs-action"] == "SendSms"
    assert sent.params["PhoneNumbers"] == "13900000001"
    assert sent.params["SignName"] == "天津通管局"
    assert sent.params["TemplateCode"] == "SMS_123456789"
    assert json.loads(sent.params["TemplateParam"]) == {
        "code": "123456",
        "link": "tianjin/v/GcFVVRCRSwgvhkBY",
    }
    assert sent.params["OutId"] == "sms-42"


def test_tencent_sends_the_template_with_the_code_and_link():
    with TencentStandIn(*TENCENT_KEY) as stand_in:
        accepted = tencent(stand_in).send(TEXT)

    (sent,) = stand_in.sent
    assert sent.signature_valid
    assert accepted == Accepted("tencent", sent.gateway_id)
    assert sent.params["X-TC-Action"] == "SendSms"
    assert sent.params["PhoneNumberSet"] == ["+8613900000001"]
    assert sent.params["SmsSdkAppId"] == "1400000001"
    assert sent.params["SignName"] == "天津通管局"
    assert sent.params["TemplateId"] == "1234567"
    assert sent.params["TemplateParamSet"] == ["123456", "tianjin/v/GcFVVRCRSwgvhkBY"]
    assert sent.params["SessionContext"] == "sms-42"


@pytest.mark.parametrize("name", GATEWAYS)
def test_a_wrong_secret_fails_the_signature_and_is_refused(name):
    make_stand_in, make_gateway = GATEWAYS[name]
    with make_stand_in() as stand_in, pytest.raises(Refused):
        make_gateway(stand_in, secret="not-the-secret").send(TEXT)

    (sent,) = stand_in.sent
    assert not sent.signature_valid


@pytest.mark.parametrize("name", GATEWAYS)
@pytest.mark.parametrize("behaviour", ["refuse", "unavailable"])
def test_an_error_answer_or_a_5xx_is_a_refusal(name, behaviour):
    make_stand_in, make_gateway = GATEWAYS[name]
    with make_stand_in(then=behaviour) as stand_in, pytest.raises(Refused):
        make_gateway(stand_in).send(TEXT)
    assert [sent.signature_valid for sent in stand_in.sent] == [True]


class Closed:
    endpoint = "127.0.0.1:1"


@pytest.mark.parametrize("name", GATEWAYS)
def test_no_connection_is_a_refusal(name):
    _, make_gateway = GATEWAYS[name]
    with pytest.raises(Refused):
        make_gateway(Closed()).send(TEXT)


@pytest.mark.parametrize("name", GATEWAYS)
def test_a_failure_never_quotes_the_phone_or_the_code(name):
    """The error is stored with the text and logged, and the SDKs' messages quote the URL."""
    make_stand_in, make_gateway = GATEWAYS[name]
    with make_stand_in(then="slow", slow_seconds=1.0) as stand_in:
        for gateway in (make_gateway(Closed()), make_gateway(stand_in, timeout=0.3)):
            with pytest.raises((Refused, TimedOut)) as raised:
                gateway.send(TEXT)
            assert TEXT.phone not in str(raised.value) and TEXT.code not in str(raised.value)


@pytest.mark.parametrize("name", GATEWAYS)
def test_no_answer_in_time_is_a_timeout_not_a_refusal(name):
    make_stand_in, make_gateway = GATEWAYS[name]
    with (
        make_stand_in(then="slow", slow_seconds=1.0) as stand_in,
        pytest.raises(TimedOut) as raised,
    ):
        make_gateway(stand_in, timeout=0.3).send(TEXT)
    assert raised.value.gateway == name
    assert len(stand_in.sent) == 1


@pytest.mark.parametrize(
    ("backend_setting", "message"),
    [
        ("aliyun", "ALIYUN_SMS_ACCESS_KEY_ID, ALIYUN_SMS_ACCESS_KEY_SECRET"),
        ("file,tencent", "TENCENT_SMS_SECRET_ID"),
        ("file,pigeon", "unknown SMS_BACKEND 'file,pigeon'"),
        ("file,file", "names a gateway twice"),
    ],
)
def test_a_gateway_missing_its_settings_refuses_to_start(backend_setting, message):
    config = {"SMS_BACKEND": backend_setting, "SMS_FILE_PATH": "/dev/null", "SMS_HTTP_URL": None}
    with pytest.raises(SettingsError, match=message):
        gateway_from_config(config, None)


@pytest.fixture
def aliyun_stand_in():
    with AliyunStandIn(*ALIYUN_KEY) as stand_in:
        yield stand_in


@pytest.fixture
def on_aliyun(env, aliyun_stand_in):
    env.update(SMS_BACKEND="aliyun", **aliyun_settings(aliyun_stand_in))
    return aliyun_stand_in


def test_a_filings_codes_go_out_through_aliyun_and_each_text_records_its_biz_id(
    on_aliyun, submit_filing
):
    submit_filing()

    verifications = db.session.scalars(sa.select(Verification)).all()
    sent = {s.params["PhoneNumbers"]: s for s in on_aliyun.sent}
    assert set(sent) == {verification_phone(v) for v in verifications}
    assert all(s.signature_valid for s in sent.values())
    for verification in verifications:
        code = verification_code(verification)
        assert json.loads(sent[verification_phone(verification)].params["TemplateParam"]) == {
            "code": code,
            "link": personal_links.path(verification, code),
        }
        assert personal_links.path(verification, code).startswith("tianjin/v/")
    messages = db.session.scalars(sa.select(SmsMessage)).all()
    assert {(m.gateway, m.gateway_message_id, f"sms-{m.id}") for m in messages} == {
        ("aliyun", s.gateway_id, s.params["OutId"]) for s in sent.values()
    }
