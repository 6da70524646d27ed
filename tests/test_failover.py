"""Failover between gateways (SPEC §9): a refusal goes to the next gateway at once; a
timeout does not, until a receipt says undelivered or none came in time; a gateway that
keeps failing is skipped for a cool-down, its breaker shared through Redis, and taken
back when it answers."""

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from portal import sweeps
from portal.clock import utcnow
from portal.delivery import failover
from portal.delivery.failover import Failover
from portal.delivery.gateways import Accepted, TimedOut
from portal.delivery.texts import Text
from portal.extensions import db
from portal.models import MessageStatus, SmsMessage, Verification
from portal.protection.personal_data import verification_code, verification_phone
from tests.cloud_standins import (
    ALIYUN_KEY,
    TENCENT_KEY,
    AliyunStandIn,
    TencentStandIn,
    aliyun_settings,
    tencent_settings,
)
from tests.test_gateways import aliyun, tencent

TOKEN = "receipt-token-for-tests"


def text(n: int) -> Text:
    return Text(f"sms-{n}", "13900000001", "…", "123456", "tianjin/v/GcFVVRCRSwgvhkBY")


def test_a_refusal_goes_to_the_next_gateway_at_once():
    counted = {outcome: _sends(gateway, outcome) for gateway, outcome in COUNTED}
    with (
        AliyunStandIn(*ALIYUN_KEY, then="refuse") as first,
        TencentStandIn(*TENCENT_KEY) as second,
    ):
        accepted = Failover([aliyun(first), tencent(second)], None).send(text(1))

    assert accepted == Accepted("tencent", second.sent[0].gateway_id)
    assert [s.behaviour for s in first.sent] == ["refuse"]
    assert {o: _sends(g, o) - counted[o] for g, o in COUNTED} == {"refused": 1, "accepted": 1}


COUNTED = [("aliyun", "refused"), ("tencent", "accepted")]


def _sends(gateway: str, outcome: str) -> float:
    labels = {"gateway": gateway, "outcome": outcome}
    return REGISTRY.get_sample_value("portal_sms_gateway_sends_total", labels) or 0


def test_a_timeout_is_not_sent_through_the_next_gateway():
    with (
        AliyunStandIn(*ALIYUN_KEY, then="slow", slow_seconds=1.0) as first,
        TencentStandIn(*TENCENT_KEY) as second,
    ):
        chain = Failover([aliyun(first, timeout=0.3), tencent(second)], None)
        with pytest.raises(TimedOut):
            chain.send(text(1))

    assert len(first.sent) == 1
    assert second.sent == []


def test_a_gateway_that_keeps_failing_is_skipped_then_taken_back(redis_connection):
    with (
        AliyunStandIn(*ALIYUN_KEY, then="unavailable") as first,
        TencentStandIn(*TENCENT_KEY) as second,
    ):
        chain = Failover([aliyun(first), tencent(second)], redis_connection)
        for n in range(failover.FAIL_MAX):
            assert chain.send(text(n)).gateway == "tencent"
        assert len(first.sent) == failover.FAIL_MAX

        another_process = Failover([aliyun(first), tencent(second)], redis_connection)
        for n in range(3):
            assert chain.send(text(10 + n)).gateway == "tencent"
            assert another_process.send(text(20 + n)).gateway == "tencent"
        assert len(first.sent) == failover.FAIL_MAX  # skipped: not asked at all

        first.then("ok")
        _cool_down_passed(redis_connection, "aliyun")
        assert chain.send(text(30)).gateway == "aliyun"  # the trial text
        assert another_process.send(text(31)).gateway == "aliyun"
        assert len(second.sent) == failover.FAIL_MAX + 6


