"""The access-provider API (SPEC §3 and §6): intake rules, auth, problem details, OpenAPI."""

import hashlib
import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import pydantic
import pytest
import sqlalchemy as sa

from portal import filings, providers
from portal.api import examples, openapi, schemas
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Filing, FilingType, FilingTypeRule, Province, Record, Verification
from portal.protection.headers import CONTENT_SECURITY_POLICY
from portal.protection.personal_data import id_last6_digest, phone_digest, sealed_record_phone
from tests.factories import ID_A, ID_B, ID_C, ID_D, new_filing_body, principal

FILINGS = "/api/v1/filings"
ENTITY_PHONE, SITE_PHONE = "13900000001", "13900000002"


# --- helpers -------------------------------------------------------------------------------


def sms_sent(env: dict) -> list[dict]:
    """Every text the `file` SMS backend has sent, in order."""
    path = Path(env["SMS_FILE_PATH"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_problem(response, status: int, code: str | None = None) -> dict:
    """The response is RFC 9457 problem details with our members; returns its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem = json.loads(response.get_data(as_text=True))
    assert {"type", "title", "status", "code", "errors"} <= problem.keys()
    assert problem["status"] == status
    assert isinstance(problem["title"], str) and problem["title"]
    if code is not None:
        assert problem["code"] == code
    return problem


def fields(problem: dict) -> list[str]:
    return [error["field"] for error in problem["errors"]]


def website(domain: str, phone: str, id_number: str, name: str = "李四") -> dict:
    return {"domain": domain, "name": "示例网", "principal": principal(phone, id_number, name)}


def two_site_body(filing_type: str, **overrides) -> dict:
    """An entity principal and two website principals, each with their own phone."""
    return new_filing_body(
        type=filing_type,
        websites=[
            website("a.example.cn", SITE_PHONE, ID_B),
            website("b.example.cn", "13900000003", ID_C, "王五"),
        ],
        **overrides,
    )


def checked(filing: dict) -> dict[str, list[str]]:
    """Masked phone → roles of the filing's verifications."""
    return {item["phone"]: item["roles"] for item in filing["verifications"]}


def filing_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Filing))


def set_rule(filing_type: str, required: bool) -> None:
    db.session.get(FilingTypeRule, filing_type).verification_required = required
    db.session.commit()


@pytest.fixture
def post(client, provider):
    """POSTs a body with the provider's key and returns the raw response."""
    _, headers = provider

    def send(body: dict):
        return client.post(FILINGS, json=body, headers=headers)

    return send


@pytest.fixture
def other_provider(app):
    created, api_key = providers.create("另一接入商", None, utcnow())
    db.session.commit()
    return created, {"Authorization": f"Bearer {api_key}"}


# --- which phones are checked (SPEC §3) ----------------------------------------------------


def test_new_filing_sends_a_code_to_the_entity_and_every_website_principal(submit_filing, env):
    filing = submit_filing(two_site_body("new_filing"))
    assert filing["status"] == "pending_verification"
    assert checked(filing) == {
        "139****0001": ["entity"],
        "139****0002": ["website:a.example.cn"],
        "139****0003": ["website:b.example.cn"],
    }
    assert all(item["status"] == "pending" for item in filing["verifications"])
    assert sorted(text["to"] for text in sms_sent(env)) == [
        "13900000001",
        "13900000002",
        "13900000003",
    ]


@pytest.mark.parametrize("filing_type", ["new_website", "new_access"])
def test_website_types_check_only_the_website_principals(submit_filing, env, filing_type):
    filing = submit_filing(two_site_body(filing_type))
    assert filing["status"] == "pending_verification"
    assert checked(filing) == {
        "139****0002": ["website:a.example.cn"],
        "139****0003": ["website:b.example.cn"],
    }
    assert ENTITY_PHONE not in {text["to"] for text in sms_sent(env)}


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("entity", {"139****0001": ["entity"]}),
        (
            "website",
            {"139****0002": ["website:a.example.cn"], "139****0003": ["website:b.example.cn"]},
        ),
        (
            "both",
            {
                "139****0001": ["entity"],
                "139****0002": ["website:a.example.cn"],
                "139****0003": ["website:b.example.cn"],
            },
        ),
    ],
)
def test_change_filing_checks_the_principals_its_scope_names(submit_filing, env, scope, expected):
    filing = submit_filing(two_site_body("change_filing", change_scope=scope))
    assert filing["status"] == "pending_verification"
    assert checked(filing) == expected
    assert len(sms_sent(env)) == len(expected)


