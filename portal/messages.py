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
    "id_last6_format": "请输入证件号码后六位（6 位数字或字母）",
    "captcha_required": "请输入图形验证码",
}

PENDING_PHONES_LABEL = "尚待核验的手机号码："
# Said in the result region when a form comes back with field errors, so it is announced too.
FORM_ERRORS_LABEL = "请更正标出的内容后重新提交。"
# In place of the link's form once its code is verified: the link works once.
LINK_USED_LABEL = "此链接对应的手机号码已核验，链接已失效，无需再次提交。"

# The link is the person's own (SPEC §5), set off by spaces so that phones end it there.
# Within two SMS segments (134 UCS-2 characters) for every province while PUBLIC_BASE_URL
# has at most 46 characters (tests/test_personal_link.py, docs/security.md).
SMS_TEXT = (
    "【{authority}】您的备案短信核验码为{code}，{hours}小时内有效。"
    "请打开 {link} 填写证件号码后六位完成核验。"
)

PROVINCE_NOT_OPEN = "该省（区、市）尚未开通备案短信核验。"
PAGE_NOT_FOUND = "页面不存在。"
BAD_REQUEST = "请求无效，请检查网址或填写的内容后重试。"
FORBIDDEN = "您没有权限访问该页面。"

# The admin console's messages.
CONSOLE = {
    "sign_in_required": "请先登录。",
    "sign_in_failed": "登录失败：用户名、密码或动态口令不正确，或尝试过于频繁，请稍后再试。",
    "password_too_short": "密码至少 {length} 个字符。",
    "password_too_simple": "密码须包含小写字母、大写字母、数字、其他字符中的至少三种。",
    "password_has_username": "密码不能包含用户名。",
    "password_reused": "新密码不能与最近 {count} 次使用过的密码相同。",
    "password_changed": "密码已修改，其他会话已退出。",
    "wrong_current_password": "当前密码错误。",
    "unknown_province": "没有这个省份：{slug}。",
    "username_taken": "用户名 {username} 已被使用。",
    "approved": "已审核通过，网站已备案。",
    "rejected": "已驳回。",
    "not_under_review": "该备案不在审核中，无法操作。",
    "reason_required": "请填写理由。",
    "resent": "验证码已重发。",
    "saved": "已保存。",
    "provider_created": "接入商已创建。API 密钥和 Webhook 密钥只显示这一次，请妥善保存。",
    "key_rotated": "新的 API 密钥只显示这一次，旧密钥已失效。",
    "secret_rotated": "新的 Webhook 密钥只显示这一次。",
    "account_created": "账号已创建。",
    "totp_issuer": "备案短信核验管理",
    "wrong_code": "动态口令不正确，请输入验证器当前显示的 6 位数字。",
    "recovery_code_used": "您使用了一个恢复码登录，还剩 {left} 个；如验证器已丢失，请联系全国管理员重置双因素认证。",
    "two_factor_reset": "已重置该账号的双因素认证，其会话已全部退出；该账号下次登录时重新绑定验证器。",
    "date_out_of_range": "请输入 {first} 至 {last} 之间的日期。",
    "count": "共 {count} 条",
    "count_over_cap": "{cap:,} 条以上",
    "personal_data_erased": (
        "该备案办结已超过个人信息保存期限，负责人的姓名和手机号码已于 {date} 按保存期限规定删除，"
        "仅保留脱敏信息。"
    ),
}

# Why the console refuses a callback URL (portal/protection/callback_urls.py), by refusal.
CALLBACK_REFUSED = {
    "INVALID": "请填写以 http:// 或 https:// 开头的完整网址（不含用户名和密码）。",
    "NOT_HTTPS": "回调地址必须使用 https。",
    "PRIVATE": "回调地址不能指向本机、内网、链路本地或云服务元数据地址。",
}

