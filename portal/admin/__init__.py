"""The admin console at /admin/: province admins run their province, national admins the rollout.

Views live by concern: `auth` (sign-in, password), `console` (dashboard, filings,
reviews, audit log), `national` (rollout table, providers, accounts). Every view
but sign-in needs a signed-in admin; national views need a national admin; the
tenant filter is switched on for the request in `before_request` (see `tenancy`).
"""

import functools
from collections.abc import Callable
from datetime import datetime

from flask import Blueprint, abort, redirect, request, url_for
from flask_login import LoginManager, current_user

from portal.admin.tenancy import serve_as
from portal.clock import SHANGHAI
from portal.messages import CONSOLE, LABELS, ROLE_LABELS, Outcome

bp = Blueprint("admin", __name__, url_prefix="/admin")
login_manager = LoginManager()
login_manager.login_view = "admin.sign_in"
login_manager.login_message = CONSOLE["sign_in_required"]

PUBLIC_ENDPOINTS = {"admin.sign_in"}


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


from portal.admin import auth, console, national  # noqa: E402, F401  (their routes join bp)