@pytest.mark.parametrize("filing_type", ["cancel_filing", "cancel_website", "cancel_access"])
def test_cancel_types_skip_the_check_and_go_straight_to_review(submit_filing, env, filing_type):
    filing = submit_filing(two_site_body(filing_type))
    assert filing["status"] == "under_review"
    assert filing["verifications"] == []
    assert filing["deadline"] is None
    assert sms_sent(env) == []


def test_change_filing_without_change_scope_is_refused(post):
    problem = assert_problem(post(two_site_body("change_filing")), 422)
    assert "change_scope" in fields(problem)
    assert filing_count() == 0


@pytest.mark.parametrize("filing_type", ["new_filing", "new_website", "cancel_filing"])
def test_change_scope_on_another_type_is_refused(post, filing_type):
    problem = assert_problem(post(two_site_body(filing_type, change_scope="entity")), 422)
    assert "change_scope" in fields(problem)
    assert filing_count() == 0


def test_change_scope_outside_entity_website_both_is_refused(post):
    problem = assert_problem(post(two_site_body("change_filing", change_scope="all")), 422)
    assert "change_scope" in fields(problem)


# --- same person, one code -----------------------------------------------------------------


def test_entity_and_website_principal_sharing_phone_and_id_get_one_code(submit_filing, env):
    body = new_filing_body(websites=[website("a.example.cn", ENTITY_PHONE, ID_A, "张三")])
    filing = submit_filing(body)
    assert checked(filing) == {"139****0001": ["entity", "website:a.example.cn"]}
    assert [text["to"] for text in sms_sent(env)] == [ENTITY_PHONE]


def test_two_websites_of_one_person_get_one_code(submit_filing, env):
    body = new_filing_body(
        type="new_website",
        websites=[
            website("a.example.cn", SITE_PHONE, ID_B),
            website("b.example.cn", SITE_PHONE, ID_B.lower()),
        ],
    )
    filing = submit_filing(body)
    assert checked(filing) == {"139****0002": ["website:a.example.cn", "website:b.example.cn"]}
    assert len(sms_sent(env)) == 1


def test_shared_phone_with_two_id_numbers_is_refused(post, env):
    body = new_filing_body(websites=[website("a.example.cn", ENTITY_PHONE, ID_B)])
    problem = assert_problem(post(body), 422, "shared_phone_id_mismatch")
    assert fields(problem) == ["websites.0.principal.id_number"]
    assert filing_count() == 0
    assert sms_sent(env) == []


# --- ID numbers ----------------------------------------------------------------------------


def test_resident_id_with_a_bad_check_character_is_refused(post):
    bad = ID_A[:-1] + "0"
    body = new_filing_body()
    body["entity"]["principal"]["id_number"] = bad
    problem = assert_problem(post(body), 422, "invalid_fields")
    assert fields(problem) == ["entity.principal.id_number"]


def test_resident_id_of_the_wrong_length_is_refused(post):
    body = new_filing_body()
    body["websites"][0]["principal"]["id_number"] = ID_B[:-2]
    problem = assert_problem(post(body), 422)
    assert fields(problem) == ["websites.0.principal.id_number"]


def test_lower_case_x_in_a_resident_id_is_accepted_and_normalised(submit_filing):
    body = new_filing_body()
    body["websites"][0]["principal"]["id_number"] = ID_B.lower()
    filing = submit_filing(body)
    stored = db.session.get(Filing, filing["id"])
    assert stored.content["websites"][0]["principal"]["id_masked"] == "110***************"
    site = next(v for v in stored.verifications if v.phone_digest == phone_digest(SITE_PHONE))
    assert site.id_digest == id_last6_digest("31002X")


