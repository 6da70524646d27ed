"""Abuse resistance and hardening (issue 5): security headers, CSRF, rate limits and the
per-phone cool-down, the audio captcha, expired challenges, data keys and what the
database keeps of a person."""

import re
import secrets
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from limits import parse

from portal import captchas, create_app, providers, sweeps
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import Outcome
from portal.models import CaptchaChallenge, Filing, SmsMessage, Verification
from portal.protection import headers, limits, sealing
from portal.protection.personal_data import mask_phone, phone_digest, verification_code
from tests.conftest import REDIS_TEST_URL
from tests.factories import CAPTCHA, ID_A, ID_B, form_fields, new_filing_body, principal

PHONE_A, ID_A_LAST6 = "13900000001", "011239"
PHONE_B, ID_B_LAST6 = "13900000002", "31002X"
HTMX = {"HX-Request": "true"}
TOO_MANY = Outcome.TOO_MANY_ATTEMPTS.message


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def limited(env) -> dict[str, str]:
    """Rate limits on (the suite's default is off); set before `app` is built."""
    env["RATELIMIT_ENABLED"] = "true"
    return env


@pytest.fixture
def limiter_clock(monkeypatch):
    """Moves the in-memory rate-limit counters' clock: `limiter_clock.advance(seconds)`."""

    class Clock:
        offset = 0.0

        def time(self) -> float:
            return time.time() + self.offset

        def advance(self, seconds: float) -> None:
            self.offset += seconds

    clock = Clock()
    monkeypatch.setattr("limits.storage.memory.time", clock)
    monkeypatch.setattr("portal.protection.limits.time", clock)
    return clock


@pytest.fixture
def codes(submit_filing, sent_codes) -> dict[str, str]:
    """A tianjin filing with phones A and B is submitted; the codes they were sent."""
    submit_filing()
    return sent_codes()


def post_form(client, page: str, values: dict, *, address="10.0.0.1", headers=None):
    """GET the form for its hidden fields, then POST it from `address`."""
    environ = {"REMOTE_ADDR": address}
    fields = form_fields(text(client.get(f"/tianjin/{page}", environ_base=environ)))
    return client.post(
        f"/tianjin/{page}",
        data={**fields, "captcha": CAPTCHA, **values},
        headers=headers or {},
        environ_base=environ,
    )


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def verification_state(phone: str) -> tuple[str, int]:
    db.session.expire_all()
    row = db.session.execute(
        sa.select(Verification.status, Verification.wrong_id_count).where(
            Verification.phone_digest == phone_digest(phone)
        )
    ).one()
    return tuple(row)


def filing_status() -> str:
    db.session.expire_all()
    return db.session.scalar(sa.select(Filing.status))


# Security headers


def _some_url(rule) -> str:
    """A URL for a rule, its arguments filled with harmless values."""
    values = {"province": "tianjin", "challenge_id": "nope", "filename": "portal.css"}
    path = rule.rule
    for argument in rule.arguments:
        path = re.sub(rf"<(?:[a-z]+:)?{argument}>", values.get(argument, "1"), path)
    return path


def _assert_hardened(response, production: bool = False) -> None:
    assert response.headers["Content-Security-Policy"] == headers.CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    hsts = response.headers.get("Strict-Transport-Security")
    assert (hsts == headers.STRICT_TRANSPORT_SECURITY) if production else hsts is None


def test_a_security_header_a_view_sets_itself_is_kept_alone(app):
    """The defaults fill in what a response lacks, whatever the case of its own names."""
    app.add_url_rule("/own-header", "own_header", lambda: ("x", {"x-frame-options": "SAMEORIGIN"}))
    response = app.test_client().get("/own-header")
    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers["Content-Security-Policy"] == headers.CONTENT_SECURITY_POLICY


