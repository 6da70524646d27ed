"""Every Chinese text the applicant sees or receives, in one table."""

import enum


class Outcome(enum.Enum):
    """What a verify or resend attempt came to; each maps to exactly one message."""

    CAPTCHA_WRONG = "图形验证码错误"
    VERIFIED_OTHERS_PENDING = "您的短信核验完成,请等待其他核验人进行短信核验。"
    ALL_VERIFIED = "您的短信核验已全部完成,该请求将提交管局审核。"
    ALREADY_VERIFIED = "您的短信核验已完成，无需重复提交。"
    NOT_FOUND = "该条验证库里找不到记录或已完成验证。"
    FAILED = "您的短信核验失败,请联系接入商查询核验结果。"
    RESEND_SENT = "您的短信已发送成功"
    RESEND_NOTHING_PENDING = "您暂无待短信核验的备案申请，无需重发短信。"
    RESEND_LIMIT_REACHED = "重发次数已到上限，若不能及时完成短信核验，您的备案申请将会被退回。"
    TOO_MANY_ATTEMPTS = "操作过于频繁，请稍后再试。"

    @property
    def message(self) -> str:
        return self.value


SUCCESSES = {Outcome.VERIFIED_OTHERS_PENDING, Outcome.ALL_VERIFIED, Outcome.RESEND_SENT}

FIELD_ERRORS = {
    "code_format": "请输入 6 位数字验证码",
    "phone_format": "请输入 11 位中国大陆手机号码",
    "id_last6_format": "请输入证件号码后六位（数字或 X）",
    "captcha_required": "请输入图形验证码",
}

PENDING_PHONES_LABEL = "尚待核验的手机号码："

SMS_TEXT = (
    "【{authority}】您的备案短信核验码为{code}，{hours}小时内有效。"
    "请访问 {url} 输入验证码、手机号码和证件号码后六位完成核验。"
)

PROVINCE_NOT_OPEN = "该省（区、市）尚未开通备案短信核验。"
PAGE_NOT_FOUND = "页面不存在。"