@pytest.mark.parametrize(
    ("id_type", "id_number"),
    [
        ("passport", "E12345678"),
        ("hk_macao_permit", "H1234567801"),
        ("passport", "EA123456B"),
        ("taiwan_permit", "12345678"),
        ("foreign_permanent_resident_id", "USA310060101001"),
        ("other", ID_A[:-1] + "0"),
    ],
)
def test_non_resident_id_types_are_not_checksummed(submit_filing, id_type, id_number):
    body = new_filing_body()
    body["entity"]["principal"].update(id_type=id_type, id_number=id_number)
    filing = submit_filing(body)
    assert "139****0001" in checked(filing)


def test_id_number_whose_last_six_cannot_be_typed_is_refused(post):
    """The applicant enters the last six on the form as digits and letters; anything else never
    matches."""
    body = new_filing_body()
    body["entity"]["principal"].update(id_type="passport", id_number="E1234-567")
    problem = assert_problem(post(body), 422)
    assert fields(problem) == ["entity.principal.id_number"]


@pytest.mark.parametrize(
    ("id_type", "id_number"),
    [
        ("resident_id", "\u0661" + ID_A[1:]),  # an Arabic-Indic 1 keeps the checksum right
        ("passport", "E1234567\u0668"),
    ],
)
def test_id_number_with_non_ascii_digits_is_refused(post, id_type, id_number):
    body = new_filing_body()
    body["entity"]["principal"].update(id_type=id_type, id_number=id_number)
    problem = assert_problem(post(body), 422)
    assert fields(problem) == ["entity.principal.id_number"]


# --- other fields --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "12900000001",
        "1390000000",
        "139000000012",
        "+8613900000001",
        "1390000000a",
        "139-0000-0001",
        "1390000000\u0661",  # an Arabic-Indic digit is a digit to Unicode, not to an SMS gateway
        "",
    ],
)
def test_phone_outside_the_mainland_mobile_pattern_is_refused(post, phone):
    body = new_filing_body()
    body["entity"]["principal"]["phone"] = phone
    problem = assert_problem(post(body), 422, "invalid_fields")
    assert fields(problem) == ["entity.principal.phone"]


@pytest.mark.parametrize(
    "domain", ["not a domain", "-a.example.cn", "example", "a..example.cn", "例子.cn", ""]
)
def test_bad_domain_is_refused(post, domain):
    body = new_filing_body()
    body["websites"][0]["domain"] = domain
    problem = assert_problem(post(body), 422, "invalid_fields")
    assert fields(problem) == ["websites.0.domain"]


def test_domain_is_lower_cased(submit_filing):
    body = new_filing_body()
    body["websites"][0]["domain"] = "A.Example.CN"
    filing = submit_filing(body)
    assert checked(filing)["139****0002"] == ["website:a.example.cn"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ((), "priority"),
        (("entity",), "entity.address"),
        (("entity", "principal"), "entity.principal.email"),
        (("websites", 0), "websites.0.ip"),
    ],
)
def test_unknown_fields_are_refused(post, path, field):
    body = new_filing_body()
    target = body
    for step in path:
        target = target[step]
    target[field.rsplit(".", 1)[-1]] = "x"
    problem = assert_problem(post(body), 422, "invalid_fields")
    assert fields(problem) == [field]
    assert filing_count() == 0


@pytest.mark.parametrize("missing", ["province", "type", "reference"])
def test_missing_required_field_is_named(post, missing):
    body = new_filing_body()
    del body[missing]
    problem = assert_problem(post(body), 422, "invalid_fields")
    assert fields(problem) == [missing]


def test_unknown_filing_type_is_refused(post):
    problem = assert_problem(post(new_filing_body(type="transfer_filing")), 422)
    assert fields(problem) == ["type"]


@pytest.mark.parametrize(
    "body",
    [
        new_filing_body(entity=None),
        two_site_body("change_filing", change_scope="entity", entity=None),
    ],
    ids=["new_filing", "change_filing-entity"],
)
def test_a_checked_entity_that_is_missing_is_refused(post, body):
    problem = assert_problem(post(body), 422)
    assert fields(problem) == ["entity"]
    assert filing_count() == 0


