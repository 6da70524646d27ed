"""The admin console (SPEC §7): sign-in, tenancy, review, resend, rollout, providers, audit."""

import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from flask_login import login_user

from portal import providers
from portal.admin import audit_target, console
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import CONSOLE
from portal.models import Admin, AuditEntry, Filing, Province, Record, SmsMessage
from portal.protection.personal_data import phone_matches
from tests.admins import PASSWORD, csrf, current_code, make_admin, sign_in
from tests.factories import ID_B, new_filing_body, principal


@pytest.fixture
def admins(app):
    """A Tianjin admin, a Gansu admin and a national admin."""
    made = {
        key: make_admin(username, province, utcnow())
        for key, username, province in [
            ("tianjin", "tj-admin", "tianjin"),
            ("gansu", "gs-admin", "gansu"),
            ("national", "boss", None),
        ]
    }
    db.session.add_all(made.values())
    db.session.commit()
    return made


@contextmanager
def count_statements() -> Iterator[list[str]]:
    """The SQL statements run inside the block."""
    statements: list[str] = []

    def count(_connection, _cursor, statement, *_args) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)


def signed_out_csrf(client) -> str:
    """A CSRF token for a visitor who is not signed in, from the sign-in page."""
    page = client.get("/admin/login").get_data(as_text=True)
    return page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]


@pytest.fixture
def tianjin_filing(submit_filing):
    return submit_filing()


@pytest.fixture
def reviewable(submit_filing, sent_codes):
    """A Tianjin filing whose two phones are verified: under review."""
    from portal.verification import verify

    filing = submit_filing(new_filing_body("REF-REVIEW"))
    codes = sent_codes()
    verify("tianjin", "13900000001", codes["13900000001"], "011239", utcnow())
    verify("tianjin", "13900000002", codes["13900000002"], "31002X", utcnow())
    db.session.commit()
    return filing


# --- every route x every kind of visitor ---------------------------------------------------

PROVINCE_PAGES = [
    "/admin/",
    "/admin/filings",
    "/admin/filings.csv",
    "/admin/audit",
    "/admin/audit.csv",
    "/admin/password",
]
NATIONAL_PAGES = ["/admin/rollout", "/admin/providers", "/admin/accounts"]


def test_the_get_list_covers_every_console_page(app):
    pages = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("admin.") and "GET" in rule.methods
    }
    listed = {
        *PROVINCE_PAGES,
        *NATIONAL_PAGES,
        "/admin/filings/<filing_id>",
        "/admin/login",
        "/admin/enrol",
    }
    assert listed == pages


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


# (path, form, who may: "filing" a Tianjin filing's province and national, "national" only
# national admins, "self" any admin; whether an audit entry is written)
POSTS = [
    ("/admin/filings/{id}/verifications/{vid}/resend", {}, "filing", True),
    ("/admin/filings/{id}/approve", {"reason": "ok"}, "filing", True),
    ("/admin/filings/{id}/reject", {"reason": "no"}, "filing", True),
    (
        "/admin/rollout/tianjin",
        {"live_from": "2017-12-18", "code_validity_hours": "24", "resend_limit": "2"},
        "national",
        True,
    ),
    ("/admin/rules/cancel_filing", {"verification_required": "y"}, "national", True),
    ("/admin/providers", {"name": "新接入商"}, "national", True),
    ("/admin/providers/{pid}/rotate_key", {}, "national", True),
    ("/admin/providers/{pid}/rotate_secret", {}, "national", True),
    ("/admin/providers/{pid}/toggle", {}, "national", True),
    (
        "/admin/providers/{pid}/callback",
        {"callback_url": "https://hooks.example.cn/beian"},
        "national",
        True,
    ),
    (
        "/admin/accounts",
        {"username": "new-one", "password": PASSWORD, "province": "tianjin"},
        "national",
        True,
    ),
    ("/admin/accounts/{aid}/reset_2fa", {}, "national", True),
    ("/admin/accounts/{aid}/toggle", {}, "national", True),
    ("/admin/password", {"current": PASSWORD, "new": "Another long one 7"}, "self", True),
    ("/admin/logout", {}, "self", True),
]
ANY_ROUTE = re.compile(r"<any\(([^)]*)\):(\w+)>")


