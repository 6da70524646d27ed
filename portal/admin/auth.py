"""Sign-in with two factors, enrolment at the first sign-in, sign-out and password change."""

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import (
    Response,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user

from portal import accounts, admin_sessions, audit, two_factor
from portal.admin import bp, login_manager
from portal.admin.forms import EnrolForm, PasswordForm, SignInForm
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import CONSOLE
from portal.models import Admin
from portal.protection.limits import client_address

# Who proved their password and is enrolling: the account, until when, and where to go next.
ENROLLING = "enrolling"
ENROL_WITHIN = timedelta(minutes=10)


@login_manager.user_loader
def load_admin(session_token: str) -> Admin | None:
    return admin_sessions.resume(session_token, utcnow())


@bp.route("/login", methods=["GET", "POST"], endpoint="sign_in")
def sign_in():
    form = SignInForm()
    error, status = None, 200
    if form.validate_on_submit():
        now = utcnow()
        result = accounts.sign_in(
            form.username.data, form.password.data, form.otp.data or "", client_address(), now
        )
        if result.must_enrol:
            db.session.commit()
            session[ENROLLING] = {
                "admin_id": result.admin.id,
                "until": (now + ENROL_WITHIN).timestamp(),
                "next": request.args.get("next"),
            }
            return redirect(url_for("admin.enrol"))
        if result.admin is not None:
            if result.second_factor == "recovery":
                left = two_factor.recovery_codes_left(result.admin)
                flash(CONSOLE["recovery_code_used"].format(left=left))
            _start_session(result.admin, now)
            return redirect(_safe_next(request.args.get("next")))
        db.session.commit()
        error, status = CONSOLE["sign_in_failed"], 401
    elif form.is_submitted():
        status = 422
    return render_template("admin/sign_in.html", form=form, error=error), status


@bp.route("/enrol", methods=["GET", "POST"])
def enrol():
    """The QR code and the secret as text; one code confirms them, then the recovery codes."""
    now = utcnow()
    admin = _enrolling_admin(now)
    if admin is None:
        return redirect(url_for("admin.sign_in"))
    form = EnrolForm()
    error, status = None, 200
    if form.validate_on_submit():
        recovery_codes = two_factor.confirm(admin, form.otp.data, now)
        if recovery_codes is not None:
            _audit_own(admin, "enrol_two_factor", now)
            next_page = _safe_next(session.pop(ENROLLING)["next"])
            _start_session(admin, now)
            page = render_template(
                "admin/recovery_codes.html", recovery_codes=recovery_codes, next_page=next_page
            )
            return _not_stored(make_response(page))
        error, status = CONSOLE["wrong_code"], 422
    elif form.is_submitted():
        status = 422
    secret = two_factor.pending_secret(admin)
    db.session.commit()
    page = render_template(
        "admin/enrol.html",
        form=form,
        error=error,
        secret=secret,
        qr=two_factor.qr_data_uri(two_factor.totp_uri(admin, secret)),
    )
    return _not_stored(make_response(page, status))


@bp.post("/logout")
def sign_out():
    now = utcnow()
    admin_sessions.end(current_user.session_key, now)
    _audit_own(current_user, "sign_out", now)
    db.session.commit()
    logout_user()
    return redirect(url_for("admin.sign_in"))


@bp.route("/password", methods=["GET", "POST"])
def change_password():
    form = PasswordForm()
    error = None
    if form.validate_on_submit():
        now = utcnow()
        try:
            accounts.change_password(current_user, form.current.data, form.new.data, now)
        except accounts.AccountError as problem:
            error = str(problem)
        else:
            _audit_own(current_user, "change_password", now)
            db.session.commit()
            flash(CONSOLE["password_changed"])
            return redirect(url_for("admin.dashboard"))
    return render_template("admin/password.html", form=form, error=error)


def _start_session(admin: Admin, now: datetime) -> None:
    admin_sessions.start(admin, now)
    _audit_own(admin, "sign_in", now)
    db.session.commit()
    login_user(admin)


def _audit_own(admin: Admin, action: str, now: datetime) -> None:
    """An entry about the admin's own account (sign-in, sign-out, enrolment, password)."""
    audit.record(admin, action, f"admin {admin.username}", now, province_slug=admin.province_slug)


def _enrolling_admin(now: datetime) -> Admin | None:
    pending = session.get(ENROLLING)
    if not pending or pending["until"] < now.timestamp():
        return None
    admin = db.session.get(Admin, pending["admin_id"])
    if admin is None or not admin.active or admin.enrolled:
        return None
    return admin


def _not_stored(response: Response) -> Response:
    """A secret or recovery codes on the page: no cache keeps them."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _safe_next(target: str | None) -> str:
    """Only a path on this site: an open redirect would help phishing."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("admin.dashboard")