def test_new_filing_without_websites_is_refused(post):
    problem = assert_problem(post(new_filing_body(websites=[])), 422)
    assert fields(problem) == ["websites"]


@pytest.mark.parametrize(
    ("request_args", "status", "code"),
    [
        ({}, 415, "unsupported_media_type"),
        ({"data": json.dumps(new_filing_body()), "content_type": "text/plain"}, 415, None),
        (
            {"data": "province=tianjin", "content_type": "application/x-www-form-urlencoded"},
            415,
            None,
        ),
        ({"data": "", "content_type": "application/json"}, 400, "malformed_json"),
        ({"data": "{not json", "content_type": "application/json"}, 400, "malformed_json"),
        ({"data": b"\xff\xfe{", "content_type": "application/json"}, 400, "malformed_json"),
        ({"data": "[" * 100_000, "content_type": "application/json"}, 400, "malformed_json"),
        ({"data": "[]", "content_type": "application/json"}, 422, "invalid_fields"),
        ({"data": '"tianjin"', "content_type": "application/json"}, 422, "invalid_fields"),
    ],
    ids=[
        "no-body",
        "text-plain",
        "form",
        "empty-json",
        "broken-json",
        "not-utf8",
        "deeply-nested",
        "array",
        "string",
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_problem_never_a_500(
    client, provider, request_args, status, code
):
    _, headers = provider
    response = client.post(FILINGS, headers=headers, **request_args)
    assert_problem(response, status, code)


def test_a_body_over_the_size_limit_is_a_problem(client, provider):
    _, headers = provider
    body = new_filing_body(padding="x" * (2 * 1024 * 1024))
    assert_problem(client.post(FILINGS, json=body, headers=headers), 413)


# --- idempotent reference ------------------------------------------------------------------


def test_same_reference_again_returns_the_same_filing_without_new_codes(post, env):
    first = post(new_filing_body())
    assert first.status_code == 201
    texts = sms_sent(env)
    assert len(texts) == 2

    again = post(new_filing_body())
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert sms_sent(env) == texts
    assert filing_count() == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Verification)) == 2


def test_same_reference_with_the_same_body_spelled_differently_is_the_same_filing(post):
    """Compared as validated: key order, spacing, domain case and a lower-case x are one body."""
    first = post(new_filing_body())
    body = new_filing_body()
    respelled = {key: body[key] for key in reversed(list(body))}
    respelled["websites"][0]["domain"] = " A.Example.CN "
    respelled["websites"][0]["principal"]["id_number"] = ID_B.lower()
    respelled["entity"]["name"] = f"  {body['entity']['name']} "
    again = post(respelled)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["id"] == first.get_json()["id"]


@pytest.mark.parametrize(
    "change",
    [
        lambda body: body["websites"][0]["principal"].update(phone="13900000009"),
        lambda body: body["entity"].update(name="另一家公司"),
        lambda body: body["websites"].append(website("b.example.cn", "13900000003", ID_C)),
        lambda body: body.update(type="new_website"),
    ],
    ids=["phone", "entity-name", "one-more-website", "type"],
)
def test_same_reference_with_another_body_is_a_409_conflict(post, env, change):
    first = post(new_filing_body())
    texts = sms_sent(env)
    changed = new_filing_body()
    change(changed)

    problem = assert_problem(post(changed), 409, "reference_conflict")

    assert fields(problem) == ["reference"]
    assert first.get_json()["id"] in problem["detail"]
    assert filing_count() == 1
    assert sms_sent(env) == texts


def test_a_reference_is_still_matched_after_a_data_key_rotation(app, post):
    first = post(new_filing_body())
    app.config["DATA_KEYS"] = ("new-key", "test-secret")
    again = post(new_filing_body())
    changed = post(new_filing_body(websites=[website("a.example.cn", "13900000009", ID_B)]))
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert_problem(changed, 409, "reference_conflict")


def test_a_filing_taken_in_before_body_digests_answers_its_reference_with_200(post):
    """Such a filing's body cannot be compared (its content keeps masked IDs only)."""
    first = post(new_filing_body())
    db.session.get(Filing, first.get_json()["id"]).body_digest = None
    db.session.commit()
    again = post(new_filing_body(websites=[website("a.example.cn", "13900000009", ID_B)]))
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]