def console_post_routes(app) -> set[tuple[str, str | None]]:
    """Every console POST route but sign-in, one per choice of an `any(…)` part."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin.") and "POST" in rule.methods:
            any_part = ANY_ROUTE.search(rule.rule)
            choices = any_part.group(1).split(", ") if any_part else [None]
            routes |= {(rule.rule, choice) for choice in choices}
    # Sign-in and enrolment are public (tests/test_signin.py has theirs).
    return routes - {("/admin/login", None), ("/admin/enrol", None)}


def test_the_post_list_covers_every_console_route(app):
    adapter = app.url_map.bind("localhost")
    listed = set()
    for path, *_ in POSTS:
        concrete = path.format(id="f" * 32, vid=1, pid=1, aid=1)
        rule, arguments = adapter.match(concrete, method="POST", return_rule=True)
        any_part = ANY_ROUTE.search(rule.rule)
        listed.add((rule.rule, arguments[any_part.group(2)] if any_part else None))
    assert listed == console_post_routes(app)


@pytest.mark.parametrize("path, data, who_may, audited", POSTS)
@pytest.mark.parametrize("visitor", ["signed_out", "own", "other", "national"])
def test_every_post_route_by_every_visitor(
    client, admins, provider, reviewable, path, data, who_may, audited, visitor
):
    filing = db.session.get(Filing, reviewable["id"])
    path = path.format(
        id=filing.id, vid=filing.verifications[0].id, pid=provider[0].id, aid=admins["gansu"].id
    )
    if visitor == "signed_out":
        token = signed_out_csrf(client)
    else:
        sign_in(client, {"own": "tj-admin", "other": "gs-admin", "national": "boss"}[visitor])
        token = csrf(client)
    audit_before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    response = client.post(path, data={**data, "csrf_token": token})
    audit_after = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    if visitor == "signed_out":
        assert response.status_code == 302, "the CSRF check passed: the sign-in guard answers"
        assert response.headers["Location"].startswith("/admin/login?next=")
        assert audit_after == audit_before
    elif who_may == "national" and visitor != "national":
        assert response.status_code == 403
        assert audit_after == audit_before
    elif who_may == "filing" and visitor == "other":
        assert response.status_code == 404
        assert audit_after == audit_before
    else:
        assert response.status_code in (200, 302)
        assert audit_after == audit_before + audited


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


def test_csv_export_gives_each_filing_its_own_masked_phones(client, admins, submit_filing):
    submit_filing(new_filing_body("TWO"))
    body = new_filing_body("ONE")
    body["entity"]["principal"] = body["websites"][0]["principal"]
    submit_filing(body)
    sign_in(client, "tj-admin")
    text = client.get("/admin/filings.csv").get_data(as_text=True)
    phones = {row[1]: row[9] for row in csv.reader(io.StringIO(text))}
    assert phones == {"reference": "phones", "TWO": "139****0001 139****0002", "ONE": "139****0002"}


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
    assert f"备案 {reviewable['id']}" not in client.get("/admin/audit").get_data(as_text=True)
    sign_in(client, "tj-admin")
    assert f"备案 {reviewable['id']}" in client.get("/admin/audit").get_data(as_text=True)


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


def test_the_count_stops_at_the_cap_and_the_pages_go_on_past_it(
    client, admins, submit_filing, monkeypatch
):
    monkeypatch.setattr(console, "COUNT_CAP", 3)
    monkeypatch.setattr(console, "PAGE_SIZE", 2)
    for n in range(7):
        submit_filing(new_filing_body(f"P-{n:02d}"))
    sign_in(client, "tj-admin")
    pages = [client.get(f"/admin/filings?page={n}").get_data(as_text=True) for n in (1, 3, 4)]
    assert all("3 条以上" in page and "共" not in page for page in pages)
    assert [page.count("/admin/filings/") for page in pages] == [2, 2, 1]
    assert ["下一页" in page for page in pages] == [True, True, False]
    narrowed = client.get("/admin/filings?reference=P-00").get_data(as_text=True)
    assert "共 1 条" in narrowed


@pytest.mark.parametrize(
    "query",
    [
        "",
        "reference=A%22%3C&phone=139&status=approved&provider={provider}&province=gansu"
        "&created_from=2026-01-02&created_to=2026-02-03",
        "phone=123456789012345&status=nonsense&provider=999&created_from=bad&province=nowhere",
        "status=&provider=&created_to=1900-01-01",
    ],
)
def test_the_search_fields_read_as_wtforms_writes_them(client, app, admins, provider, query):
    """The search form's inputs are written out in the template (WTForms' widgets were most
    of the page's time): the same HTML, errors and selected options included."""
    query = query.format(provider=provider[0].id)
    sign_in(client, "boss")
    page = client.get(f"/admin/filings?{query}").get_data(as_text=True)
    with app.test_request_context(f"/admin/filings?{query}"):
        login_user(db.session.get(Admin, admins["national"].id))
        form = console._search_form()
        for field in form:
            assert f"{field.label}{field()}" in page


