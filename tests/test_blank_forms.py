"""A GET of an applicant form builds no WTForms form (provinces/forms.py `BlankForm`), and
renders what one would render."""

import pytest
import sqlalchemy as sa
from flask import g, render_template, template_rendered
from flask_wtf import FlaskForm

from portal import rules_cache
from portal.extensions import db
from portal.messages import Outcome
from portal.models import Province
from portal.verification import VerifyResult
from provinces import pages
from provinces.forms import LinkForm, ResendForm, VerifyForm, blank
from tests.factories import CAPTCHA, form_fields

HTMX = {"HX-Request": "true"}
CHALLENGE = "0123456789abcdef0123456789abcdef"
FORMS = {"verify": VerifyForm, "resend": ResendForm, "link": LinkForm}
PATHS = {"verify": "/tianjin/verify", "resend": "/tianjin/resend", "link": "/tianjin/v/" + "A" * 16}


@pytest.fixture(params=["sqlite"])
def backend(request) -> str:
    """Rendering only: one database is enough."""
    return request.param


@pytest.fixture
def forms_built(monkeypatch) -> list[type]:
    """The WTForms forms built from now on, by class."""
    built, init = [], FlaskForm.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self))
        init(self, *args, **kwargs)

    monkeypatch.setattr(FlaskForm, "__init__", counting)
    return built


def test_a_get_builds_no_form_and_a_post_one(client, forms_built):
    for headers in ({}, HTMX):
        for path in ("/tianjin/verify", "/tianjin/resend"):
            assert client.get(path, headers=headers).status_code == 200
    assert client.get("/tianjin/captcha/new", headers=HTMX).status_code == 200
    assert len(forms_built) <= 3  # the first GET of each, to read its fields
    forms_built.clear()
    fields = form_fields(client.get("/tianjin/verify").get_data(as_text=True))
    assert forms_built == []
    client.post("/tianjin/verify", data={**fields, "phone": "1", "captcha": CAPTCHA})
    assert forms_built == [VerifyForm]


@pytest.mark.parametrize("page", FORMS)
@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_a_blank_form_renders_what_an_empty_wtforms_form_renders(app, page, headers):
    with app.test_request_context(PATHS[page], headers=headers):
        g.province = rules_cache.province("tianjin")
        form = FORMS[page]()
        form.captcha_id.data, form.captcha.data = CHALLENGE, ""
        rendered = pages._render(page, form, None, 200)
        assert pages._render(page, blank(FORMS[page], CHALLENGE), None, 200) == rendered
        assert CHALLENGE in rendered[0] and 'name="csrf_token"' in rendered[0]


@pytest.fixture
def templates_rendered(app) -> list[str]:
    names = []

    def record(sender, template, context, **extra):
        names.append(template.name)

    with template_rendered.connected_to(record, app):
        yield names


def test_a_blank_page_is_rendered_once_per_province_and_rules_copy(client, templates_rendered):
    """Then only its challenge id and CSRF token change; a rules change renders it again."""
    pages_seen = [client.get("/tianjin/resend").get_data(as_text=True) for _ in range(2)]
    assert templates_rendered.count("province/resend.html") == 1
    ids = [form_fields(page)["captcha_id"] for page in pages_seen]
    assert ids[0] != ids[1] and all(pages_seen[i].count(ids[i]) == 4 for i in (0, 1))
    db.session.execute(sa.update(Province).where(Province.slug == "tianjin").values(resend_limit=5))
    db.session.commit()
    assert "最多可手动重发 5 次" in client.get("/tianjin/resend").get_data(as_text=True)
    assert templates_rendered.count("province/resend.html") == 2


KEPT_OUTCOMES = [
    Outcome.NOT_FOUND,
    Outcome.CAPTCHA_WRONG,
    Outcome.TOO_MANY_ATTEMPTS,
    Outcome.ALREADY_VERIFIED,
    Outcome.ALL_VERIFIED,
    Outcome.FAILED,
    Outcome.RESEND_SENT,
    Outcome.RESEND_LIMIT_REACHED,
]
TYPED = {"code": "123456", "phone": "13900000001", "id_last6": "31002X", "captcha": ""}


@pytest.mark.parametrize("outcome", KEPT_OUTCOMES, ids=lambda outcome: outcome.name)
@pytest.mark.parametrize("page", ["verify", "resend"])
@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
@pytest.mark.parametrize("typed", [TYPED, {**TYPED, "phone": "<b>&'\"", "id_last6": "x&y"}])
def test_a_kept_answer_is_what_the_template_renders(app, outcome, page, headers, typed):
    """A POST's answer without field errors, kept per outcome with its values put in: the
    typed values (escaped, also as an unchecked form has them, a refused one's), the new
    challenge and the token, byte for byte."""
    with app.test_request_context(PATHS[page], method="POST", data=typed, headers=headers):
        g.province = rules_cache.province("tianjin")
        form = FORMS[page]()
        form.captcha_id.data = CHALLENGE
        result = VerifyResult(outcome)
        template = f"province/_{page}_form.html" if headers else f"province/{page}.html"
        expected = render_template(template, **pages._context(form, result))
        assert pages._render(page, form, result, 200)[0] == expected
        assert pages._render(page, form, result, 200)[0] == expected  # kept, the second time


def test_a_post_answer_is_rendered_once_per_outcome(client, templates_rendered):
    """Two wrong codes: one render; each answer shows its own values, challenge and token."""
    answers = []
    fields = form_fields(client.get("/tianjin/verify", headers=HTMX).get_data(as_text=True))
    templates_rendered.clear()
    for phone in ("13900000005", "13900000006"):
        values = {"code": "000000", "phone": phone, "id_last6": "000000", "captcha": CAPTCHA}
        response = client.post("/tianjin/verify", data={**fields, **values}, headers=HTMX)
        answers.append(response.get_data(as_text=True))
        fields = form_fields(answers[-1])
        assert f'value="{phone}"' in answers[-1] and fields["captcha_id"] in answers[-1]
    assert templates_rendered.count("province/_verify_form.html") == 1
    assert Outcome.NOT_FOUND.message in answers[1]
    assert 'value="13900000005"' not in answers[1]


def test_an_answer_with_field_errors_or_pending_phones_is_not_kept(app):
    with app.test_request_context(PATHS["verify"], method="POST", data={"phone": "1"}):
        form = VerifyForm()
        form.validate()
        assert not pages._keeps(form, VerifyResult(Outcome.NOT_FOUND))
    pending = VerifyResult(Outcome.VERIFIED_OTHERS_PENDING, ("139****0002",))
    with app.test_request_context(PATHS["verify"], method="POST", data=TYPED):
        form = VerifyForm()
        form.captcha_id.data = CHALLENGE
        assert not pages._keeps(form, pending)
        assert pages._keeps(form, VerifyResult(Outcome.NOT_FOUND))