@pytest.mark.parametrize("same_body", [True, False])
def test_a_reference_committed_meanwhile_by_another_intake_is_answered_as_a_resubmission(
    post, monkeypatch, caplog, same_body
):
    """The other intake commits while this one checks the body: this one's insert finds the
    reference taken (on PostgreSQL it would wait for the other's commit), and the other's
    filing is the answer, with no second attempt."""
    real_checks, others = filings._checks, []

    def another_intake_meanwhile(*args):
        if not others:
            others.append("its own checks run this once more")
            others[0] = post(new_filing_body())
        return real_checks(*args)

    monkeypatch.setattr(filings, "_checks", another_intake_meanwhile)
    phone = SITE_PHONE if same_body else "13900000009"
    response = post(new_filing_body(websites=[website("a.example.cn", phone, ID_B)]))
    assert others[0].status_code == 201
    if same_body:
        assert response.status_code == 200
        assert response.get_json() == others[0].get_json()
    else:
        assert_problem(response, 409, "reference_conflict")
    assert filing_count() == 1
    assert "met a concurrent intake" not in caplog.text


def test_same_reference_from_another_provider_is_another_filing(
    client, provider, other_provider, env
):
    body = new_filing_body()
    first = client.post(FILINGS, json=body, headers=provider[1])
    second = client.post(FILINGS, json=body, headers=other_provider[1])
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.get_json()["id"] != second.get_json()["id"]
    assert len(sms_sent(env)) == 4
    assert filing_count() == 2


def test_another_reference_is_another_filing(post):
    first = post(new_filing_body("REF-1"))
    second = post(new_filing_body("REF-2"))
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.get_json()["id"] != second.get_json()["id"]


# --- new_access against the records table --------------------------------------------------


def _on_record(domain: str, phone: str) -> None:
    db.session.add(
        Record(domain=domain, **sealed_record_phone(domain, phone), recorded_at=utcnow())
    )
    db.session.commit()


def test_new_access_with_the_phone_on_record_is_accepted(submit_filing):
    _on_record("a.example.cn", SITE_PHONE)
    filing = submit_filing(new_filing_body(type="new_access"))
    assert filing["status"] == "pending_verification"
    assert checked(filing) == {"139****0002": ["website:a.example.cn"]}


def test_new_access_with_a_phone_other_than_on_record_is_refused(post, env):
    _on_record("b.example.cn", "13700000000")
    body = two_site_body("new_access")
    problem = assert_problem(post(body), 422, "phone_differs_from_record")
    assert fields(problem) == ["websites.1.principal.phone"]
    assert filing_count() == 0
    assert sms_sent(env) == []


# --- provinces -----------------------------------------------------------------------------


@pytest.mark.parametrize("live_from", [None, date.today() + timedelta(days=30)])
def test_province_whose_check_is_not_live_takes_the_filing_without_codes(
    submit_filing, env, live_from
):
    db.session.get(Province, "tianjin").live_from = live_from
    db.session.commit()
    filing = submit_filing(new_filing_body())
    assert filing["status"] == "under_review"
    assert filing["verifications"] == []
    assert sms_sent(env) == []


def test_filing_in_another_live_province_is_checked(submit_filing):
    filing = submit_filing(new_filing_body(province="beijing"))
    assert filing["province"] == "beijing"
    assert filing["status"] == "pending_verification"


@pytest.mark.parametrize("province", ["atlantis", "tianjin-2"])
def test_unknown_province_is_refused(post, province):
    problem = assert_problem(post(new_filing_body(province=province)), 422, "unknown_province")
    assert fields(problem) == ["province"]
    assert filing_count() == 0


@pytest.mark.parametrize("province", ["Tianjin", "津", "tian\x00jin", " "])
def test_province_that_is_not_a_slug_is_refused(post, province):
    problem = assert_problem(post(new_filing_body(province=province)), 422)
    assert fields(problem) == ["province"]
    assert filing_count() == 0