# How statuses and kinds read in the console.
LABELS = {
    "pending_verification": "待短信核验",
    "under_review": "管局审核中",
    "approved": "审核通过",
    "rejected": "已驳回",
    "returned": "已退回",
    "expired": "已超时",
    "verification_failed": "核验失败",
    "pending": "待核验",
    "verified": "已核验",
    "failed": "失败",
    "queued": "待发送",
    "sent": "已发送",
    # A text held back by the pacing per phone (SPEC §9) until the time shown after it.
    "paced": "等待发送（运营商频次限制）",
    "withdrawn": "未发送（核验已结束）",
    "initial": "首次发送",
    "resend": "手动重发",
    "noon_resend": "次日中午重发",
    "new_filing": "新增备案",
    "new_website": "新增网站",
    "new_access": "接入备案",
    "change_filing": "变更备案",
    "cancel_filing": "注销备案",
    "cancel_website": "注销网站",
    "cancel_access": "取消接入",
    "delivered": "已送达",
    "undelivered": "未送达",
    "console": "控制台",
    "file": "文件",
    "http": "HTTP 网关",
    "aliyun": "阿里云",
    "tencent": "腾讯云",
}

ROLE_LABELS = {"entity": "主体负责人", "website": "网站负责人"}

# The home page `/` (SPEC §5).
HOME = {
    "title": "备案短信核验",
    "lead": "ICP 备案提交管局审核时，备案中需核验的负责人手机号码会收到 6 位验证码。"
    "请进入备案所在省（区、市）的页面，完成短信核验或重发短信。",
    "provinces": "已开通短信核验的省（区、市）",
    "none_live": "暂无已开通短信核验的省（区、市）。",
    "console": "管局管理控制台",
    "sign_in": "工作人员登录",
}

# The development SMS inbox `/dev/sms` (never served in production).
DEV_INBOX = {
    "title": "开发短信收件箱",
    "not_file_backend": "SMS_BACKEND 为 {backend}：短信不写入本收件箱。",
    "time": "时间",
    "phone": "手机号码",
    "reference": "备案",
    "province": "省份",
    "text": "短信内容",
    "empty": "暂无短信。",
    "unknown": "—",
}

# A `change_filing`'s `change_scope`, as the console says it.
SCOPE_LABELS = {"entity": "变更主体", "website": "变更网站", "both": "变更主体和网站"}

# Audit log actions, as the console says them.
ACTION_LABELS = {
    "resend": "重发验证码",
    "approve": "审核通过",
    "reject": "驳回",
    "export_csv": "导出 CSV",
    "view_filing": "查看备案详情",
    "export_audit": "导出操作日志",
    "update_rollout": "修改开通设置",
    "update_rule": "修改备案类型核验规则",
    "create_provider": "新建接入商",
    "provider_rotate_key": "更换接入商 API 密钥",
    "provider_rotate_secret": "更换接入商 Webhook 密钥",
    "provider_toggle": "停用或启用接入商",
    "provider_callback": "修改接入商回调地址",
    "create_account": "新建账号",
    "account_reset_2fa": "重置账号双因素认证",
    "sign_in": "登录",
    "sign_out": "退出登录",
    "enrol_two_factor": "绑定验证器",
    "change_password": "修改密码",
    "account_toggle": "停用或启用账号",
}

# What an audit entry's target names ("filing 3f…", "provider 2"), longest first; and the
# word inside a resend's target ("filing 3f… phone 139****").
AUDIT_TARGET_KINDS = {
    "filing type": "备案类型",
    "filings": "备案查询",
    "filing": "备案",
    "provider": "接入商",
    "admin": "账号",
    "province": "省份",
    "audit log": "操作日志",
}
AUDIT_TARGET_PHONE = "手机号码"

# A provider's secrets, shown once.
SECRET_LABELS = {"api_key": "API 密钥", "webhook_secret": "Webhook 密钥"}

NATIONWIDE = "全国"

# How far a provider was told of a status change, in a filing's timeline.
NOTIFICATION = {
    "delivered": "已送达 {at}",
    "pending": "尚未送达，下次尝试 {at}",
    "gave_up": "未送达，已停止重试",
    "no_callback": "该接入商未设置回调地址，未通知",
}
