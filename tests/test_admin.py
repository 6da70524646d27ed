"""The admin console (SPEC §7): sign-in, tenancy, review, resend, rollout, providers, audit."""

import secrets
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from portal import accounts
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Admin, AuditEntry, Filing, Province, Record, SmsMessage
from portal.protection.personal_data import phone_matches
from tests.factories import ID_B, new_filing_body, principal

PASSWORD = "correct horse battery"


# A cheap hash for the fixture accounts keeps the suite fast; accounts.create is tested below.
FAST_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


@pytest.fixture
def admins(app):
    """A Tianjin admin, a Gansu admin and a national admin."""
    made = {
        key: Admin(
            username=username,
            password_hash=FAST_HASH,
            province_slug=province,
            session_token=secrets.token_urlsafe(16),
            created_at=utcnow(),
        )
        for key, username, province in [
            ("tianjin", "tj-admin", "tianjin"),
            ("gansu", "gs-admin", "gansu"),
            ("national", "boss", None),
        ]
    }
    db.session.add_all(made.values())
    db.session.commit()
    return made


def sign_in(client, username: str, password: str = PASSWORD):
    page = client.get("/admin/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    return client.post(
        "/admin/login", data={"csrf_token": token, "username": username, "password": password}
    )


def csrf(client, path: str = "/admin/") -> str:
    page = client.get(path).get_data(as_text=True)
    return page.split('name="csrf_token" value="')[1].split('"')[0]


@pytest.fixture
def tianjin_filing(submit_filing):
    return submit_filing()


@pytest.fixture
def reviewable(submit_filing, sent_codes):
    """A Tianjin filing whose two phones are verified: under review."""
    from portal import jobs
    from portal.verification import verify

    filing = submit_filing(new_filing_body("REF-REVIEW"))
    codes = sent_codes()
    verify("tianjin", "13900000001", codes["13900000001"], "011239", utcnow())
    verify("tianjin", "13900000002", codes["13900000002"], "31002X", utcnow())
    jobs.commit()
    return filing


# --- every route x every kind of visitor ---------------------------------------------------

PROVINCE_PAGES = [
    "/admin/",
    "/admin/filings",
    "/admin/filings.csv",
    "/admin/audit",
    "/admin/password",
]
NATIONAL_PAGES = ["/admin/rollout", "/admin/providers", "/admin/accounts"]


@pytest.mark.parametrize("path", PROVINCE_PAGES + NATIONAL_PAGES + ["/admin/filings/{id}"])
@pytest.mark.parametrize("visitor", ["signed_out", "own", "other", "national"])
def test_every_get_route_by_every_visitor(client, admins, tianjin_filing, path, visitor):
    path = path.format(id=tianjin_filing["id"])
    if visitor != "signed_out":
        who = {"own": "tj-admin", "other": "gs-admin", "national": "boss"}[visitor]
        assert sign_in(client, who).status_code == 302
    response = client.get(path)
    if visitor == "signed_out":
        assert response.status_code == 302
        assert "/admin/login" in response.headers["Location"]
    elif path in NATIONAL_PAGES and visitor != "national":
        assert response.status_code == 403
    elif "/filings/" in path and visitor == "other":
        assert response.status_code == 404
    else:
        assert response.status_code == 200


POSTS = [
    ("/admin/filings/{id}/verifications/{vid}/resend", {}),
    ("/admin/filings/{id}/approve", {"reason": "ok"}),
    ("/admin/filings/{id}/reject", {"reason": "no"}),
    (
        "/admin/rollout/tianjin",
        {"live_from": "2017-12-18", "code_validity_hours": "24", "resend_limit": "2"},
    ),
    ("/admin/rules/cancel_filing", {"verification_required": "y"}),
    ("/admin/providers", {"name": "新接入商"}),
    ("/admin/providers/{pid}/rotate_key", {}),
    ("/admin/accounts", {"username": "new-one", "password": PASSWORD, "province": "tianjin"}),
    ("/admin/accounts/{aid}/unlock", {}),
]


@pytest.mark.parametrize("path, data", POSTS)
@pytest.mark.parametrize("visitor", ["signed_out", "own", "other", "national"])
def test_every_post_route_by_every_visitor(
    client, admins, provider, reviewable, path, data, visitor
):
    filing = db.session.get(Filing, reviewable["id"])
    path = path.format(
        id=filing.id, vid=filing.verifications[0].id, pid=provider[0].id, aid=admins["gansu"].id
    )
    audit_before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    if visitor != "signed_out":
        who = {"own": "tj-admin", "other": "gs-admin", "national": "boss"}[visitor]
        sign_in(client, who)
        data = {**data, "csrf_token": csrf(client)}
    response = client.post(path, data=data)
    national_route = path.startswith(
        ("/admin/rollout", "/admin/rules", "/admin/providers", "/admin/accounts")
    )
    audit_after = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    if visitor == "signed_out":
        assert response.status_code in (302, 400)  # no session: sign-in redirect or CSRF refusal
        assert audit_after == audit_before
    elif national_route and visitor != "national":
        assert response.status_code == 403
        assert audit_after == audit_before
    elif not national_route and visitor == "other":
        assert response.status_code == 404
        assert audit_after == audit_before
    else:
        assert response.status_code in (200, 302)
        assert audit_after == audit_before + 1


