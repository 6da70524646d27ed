"""`aliyun`: Alibaba Cloud SMS, SendSms 2017-05-25, through its official SDK.

The text is the template `ALIYUN_SMS_TEMPLATE_CODE` signed `ALIYUN_SMS_SIGN_NAME`, with
`TemplateParam` `{"code", "link"}`; `OutId` is our message id, which receipts carry back
beside the `BizId` (docs/sms-gateways.md).
"""

import json

from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_dysmsapi20170525.models import SendSmsRequest
from alibabacloud_tea_openapi.models import Config
from darabonba.runtime import RuntimeOptions
from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter

from portal.delivery.gateways.interface import (
    CONNECT_TIMEOUT_SECONDS,
    TIMEOUT_SECONDS,
    Accepted,
    Receipt,
    ReceiptFormat,
    Refused,
    RefusedForThePhone,
    failure,
    our_message_id,
    settings_of,
    shanghai_time,
)
from portal.delivery.texts import Text

DEFAULT_ENDPOINT = "dysmsapi.aliyuncs.com"
# Refusals about the phone, not the gateway: its flow control per phone (1 a minute, 5 an
# hour, 10 a day for one sign name), a number it does not take.
PHONE_REFUSALS = {
    "isv.BUSINESS_LIMIT_CONTROL",
    "isv.MOBILE_NUMBER_ILLEGAL",
    "isv.MOBILE_COUNT_OVER_LIMIT",
}


class AliyunGateway:
    name = "aliyun"

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        template_code: str,
        endpoint: str = DEFAULT_ENDPOINT,
        protocol: str = "https",
        timeout: float = TIMEOUT_SECONDS,
    ):
        self.sign_name = sign_name
        self.template_code = template_code
        self.client = Client(
            Config(
                access_key_id=access_key_id,
                access_key_secret=access_key_secret,
                endpoint=endpoint,
                protocol=protocol.upper(),
            )
        )
        self.runtime = RuntimeOptions(
            read_timeout=int(timeout * 1000),
            connect_timeout=int(min(timeout, CONNECT_TIMEOUT_SECONDS) * 1000),
        )

    def send(self, text: Text) -> Accepted:
        request = SendSmsRequest(
            phone_numbers=text.phone,
            sign_name=self.sign_name,
            template_code=self.template_code,
            template_param=json.dumps({"code": text.code, "link": text.link}),
            out_id=text.message_id,
        )
        try:
            answer = self.client.send_sms_with_options(request, self.runtime).body
        except Exception as error:
            raise failure(self.name, error) from error
        if answer.code != "OK":
            refused = RefusedForThePhone if answer.code in PHONE_REFUSALS else Refused
            raise refused(f"{self.name}: {answer.code} {answer.message}"[:500])
        return Accepted(self.name, answer.biz_id)


def from_config(config: dict) -> AliyunGateway:
    settings = {
        "access_key_id": "ALIYUN_SMS_ACCESS_KEY_ID",
        "access_key_secret": "ALIYUN_SMS_ACCESS_KEY_SECRET",
        "sign_name": "ALIYUN_SMS_SIGN_NAME",
        "template_code": "ALIYUN_SMS_TEMPLATE_CODE",
    }
    return AliyunGateway(
        **settings_of(config, "aliyun", settings),
        endpoint=config.get("ALIYUN_SMS_ENDPOINT") or DEFAULT_ENDPOINT,
        protocol=config.get("ALIYUN_SMS_PROTOCOL") or "https",
    )


class SmsReport(BaseModel):
    """One entry of the SmsReport array Alibaba Cloud pushes (other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    biz_id: str = Field(min_length=1, max_length=64)
    out_id: str | None = Field(default=None, max_length=64)
    success: StrictBool
    err_code: str = Field(default="", max_length=64)
    report_time: str | None = None

    def receipt(self) -> Receipt:
        return Receipt(
            gateway_id=self.biz_id,
            message_id=our_message_id(self.out_id),
            delivered=self.success,
            code=self.err_code,
            at=shanghai_time(self.report_time),
        )


_REPORTS = TypeAdapter(list[SmsReport])


def parse_receipts(body: bytes) -> list[Receipt]:
    return [report.receipt() for report in _REPORTS.validate_json(body)]


RECEIPT_FORMAT = ReceiptFormat(
    parse=parse_receipts,
    accepted={"code": 0, "msg": "接收成功"},
    refused=lambda detail: {"code": 1, "msg": detail},
)
