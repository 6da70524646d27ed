"""Delivery receipts (SPEC §9) in both gateways' formats: recorded once, a repeat changes
nothing, a malformed body gets 400 and changes nothing, a wrong token 404."""

import json
import logging

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import SmsMessage
from portal.protection.personal_data import verification_phone
from tests.cloud_standins import (
    ALIYUN_KEY,
    TENCENT_KEY,
    AliyunStandIn,
    TencentStandIn,
    aliyun_settings,
    tencent_settings,
)

TOKEN = "receipt-token-for-tests"
ANSWERS = {"aliyun": {"code": 0, "msg": "接收成功"}, "tencent": {"result": 0, "errmsg": "OK"}}


@pytest.fixture(params=["aliyun", "tencent"])
def gateway(request, env):
    stand_in, settings = {
        "aliyun": (AliyunStandIn(*ALIYUN_KEY), aliyun_settings),
        "tencent": (TencentStandIn(*TENCENT_KEY), tencent_settings),
    }[request.param]
    with stand_in:
        env.update(SMS_BACKEND=request.param, SMS_RECEIPT_TOKEN=TOKEN, **settings(stand_in))
        yield request.param


def receipt(gateway: str, message: SmsMessage, delivered: bool) -> dict:
    """A receipt for the text, in the gateway's own format."""
    if gateway == "aliyun":
        return {
            "phone_number": verification_phone(message.verification),
            "send_time": "2026-12-01 10:00:00",
            "report_time": "2026-12-01 10:00:07",
            "success": delivered,
            "err_code": "DELIVERED" if delivered else "IC:0015",
            "err_msg": "用户接收成功" if delivered else "空号",
            "sms_size": "1",
            "biz_id": message.gateway_message_id,
            "out_id": f"sms-{message.id}",
        }
    return {
        "user_receive_time": "2026-12-01 10:00:07",
        "nationcode": "86",
        "mobile": verification_phone(message.verification),
        "report_status": "SUCCESS" if delivered else "FAIL",
        "errmsg": "DELIVRD" if delivered else "IC:0015",
        "description": "用户短信送达成功" if delivered else "空号",
        "sid": message.gateway_message_id,
    }


def texts() -> list[SmsMessage]:
    db.session.expire_all()
    return db.session.scalars(sa.select(SmsMessage).order_by(SmsMessage.id)).all()


def recorded() -> list[tuple]:
    return [
        (m.id, m.gateway_message_id, m.delivery, m.receipt_code, m.receipt_at, m.reroute_at)
        for m in texts()
    ]


def test_receipts_are_recorded_once_and_a_repeat_changes_nothing(gateway, client, submit_filing):
    submit_filing()
    delivered, undelivered = texts()
    body = [receipt(gateway, delivered, True), receipt(gateway, undelivered, False)]

    response = client.post(f"/sms/receipts/{gateway}/{TOKEN}", json=body)

    assert (response.status_code, response.get_json()) == (200, ANSWERS[gateway])
    after_first = recorded()
    code = "DELIVERED" if gateway == "aliyun" else "DELIVRD"
    assert [(row[2], row[3]) for row in after_first] == [
        ("delivered", code),
        ("undelivered", "IC:0015"),
    ]
    # 10:00:07 Beijing time
    assert {row[4].isoformat() for row in after_first} == {"2026-12-01T02:00:07+00:00"}

    response = client.post(f"/sms/receipts/{gateway}/{TOKEN}", json=body)

    assert (response.status_code, response.get_json()) == (200, ANSWERS[gateway])
    assert recorded() == after_first
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'portal_sms_receipts_total{{gateway="{gateway}",outcome="repeated"}}' in metrics


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b'{"biz_id": "1", "sid": "1"}',
        [{"out_id": "sms-1", "mobile": "13900000001"}],
        [{"biz_id": "1", "success": "yes", "sid": "1", "report_status": "MAYBE"}],
        [
            {
                **{"biz_id": "1", "success": True, "sid": "1", "report_status": "SUCCESS"},
                **{"report_time": "01/12/2026 10:00", "user_receive_time": "01/12/2026 10:00"},
            }
        ],
    ],
)
def test_a_malformed_body_gets_400_and_changes_nothing(gateway, client, submit_filing, bad):
    """Not even the well-formed receipts of a batch with a malformed one are recorded."""
    submit_filing()
    before = recorded()
    well_formed = receipt(gateway, texts()[0], True)
    body = bad if isinstance(bad, bytes) else json.dumps([well_formed, *bad]).encode()

    response = client.post(
        f"/sms/receipts/{gateway}/{TOKEN}", data=body, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.get_json()[{"aliyun": "code", "tencent": "result"}[gateway]] != 0
    assert recorded() == before


@pytest.mark.parametrize(
    "path",
    [f"/sms/receipts/aliyun/{TOKEN}x", "/sms/receipts/aliyun/", f"/sms/receipts/pigeon/{TOKEN}"],
)
def test_a_wrong_token_or_gateway_answers_404(gateway, client, submit_filing, path):
    submit_filing()
    before = recorded()
    body = [receipt(gateway, texts()[0], True)]

    assert client.post(path.replace("aliyun", gateway), json=body).status_code == 404
    assert recorded() == before


def test_without_a_receipt_token_every_receipt_answers_404(gateway, env, client, submit_filing):
    submit_filing()
    client.application.config["SMS_RECEIPT_TOKEN"] = None
    body = [receipt(gateway, texts()[0], True)]

    assert client.post(f"/sms/receipts/{gateway}/", json=body).status_code == 404
    assert client.post(f"/sms/receipts/{gateway}/None", json=body).status_code == 404
    assert {row[2] for row in recorded()} == {None}


def test_a_receipt_for_an_unknown_text_is_acknowledged_and_logged(
    gateway, client, submit_filing, caplog
):
    submit_filing()
    before = recorded()
    stranger = SmsMessage(id=999_999, gateway_message_id="no-such-id")
    stranger.verification = texts()[0].verification
    body = [receipt(gateway, stranger, True)]

    with caplog.at_level(logging.INFO, logger="portal.delivery.receipts"):
        response = client.post(f"/sms/receipts/{gateway}/{TOKEN}", json=body)

    assert (response.status_code, response.get_json()) == (200, ANSWERS[gateway])
    assert recorded() == before
    assert any("unknown text no-such-id" in r.getMessage() for r in caplog.records)


def test_the_api_shows_each_phones_delivery(gateway, client, submit_filing, provider):
    filing = submit_filing()
    delivered, undelivered = texts()
    body = [receipt(gateway, delivered, True), receipt(gateway, undelivered, False)]
    client.post(f"/sms/receipts/{gateway}/{TOKEN}", json=body)

    described = client.get(f"/api/v1/filings/{filing['id']}", headers=provider[1]).get_json()

    assert [v["delivery"] for v in described["verifications"]] == ["delivered", "undelivered"]