def test_post_without_csrf_token_is_refused(client, admins, reviewable):
    sign_in(client, "tj-admin")
    response = client.post(f"/admin/filings/{reviewable['id']}/approve", data={"reason": "ok"})
    assert response.status_code == 400
    assert db.session.get(Filing, reviewable["id"]).status == "under_review"


# --- tenancy -------------------------------------------------------------------------------


def test_search_shows_only_the_admins_province(client, admins, submit_filing):
    submit_filing(new_filing_body("TJ-1"))
    submit_filing(new_filing_body("GS-1", province="gansu"))
    sign_in(client, "gs-admin")
    text = client.get("/admin/filings").get_data(as_text=True)
    assert "GS-1" in text and "TJ-1" not in text
    sign_in(client, "boss")
    text = client.get("/admin/filings").get_data(as_text=True)
    assert "GS-1" in text and "TJ-1" in text


def test_csv_export_holds_only_the_admins_province(client, admins, submit_filing):
    submit_filing(new_filing_body("TJ-1"))
    submit_filing(new_filing_body("GS-1", province="gansu"))
    sign_in(client, "tj-admin")
    response = client.get("/admin/filings.csv")
    text = response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    assert "TJ-1" in text and "GS-1" not in text
    assert "13900000001" not in text, "phones are masked in the export"


def test_province_filter_in_the_url_cannot_widen_a_province_admins_view(
    client, admins, submit_filing
):
    submit_filing(new_filing_body("GS-1", province="gansu"))
    sign_in(client, "tj-admin")
    text = client.get("/admin/filings?province=gansu").get_data(as_text=True)
    assert "GS-1" not in text


def test_audit_log_is_filtered_to_the_admins_province(client, admins, reviewable):
    sign_in(client, "boss")
    client.post(
        f"/admin/filings/{reviewable['id']}/approve",
        data={"reason": "好", "csrf_token": csrf(client)},
    )
    sign_in(client, "gs-admin")
    assert f"filing {reviewable['id']}" not in client.get("/admin/audit").get_data(as_text=True)
    sign_in(client, "tj-admin")
    assert f"filing {reviewable['id']}" in client.get("/admin/audit").get_data(as_text=True)


def test_dashboard_counts_only_the_admins_province(client, admins, submit_filing):
    submit_filing(new_filing_body("GS-1", province="gansu"))
    sign_in(client, "tj-admin")
    text = client.get("/admin/").get_data(as_text=True)
    assert '<th scope="row">待短信核验</th><td>0</td>' in text
    sign_in(client, "gs-admin")
    text = client.get("/admin/").get_data(as_text=True)
    assert '<th scope="row">待短信核验</th><td>1</td>' in text


# --- search --------------------------------------------------------------------------------


def test_find_a_filing_by_phone(client, admins, submit_filing):
    submit_filing(new_filing_body("A"))
    other = new_filing_body("B")
    other["entity"]["principal"] = principal("13800000009", ID_B)
    other["websites"] = []
    other["type"] = "change_filing"
    other["change_scope"] = "entity"
    submit_filing(other)
    sign_in(client, "tj-admin")
    text = client.get("/admin/filings?phone=13800000009").get_data(as_text=True)
    assert ">B<" in text and ">A<" not in text


def test_search_by_status_and_date_range(client, admins, submit_filing):
    submit_filing(new_filing_body("A"))
    sign_in(client, "tj-admin")
    today = date.today()
    hit = client.get(
        f"/admin/filings?status=pending_verification&created_from={today - timedelta(days=1)}"
    )
    miss = client.get(f"/admin/filings?created_to={today - timedelta(days=3)}")
    assert ">A<" in hit.get_data(as_text=True)
    assert ">A<" not in miss.get_data(as_text=True)


def test_htmx_search_returns_only_the_results(client, admins, submit_filing):
    submit_filing(new_filing_body("A"))
    sign_in(client, "tj-admin")
    response = client.get("/admin/filings?reference=A", headers={"HX-Request": "true"})
    text = response.get_data(as_text=True)
    assert "<html" not in text and ">A<" in text
    assert "HX-Request" in response.headers["Vary"]