# --- the CSV export ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference", ['=HYPERLINK("http://x.example","y")', "+1", "-1+2", "@SUM(A1)"]
)
def test_csv_cells_a_spreadsheet_would_run_are_made_text(client, admins, submit_filing, reference):
    submit_filing(new_filing_body(reference))
    sign_in(client, "tj-admin")
    rows = list(csv.reader(io.StringIO(client.get("/admin/filings.csv").get_data(as_text=True))))
    assert rows[1][1] == "'" + reference


@pytest.mark.parametrize(
    "cell, written",
    [("\tcmd", "'\tcmd"), ("\rcmd", "'\rcmd"), ("=1", "'=1"), ("a=1", "a=1"), ("", "")],
)
def test_tab_and_carriage_return_are_neutralised_too(cell, written):
    assert next(csv.reader(io.StringIO(console._csv_line([cell]), newline=""))) == [written]


def test_csv_export_reads_a_page_of_filings_per_query(client, admins, submit_filing, monkeypatch):
    """Statements per export do not grow with the filings: one page (and its eager load of
    the verifications) per query, whether the page holds 2 filings or 12."""
    monkeypatch.setattr(console, "CSV_PAGE", 20)
    sign_in(client, "tj-admin")

    def statements_for_export() -> tuple[int, int]:
        with count_statements() as counted:
            text = client.get("/admin/filings.csv").get_data(as_text=True)
        return len(counted), len(text.splitlines()) - 1

    for n in range(2):
        submit_filing(new_filing_body(f"FEW-{n}"))
    few = statements_for_export()
    for n in range(10):
        submit_filing(new_filing_body(f"MORE-{n}"))
    more = statements_for_export()
    assert (few[1], more[1]) == (2, 12)
    assert few[0] == more[0]
    monkeypatch.setattr(console, "CSV_PAGE", 5)
    paged = statements_for_export()
    assert paged == (more[0] + 2 * 2, 12), "three pages of 5: two more pages, two queries each"


def test_csv_export_is_a_stream(app, admins):
    """The body is made as it is sent, not held in memory whole."""
    with app.test_request_context("/admin/filings.csv"):
        login_user(admins["tianjin"])
        response = app.full_dispatch_request()
        assert response.is_streamed and response.mimetype == "text/csv"
        assert next(response.response).startswith("\ufeffid,reference,")


def test_csv_export_pages_in_order_without_gaps(client, admins, submit_filing, monkeypatch):
    monkeypatch.setattr(console, "CSV_PAGE", 3)
    for n in range(8):
        submit_filing(new_filing_body(f"P-{n}"))
    sign_in(client, "tj-admin")
    rows = list(csv.reader(io.StringIO(client.get("/admin/filings.csv").get_data(as_text=True))))
    assert [row[1] for row in rows[1:]] == [f"P-{n}" for n in range(8)]


