"""The applicant forms. Field rules follow SPEC §5; their messages live in portal.messages."""

import functools
import re
import unicodedata
from typing import NamedTuple

from flask_wtf import FlaskForm
from wtforms import Form, HiddenField, StringField
from wtforms.fields import Label
from wtforms.validators import InputRequired, Regexp

from portal.messages import FIELD_ERRORS
from portal.protection import csrf_tokens
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


class BlankField(NamedTuple):
    """What a template reads of a field on a GET: its name, label and value, and no errors."""

    name: str
    label: Label
    data: str = ""
    errors: tuple = ()

    @property
    def id(self) -> str:
        return self.name

    def _value(self) -> str:
        return self.data


class _Token:
    """The form's `csrf_token` as the templates read it: the session's, or a stand-in."""

    def __init__(self, stand_in: str | None) -> None:
        self._stand_in = stand_in

    @property
    def current_token(self) -> str:
        return self._stand_in or csrf_tokens.current()


class BlankForm:
    """A form as a GET shows it, its fields empty, its challenge new: what a WTForms form
    renders there, without building one (its fields, meta and CSRF field on every page)."""

    errors: dict = {}

    def __init__(
        self, fields: tuple[BlankField, ...], captcha_id: str, csrf_token: str | None = None
    ) -> None:
        self.fields = fields
        self.captcha_id = BlankField("captcha_id", Label("captcha_id", ""), captcha_id)
        self.captcha = next(field for field in fields if field.name == "captcha")
        self.csrf_token = _Token(csrf_token)

    def __iter__(self):
        return iter(self.fields)


def blank(
    form_class: type[CaptchaFields], captcha_id: str, csrf_token: str | None = None
) -> BlankForm:
    """The blank form; `csrf_token` stands in for the session's (see pages._blank_page)."""
    return BlankForm(_blank_fields(form_class), captcha_id, csrf_token)


@functools.cache
def _blank_fields(form_class: type[Form]) -> tuple[BlankField, ...]:
    """The form's fields in its order, read from one form built the first time (in a request)."""
    form = form_class(formdata=None, meta={"csrf": False})
    return tuple(BlankField(field.name, field.label) for field in form)