@pytest.mark.parametrize("first_gateway", ["aliyun", "tencent"])
def test_refusals_for_the_phone_never_get_a_gateway_skipped(redis_connection, first_gateway):
    """The carriers' per-phone caps (isv.BUSINESS_LIMIT_CONTROL, LimitExceeded.PhoneNumber…)
    are answers from a working gateway: however many, it is still asked for every text."""
    stand_ins = {
        "aliyun": lambda then: AliyunStandIn(*ALIYUN_KEY, then=then),
        "tencent": lambda then: TencentStandIn(*TENCENT_KEY, then=then),
    }
    adapters = {"aliyun": aliyun, "tencent": tencent}
    other = "tencent" if first_gateway == "aliyun" else "aliyun"
    with stand_ins[first_gateway]("refuse") as first, stand_ins[other]("ok") as second:
        chain = Failover(
            [adapters[first_gateway](first), adapters[other](second)], redis_connection
        )
        for n in range(failover.FAIL_MAX * 2):
            assert chain.send(text(n)).gateway == other

    assert len(first.sent) == failover.FAIL_MAX * 2  # asked every time, never skipped
    assert {s.behaviour for s in first.sent} == {"refuse"}


def test_a_gateway_that_fails_its_trial_text_is_skipped_again(redis_connection):
    with (
        AliyunStandIn(*ALIYUN_KEY, then="unavailable") as first,
        TencentStandIn(*TENCENT_KEY) as second,
    ):
        chain = Failover([aliyun(first), tencent(second)], redis_connection)
        for n in range(failover.FAIL_MAX):
            chain.send(text(n))
        _cool_down_passed(redis_connection, "aliyun")

        assert chain.send(text(10)).gateway == "tencent"  # the trial, refused
        assert chain.send(text(11)).gateway == "tencent"  # skipped again
        assert len(first.sent) == failover.FAIL_MAX + 1


def _cool_down_passed(redis, gateway: str) -> None:
    """The breaker opened longer ago than its cool-down (its state is shared through Redis)."""
    opened = int(time.time()) - failover.COOL_DOWN_SECONDS - 1
    redis.set(f"portal:gateway:{gateway}:pybreaker:opened_at", opened)


@pytest.fixture
def stand_ins():
    with AliyunStandIn(*ALIYUN_KEY) as first, TencentStandIn(*TENCENT_KEY) as second:
        yield first, second


@pytest.fixture
def on_both(env, stand_ins):
    first, second = stand_ins
    env.update(
        SMS_BACKEND="aliyun,tencent",
        SMS_RECEIPT_TOKEN=TOKEN,
        **aliyun_settings(first),
        **tencent_settings(second),
    )
    return stand_ins


def _messages() -> list[SmsMessage]:
    db.session.expire_all()
    return db.session.scalars(sa.select(SmsMessage).order_by(SmsMessage.id)).all()


def _codes() -> dict[str, str]:
    return {
        verification_phone(v): verification_code(v)
        for v in db.session.scalars(sa.select(Verification))
    }


def test_after_a_timeout_the_text_is_sent_and_goes_elsewhere_only_without_a_receipt(
    on_both, app, client, submit_filing
):
    first, second = on_both
    first.then("slow")
    first.slow_seconds = 0.6
    app.extensions["sms"] = Failover([aliyun(first, timeout=0.2), tencent(second)], None)
    filing = submit_filing()
    timed_out = _messages()
    assert [(m.status, m.gateway, m.gateway_message_id) for m in timed_out] == [
        (MessageStatus.SENT, "aliyun", None)
    ] * 2
    assert filing["deadline"] is not None
    sent_at = timed_out[0].sent_at

    assert sweeps.run_due(sent_at + timedelta(seconds=119))["rerouted"] == 0
    assert second.sent == []
    # The first gateway's receipt for one of them comes, naming our id (it never gave its own).
    confirmed = timed_out[0]
    receipt = [_aliyun_report(f"{confirmed.id}-biz", f"sms-{confirmed.id}", success=True)]
    assert client.post(f"/sms/receipts/aliyun/{TOKEN}", json=receipt).status_code == 200

    assert sweeps.run_due(sent_at + timedelta(seconds=121))["rerouted"] == 1
    (resent,) = second.sent
    other = timed_out[1]
    phone = verification_phone(other.verification)
    assert resent.params["PhoneNumberSet"] == [f"+86{phone}"]
    assert resent.params["TemplateParamSet"][0] == _codes()[phone]
    assert sweeps.run_due(sent_at + timedelta(seconds=300))["rerouted"] == 0
    messages = _messages()
    assert (messages[0].delivery, messages[0].gateway_message_id) == (
        "delivered",
        f"{confirmed.id}-biz",
    )
    assert (messages[2].rerouted_from, messages[2].gateway, messages[2].status) == (
        other.id,
        "tencent",
        MessageStatus.SENT,
    )