def test_every_get_route_carries_the_security_headers(app, client):
    urls = {
        _some_url(rule)
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods and not rule.rule.startswith("/<province>")
    }
    urls |= {"/tianjin/", "/tianjin/verify", "/tianjin/resend", "/tianjin/captcha/x.png"}
    assert len(urls) > 8
    for url in sorted(urls):
        _assert_hardened(client.get(url))


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/no-such-page", 404),
        ("GET", "/atlantis/verify", 404),
        ("GET", "/api/v1/no-such-thing", 404),
        ("GET", "/api/v1/filings/abc", 401),
        ("POST", "/api/v1/filings", 401),
        ("GET", "/api/v1/openapi.json", 200),
        ("POST", "/tianjin/verify", 400),
        ("DELETE", "/tianjin/verify", 405),
        ("GET", "/static/htmx.min.js", 200),
    ],
)
def test_errors_and_the_api_carry_the_security_headers(client, method, url, status):
    response = client.open(url, method=method)
    assert response.status_code == status
    _assert_hardened(response)


def test_an_unhandled_error_carries_the_security_headers(app, client):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    response = client.get("/boom")
    assert response.status_code == 500
    _assert_hardened(response)


def test_production_adds_strict_transport_security(env, client):
    production = {
        **env,
        "PORTAL_ENV": "production",
        "REDIS_URL": REDIS_TEST_URL,
        "PUBLIC_BASE_URL": "https://beian.example.cn",
        "CAPTCHA_TEST_ANSWER": "",
    }
    hardened = create_app(production).test_client()
    _assert_hardened(hardened.get("/api/v1/openapi.json"), production=True)
    _assert_hardened(client.get("/api/v1/openapi.json"), production=False)


def test_the_policy_allows_no_inline_code_and_the_pages_use_none(client):
    policy = headers.CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    for url in ("/tianjin/", "/tianjin/verify", "/tianjin/resend", "/no-such-page"):
        page = text(client.get(url))
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), url
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=|hx-on|javascript:", page), url
    config = re.search(r'name="htmx-config" content=\'([^\']*)\'', text(client.get("/tianjin/")))
    assert '"includeIndicatorStyles": false' in config.group(1)
    assert '"allowEval": false' in config.group(1)


# CSRF


@pytest.mark.parametrize("page", ["verify", "resend"])
def test_a_form_without_its_csrf_token_is_refused(client, codes, page):
    values = {"code": codes[PHONE_A], "phone": PHONE_A, "id_last6": ID_A_LAST6}
    fields = form_fields(text(client.get(f"/tianjin/{page}")))
    data = {"captcha_id": fields["captcha_id"], "captcha": CAPTCHA, **values}
    response = client.post(f"/tianjin/{page}", data=data)
    assert response.status_code == 400
    assert "页面已过期" in text(response)
    assert "HX-Refresh" not in response.headers
    assert verification_state(PHONE_A) == ("pending", 0)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SmsMessage)) == 2


def test_a_token_from_another_session_is_refused(app, client, codes):
    other = app.test_client()
    stolen = form_fields(text(other.get("/tianjin/verify")))["csrf_token"]
    fields = form_fields(text(client.get("/tianjin/verify")))
    values = {"code": codes[PHONE_A], "phone": PHONE_A, "id_last6": ID_A_LAST6}
    data = {**fields, "csrf_token": stolen, "captcha": CAPTCHA, **values}
    assert client.post("/tianjin/verify", data=data).status_code == 400
    assert verification_state(PHONE_A) == ("pending", 0)


def test_an_htmx_csrf_failure_asks_htmx_to_reload_the_page(client):
    response = client.post("/tianjin/verify", data={"code": "123456"}, headers=HTMX)
    assert response.status_code == 400
    assert response.headers["HX-Refresh"] == "true"


def test_the_api_needs_no_csrf_token(client, provider):
    response = client.post("/api/v1/filings", json=new_filing_body(), headers=provider[1])
    assert response.status_code == 201


# Rate limits


def test_limits_are_off_when_disabled(client, codes):
    """RATELIMIT_ENABLED=false (this suite's default): no limit and no cool-down."""
    wrong = {"code": wrong_code(codes[PHONE_A]), "phone": PHONE_A, "id_last6": ID_A_LAST6}
    for _ in range(12):
        assert post_form(client, "verify", wrong).status_code == 200
    for _ in range(62):
        assert client.get("/tianjin/captcha/x.png").status_code == 404


