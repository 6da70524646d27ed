"""The applicant pages, one blueprint registered per province (`/<slug>/…`).

Each page works as a full page without JavaScript; an htmx request gets only the
form fragment, with validation errors as 422 so htmx swaps them in.
"""

import functools
import re
import secrets
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import escape

from portal import captchas, monitoring, rules_cache
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import (
    FORM_ERRORS_LABEL,
    LINK_USED_LABEL,
    PENDING_PHONES_LABEL,
    PROVINCE_NOT_OPEN,
    SUCCESSES,
    Outcome,
)
from portal.models import VerifyAttempt
from portal.protection import limits
from portal.protection.personal_data import mask_address
from portal.resend import resend
from portal.verification import VerifyResult, live_link, verify, verify_by_link
from provinces.forms import BlankForm, CaptchaFields, LinkForm, ResendForm, VerifyForm, blank

bp = Blueprint("applicant", __name__)


# A captcha's image or sound is served only to the session whose (live) page made the
# challenge: it needs no province, and so no database read, which keeps it a Redis read.
NEEDS_NO_PROVINCE = {"captcha_image", "captcha_audio"}


@bp.url_value_preprocessor
def load_province(endpoint, values):
    """The live date is checked on every request, from the settings this process read at most
    `rules_cache.SECONDS` ago, so a rollout change needs no restart."""
    slug = values.pop("province")
    if endpoint.rpartition(".")[2] in NEEDS_NO_PROVINCE:
        return
    province = rules_cache.province(slug)
    if province is None or not province.is_live(utcnow()):
        abort(404, PROVINCE_NOT_OPEN)
    g.province = province


@bp.get("/")
def landing():
    return render_template("province/landing.html", province=g.province)


@bp.route("/verify", methods=["GET", "POST"])
def verify_page():
    return _form_page(VerifyForm, _verify, "verify")


@bp.route("/resend", methods=["GET", "POST"])
def resend_page():
    return _form_page(ResendForm, _resend, "resend")


@bp.route("/v/<token>", methods=["GET", "POST"])
def link_page(token: str):
    """The personal link: the token stands for the phone and code. An unknown, expired or used
    token gets the same not-found answer and no form."""
    if request.method == "GET" and live_link(g.province.slug, token, utcnow()) is None:
        context = {"province": g.province, "message": Outcome.NOT_FOUND.message}
        return render_template("province/link_not_found.html", **context), 404
    return _form_page(LinkForm, _verify_by_link, "link")


def _verify(form: VerifyForm, now: datetime) -> VerifyResult:
    """Per-phone limits are taken only now, past the captcha: posts that cost nothing use up
    nothing. A wrong code takes one of the phone's misses; anything else gives it back."""
    phone = form.phone.data
    limited = (limits.VERIFY_POSTS_PER_PHONE, limits.MISSES_PER_PHONE)
    if not all(limits.take(limit, phone, now) for limit in limited):
        monitoring.count_verify(Outcome.TOO_MANY_ATTEMPTS)
        return VerifyResult(Outcome.TOO_MANY_ATTEMPTS)
    result = verify(g.province.slug, phone, form.code.data, form.id_last6.data, now)
    if result.outcome != Outcome.NOT_FOUND:
        limits.give_back(limits.MISSES_PER_PHONE, phone, now)
    return _recorded(result, now)


def _verify_by_link(form: LinkForm, now: datetime) -> VerifyResult:
    """Holding the link proves the text arrived: no per-phone limit applies."""
    token = request.view_args["token"]
    return _recorded(verify_by_link(g.province.slug, token, form.id_last6.data, now), now)


# Built once: building it (`.values(...)` per attempt) cost more than executing it.
_RECORD_ATTEMPT = sa.insert(VerifyAttempt.__table__)


def _recorded(result: VerifyResult, now: datetime) -> VerifyResult:
    """Matched or not, every attempt is recorded: the same insert on every path, so the
    answer's timing does not tell a wrong ID from a wrong code (docs/security.md). A Core
    insert: the ORM's unit of work for one row cost more than the row."""
    monitoring.count_verify(result.outcome)
    values = {
        "province_slug": g.province.slug,
        "verification_id": result.verification_id,
        "outcome": result.outcome.name,
        "client_address": mask_address(request.remote_addr or ""),
        "attempted_at": now,
    }
    db.session.execute(_RECORD_ATTEMPT, values)
    return result


