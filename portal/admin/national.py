"""The national office: the rollout table, filing-type rules, access providers, accounts."""

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from portal import accounts, audit, providers
from portal.admin import ROW_ID, bp, national_only
from portal.admin.forms import AccountForm, CallbackForm, ProviderForm, RolloutForm, RuleForm
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import CONSOLE
from portal.models import Admin, FilingTypeRule, Provider, Province


def _province_settings(province: Province) -> dict:
    return {
        "live_from": province.live_from.isoformat() if province.live_from else None,
        "code_validity_hours": province.code_validity_hours,
        "resend_limit": province.resend_limit,
    }


@bp.get("/rollout")
@national_only
def rollout():
    return render_template(
        "admin/rollout.html",
        provinces=db.session.scalars(sa.select(Province).order_by(Province.batch, Province.slug)),
        rules=db.session.scalars(sa.select(FilingTypeRule).order_by(FilingTypeRule.type)),
        form=RolloutForm(),
    )


@bp.post("/rollout/<slug>")
@national_only
def update_province(slug: str):
    province = db.get_or_404(Province, slug)
    form = RolloutForm()
    if not form.validate():
        flash(
            "；".join(
                f"{form[name].label.text}：{errors[0]}" for name, errors in form.errors.items()
            )
        )
        return redirect(url_for("admin.rollout"))
    before = _province_settings(province)
    form.populate_obj(province)
    audit.record(
        current_user,
        "update_rollout",
        f"province {slug}",
        utcnow(),
        province_slug=slug,
        before=before,
        after=_province_settings(province),
    )
    db.session.commit()
    flash(CONSOLE["saved"])
    return redirect(url_for("admin.rollout"))


@bp.post("/rules/<filing_type>")
@national_only
def update_rule(filing_type: str):
    rule = db.get_or_404(FilingTypeRule, filing_type)
    form = RuleForm()
    before = {"verification_required": rule.verification_required}
    rule.verification_required = form.verification_required.data
    audit.record(
        current_user,
        "update_rule",
        f"filing type {filing_type}",
        utcnow(),
        before=before,
        after={"verification_required": rule.verification_required},
    )
    db.session.commit()
    flash(CONSOLE["saved"])
    return redirect(url_for("admin.rollout"))


@bp.route("/providers", methods=["GET", "POST"])
@national_only
def provider_list():
    form = ProviderForm()
    shown_once = None
    if form.validate_on_submit():
        if db.session.scalar(sa.select(Provider.id).where(Provider.name == form.name.data)):
            form.name.errors.append(CONSOLE["username_taken"].format(username=form.name.data))
        else:
            now = utcnow()
            provider, api_key = providers.create(
                form.name.data, form.callback_url.data or None, now
            )
            audit.record(
                current_user,
                "create_provider",
                f"provider {provider.id}",
                now,
                after={"name": provider.name, "callback_url": provider.callback_url},
            )
            db.session.commit()
            shown_once = {"api_key": api_key, "webhook_secret": providers.webhook_secret(provider)}
            flash(CONSOLE["provider_created"])
    return render_template(
        "admin/providers.html",
        providers=db.session.scalars(sa.select(Provider).order_by(Provider.name)),
        form=form,
        callback_form=CallbackForm(),
        shown_once=shown_once,
    )


@bp.post(
    f"/providers/<{ROW_ID}:provider_id>/<any(rotate_key, rotate_secret, toggle, callback):action>"
)
@national_only
def provider_action(provider_id: int, action: str):
    provider = db.get_or_404(Provider, provider_id)
    before = {"active": provider.active, "callback_url": provider.callback_url}
    shown_once = None
    if action == "rotate_key":
        shown_once = {"api_key": providers.rotate_key(provider)}
        flash(CONSOLE["key_rotated"])
    elif action == "rotate_secret":
        shown_once = {"webhook_secret": providers.rotate_secret(provider)}
        flash(CONSOLE["secret_rotated"])
    elif action == "toggle":
        provider.active = not provider.active
    else:
        form = CallbackForm()
        if not form.validate():
            flash("；".join(errors[0] for errors in form.errors.values()))
            return redirect(url_for("admin.provider_list"))
        provider.callback_url = form.callback_url.data or None
    audit.record(
        current_user,
        f"provider_{action}",
        f"provider {provider.id}",
        utcnow(),
        before=before,
        after={"active": provider.active, "callback_url": provider.callback_url},
    )
    db.session.commit()
    if shown_once:
        return render_template("admin/shown_once.html", provider=provider, shown_once=shown_once)
    return redirect(url_for("admin.provider_list"))


@bp.route("/accounts", methods=["GET", "POST"])
@national_only
def account_list():
    form = AccountForm()
    form.province.choices = [SelectChoice("national", "全国管理员")] + [
        SelectChoice(p.slug, p.authority)
        for p in db.session.scalars(sa.select(Province).order_by(Province.slug))
    ]
    error = None
    if form.validate_on_submit():
        province = None if form.province.data == "national" else form.province.data
        now = utcnow()
        try:
            admin = accounts.create(form.username.data, form.password.data, province, now)
        except accounts.AccountError as problem:
            error = str(problem)
        else:
            audit.record(
                current_user,
                "create_account",
                f"admin {admin.username}",
                now,
                province_slug=province,
                after={"username": admin.username, "province": province},
            )
            db.session.commit()
            flash(CONSOLE["account_created"])
            return redirect(url_for("admin.account_list"))
    return render_template(
        "admin/accounts.html",
        admins=db.session.scalars(sa.select(Admin).order_by(Admin.username)),
        form=form,
        error=error,
    )


@bp.post(f"/accounts/<{ROW_ID}:admin_id>/<any(reset_2fa, toggle):action>")
@national_only
def account_action(admin_id: int, action: str):
    admin = db.get_or_404(Admin, admin_id)
    if admin.id == current_user.id:
        abort(403)  # one's own account is neither disabled nor reset from here
    now = utcnow()
    before = {"active": admin.active, "enrolled": admin.enrolled}
    if action == "reset_2fa":
        accounts.reset_two_factor(admin, now)
        flash(CONSOLE["two_factor_reset"])
    else:
        admin.active = not admin.active
    audit.record(
        current_user,
        f"account_{action}",
        f"admin {admin.username}",
        now,
        province_slug=admin.province_slug,
        before=before,
        after={"active": admin.active, "enrolled": admin.enrolled},
    )
    db.session.commit()
    return redirect(url_for("admin.account_list"))
