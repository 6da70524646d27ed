"""The admin console at /admin/: province admins run their province, national admins the rollout.

Views live by concern: `auth` (sign-in, password), `console` (dashboard, filings,
reviews, audit log), `national` (rollout table, providers, accounts). Every view
but sign-in needs a signed-in admin; national views need a national admin; the
tenant filter is switched on for the request in `before_request` (see `tenancy`).
"""

import functools
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from flask import Blueprint, abort, g, redirect, request, url_for
from flask_login import LoginManager, current_user

from portal.admin.tenancy import serve_as
from portal.clock import SHANGHAI
from portal.extensions import db
from portal.messages import (
    ACTION_LABELS,
    AUDIT_TARGET_KINDS,
    AUDIT_TARGET_PHONE,
    CONSOLE,
    LABELS,
    NATIONWIDE,
    ROLE_LABELS,
    SCOPE_LABELS,
    SECRET_LABELS,
    Outcome,
)
from portal.models import Province

bp = Blueprint("admin", __name__, url_prefix="/admin")
login_manager = LoginManager()
login_manager.login_view = "admin.sign_in"
login_manager.login_message = CONSOLE["sign_in_required"]

# Enrolment has its own check: a password proven moments ago (see auth.enrol).
PUBLIC_ENDPOINTS = {"admin.sign_in", "admin.enrol"}
# Row ids in console URLs: PostgreSQL's `integer`. A larger number names no row (404), rather
# than failing in the database.
ROW_ID = "int(max=2147483647)"


@bp.before_request
def refuse_nul_characters():
    """No text the console looks up or stores may hold NUL: PostgreSQL refuses it outright."""
    path_values = (request.view_args or {}).values()
    given = [*request.args.listvalues(), *request.form.listvalues(), path_values]
    if any("\x00" in str(value) for values in given for value in values):
        abort(400)


@bp.before_request
def require_admin():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return redirect(url_for("admin.sign_in", next=request.full_path))
    serve_as(current_user.province_slug)
    return None


@bp.teardown_request
def leave_tenant(_error=None):
    serve_as(None)


def national_only(view: Callable) -> Callable:
    """For the national office's pages: a province admin gets 403."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.national:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


@bp.app_template_filter("label")
def label(value: str | None) -> str:
    return LABELS.get(value, value) if value else ""


@bp.app_template_filter("shanghai")
def shanghai(moment: datetime | None) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"


@bp.app_template_filter("outcome")
def outcome_message(name: str) -> str:
    """A recorded verify outcome, as the applicant read it."""
    return Outcome[name].message if name in Outcome.__members__ else name


@bp.app_template_filter("role")
def role(value: str) -> str:
    part, _, domain = value.partition(":")
    return ROLE_LABELS[part] + (f"（{domain}）" if domain else "")


@bp.app_template_filter("province")
def province_name(slug: str | None) -> str:
    """A province's name, or 全国 for none."""
    if slug is None:
        return NATIONWIDE
    return province_names().get(slug, slug)


def province_names() -> dict[str, str]:
    """Every province's name by slug, in slug order: read once a request."""
    if "province_names" not in g:
        rows = db.session.execute(sa.select(Province.slug, Province.name).order_by(Province.slug))
        g.province_names = dict(rows.all())
    return g.province_names


@bp.app_template_filter("scope")
def scope(value: str) -> str:
    return SCOPE_LABELS.get(value, value)


@bp.app_template_filter("action")
def action(value: str) -> str:
    return ACTION_LABELS.get(value, value)


@bp.app_template_filter("audit_target")
def audit_target(value: str) -> str:
    """An audit entry's target, its kind in Chinese ("备案 3f…", "接入商 2")."""
    for kind, label in AUDIT_TARGET_KINDS.items():
        if value == kind or value.startswith(kind + " "):
            value = label + value.removeprefix(kind)
            break
    return value.replace(" phone ", f" {AUDIT_TARGET_PHONE} ")


@bp.app_template_filter("secret")
def secret(value: str) -> str:
    return SECRET_LABELS.get(value, value)


from portal.admin import auth, console, national  # noqa: E402, F401  (their routes join bp)