def test_too_many_posts_from_one_address_are_refused_in_the_forms_result(limited, client):
    per_minute = 10
    for _ in range(per_minute):
        response = post_form(client, "resend", {"phone": "1", "id_last6": "1"})
        assert response.status_code == 422
    full = post_form(client, "resend", {"phone": "13800000000", "id_last6": "123456"})
    fragment = post_form(client, "resend", {"phone": "1", "id_last6": "1"}, headers=HTMX)
    for response in (full, fragment):
        assert response.status_code == 429
        assert TOO_MANY in text(response)
        assert 0 < int(response.headers["Retry-After"]) <= 60
        assert 'class="result"' in text(response)
    assert "<html" in text(full) and 'value="13800000000"' in text(full)
    assert "<html" not in text(fragment) and "<form" in text(fragment)
    assert form_fields(text(fragment))["captcha_id"]
    other = post_form(client, "resend", {"phone": "1", "id_last6": "1"}, address="10.0.0.2")
    assert other.status_code == 422


def test_a_refused_form_can_be_sent_again_with_its_captcha_later(
    limited, client, codes, limiter_clock
):
    for _ in range(10):
        post_form(client, "verify", {"code": "1", "phone": "1", "id_last6": "1"})
    refused = post_form(client, "verify", {"code": "1", "phone": "1", "id_last6": "1"})
    assert refused.status_code == 429
    limiter_clock.advance(61)
    values = {"code": codes[PHONE_A], "phone": PHONE_A, "id_last6": ID_A_LAST6}
    fields = form_fields(text(refused))
    response = client.post(
        "/tianjin/verify",
        data={**fields, "captcha": CAPTCHA, **values},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(response)


def test_too_many_resends_for_one_phone_are_refused_from_any_address(limited, client, codes):
    values = {"phone": PHONE_A, "id_last6": "999999"}
    for number in range(5):
        response = post_form(client, "resend", values, address=f"10.0.1.{number}")
        assert Outcome.RESEND_NOTHING_PENDING.message in text(response)
    response = post_form(client, "resend", values, address="10.0.2.1")
    assert response.status_code == 429
    assert TOO_MANY in text(response)
    other_phone = post_form(client, "resend", {**values, "phone": PHONE_B}, address="10.0.2.1")
    assert Outcome.RESEND_NOTHING_PENDING.message in text(other_phone)


def test_full_width_digits_count_against_the_same_phone(limited, client, codes):
    full_width = PHONE_A.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    for number in range(5):
        phone = full_width if number % 2 else PHONE_A
        values = {"phone": phone, "id_last6": "999999"}
        post_form(client, "resend", values, address=f"10.0.1.{number}")
    response = post_form(client, "resend", {"phone": full_width, "id_last6": "999999"})
    assert response.status_code == 429


def test_too_many_verify_posts_for_one_phone_are_refused(limited, client, codes):
    """Posts with a solved captcha count per phone, whatever they come to (here not misses)."""
    values = {"code": codes[PHONE_A], "phone": PHONE_A, "id_last6": ID_A_LAST6}
    for number in range(limits.VERIFY_POSTS_PER_PHONE.amount):
        response = post_form(client, "verify", values, address=f"10.0.1.{number}")
        assert response.status_code == 200
    assert "无需重复提交" in text(response)
    response = post_form(client, "verify", values, address="10.0.3.1")
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 3600


def test_pages_and_images_are_limited_per_address(limited, monkeypatch, env):
    monkeypatch.setattr(limits, "PAGES_PER_ADDRESS", "3 per minute")
    client = create_app(env).test_client()
    statuses = [client.get("/tianjin/verify").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = client.get("/tianjin/captcha/x.png")
    assert refused.status_code == 429
    assert TOO_MANY in text(refused)
    assert client.get("/tianjin/").status_code == 200


def test_the_api_is_limited_per_provider_with_a_problem(limited, monkeypatch, env):
    monkeypatch.setattr(limits, "API_CALLS_PER_PROVIDER", parse("3 per minute"))
    app = create_app(env)
    with app.app_context():
        _, first = providers.create("甲", None, utcnow())
        _, second = providers.create("乙", None, utcnow())
        db.session.commit()
        client = app.test_client()
        auth = {"Authorization": f"Bearer {first}"}
        statuses = [client.get("/api/v1/filings/x", headers=auth).status_code for _ in range(4)]
        assert statuses == [404, 404, 404, 429]
        refused = client.get("/api/v1/filings/x", headers=auth)
        assert refused.mimetype == "application/problem+json"
        problem = refused.get_json()
        assert (problem["status"], problem["code"]) == (429, "rate_limited")
        assert problem["detail"] == TOO_MANY
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        other = client.get("/api/v1/filings/x", headers={"Authorization": f"Bearer {second}"})
        assert other.status_code == 404
        db.session.remove()


def _made_up_key() -> str:
    return providers.KEY_PREFIX + secrets.token_urlsafe(providers.KEY_BYTES)


@pytest.fixture
def statements(app) -> list[str]:
    """Every SQL statement the app runs from now on."""
    seen: list[str] = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_unknown_api_keys_from_one_address_are_refused_before_any_lookup(
    limited, monkeypatch, app, client, provider, statements
):
    monkeypatch.setattr(limits, "UNKNOWN_API_KEYS_PER_ADDRESS", parse("3 per minute"))
    made_up = [{"Authorization": f"Bearer {_made_up_key()}"} for _ in range(5)]
    statuses = [client.get("/api/v1/filings/x", headers=auth).status_code for auth in made_up]
    assert statuses == [401, 401, 401, 429, 429]

    statements.clear()
    refused = client.get("/api/v1/filings/x", headers={"Authorization": f"Bearer {_made_up_key()}"})
    assert statements == []
    problem = refused.get_json()
    assert (refused.status_code, problem["code"]) == (429, "rate_limited")
    assert 0 < int(refused.headers["Retry-After"]) <= 60

    elsewhere = {"REMOTE_ADDR": "10.0.9.9"}
    own = client.get("/api/v1/filings/x", headers=provider[1], environ_base=elsewhere)
    assert own.status_code == 404


def test_a_known_key_does_not_use_up_its_addresses_unknown_key_budget(
    limited, monkeypatch, client, provider
):
    monkeypatch.setattr(limits, "UNKNOWN_API_KEYS_PER_ADDRESS", parse("2 per minute"))
    statuses = [client.get("/api/v1/filings/x", headers=provider[1]).status_code for _ in range(5)]
    assert statuses == [404] * 5
    made_up = {"Authorization": f"Bearer {_made_up_key()}"}
    assert client.get("/api/v1/filings/x", headers=made_up).status_code == 401


@pytest.mark.parametrize("token", ["not-a-key", "bk_short", "bk_" + "A" * 44, "bk_" + "é" * 43])
def test_a_token_not_shaped_like_a_key_costs_no_lookup(client, provider, statements, token):
    response = client.get("/api/v1/filings/x", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert not [sql for sql in statements if "providers" in sql]


def test_random_api_keys_get_no_rate_limit_bucket_of_their_own(
    limited, on_rq, redis_connection, client
):
    """Counters are per address (and per provider once the key is known), never per token."""
    for _ in range(10):
        made_up = {"Authorization": f"Bearer {_made_up_key()}"}
        assert client.get("/api/v1/filings/x", headers=made_up).status_code == 401
    assert len(redis_connection.keys("*api*")) == 1


def test_the_client_address_comes_from_the_trusted_proxy(limited, env, monkeypatch):
    monkeypatch.setattr(limits, "PAGES_PER_ADDRESS", "2 per minute")
    client = create_app({**env, "TRUSTED_PROXIES": "1"}).test_client()
    proxy = {"REMOTE_ADDR": "127.0.0.1"}
    for address in ("203.0.113.1", "203.0.113.1", "203.0.113.2"):
        response = client.get(
            "/tianjin/verify", headers={"X-Forwarded-For": address}, environ_base=proxy
        )
        assert response.status_code == 200
    refused = client.get(
        "/tianjin/verify", headers={"X-Forwarded-For": "203.0.113.1"}, environ_base=proxy
    )
    assert refused.status_code == 429


# The per-phone cool-down after wrong codes


def test_wrong_codes_cool_the_phone_down_without_failing_the_filing(limited, client, codes, clock):
    allowed = limits.MISSES_PER_PHONE.amount
    wrong = {"code": wrong_code(codes[PHONE_A]), "phone": PHONE_A, "id_last6": ID_A_LAST6}
    for number in range(allowed):
        response = post_form(client, "verify", wrong, address=f"10.0.1.{number}")
        assert response.status_code == 200
        assert Outcome.NOT_FOUND.message in text(response)
    right = {"code": codes[PHONE_A], "phone": PHONE_A, "id_last6": ID_A_LAST6}
    cooling = post_form(client, "verify", right, address="10.0.2.1", headers=HTMX)
    assert cooling.status_code == 429
    assert TOO_MANY in text(cooling)
    assert 0 < int(cooling.headers["Retry-After"]) <= 2 * 3600
    assert verification_state(PHONE_A) == ("pending", 0)
    assert filing_status() == "pending_verification"

    other_phone = {"code": codes[PHONE_B], "phone": PHONE_B, "id_last6": ID_B_LAST6}
    response = post_form(client, "verify", other_phone, address="10.0.2.2")
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(response)

    clock.now += timedelta(hours=2, seconds=1)
    response = post_form(client, "verify", right, address="10.0.2.3")
    assert response.status_code == 200
    assert Outcome.ALL_VERIFIED.message in text(response)
    assert filing_status() == "under_review"


def test_right_answers_do_not_use_up_the_phones_misses(limited, client, codes):
    """Only misses count: the slot taken before each attempt is given back when it was not one."""
    right = {"code": codes[PHONE_A], "phone": PHONE_A, "id_last6": ID_A_LAST6}
    wrong = {**right, "code": wrong_code(codes[PHONE_A])}
    for number in range(limits.MISSES_PER_PHONE.amount - 1):
        post_form(client, "verify", wrong, address=f"10.0.1.{number}")
    for number in range(3):
        response = post_form(client, "verify", right, address=f"10.0.2.{number}")
        assert response.status_code == 200, text(response)
    assert "无需重复提交" in text(response)
    last_miss = post_form(client, "verify", wrong, address="10.0.3.1")
    assert last_miss.status_code == 200
    assert post_form(client, "verify", wrong, address="10.0.3.2").status_code == 429


def test_the_cool_down_holds_when_redis_is_down(limited, env, codes, monkeypatch):
    """Redis unreachable: the per-phone counts are in the database; no attempt fails for it."""
    app = create_app({**env, "REDIS_URL": "redis://127.0.0.1:1/0"})
    monkeypatch.setitem(app.extensions, "rq_queues", None)
    client = app.test_client()
    wrong = {"code": wrong_code(codes[PHONE_A]), "phone": PHONE_A, "id_last6": ID_A_LAST6}
    with app.app_context():
        statuses = [
            post_form(client, "verify", wrong, address=f"10.0.1.{n}").status_code
            for n in range(limits.MISSES_PER_PHONE.amount + 1)
        ]
        db.session.remove()
    assert statuses == [200] * limits.MISSES_PER_PHONE.amount + [429]


# The audio captcha


def _audio_url(page: str) -> str:
    return re.search(r'<audio[^>]*\bsrc="([^"]+\.wav)"', page).group(1)


def test_the_form_offers_the_challenge_as_audio(client, monkeypatch):
    spoken = []
    generate = captchas._voices.generate
    monkeypatch.setattr(
        captchas._voices, "generate", lambda text: spoken.append(text) or generate(text)
    )
    page = text(client.get("/tianjin/verify"))
    challenge_id = form_fields(page)["captcha_id"]
    url = _audio_url(page)
    assert url == f"/tianjin/captcha/{challenge_id}.wav"
    assert 'preload="none"' in page
    response = client.get(url)
    assert response.status_code == 200
    assert response.mimetype == "audio/wav"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data()
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE" and len(body) > 10_000
    assert spoken == [CAPTCHA]


def test_the_audio_is_only_for_the_sessions_own_unused_challenge(app, client):
    page = text(client.get("/tianjin/verify"))
    url = _audio_url(page)
    assert app.test_client().get(url).status_code == 404
    assert client.get("/tianjin/captcha/unknown.wav").status_code == 404
    fields = form_fields(page)
    values = {"code": "123456", "phone": PHONE_A, "id_last6": ID_A_LAST6}
    client.post("/tianjin/verify", data={**fields, "captcha": CAPTCHA, **values})
    assert client.get(url).status_code == 404


def test_audio_clips_are_limited_per_address(limited, client, monkeypatch):
    monkeypatch.setattr(captchas._voices, "generate", lambda text: bytearray(b"RIFF0000WAVE"))
    url = _audio_url(text(client.get("/tianjin/verify")))
    statuses = [client.get(url).status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]


# Expired challenges


def test_the_sweep_deletes_expired_unused_challenges(app):
    now = utcnow()
    for age in (timedelta(minutes=6), timedelta(hours=3), timedelta(minutes=4)):
        db.session.add(CaptchaChallenge(answer="ABCD", created_at=now - age))
    db.session.commit()
    sweeps.run_due(now)
    db.session.expire_all()
    left = db.session.scalars(sa.select(CaptchaChallenge.created_at)).all()
    assert left == [now - timedelta(minutes=4)]


# Data keys and what the database keeps


def test_codes_and_ids_survive_a_key_rotation(app, client, codes, provider, sent_codes):
    """DATA_KEY="new,old": codes issued under the old key still verify, resend and deliver;
    new ones use the new key alone."""
    app.config["DATA_KEYS"] = ("new-key", "test-secret")
    resent = post_form(client, "resend", {"phone": PHONE_B, "id_last6": ID_B_LAST6})
    assert Outcome.RESEND_SENT.message in text(resent)
    assert sent_codes()[PHONE_B] == codes[PHONE_B]
    right = {"code": codes[PHONE_A], "phone": PHONE_A, "id_last6": ID_A_LAST6}
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(post_form(client, "verify", right))

    site = {"domain": "c.example.cn", "name": "丙网", "principal": principal(PHONE_B, ID_B)}
    body = new_filing_body("REF-2", websites=[site])
    assert client.post("/api/v1/filings", json=body, headers=provider[1]).status_code == 201
    old_b, new_b = db.session.scalars(
        sa.select(Verification)
        .where(Verification.phone_masked == mask_phone(PHONE_B))
        .order_by(Verification.id)
    ).all()
    app.config["DATA_KEYS"] = ("new-key",)  # the old key retired
    assert sealing.matches(new_b.id_digest, "id_last6", ID_B_LAST6)
    assert verification_code(new_b) == sent_codes()[PHONE_B]
    assert not sealing.matches(old_b.id_digest, "id_last6", ID_B_LAST6)


def test_the_database_keeps_no_id_number_code_or_id_last_six(app, client, codes):
    post_form(client, "verify", {"code": codes[PHONE_A], "phone": PHONE_A, "id_last6": "999999"})
    post_form(client, "verify", {"code": codes[PHONE_B], "phone": PHONE_B, "id_last6": ID_B_LAST6})
    secrets_ = {ID_A, ID_B, ID_A_LAST6, ID_B_LAST6, codes[PHONE_A], codes[PHONE_B]}
    with db.engine.connect() as connection:
        for table in db.metadata.sorted_tables:
            for row in connection.execute(sa.select(table)):
                stored = " ".join(str(value) for value in row)
                assert not any(secret in stored for secret in secrets_), table.name
