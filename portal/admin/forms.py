"""The console's forms."""

from datetime import date

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.meta import DefaultMeta
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from portal.messages import CALLBACK_REFUSED, CONSOLE, LABELS
from portal.models import FilingStatus
from portal.protection import callback_urls


def public_callback_url(_form, field) -> None:
    """A callback URL the portal may post to (portal/protection/callback_urls.py)."""
    try:
        callback_urls.check_saved(field.data)
    except callback_urls.Refused as refused:
        raise ValidationError(CALLBACK_REFUSED[refused.refusal.name]) from refused


class ConsoleForm(FlaskForm):
    """WTForms' own messages ("Not a valid date value.") in its Chinese translation."""

    class Meta:
        locales = ["zh"]

        def get_translations(self, form):
            # Flask-WTF would look for Flask-Babel, which the portal does not use.
            return DefaultMeta.get_translations(self, form)


class SignInForm(ConsoleForm):
    username = StringField("用户名", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("密码", validators=[DataRequired(), Length(max=256)])
    # Empty for an account that has not enrolled yet: it enrols after the password.
    otp = StringField("动态口令或恢复码", validators=[Optional(), Length(max=64)])


class EnrolForm(FlaskForm):
    otp = StringField("动态口令", validators=[DataRequired(), Length(max=16)])


class PasswordForm(ConsoleForm):
    current = PasswordField("当前密码", validators=[DataRequired()])
    new = PasswordField("新密码", validators=[DataRequired(), Length(max=256)])


class ReasonForm(ConsoleForm):
    reason = TextAreaField("理由", validators=[DataRequired("请填写理由。"), Length(max=500)])


class RolloutForm(ConsoleForm):
    live_from = DateField("开通日期", validators=[Optional()])
    code_validity_hours = IntegerField(
        "验证码有效期（小时）", validators=[InputRequired(), NumberRange(1, 168)]
    )
    resend_limit = IntegerField("手动重发上限", validators=[InputRequired(), NumberRange(0, 10)])


class RuleForm(ConsoleForm):
    verification_required = BooleanField("需要短信核验")


class ProviderForm(ConsoleForm):
    name = StringField("接入商名称", validators=[DataRequired(), Length(max=128)])
    callback_url = StringField(
        "回调地址", validators=[Optional(), Length(max=2048), public_callback_url]
    )


class CallbackForm(ConsoleForm):
    callback_url = StringField(
        "回调地址", validators=[Optional(), Length(max=2048), public_callback_url]
    )


class AccountForm(ConsoleForm):
    username = StringField("用户名", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("初始密码", validators=[DataRequired(), Length(max=256)])
    province = SelectField("省份", validators=[DataRequired()])


# Search dates: from before the first province went live to far ahead. Outside, a date is a
# typing slip, and a Shanghai midnight on 0001-01-01 or 9999-12-31 is no UTC time at all.
SEARCH_DATES = (date(2017, 1, 1), date(2099, 12, 31))


def within_search_dates(_form, field) -> None:
    first, last = SEARCH_DATES
    if field.data is not None and not first <= field.data <= last:
        raise ValidationError(CONSOLE["date_out_of_range"].format(first=first, last=last))


class FilingSearchForm(ConsoleForm):
    class Meta:
        csrf = False

    reference = StringField("订单号", validators=[Optional(), Length(max=64)])
    phone = StringField(
        "手机号码", validators=[Optional(), Length(max=11)], render_kw={"inputmode": "numeric"}
    )
    status = SelectField(
        "状态",
        choices=[SelectChoice("", "全部")]
        + [SelectChoice(s.value, LABELS[s.value]) for s in FilingStatus],
        validators=[Optional()],
    )
    provider = SelectField("接入商", coerce=str, validators=[Optional()])
    created_from = DateField("提交日期从", validators=[Optional(), within_search_dates])
    created_to = DateField("至", validators=[Optional(), within_search_dates])
    province = SelectField("省份", validators=[Optional()])


class AuditSearchForm(ConsoleForm):
    class Meta:
        csrf = False

    date_from = DateField("日期从", validators=[Optional()])
    date_to = DateField("至", validators=[Optional()])
    actor = StringField("管理员", validators=[Optional(), Length(max=64)])
    action = SelectField("操作", validators=[Optional()])
