"""Sign-in, sign-out and password change."""

from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from portal import accounts
from portal.admin import bp, login_manager
from portal.admin.forms import PasswordForm, SignInForm
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import CONSOLE
from portal.models import Admin


@login_manager.user_loader
def load_admin(session_token: str) -> Admin | None:
    return db.session.scalar(
        sa.select(Admin).where(Admin.session_token == session_token, Admin.active.is_(True))
    )


@bp.route("/login", methods=["GET", "POST"], endpoint="sign_in")
def sign_in():
    form = SignInForm()
    error, status = None, 200
    if form.validate_on_submit():
        result = accounts.sign_in(
            form.username.data, form.password.data, request.remote_addr or "", utcnow()
        )
        db.session.commit()
        if result.admin is not None:
            login_user(result.admin)
            return redirect(_safe_next(request.args.get("next")))
        error, status = result.error, 401
    elif form.is_submitted():
        status = 422
    return render_template("admin/sign_in.html", form=form, error=error), status


@bp.post("/logout")
def sign_out():
    logout_user()
    return redirect(url_for("admin.sign_in"))


@bp.route("/password", methods=["GET", "POST"])
def change_password():
    form = PasswordForm()
    error = None
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user, form.current.data, form.new.data)
        except accounts.AccountError as problem:
            error = str(problem)
        else:
            db.session.commit()
            login_user(current_user._get_current_object())
            flash(CONSOLE["password_changed"])
            return redirect(url_for("admin.dashboard"))
    return render_template("admin/password.html", form=form, error=error)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: an open redirect would help phishing."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("admin.dashboard")
