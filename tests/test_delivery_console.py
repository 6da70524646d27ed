"""The console shows each text's gateway and receipt (filing timeline) and, on the dashboard,
the delivery rate per gateway and the texts still without a receipt, per province."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import SmsMessage, Verification
from tests.cloud_standins import ALIYUN_KEY, AliyunStandIn, aliyun_settings
from tests.factories import new_filing_body
from tests.test_admin import admins, sign_in  # noqa: F401 (admins: the fixture used below)
from tests.test_receipts import TOKEN, receipt


@pytest.fixture
def on_aliyun(env):
    with AliyunStandIn(*ALIYUN_KEY) as stand_in:
        env.update(SMS_BACKEND="aliyun", SMS_RECEIPT_TOKEN=TOKEN, **aliyun_settings(stand_in))
        yield stand_in


def _texts(province: str) -> list[SmsMessage]:
    db.session.expire_all()
    return db.session.scalars(
        sa.select(SmsMessage)
        .join(Verification)
        .where(Verification.province_slug == province)
        .order_by(SmsMessage.id)
    ).all()


@pytest.mark.usefixtures("on_aliyun", "admins")
def test_the_dashboard_shows_delivery_per_gateway_for_the_admins_province(
    client,
    submit_filing,
):
    submit_filing()
    submit_filing(new_filing_body("GS-1", province="gansu"))
    delivered, undelivered = _texts("tianjin")
    body = [receipt("aliyun", delivered, True), receipt("aliyun", undelivered, False)]
    assert client.post(f"/sms/receipts/aliyun/{TOKEN}", json=body).status_code == 200
    gansu_text = _texts("gansu")[0]
    gansu_text.sent_at -= timedelta(minutes=11)
    db.session.commit()

    sign_in(client, "tj-admin")
    page = client.get("/admin/").get_data(as_text=True)

    hour_row = "<td>阿里云</td><td>近 1 小时</td><td>2</td><td>1</td><td>1</td>"
    assert hour_row in page and "<td>0</td><td>50.0%</td>" in page
    assert "已发送 10 分钟仍无回执的短信" in page
    assert gansu_text.verification.filing_id not in page

    sign_in(client, "gs-admin")
    page = client.get("/admin/").get_data(as_text=True)
    assert "<td>阿里云</td><td>近 1 小时</td><td>2</td><td>0</td><td>0</td>" in page
    assert f"/admin/filings/{gansu_text.verification.filing_id}" in page


@pytest.mark.usefixtures("on_aliyun", "admins")
def test_the_timeline_shows_each_texts_gateway_and_receipt(
    client,
    submit_filing,
):
    filing = submit_filing()
    delivered, _ = _texts("tianjin")
    client.post(f"/sms/receipts/aliyun/{TOKEN}", json=[receipt("aliyun", delivered, True)])

    sign_in(client, "tj-admin")
    page = client.get(f"/admin/filings/{filing['id']}").get_data(as_text=True)

    assert page.count("经阿里云") == 2
    assert "回执：已送达（DELIVERED，2026-12-01 10:00:07" in page