def test_csv_export_is_audited_with_its_search(client, admins, submit_filing):
    submit_filing(new_filing_body("A"))
    sign_in(client, "tj-admin")
    client.get("/admin/filings.csv?phone=13900000001&status=pending_verification&page=")
    entry = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action != "sign_in")).one()
    assert (entry.action, entry.province_slug, entry.admin_username) == (
        "export_csv",
        "tianjin",
        "tj-admin",
    )
    assert entry.after == {"search": {"phone": "139****0001", "status": "pending_verification"}}, (
        "the phone is masked; only the search's own fields"
    )


# --- odd parameters ------------------------------------------------------------------------

ODD_GETS = [
    ("/admin/filings?page=99999999999999999999", 400),
    ("/admin/filings?page=0", 400),
    ("/admin/filings?page=-3", 400),
    ("/admin/filings?page=abc", 200),
    ("/admin/audit?page=99999999999999999999", 400),
    ("/admin/filings?endpoint=x", 200),
    ("/admin/filings?_external=1&_anchor=x&_method=POST&_scheme=ftp", 200),
    ("/admin/filings.csv?endpoint=x", 200),
    ("/admin/filings?created_from=0001-01-01", 200),
    ("/admin/filings?created_to=9999-12-31", 200),
    ("/admin/filings.csv?created_to=9999-12-31", 200),
    ("/admin/filings?created_from=2026-13-45", 200),
    ("/admin/filings?provider=99999999999999999999", 200),
    ("/admin/filings?status=nonsense&province=atlantis", 200),
    ("/admin/filings?reference=" + "x" * 5000, 200),
    ("/admin/filings?reference=%00", 400),
    ("/admin/filings?phone=139%000", 400),
    ("/admin/filings/%00", 400),
    ("/admin/filings/" + "f" * 5000, 404),
]


@pytest.mark.parametrize("path, status", ODD_GETS)
def test_odd_parameters_are_refused_or_ignored_never_a_500(
    client, admins, submit_filing, path, status
):
    submit_filing(new_filing_body("ODD-1"))
    sign_in(client, "boss")
    response = client.get(path)
    assert response.status_code == status
    if status == 200 and "/filings/" not in path:
        assert "ODD-1" in response.get_data(as_text=True), "the odd parameter is ignored"


def test_a_bad_request_and_a_national_page_say_why_in_chinese(client, admins):
    sign_in(client, "tj-admin")
    refused = client.get("/admin/filings?page=0")
    assert refused.status_code == 400
    assert "请求无效，请检查网址或填写的内容后重试。" in refused.get_data(as_text=True)
    forbidden = client.get("/admin/rollout")
    assert forbidden.status_code == 403
    assert "您没有权限访问该页面。" in forbidden.get_data(as_text=True)


def test_an_out_of_range_search_date_is_said_in_the_form(client, admins):
    sign_in(client, "boss")
    text = client.get("/admin/filings?created_to=9999-12-31").get_data(as_text=True)
    assert "请输入 2017-01-01 至 2099-12-31 之间的日期。" in text
    text = client.get("/admin/filings?created_from=2026-13-45&status=x").get_data(as_text=True)
    assert "不是有效的日期值。" in text and "不是有效的选择。" in text, "WTForms' own, in Chinese"


def test_a_rollout_value_out_of_range_is_said_in_chinese(client, admins):
    sign_in(client, "boss")
    data = {"code_validity_hours": "0", "resend_limit": "2", "csrf_token": csrf(client)}
    response = client.post("/admin/rollout/tianjin", data=data, follow_redirects=True)
    assert "验证码有效期（小时）：数值大小必须介于 1 到 168 之间。" in response.get_data(
        as_text=True
    )