# --- filing type rules are data ------------------------------------------------------------


def test_switching_cancel_filing_on_sends_its_entity_principal_a_code(submit_filing, env):
    set_rule("cancel_filing", True)
    filing = submit_filing(new_filing_body(type="cancel_filing"))
    assert filing["status"] == "pending_verification"
    assert checked(filing) == {"139****0001": ["entity"]}
    assert [text["to"] for text in sms_sent(env)] == [ENTITY_PHONE]


def test_switching_new_filing_off_skips_the_check(submit_filing, env):
    set_rule("new_filing", False)
    filing = submit_filing(new_filing_body())
    assert filing["status"] == "under_review"
    assert filing["verifications"] == []
    assert sms_sent(env) == []


# --- auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer bk_not-a-key", "bk_not-a-key"],
    ids=["none", "basic", "bearer-no-token", "bearer-blank", "unknown-key", "no-scheme"],
)
@pytest.mark.parametrize("method", ["post", "get"])
def test_requests_without_a_valid_api_key_are_401(client, provider, authorization, method):
    headers = {"Authorization": authorization} if authorization else {}
    if method == "post":
        response = client.post(FILINGS, json=new_filing_body(), headers=headers)
    else:
        response = client.get(f"{FILINGS}/0123456789abcdef", headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert filing_count() == 0


def test_the_scheme_name_is_case_insensitive(client, provider):
    _, headers = provider
    token = headers["Authorization"].split(" ", 1)[1]
    response = client.post(
        FILINGS, json=new_filing_body(), headers={"Authorization": f"bearer {token}"}
    )
    assert response.status_code == 201


def test_a_disabled_provider_is_401(client, provider):
    created, headers = provider
    created.active = False
    db.session.commit()
    assert_problem(client.post(FILINGS, json=new_filing_body(), headers=headers), 401)
    assert filing_count() == 0


def test_a_provider_never_sees_another_providers_filing(client, submit_filing, other_provider):
    filing = submit_filing()
    response = client.get(f"{FILINGS}/{filing['id']}", headers=other_provider[1])
    problem = assert_problem(response, 404, "not_found")
    assert filing["reference"] not in json.dumps(problem)


@pytest.mark.parametrize(
    "filing_id", ["no-such-filing", "0" * 32, "x" * 300, "例子", "%00", "a%00b"]
)
def test_unknown_filing_id_is_404(client, provider, filing_id):
    _, headers = provider
    assert_problem(client.get(f"{FILINGS}/{filing_id}", headers=headers), 404, "not_found")


@pytest.mark.parametrize("authorised", [True, False])
@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v1/", "/api/v1/filings/a/b"])
def test_unknown_api_path_is_a_404_problem(client, provider, path, authorised):
    headers = provider[1] if authorised else {}
    assert_problem(client.get(path, headers=headers), 404, "not_found")


def test_wrong_method_on_an_api_path_is_a_405_problem(client, provider):
    response = client.delete(FILINGS, headers=provider[1])
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


# --- reading a filing ----------------------------------------------------------------------


def test_get_returns_the_filing_with_masked_phones_and_a_shanghai_deadline(
    client, provider, submit_filing
):
    _, headers = provider
    created = submit_filing()
    response = client.get(f"{FILINGS}/{created['id']}", headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    filing = response.get_json()
    assert filing == created
    assert {"id", "reference", "province", "type", "status", "return_reason", "deadline"} <= (
        filing.keys()
    )
    assert (filing["reference"], filing["province"], filing["type"]) == (
        "REF-1",
        "tianjin",
        "new_filing",
    )
    assert (filing["status"], filing["return_reason"]) == ("pending_verification", None)
    assert filing["verifications"] == [
        {"phone": "139****0001", "roles": ["entity"], "status": "pending", "delivery": "sent"},
        {
            "phone": "139****0002",
            "roles": ["website:a.example.cn"],
            "status": "pending",
            "delivery": "sent",
        },
    ]
    assert "13900000001" not in response.get_data(as_text=True)

    deadline = datetime.fromisoformat(filing["deadline"])
    assert filing["deadline"].endswith("+08:00")
    assert deadline.utcoffset() == timedelta(hours=8)
    assert abs(deadline - (utcnow() + timedelta(hours=24))) < timedelta(minutes=1)


def test_deadline_follows_the_provinces_code_validity(submit_filing):
    db.session.get(Province, "tianjin").code_validity_hours = 48
    db.session.commit()
    deadline = datetime.fromisoformat(submit_filing()["deadline"])
    assert abs(deadline - (utcnow() + timedelta(hours=48))) < timedelta(minutes=1)


def test_post_answers_201_with_the_filing_as_json(post):
    response = post(new_filing_body())
    assert response.status_code == 201
    assert response.mimetype == "application/json"
    assert response.get_json()["id"] == db.session.scalar(sa.select(Filing.id))


def test_a_filing_queued_for_rq_is_answered_as_a_get_reads_it_with_no_read_after_the_commit(
    queue, client, provider
):
    """The answer is described from what the intake holds, before the commit expires it."""
    _, headers = provider
    seen: list[str] = []

    def statement(connection, cursor, sql, *args) -> None:
        seen.append(sql.split()[0])

    def commit(connection) -> None:
        seen.append("COMMIT")

    sa.event.listen(db.engine, "before_cursor_execute", statement)
    sa.event.listen(db.engine, "commit", commit)
    try:
        response = client.post(FILINGS, json=new_filing_body(), headers=headers)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", statement)
        sa.event.remove(db.engine, "commit", commit)
    assert response.status_code == 201
    assert seen[-1] == "COMMIT", seen
    answer = response.get_json()
    assert [v["delivery"] for v in answer["verifications"]] == ["queued", "queued"]
    assert answer["deadline"] is None
    assert answer == client.get(f"{FILINGS}/{answer['id']}", headers=headers).get_json()
    assert queue.count == 1


# --- OpenAPI -------------------------------------------------------------------------------


def test_openapi_document_is_served_without_auth(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    assert {"FilingIn", "FilingOut", "Problem"} <= document["components"]["schemas"].keys()
    assert {"/filings", "/filings/{filing_id}"} <= document["paths"].keys()
    assert "post" in document["paths"]["/filings"]
    assert "get" in document["paths"]["/filings/{filing_id}"]


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/filings", "post", {"201", "200", "400", "401", "409", "413", "415", "422", "429"}),
        ("/filings/{filing_id}", "get", {"200", "401", "404", "429"}),
        ("/filings/{filing_id}/events", "get", {"200", "401", "404", "429"}),
    ],
)
def test_openapi_lists_every_answer_of_an_operation(client, path, method, statuses):
    responses = client.get("/api/v1/openapi.json").get_json()["paths"][path][method]["responses"]
    assert statuses <= responses.keys()
    assert "Retry-After" in responses["429"]["headers"]
    problem = {"$ref": "#/components/schemas/Problem"}
    assert all(
        responses[status]["content"]["application/problem+json"]["schema"] == problem
        for status in responses
        if status[0] in "45"
    )


def test_openapi_has_an_example_body_of_every_filing_type(client):
    document = client.get("/api/v1/openapi.json").get_json()
    body = document["paths"]["/filings"]["post"]["requestBody"]["content"]["application/json"]
    examples = body["examples"]
    assert set(examples) == {filing_type.value for filing_type in FilingType}
    for name, example in examples.items():
        assert example["value"]["type"] == name
        assert example["summary"]


@pytest.mark.parametrize("filing_type", list(FilingType))
def test_every_example_body_is_taken_in(post, filing_type):
    """Each example is a body the API accepts as it stands (checksums, scope and all)."""
    response = post(examples.EXAMPLES[filing_type]["value"])
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["type"] == filing_type


def test_the_api_reference_page_loads_the_vendored_viewer_under_the_csp(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'data-openapi-url="/api/v1/openapi.json"' in page
    assert "<script>" not in page and "style=" not in page
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        assert client.get(asset).status_code == 200, asset
    assert len(re.findall(r'(?:src|href)="/static/', page)) == 3


def _all_refs_resolve(node, schemas_by_name: dict) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref is not None:
            assert ref.startswith("#/components/schemas/")
            assert ref.rsplit("/", 1)[1] in schemas_by_name, ref
        for value in node.values():
            _all_refs_resolve(value, schemas_by_name)
    elif isinstance(node, list):
        for value in node:
            _all_refs_resolve(value, schemas_by_name)


def test_openapi_components_are_the_pydantic_schemas(client):
    document = client.get("/api/v1/openapi.json").get_json()
    components = document["components"]["schemas"]
    template = "#/components/schemas/{model}"
    for model, mode in [
        (schemas.FilingIn, "validation"),
        (schemas.FilingOut, "serialization"),
        (schemas.Problem, "serialization"),
    ]:
        expected = model.model_json_schema(ref_template=template, mode=mode)
        for name, definition in expected.pop("$defs", {}).items():
            assert components[name] == definition
        assert components[model.__name__] == expected
    _all_refs_resolve(document, components)


def test_a_field_added_to_the_model_shows_up_in_the_openapi_document(client, monkeypatch):
    extended = pydantic.create_model(
        "FilingIn", __base__=schemas.FilingIn, priority=(int | None, None)
    )
    monkeypatch.setattr(openapi, "FilingIn", extended)
    openapi.document.cache_clear()
    try:
        document = client.get("/api/v1/openapi.json").get_json()
    finally:
        monkeypatch.undo()
        openapi.document.cache_clear()
    assert "priority" in document["components"]["schemas"]["FilingIn"]["properties"]
    original = client.get("/api/v1/openapi.json").get_json()
    assert "priority" not in original["components"]["schemas"]["FilingIn"]["properties"]


# --- nothing secret at rest ----------------------------------------------------------------


def _raw_rows(table: str) -> list[str]:
    """Each row of a table as the text of all its columns, read with plain SQL."""
    rows = db.session.execute(sa.text(f"SELECT * FROM {table}")).all()
    return [" | ".join(str(value) for value in row) for row in rows]


def test_stored_filing_content_holds_only_masked_id_numbers(submit_filing):
    filing = submit_filing()
    stored = db.session.get(Filing, filing["id"])
    assert stored.content["entity"]["principal"]["id_masked"] == "120***************"
    assert "id_number" not in json.dumps(stored.content)
    raw = db.session.scalar(
        sa.text("SELECT CAST(content AS TEXT) FROM filings WHERE id = :id"), {"id": filing["id"]}
    )
    assert "120***************" in raw
    for full in (ID_A, ID_B):
        assert full not in raw


def test_no_full_id_number_is_anywhere_in_the_database(submit_filing):
    submit_filing(new_filing_body(websites=[website("a.example.cn", SITE_PHONE, ID_D)]))
    for table in db.metadata.sorted_tables:
        for row in _raw_rows(table.name):
            for full in (ID_A, ID_D):
                assert full not in row, table.name
                assert full[-6:] not in row, table.name


def test_no_plaintext_code_is_stored(submit_filing, sent_codes):
    submit_filing()
    codes = sent_codes()
    assert len(codes) == 2
    rows = _raw_rows("verifications")
    assert len(rows) == 2
    for table in ("verifications", "sms_messages", "filings", "events"):
        for row in _raw_rows(table):
            for code in codes.values():
                assert code not in row, table


def test_api_key_is_stored_only_as_its_sha256_digest(provider):
    created, headers = provider
    api_key = headers["Authorization"].split(" ", 1)[1]
    row = db.session.execute(
        sa.text("SELECT * FROM providers WHERE id = :id"), {"id": created.id}
    ).one()
    assert hashlib.sha256(api_key.encode()).hexdigest() in row
    assert all(api_key not in str(value) for value in row)


def test_a_domain_given_twice_is_refused(client, provider):
    site = {"domain": "a.example.cn", "name": "示例网", "principal": principal("13900000002", ID_B)}
    body = new_filing_body(websites=[site, {**site, "name": "又一个"}])
    response = client.post("/api/v1/filings", json=body, headers=provider[1])
    assert response.status_code == 422
    assert [error["field"] for error in response.get_json()["errors"]] == ["websites"]