def _resend(form: ResendForm, now: datetime) -> VerifyResult:
    if not limits.take(limits.RESEND_POSTS_PER_PHONE, form.phone.data, now):
        return VerifyResult(Outcome.TOO_MANY_ATTEMPTS)
    return VerifyResult(resend(g.province, form.phone.data, form.id_last6.data, now))


def _form_page(form_class: type[CaptchaFields], attempt: Callable, page: str):
    """A GET renders the blank form (`BlankForm`: no WTForms form is built for it)."""
    if request.method != "POST":
        form = blank(form_class, captchas.new_challenge(utcnow()))
        _commit_if_begun()
        return _render(page, form, None, 200)
    form = form_class()
    result, status = _submit(form, attempt)
    form.captcha_id.data = captchas.new_challenge(utcnow())
    form.captcha.data = ""
    db.session.commit()  # the attempt and the next challenge in one transaction
    return _render(page, form, result, status)


def _commit_if_begun() -> None:
    """A challenge kept in the database is committed; one kept in Redis wrote nothing, and
    SQLAlchemy's commit of an empty session (its events, ~0.1–0.2 ms) is skipped."""
    if db.session().in_transaction():
        db.session.commit()


@bp.errorhandler(limits.RateLimitExceeded)
def too_many_requests(error: limits.RateLimitExceeded):
    """A refused form keeps what was typed and its unused captcha, and says why in its result."""
    page, form_class = FORMS.get(request.endpoint.rpartition(".")[2], (None, None))
    if request.method == "POST" and form_class is not None:
        form = form_class()
        if not captchas.unused(form.captcha_id.data):
            form.captcha_id.data = captchas.new_challenge(utcnow())
            db.session.commit()
        form.captcha.data = ""
        return _render(page, form, VerifyResult(Outcome.TOO_MANY_ATTEMPTS), 429)
    message = Outcome.TOO_MANY_ATTEMPTS.message
    response = make_response(render_template("errors/page.html", message=message), 429)
    if seconds := limits.retry_after():
        response.headers["Retry-After"] = str(seconds)
    return response


def _submit(form: CaptchaFields, attempt: Callable) -> tuple[VerifyResult | None, int]:
    now = utcnow()
    if not form.validate():
        return None, 422
    if not captchas.solve(form.captcha_id.data, form.captcha.data, now):
        return VerifyResult(Outcome.CAPTCHA_WRONG), 422
    result = attempt(form, now)
    if result.outcome == Outcome.TOO_MANY_ATTEMPTS:
        return result, 429
    return result, 200


@bp.get("/captcha/<challenge_id>.png")
def captcha_image(challenge_id: str):
    return _uncached(captchas.image(challenge_id), "image/png")


@bp.get("/captcha/new")
def captcha_refresh():
    """A new challenge for the form on the page (htmx); without JS the link reloads the form."""
    if not request.headers.get("HX-Request"):
        return redirect(url_for(".verify_page"))
    form = blank(CaptchaFields, captchas.new_challenge(utcnow()))
    _commit_if_begun()
    context = {
        "form": form,
        "captcha_url": url_for(".captcha_image", challenge_id=form.captcha_id.data),
        "captcha_audio_url": url_for(".captcha_audio", challenge_id=form.captcha_id.data),
    }
    response = make_response(render_template("province/_captcha_box.html", **context))
    response.headers["Vary"] = "HX-Request"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def page_texts() -> dict:
    """The help beside the forms (which filing types are checked: rendered once per province
    and rules copy), the result region's word for a form with field errors, and what stands in
    for the link's form once it is used."""
    return {
        "filing_rules": rules_cache.checked_types,
        "form_errors_label": FORM_ERRORS_LABEL,
        "link_used_label": LINK_USED_LABEL,
        "help_section": lambda: rules_cache.rendered("province/_help.html", g.province.slug),
    }


@bp.get("/captcha/<challenge_id>.wav")
def captcha_audio(challenge_id: str):
    """The session's own challenge read aloud, for those who cannot read the image."""
    return _uncached(captchas.audio(challenge_id), "audio/wav")


def _uncached(content, mimetype: str):
    """A captcha's image or sound: only for its own session, never stored by a cache."""
    if content is None:
        abort(404)
    return Response(content.getvalue(), mimetype=mimetype, headers={"Cache-Control": "no-store"})