def test_search_pages(client, admins, submit_filing):
    for n in range(27):
        submit_filing(new_filing_body(f"P-{n:02d}"))
    sign_in(client, "tj-admin")
    first = client.get("/admin/filings").get_data(as_text=True)
    second = client.get("/admin/filings?page=2").get_data(as_text=True)
    assert "共 27 条" in first and "下一页" in first
    assert second.count("/admin/filings/") == 2


# --- a working day -------------------------------------------------------------------------


def test_approve_puts_the_websites_on_record_and_new_access_is_checked_against_them(
    client, admins, provider, reviewable
):
    sign_in(client, "tj-admin")
    response = client.post(
        f"/admin/filings/{reviewable['id']}/approve",
        data={"reason": "材料齐全", "csrf_token": csrf(client)},
    )
    assert response.status_code == 302
    filing = db.session.get(Filing, reviewable["id"])
    assert filing.status == "approved" and filing.review_note == "材料齐全"
    record = db.session.get(Record, "a.example.cn")
    assert phone_matches(record.principal_phone_digest, "13900000002")

    body = new_filing_body("ACCESS-1", type="new_access")
    del body["entity"]
    body["websites"][0]["principal"] = principal("13700000000", ID_B)
    refused = client.post("/api/v1/filings", json=body, headers=provider[1])
    assert refused.status_code == 422
    assert refused.get_json()["code"] == "phone_differs_from_record"


def test_reject_needs_a_reason(client, admins, reviewable):
    sign_in(client, "tj-admin")
    client.post(
        f"/admin/filings/{reviewable['id']}/reject", data={"reason": "", "csrf_token": csrf(client)}
    )
    assert db.session.get(Filing, reviewable["id"]).status == "under_review"


def test_only_a_filing_under_review_can_be_decided(client, admins, tianjin_filing):
    sign_in(client, "tj-admin")
    client.post(
        f"/admin/filings/{tianjin_filing['id']}/approve",
        data={"reason": "x", "csrf_token": csrf(client)},
    )
    assert db.session.get(Filing, tianjin_filing["id"]).status == "pending_verification"


def test_admin_resend_counts_as_a_resend(client, admins, tianjin_filing):
    filing = db.session.get(Filing, tianjin_filing["id"])
    verification_id = filing.verifications[0].id
    sign_in(client, "tj-admin")
    for _ in range(3):
        client.post(
            f"/admin/filings/{filing.id}/verifications/{verification_id}/resend",
            data={"csrf_token": csrf(client)},
        )
    db.session.expire_all()
    resent = db.session.scalars(
        sa.select(SmsMessage).where(
            SmsMessage.verification_id == verification_id, SmsMessage.kind == "resend"
        )
    ).all()
    assert len(resent) == 2, "the province's limit of 2 holds for admins too"
    assert db.session.get(Filing, filing.id).verifications[0].resend_count == 2


def test_detail_page_shows_the_timeline(client, admins, tianjin_filing, sent_codes):
    page = client.get("/tianjin/verify").get_data(as_text=True)
    from tests.factories import CAPTCHA, form_fields

    client.post(
        "/tianjin/verify",
        data={
            **form_fields(page),
            "captcha": CAPTCHA,
            "code": sent_codes()["13900000001"],
            "phone": "13900000001",
            "id_last6": "000000",
        },
    )
    sign_in(client, "tj-admin")
    text = client.get(f"/admin/filings/{tianjin_filing['id']}").get_data(as_text=True)
    assert "接入商提交备案" in text
    assert text.count("首次发送") == 2
    assert "核验提交 139****0001：该条验证库里找不到记录或已完成验证。（来自 127.0.0.*）" in text
    assert "主体负责人" in text and "网站负责人（a.example.cn）" in text
    assert "13900000001" not in text, "full phone numbers are not shown"


# --- the national office -------------------------------------------------------------------


def test_a_rollout_change_takes_effect_on_the_next_request(client, admins):
    sign_in(client, "boss")
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    data = {
        "live_from": tomorrow,
        "code_validity_hours": "24",
        "resend_limit": "2",
        "csrf_token": csrf(client),
    }
    client.post("/admin/rollout/tianjin", data=data)
    assert client.get("/tianjin/verify").status_code == 404
    data["live_from"] = "2017-12-18"
    client.post("/admin/rollout/tianjin", data=data)
    assert client.get("/tianjin/verify").status_code == 200
    entry = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).first()
    assert entry.before["live_from"] == "2017-12-18" and entry.after["live_from"] == tomorrow