def test_links_carry_only_the_search_fields(client, admins, submit_filing):
    for n in range(26):
        submit_filing(new_filing_body(f"L-{n:02d}"))
    sign_in(client, "boss")
    text = client.get("/admin/filings?status=pending_verification&endpoint=x&_anchor=y").get_data(
        as_text=True
    )
    assert 'href="/admin/filings.csv?status=pending_verification"' in text
    assert 'href="/admin/filings?status=pending_verification&amp;page=2"' in text
    assert "endpoint=" not in text and "_anchor" not in text


ODD_POSTS = [
    ("/admin/providers/99999999999999999999/toggle", {}, 404),
    ("/admin/accounts/99999999999999999999/toggle", {}, 404),
    ("/admin/filings/{id}/verifications/99999999999999999999/resend", {}, 404),
    ("/admin/filings/{id}/reject", {"reason": "no\x00"}, 400),
    ("/admin/providers", {"name": "x\x00"}, 400),
    (
        "/admin/rollout/tianjin",
        {"live_from": "2017-12-18", "code_validity_hours": "1e99", "resend_limit": "2"},
        302,
    ),
    (
        "/admin/rollout/tianjin",
        {
            "live_from": "2017-12-18",
            "code_validity_hours": "99999999999999999999",
            "resend_limit": "2",
        },
        302,
    ),
]


@pytest.mark.parametrize("path, data, status", ODD_POSTS)
def test_odd_posts_are_refused_never_a_500(client, admins, reviewable, path, data, status):
    sign_in(client, "boss")
    audit_before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    response = client.post(
        path.format(id=reviewable["id"]), data={**data, "csrf_token": csrf(client)}
    )
    assert response.status_code == status
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == audit_before
    assert db.session.get(Province, "tianjin").code_validity_hours == 24


def test_a_nul_in_the_sign_in_form_is_refused(client, admins):
    page = client.get("/admin/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = client.post(
        "/admin/login", data={"csrf_token": token, "username": "tj\x00", "password": "x"}
    )
    assert response.status_code == 400


# --- how the console reads ------------------------------------------------------------------


def test_a_province_admin_chooses_among_the_providers_that_filed_there(
    client, admins, submit_filing
):
    submit_filing(new_filing_body("TJ-1"))
    _, gansu_key = providers.create("只在甘肃的接入商", None, utcnow())
    db.session.commit()
    filed = client.post(
        "/api/v1/filings",
        json=new_filing_body("GS-1", province="gansu"),
        headers={"Authorization": f"Bearer {gansu_key}"},
    )
    assert filed.status_code == 201
    sign_in(client, "tj-admin")
    text = client.get("/admin/filings").get_data(as_text=True)
    assert ">测试接入商</option>" in text and "只在甘肃的接入商" not in text
    sign_in(client, "boss")
    text = client.get("/admin/filings").get_data(as_text=True)
    assert ">测试接入商</option>" in text and ">只在甘肃的接入商</option>" in text


def test_lists_name_provinces_not_slugs(client, admins, submit_filing):
    submit_filing(new_filing_body("GS-1", province="gansu"))
    sign_in(client, "boss")
    client.post(
        f"/admin/accounts/{admins['gansu'].id}/reset_2fa", data={"csrf_token": csrf(client)}
    )
    search = client.get("/admin/filings").get_data(as_text=True)
    assert "<td>甘肃</td>" in search and "<td>gansu</td>" not in search
    accounts_page = client.get("/admin/accounts").get_data(as_text=True)
    assert "<td>gs-admin</td><td>甘肃</td>" in accounts_page
    assert "<td>boss</td><td>全国</td>" in accounts_page
    log = client.get("/admin/audit").get_data(as_text=True)
    assert "<td>甘肃</td><td>重置账号双因素认证</td><td>账号 gs-admin</td>" in log
    sign_in(client, "tj-admin")
    assert "tj-admin · 天津" in client.get("/admin/").get_data(as_text=True)


