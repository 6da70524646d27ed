"""The applicant forms. Field rules follow SPEC §5; their messages live in portal.messages."""

import re
import unicodedata

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import InputRequired, Regexp

from portal.messages import FIELD_ERRORS
from portal.protection.csrf_tokens import KeptTokenCSRF
from portal.protection.personal_data import ID_LAST6_PATTERN, PHONE_PATTERN


def _clean(value: str | None) -> str | None:
    """Full-width input (０–９, Ｘ from a Chinese IME) is read as the ASCII it stands for."""
    if not isinstance(value, str):
        return value
    return unicodedata.normalize("NFKC", value).strip().upper()


def _field(label: str, pattern: str, error: str) -> StringField:
    return StringField(
        label,
        filters=[_clean],
        validators=[InputRequired(error), Regexp(pattern, re.ASCII, message=error)],
    )


class CaptchaFields(FlaskForm):
    class Meta:
        csrf_class = KeptTokenCSRF  # signed once a minute, not on every page

    captcha_id = HiddenField()
    captcha = StringField(
        "图形验证码", filters=[_clean], validators=[InputRequired(FIELD_ERRORS["captcha_required"])]
    )


class VerifyForm(CaptchaFields):
    code = _field("验证码", r"^[0-9]{6}$", FIELD_ERRORS["code_format"])
    phone = _field("手机号码", PHONE_PATTERN, FIELD_ERRORS["phone_format"])
    id_last6 = _field("证件号码后六位", ID_LAST6_PATTERN, FIELD_ERRORS["id_last6_format"])


class ResendForm(CaptchaFields):
    phone = _field("手机号码", PHONE_PATTERN, FIELD_ERRORS["phone_format"])
    id_last6 = _field("证件号码后六位", ID_LAST6_PATTERN, FIELD_ERRORS["id_last6_format"])


class LinkForm(CaptchaFields):
    """The personal link's form: its token stands for the phone and the code."""

    id_last6 = _field("证件号码后六位", ID_LAST6_PATTERN, FIELD_ERRORS["id_last6_format"])