def test_rollout_values_out_of_range_are_refused(client, admins):
    sign_in(client, "boss")
    client.post(
        "/admin/rollout/tianjin",
        data={
            "live_from": "2017-12-18",
            "code_validity_hours": "0",
            "resend_limit": "2",
            "csrf_token": csrf(client),
        },
    )
    assert db.session.get(Province, "tianjin").code_validity_hours == 24


def test_creating_a_provider_shows_its_key_once(client, admins):
    sign_in(client, "boss")
    text = client.post(
        "/admin/providers", data={"name": "新接入商", "csrf_token": csrf(client)}
    ).get_data(as_text=True)
    key = text.split("<dt>api_key</dt><dd><code>")[1].split("<")[0]
    assert (
        client.get("/api/v1/filings/x", headers={"Authorization": f"Bearer {key}"}).status_code
        == 404
    )
    assert key not in client.get("/admin/providers").get_data(as_text=True)


def test_disabling_a_provider_shuts_its_api_key_out(client, admins, provider):
    sign_in(client, "boss")
    client.post(f"/admin/providers/{provider[0].id}/toggle", data={"csrf_token": csrf(client)})
    assert client.get("/api/v1/filings/x", headers=provider[1]).status_code == 401


def test_rotating_a_key_retires_the_old_one(client, admins, provider):
    sign_in(client, "boss")
    text = client.post(
        f"/admin/providers/{provider[0].id}/rotate_key", data={"csrf_token": csrf(client)}
    ).get_data(as_text=True)
    new_key = text.split("<dt>api_key</dt><dd><code>")[1].split("<")[0]
    assert client.get("/api/v1/filings/x", headers=provider[1]).status_code == 401
    assert (
        client.get("/api/v1/filings/x", headers={"Authorization": f"Bearer {new_key}"}).status_code
        == 404
    )


# --- sign-in --------------------------------------------------------------------------------


def test_wrong_password_is_refused(client, admins):
    response = sign_in(client, "tj-admin", "wrong password")
    assert response.status_code == 401
    assert "用户名或密码错误。" in response.get_data(as_text=True)


def test_account_locks_after_five_failures_and_a_national_admin_unlocks_it(client, admins, app):
    for _ in range(5):
        sign_in(client, "tj-admin", "wrong password")
    locked = sign_in(client, "tj-admin")
    assert locked.status_code == 401 and "锁定" in locked.get_data(as_text=True)
    other = app.test_client()
    sign_in(other, "boss")
    other.post(f"/admin/accounts/{admins['tianjin'].id}/unlock", data={"csrf_token": csrf(other)})
    assert sign_in(client, "tj-admin").status_code == 302


def test_an_address_with_many_failures_is_throttled(client, admins):
    for n in range(accounts.ADDRESS_FAILURES_PER_WINDOW):
        sign_in(client, f"nobody-{n}", "wrong password")
    response = sign_in(client, "tj-admin")
    assert response.status_code == 401
    assert "登录失败次数过多" in response.get_data(as_text=True)


def test_session_cookie_flags(client, admins):
    response = sign_in(client, "tj-admin")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_password_change_signs_out_other_sessions(client, admins, app):
    other = app.test_client()
    sign_in(other, "tj-admin")
    sign_in(client, "tj-admin")
    client.post(
        "/admin/password",
        data={
            "current": PASSWORD,
            "new": "another long one",
            "csrf_token": csrf(client, "/admin/password"),
        },
    )
    assert client.get("/admin/").status_code == 200
    assert other.get("/admin/").status_code == 302
    assert sign_in(client, "tj-admin", "another long one").status_code == 302


def test_sign_out(client, admins):
    sign_in(client, "tj-admin")
    client.post("/admin/logout", data={"csrf_token": csrf(client)})
    assert client.get("/admin/").status_code == 302


def test_next_parameter_cannot_redirect_off_site(client, admins):
    page = client.get("/admin/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = client.post(
        "/admin/login?next=//evil.example/",
        data={"csrf_token": token, "username": "tj-admin", "password": PASSWORD},
    )
    assert response.headers["Location"] == "/admin/"


def test_admins_create_command(app):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["admins", "create", "cli-admin", "--province", "hainan", "--password", PASSWORD]
    )
    assert result.exit_code == 0, result.output
    admin = db.session.scalar(sa.select(Admin).where(Admin.username == "cli-admin"))
    assert admin.province_slug == "hainan" and PASSWORD not in admin.password_hash
    assert admin.password_hash.startswith("scrypt:")
    both = runner.invoke(
        args=["admins", "create", "x", "--province", "hainan", "--national", "--password", PASSWORD]
    )
    assert both.exit_code != 0
    national = runner.invoke(
        args=["admins", "create", "nat", "--national"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert national.exit_code == 0, national.output