def test_an_undelivered_receipt_sends_the_text_once_through_the_next_gateway(
    on_both, client, submit_filing, provider
):
    first, second = on_both
    filing = submit_filing()
    original = _messages()[0]
    phone = verification_phone(original.verification)
    report = _aliyun_report(original.gateway_message_id, f"sms-{original.id}", success=False)

    assert client.post(f"/sms/receipts/aliyun/{TOKEN}", json=[report]).status_code == 200

    (resent,) = second.sent
    assert resent.params["PhoneNumberSet"] == [f"+86{phone}"]
    assert resent.params["TemplateParamSet"][0] == _codes()[phone]
    rerouted = _messages()[-1]
    assert rerouted.rerouted_from == original.id
    status = {"sid": rerouted.gateway_message_id, "report_status": "FAIL", "errmsg": "MK:0001"}
    assert client.post(f"/sms/receipts/tencent/{TOKEN}", json=[status]).status_code == 200
    assert sweeps.run_due(utcnow() + timedelta(hours=1))["rerouted"] == 0
    assert len(second.sent) == 1 and len(first.sent) == 2
    described = client.get(f"/api/v1/filings/{filing['id']}", headers=provider[1]).get_json()
    deliveries = {v["phone"][-4:]: v["delivery"] for v in described["verifications"]}
    assert deliveries == {
        phone[-4:]: "undelivered",
        "0002" if phone.endswith("1") else "0001": "sent",
    }


def _aliyun_report(biz_id: str, out_id: str, success: bool) -> dict:
    return {
        "phone_number": "13900000001",
        "send_time": "2026-12-01 10:00:00",
        "report_time": "2026-12-01 10:00:05",
        "success": success,
        "err_code": "DELIVERED" if success else "MK:0001",
        "err_msg": "用户接收成功" if success else "失败",
        "sms_size": "1",
        "biz_id": biz_id,
        "out_id": out_id,
    }


def test_an_undelivered_receipt_resends_nothing_once_the_code_is_no_longer_pending(
    on_both, client, submit_filing
):
    first, second = on_both
    submit_filing()
    original = _messages()[0]
    original.verification.status = "verified"
    db.session.commit()
    report = _aliyun_report(original.gateway_message_id, f"sms-{original.id}", success=False)

    assert client.post(f"/sms/receipts/aliyun/{TOKEN}", json=[report]).status_code == 200

    assert second.sent == []
    assert [m.delivery for m in _messages()] == ["undelivered", None]


@pytest.fixture
def on_aliyun_only(env, stand_ins):
    env.update(SMS_BACKEND="aliyun", SMS_RECEIPT_TOKEN=TOKEN, **aliyun_settings(stand_ins[0]))
    return stand_ins[0]


def test_with_one_gateway_an_undelivered_text_goes_nowhere_else(
    on_aliyun_only, client, submit_filing
):
    submit_filing()
    original = _messages()[0]
    report = _aliyun_report(original.gateway_message_id, f"sms-{original.id}", success=False)

    assert client.post(f"/sms/receipts/aliyun/{TOKEN}", json=[report]).status_code == 200

    assert len(on_aliyun_only.sent) == 2 and len(_messages()) == 2
