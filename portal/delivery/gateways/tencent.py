"""`tencent`: Tencent Cloud SMS, SendSms 2021-01-11, through its official SDK.

The text is the template `TENCENT_SMS_TEMPLATE_ID` signed `TENCENT_SMS_SIGN_NAME`, with
`TemplateParamSet` `[code, link]`; `SessionContext` is our message id. Receipts name the
text by the `SerialNo` the answer gives (docs/sms-gateways.md).
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111.models import SendSmsRequest
from tencentcloud.sms.v20210111.sms_client import SmsClient

from portal.delivery.gateways.interface import (
    TIMEOUT_SECONDS,
    Accepted,
    Receipt,
    ReceiptFormat,
    Refused,
    RefusedForThePhone,
    failure,
    settings_of,
    shanghai_time,
)
from portal.delivery.texts import Text

DEFAULT_ENDPOINT = "sms.tencentcloudapi.com"
DEFAULT_REGION = "ap-guangzhou"
# Refusals about the phone, not the gateway: its frequency limits per phone, a number on the
# do-not-disturb list or not a phone number.
PHONE_REFUSALS = {
    "LimitExceeded.PhoneNumberThirtySecondLimit",
    "LimitExceeded.PhoneNumberOneHourLimit",
    "LimitExceeded.PhoneNumberDailyLimit",
    "LimitExceeded.PhoneNumberSameContentDailyLimit",
    "LimitExceeded.DeliveryFrequencyLimit",
    "FailedOperation.PhoneNumberInBlacklist",
    "InvalidParameterValue.IncorrectPhoneNumber",
}


class TencentGateway:
    name = "tencent"

    def __init__(
        self,
        secret_id: str,
        secret_key: str,
        sdk_app_id: str,
        sign_name: str,
        template_id: str,
        region: str = DEFAULT_REGION,
        endpoint: str = DEFAULT_ENDPOINT,
        protocol: str = "https",
        timeout: float = TIMEOUT_SECONDS,
    ):
        self.sdk_app_id = sdk_app_id
        self.sign_name = sign_name
        self.template_id = template_id
        profile = HttpProfile(
            endpoint=endpoint, protocol=protocol.lower(), reqTimeout=timeout, keepAlive=True
        )
        self.client = SmsClient(
            Credential(secret_id, secret_key), region, ClientProfile(httpProfile=profile)
        )

    def send(self, text: Text) -> Accepted:
        request = SendSmsRequest()
        request.PhoneNumberSet = [f"+86{text.phone}"]
        request.SmsSdkAppId = self.sdk_app_id
        request.SignName = self.sign_name
        request.TemplateId = self.template_id
        request.TemplateParamSet = [text.code, text.link]
        request.SessionContext = text.message_id
        try:
            status = self.client.SendSms(request).SendStatusSet[0]
        except TencentCloudSDKException as error:
            raise failure(self.name, error) from error
        if status.Code != "Ok":
            refused = RefusedForThePhone if status.Code in PHONE_REFUSALS else Refused
            raise refused(f"{self.name}: {status.Code} {status.Message}"[:500])
        return Accepted(self.name, status.SerialNo)


def from_config(config: dict) -> TencentGateway:
    settings = {
        "secret_id": "TENCENT_SMS_SECRET_ID",
        "secret_key": "TENCENT_SMS_SECRET_KEY",
        "sdk_app_id": "TENCENT_SMS_SDK_APP_ID",
        "sign_name": "TENCENT_SMS_SIGN_NAME",
        "template_id": "TENCENT_SMS_TEMPLATE_ID",
    }
    return TencentGateway(
        **settings_of(config, "tencent", settings),
        region=config.get("TENCENT_SMS_REGION") or DEFAULT_REGION,
        endpoint=config.get("TENCENT_SMS_ENDPOINT") or DEFAULT_ENDPOINT,
        protocol=config.get("TENCENT_SMS_PROTOCOL") or "https",
    )


class SmsStatus(BaseModel):
    """One entry of the status array Tencent Cloud pushes (other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    sid: str = Field(min_length=1, max_length=64)
    report_status: Literal["SUCCESS", "FAIL"]
    errmsg: str = Field(default="", max_length=64)
    user_receive_time: str | None = None

    def receipt(self) -> Receipt:
        return Receipt(
            gateway_id=self.sid,
            message_id=None,
            delivered=self.report_status == "SUCCESS",
            code=self.errmsg,
            at=shanghai_time(self.user_receive_time),
        )


_STATUSES = TypeAdapter(list[SmsStatus])


def parse_receipts(body: bytes) -> list[Receipt]:
    return [status.receipt() for status in _STATUSES.validate_json(body)]


RECEIPT_FORMAT = ReceiptFormat(
    parse=parse_receipts,
    accepted={"result": 0, "errmsg": "OK"},
    refused=lambda detail: {"result": 1, "errmsg": detail},
)