def _render(page: str, form: CaptchaFields | BlankForm, result: VerifyResult | None, status: int):
    htmx = request.headers.get("HX-Request") and not request.headers.get(
        "HX-History-Restore-Request"
    )
    template = f"province/_{page}_form.html" if htmx else f"province/{page}.html"
    headers = {"Vary": "HX-Request"}
    if status == 429 and (seconds := limits.retry_after()):
        headers["Retry-After"] = str(seconds)
    if page in KEPT_BLANK and isinstance(form, BlankForm):
        return _blank_page(template, form), status, headers
    if page in KEPT_BLANK and _keeps(form, result):
        return _kept_answer(template, form, result), status, headers
    return render_template(template, **_context(form, result)), status, headers


def _context(form: CaptchaFields | BlankForm, result: VerifyResult | None) -> dict:
    return {
        "province": g.province,
        "form": form,
        "result": result,
        "succeeded": result is not None and result.outcome in SUCCESSES,
        "pending_label": PENDING_PHONES_LABEL,
        "captcha_url": url_for(".captcha_image", challenge_id=form.captcha_id.data),
        "captcha_audio_url": url_for(".captcha_audio", challenge_id=form.captcha_id.data),
    }


# A GET of these pages reads only the province's settings, the rules, the challenge id and the
# CSRF token (not the link page: its URLs carry the link's token). Each is rendered once per
# province and rules copy with stand-ins for the last two, put in per request: the stand-ins
# are hex, as the ids are, and neither HTML nor URL quoting changes either.
KEPT_BLANK = {"verify", "resend"}
_ID_STAND_IN = secrets.token_hex(16)
_TOKEN_STAND_IN = secrets.token_hex(24)


def _blank_page(template: str, form: BlankForm) -> str:
    def render_with_stand_ins() -> str:
        stand_in = BlankForm(form.fields, _ID_STAND_IN, _TOKEN_STAND_IN)
        return render_template(template, **_context(stand_in, None))

    page = rules_cache.kept(("blank page", template, g.province.slug), render_with_stand_ins)
    return _put_in(
        page, {_ID_STAND_IN: form.captcha_id.data, _TOKEN_STAND_IN: form.csrf_token.current_token}
    )


# A POST's answer shows, beyond what a blank page shows, the outcome's message and the values
# typed. Without field errors or pending phones it is rendered once per province, rules copy,
# template and outcome, with a stand-in (hex) for each field's value; each answer puts its
# own values in, escaped as the template escapes them, in one pass (a value is never searched
# for a stand-in again).
_value_stand_ins: dict[str, str] = {}
# Ids and tokens as they are issued: neither HTML escaping nor URL quoting changes them.
_PLAIN = re.compile(r"[0-9A-Za-z_.-]+")


def _keeps(form: CaptchaFields, result: VerifyResult | None) -> bool:
    return (
        result is not None
        and not result.pending_phones
        and not form.errors
        and _PLAIN.fullmatch(form.captcha_id.data or "") is not None
    )


def _value_stand_in(name: str) -> str:
    return _value_stand_ins.setdefault(name, secrets.token_hex(16))


def _kept_answer(template: str, form: CaptchaFields, result: VerifyResult) -> str:
    fields = blank(type(form), _ID_STAND_IN).fields

    def render_with_stand_ins() -> str:
        stand_ins = tuple(field._replace(data=_value_stand_in(field.name)) for field in fields)
        stand_in = BlankForm(stand_ins, _ID_STAND_IN, _TOKEN_STAND_IN)
        return render_template(template, **_context(stand_in, result))

    key = ("answer", template, g.province.slug, result.outcome)
    page = rules_cache.kept(key, render_with_stand_ins)
    values = {
        _value_stand_in(field.name): str(escape(form[field.name]._value())) for field in fields
    }
    values[_ID_STAND_IN] = form.captcha_id.data
    values[_TOKEN_STAND_IN] = form.csrf_token.current_token
    return _put_in(page, values)


def _put_in(page: str, values: dict[str, str]) -> str:
    """Each stand-in of a kept page replaced by its value, in one pass."""
    return _stand_ins_pattern(tuple(values)).sub(lambda match: values[match.group()], page)


@functools.cache
def _stand_ins_pattern(stand_ins: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(stand_ins))


FORMS = {
    "verify_page": ("verify", VerifyForm),
    "resend_page": ("resend", ResendForm),
    "link_page": ("link", LinkForm),
}