@pytest.mark.parametrize(
    "target, shown",
    [
        ("filing 3f2a phone 139****", "备案 3f2a 手机号码 139****"),
        ("filing type cancel_filing", "备案类型 cancel_filing"),
        ("filings", "备案查询"),
        ("provider 2", "接入商 2"),
        ("admin administrator", "账号 administrator"),
        ("province gansu", "省份 gansu"),
        ("something new", "something new"),
    ],
)
def test_audit_targets_read_in_chinese(target, shown):
    assert audit_target(target) == shown


def test_filing_types_read_in_chinese_on_the_rollout_page(client, admins):
    sign_in(client, "boss")
    text = client.get("/admin/rollout").get_data(as_text=True)
    assert "<tr><td>注销备案</td>" in text and "cancel_filing</td>" not in text


def test_a_change_scope_reads_in_chinese(client, admins, submit_filing):
    body = new_filing_body("CH-1", type="change_filing", change_scope="entity", websites=[])
    filing = submit_filing(body)
    sign_in(client, "tj-admin")
    text = client.get(f"/admin/filings/{filing['id']}").get_data(as_text=True)
    assert "变更备案（变更主体）" in text and "entity）" not in text


def test_the_timeline_says_when_a_provider_has_no_callback_url(
    client, admins, provider, reviewable
):
    provider[0].callback_url = None
    db.session.commit()
    sign_in(client, "tj-admin")
    client.post(
        f"/admin/filings/{reviewable['id']}/approve",
        data={"reason": "好", "csrf_token": csrf(client)},
    )
    text = client.get(f"/admin/filings/{reviewable['id']}").get_data(as_text=True)
    assert text.count("通知接入商：该接入商未设置回调地址，未通知") == 1, "the approval's event"


def test_the_timeline_says_a_failed_notification_is_retried(client, admins, reviewable):
    """The fixture provider's callback (port 9) refuses: the attempt failed, a retry is due."""
    sign_in(client, "tj-admin")
    text = client.get(f"/admin/filings/{reviewable['id']}").get_data(as_text=True)
    assert "通知接入商：尚未送达，下次尝试 " in text


def test_search_fields_carry_no_none_attribute(client, admins):
    sign_in(client, "tj-admin")
    text = client.get("/admin/filings").get_data(as_text=True)
    assert '"None"' not in text
    assert '<input id="phone" inputmode="numeric" maxlength="11" name="phone"' in text


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
    entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "update_rollout").order_by(AuditEntry.id)
    ).first()
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
    key = text.split("<dt>API 密钥</dt><dd><code>")[1].split("<")[0]
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
    new_key = text.split("<dt>API 密钥</dt><dd><code>")[1].split("<")[0]
    assert client.get("/api/v1/filings/x", headers=provider[1]).status_code == 401
    assert (
        client.get("/api/v1/filings/x", headers={"Authorization": f"Bearer {new_key}"}).status_code
        == 404
    )


# --- sign-in --------------------------------------------------------------------------------


def test_wrong_password_is_refused(client, admins):
    response = sign_in(client, "tj-admin", "wrong password")
    assert response.status_code == 401
    assert CONSOLE["sign_in_failed"] in response.get_data(as_text=True)


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
            "new": "Another long one 2",
            "csrf_token": csrf(client, "/admin/password"),
        },
    )
    assert client.get("/admin/").status_code == 200
    assert other.get("/admin/").status_code == 302
    assert sign_in(client, "tj-admin", "Another long one 2").status_code == 302


def test_sign_out(client, admins):
    sign_in(client, "tj-admin")
    client.post("/admin/logout", data={"csrf_token": csrf(client)})
    assert client.get("/admin/").status_code == 302


def test_next_parameter_cannot_redirect_off_site(client, admins):
    page = client.get("/admin/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = client.post(
        "/admin/login?next=//evil.example/",
        data={
            "csrf_token": token,
            "username": "tj-admin",
            "password": PASSWORD,
            "otp": current_code(),
        },
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
