"""Console sign-in (SPEC §10): two factors and enrolment, failures that slow their address down
but never lock the owner out, sessions kept on the server, password rules."""

import json
import re
import threading
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa
from flask_login.utils import encode_cookie
from werkzeug.security import generate_password_hash

from portal import accounts, create_app, signin_throttle, sweeps, two_factor
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import CONSOLE
from portal.models import Admin, AuditEntry, SigninThrottle
from portal.settings import SettingsError
from tests.admins import PASSWORD, TOTP_SECRET, csrf, current_code, make_admin, sign_in

ATTACKER = "203.0.113.9"
OWNER = "198.51.100.7"
STEP = timedelta(seconds=30)
FAILED = CONSOLE["sign_in_failed"]


@pytest.fixture
def owner(app) -> Admin:
    admin = make_admin("tj-admin", "tianjin", utcnow())
    db.session.add(admin)
    db.session.commit()
    return admin


@pytest.fixture
def boss(app) -> Admin:
    admin = make_admin("boss", None, utcnow())
    db.session.add(admin)
    db.session.commit()
    return admin


def client_at(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def signed_in(client) -> bool:
    return client.get("/admin/").status_code == 200


def wrong_code(secret: str, now) -> str:
    """Six digits that are no code of the steps around `now`."""
    totp = pyotp.TOTP(secret)
    good = {totp.at(now + offset * STEP) for offset in (-1, 0, 1)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in good)


def audit_actions() -> list[str]:
    return list(db.session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)))


# --- the second factor ------------------------------------------------------------------


def test_sign_in_needs_the_code(client, owner, clock):
    for otp in ("", wrong_code(TOTP_SECRET, clock.now), "12345"):
        response = sign_in(client, "tj-admin", otp=otp)
        assert response.status_code == 401
        assert FAILED in response.get_data(as_text=True)
        assert not signed_in(client)
    clock.now += timedelta(seconds=8)  # after three failures the next try waits 8 s
    assert sign_in(client, "tj-admin", otp=current_code()).status_code == 302
    assert signed_in(client)


def test_a_code_is_accepted_once(client, owner, clock):
    code = current_code()
    assert sign_in(client, "tj-admin", otp=code).status_code == 302
    client.post("/admin/logout", data={"csrf_token": csrf(client)})
    replayed = sign_in(client, "tj-admin", otp=code)
    assert replayed.status_code == 401 and FAILED in replayed.get_data(as_text=True)
    clock.now += STEP
    assert sign_in(client, "tj-admin", otp=current_code()).status_code == 302


def test_one_code_sent_twice_at_once_signs_in_once(app, owner):
    """The step is claimed in one conditional UPDATE: two racing requests cannot both pass."""
    code, now = current_code(), utcnow()
    start = threading.Barrier(2)
    outcomes = []

    def try_code(address: str) -> None:
        with app.app_context():
            start.wait()
            outcomes.append(accounts.sign_in("tj-admin", PASSWORD, code, address, now).admin)
            db.session.commit()

    threads = [threading.Thread(target=try_code, args=(a,)) for a in (ATTACKER, OWNER)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 2 and sum(admin is not None for admin in outcomes) == 1


def test_a_code_of_the_step_before_or_after_is_accepted_for_drifting_clocks(client, owner, clock):
    totp = pyotp.TOTP(TOTP_SECRET)
    assert sign_in(client, "tj-admin", otp=totp.at(clock.now - STEP)).status_code == 302
    assert sign_in(client, "tj-admin", otp=totp.at(clock.now + STEP)).status_code == 302
    too_late = sign_in(client, "tj-admin", otp=totp.at(clock.now + 2 * STEP))
    assert too_late.status_code == 401


def test_a_recovery_code_signs_in_once(client, owner):
    codes = accounts.enrol_two_factor(owner, utcnow()).recovery_codes
    db.session.commit()
    assert len(codes) == 10 and len(set(codes)) == 10
    first = sign_in(client, "tj-admin", otp=codes[0])
    assert first.status_code == 302
    assert CONSOLE["recovery_code_used"].format(left=9) in client.get("/admin/").get_data(
        as_text=True
    )
    client.post("/admin/logout", data={"csrf_token": csrf(client)})
    again = sign_in(client, "tj-admin", otp=codes[0])
    assert again.status_code == 401 and FAILED in again.get_data(as_text=True)
    typed_loosely = " " + codes[1].upper().replace("-", " ").replace("O", "0").replace("L", "1")
    assert sign_in(client, "tj-admin", otp=typed_loosely).status_code == 302


def test_recovery_codes_are_kept_only_as_digests(owner):
    codes = accounts.enrol_two_factor(owner, utcnow()).recovery_codes
    db.session.commit()
    with db.engine.connect() as connection:
        stored = " ".join(
            str(row) for row in connection.execute(sa.text("SELECT * FROM recovery_codes"))
        )
        admin_row = str(connection.execute(sa.text("SELECT * FROM admins")).one())
    assert not any(code.replace("-", "") in stored or code in stored for code in codes)
    assert two_factor.pending_secret(owner) not in admin_row


# --- enrolment ----------------------------------------------------------------------------


def enrol_page_secret(page: str) -> str:
    return re.search(r'<p class="secret"><code>([A-Z2-7]+)</code></p>', page).group(1)


def test_an_account_made_in_the_console_enrols_at_its_first_sign_in(app, client, boss, clock):
    sign_in(client, "boss")
    client.post(
        "/admin/accounts",
        data={
            "username": "new-one",
            "password": PASSWORD,
            "province": "tianjin",
            "csrf_token": csrf(client, "/admin/accounts"),
        },
    )
    newcomer = app.test_client()
    first = sign_in(newcomer, "new-one", otp="")
    assert first.status_code == 302 and first.headers["Location"] == "/admin/enrol"
    assert newcomer.get("/admin/").status_code == 302, "not signed in before the code"

    page = newcomer.get("/admin/enrol")
    text = page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    assert '<img class="qr" src="data:image/svg+xml' in text
    assert "img-src 'self' data:" in page.headers["Content-Security-Policy"]
    secret = enrol_page_secret(text)
    assert enrol_page_secret(newcomer.get("/admin/enrol").get_data(as_text=True)) == secret

    token = csrf_of(text)
    wrong = newcomer.post(
        "/admin/enrol", data={"otp": wrong_code(secret, clock.now), "csrf_token": token}
    )
    assert wrong.status_code == 422 and CONSOLE["wrong_code"] in wrong.get_data(as_text=True)
    code = pyotp.TOTP(secret).at(clock.now)
    confirmed = newcomer.post("/admin/enrol", data={"otp": code, "csrf_token": token})
    shown = confirmed.get_data(as_text=True)
    assert confirmed.status_code == 200 and confirmed.headers["Cache-Control"] == "no-store"
    recovery_codes = re.findall(r"<li><code>([a-z2-7]{4}(?:-[a-z2-7]{4}){3})</code></li>", shown)
    assert len(recovery_codes) == 10
    assert signed_in(newcomer)
    assert "enrol_two_factor" in audit_actions()
    assert newcomer.get("/admin/enrol").status_code == 302, "enrolled: no second enrolment"

    newcomer.post("/admin/logout", data={"csrf_token": csrf(newcomer)})
    assert sign_in(newcomer, "new-one", otp="").status_code == 401
    assert sign_in(newcomer, "new-one", otp=code).status_code == 401, "the confirming code is used"
    clock.now += STEP
    assert sign_in(newcomer, "new-one", otp=pyotp.TOTP(secret).at(clock.now)).status_code == 302


def csrf_of(page: str) -> str:
    return page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]


def test_the_enrolment_page_needs_a_password_proven_moments_ago(app, client, owner, clock):
    assert client.get("/admin/enrol").status_code == 302
    two_factor.reset(owner)
    db.session.commit()
    assert sign_in(client, "tj-admin", otp="").headers["Location"] == "/admin/enrol"
    clock.now += timedelta(minutes=11)
    assert client.get("/admin/enrol").headers["Location"] == "/admin/login"


def test_a_national_admin_resets_an_enrolment_and_it_is_audited(app, client, owner, boss):
    own = app.test_client()
    sign_in(own, "tj-admin")
    sign_in(client, "boss")
    response = client.post(
        f"/admin/accounts/{owner.id}/reset_2fa", data={"csrf_token": csrf(client)}
    )
    assert response.status_code == 302
    assert not signed_in(own), "the account's sessions end with its second factor"
    assert "account_reset_2fa" in audit_actions()
    assert sign_in(own, "tj-admin", otp="").headers["Location"] == "/admin/enrol"
    own_reset = client.post(
        f"/admin/accounts/{boss.id}/reset_2fa", data={"csrf_token": csrf(client)}
    )
    assert own_reset.status_code == 403


def test_cli_creates_an_enrolled_account_and_resets_it(app, clock):
    runner = app.test_cli_runner()
    created = runner.invoke(
        args=["admins", "create", "cli-admin", "--province", "hainan", "--password", PASSWORD]
    )
    assert created.exit_code == 0, created.output
    shown = json.loads(created.output.strip().splitlines()[-1])
    assert shown["username"] == "cli-admin" and shown["totp_uri"].startswith("otpauth://totp/")
    assert len(shown["recovery_codes"]) == 10
    old = pyotp.parse_uri(shown["totp_uri"])
    client = app.test_client()
    assert sign_in(client, "cli-admin", otp=old.at(clock.now)).status_code == 302

    reset = runner.invoke(args=["admins", "reset-2fa", "cli-admin"])
    assert reset.exit_code == 0, reset.output
    new = pyotp.parse_uri(json.loads(reset.output.strip().splitlines()[-1])["totp_uri"])
    assert new.secret != old.secret
    assert not signed_in(client), "a reset ends the account's sessions"
    clock.now += STEP
    assert sign_in(client, "cli-admin", otp=old.at(clock.now)).status_code == 401
    assert sign_in(client, "cli-admin", otp=shown["recovery_codes"][0]).status_code == 401
    assert sign_in(client, "cli-admin", otp=new.at(clock.now)).status_code == 302


def test_cli_prints_the_current_code_but_not_in_production(app, owner, clock):
    runner = app.test_cli_runner()
    printed = runner.invoke(args=["admins", "code", "tj-admin"])
    assert printed.exit_code == 0 and printed.output.strip() == current_code()
    assert runner.invoke(args=["admins", "code", "nobody"]).exit_code != 0
    app.config["PRODUCTION"] = True
    refused = runner.invoke(args=["admins", "code", "tj-admin"])
    assert refused.exit_code != 0 and "refused in production" in refused.output


# --- failures slow down; they never lock the owner out -----------------------------------


def test_an_attackers_failures_never_stop_the_owner_signing_in_elsewhere(app, owner, clock):
    attacker = client_at(app, ATTACKER)
    for _ in range(40):
        assert sign_in(attacker, "tj-admin", "wrong password").status_code == 401
    refused = sign_in(attacker, "tj-admin")
    assert refused.status_code == 401 and FAILED in refused.get_data(as_text=True)
    assert sign_in(client_at(app, OWNER), "tj-admin").status_code == 302


def test_failures_from_an_address_make_it_wait_and_the_wait_doubles(app, owner, clock):
    assert signin_throttle.ACCOUNT_FREE_FAILURES == 3
    client = client_at(app, ATTACKER)
    for _ in range(2):
        sign_in(client, "tj-admin", "wrong password")
    assert sign_in(client, "tj-admin").status_code == 302, "two failures cost no wait"
    client.post("/admin/logout", data={"csrf_token": csrf(client)})
    for _ in range(3):
        sign_in(client, "tj-admin", "wrong password")
    assert sign_in(client, "tj-admin").status_code == 401, "right password, but it must wait 8 s"
    clock.now += timedelta(seconds=8)
    sign_in(client, "tj-admin", "wrong password")
    clock.now += timedelta(seconds=15)
    assert sign_in(client, "tj-admin").status_code == 401, "the 4th failure: 16 s"
    clock.now += timedelta(seconds=1)
    assert sign_in(client, "tj-admin").status_code == 302
    client.post("/admin/logout", data={"csrf_token": csrf(client)})
    assert sign_in(client, "tj-admin", "wrong password").status_code == 401
    assert sign_in(client, "tj-admin").status_code == 302, "a success forgets the failures"


def test_the_wait_grows_from_8_seconds_to_15_minutes():
    wait = signin_throttle.wait_after
    assert [wait(n, 3).total_seconds() for n in range(1, 8)] == [0, 0, 8, 16, 32, 64, 128]
    assert wait(30, 3) == wait(30, 20) == timedelta(minutes=15)


@pytest.mark.parametrize(
    "tried_from, same_address, other_address",
    [
        (["203.0.113.9"] * 20, "203.0.113.9", "203.0.113.10"),
        (
            [f"2001:db8:1:2::{n:x}" for n in range(1, 21)],
            "2001:db8:1:2:ffff::1",
            "2001:db8:1:3::1",
        ),
    ],
    ids=["ipv4", "ipv6-by-64"],
)
def test_many_names_from_one_address_make_that_address_wait(
    app, owner, clock, tried_from, same_address, other_address
):
    """20 failures over 20 names: the address (an IPv6 one by its /64) waits, others do not."""
    for n, address in enumerate(tried_from):
        sign_in(client_at(app, address), f"guess-{n}", "wrong password", otp="123456")
    assert sign_in(client_at(app, same_address), "tj-admin").status_code == 401
    assert sign_in(client_at(app, other_address), "tj-admin").status_code == 302


def test_an_unknown_name_costs_a_password_hash_and_reads_the_same(app, owner, monkeypatch):
    checked = []
    real_check = accounts.check_password_hash

    def counting(hashed: str, password: str) -> bool:
        checked.append(hashed)
        return real_check(hashed, password)

    monkeypatch.setattr(accounts, "check_password_hash", counting)
    client = app.test_client()
    unknown = sign_in(client, "nobody", "wrong password", otp="123456")
    known = sign_in(client, "tj-admin", "wrong password", otp="123456")
    assert len(checked) == 2 and checked[0].startswith("scrypt:")
    assert unknown.status_code == known.status_code == 401
    assert FAILED in unknown.get_data(as_text=True) and FAILED in known.get_data(as_text=True)


def test_parallel_tries_check_no_more_passwords_than_the_throttle_allows(app, owner, monkeypatch):
    """40 wrong passwords at once from one address: 3 are checked, the rest refused unchecked."""
    checked = []
    real_check = accounts.check_password_hash

    def counting(hashed: str, password: str) -> bool:
        checked.append(password)
        return real_check(hashed, password)

    monkeypatch.setattr(accounts, "check_password_hash", counting)
    start = threading.Barrier(40)
    now = utcnow()
    outcomes = []

    def try_once() -> None:
        with app.app_context():
            start.wait()
            outcomes.append(accounts.sign_in("tj-admin", "wrong", "", ATTACKER, now))
            db.session.commit()

    threads = [threading.Thread(target=try_once) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 40 and all(outcome.admin is None for outcome in outcomes)
    assert len(checked) == signin_throttle.ACCOUNT_FREE_FAILURES


def address_failures(address: str) -> int:
    key = signin_throttle._key("address", address)
    return db.session.scalar(sa.select(SigninThrottle.failures).where(SigninThrottle.key == key))


def test_sign_ins_side_by_side_from_one_address_leave_it_no_failures(app):
    """An office behind one address: each try counts in advance, tries overlap, all succeed.
    Thirty overlapping pairs would have left their counts and made the address wait."""
    now = utcnow()
    for pair in range(30):
        first = signin_throttle.reserve(f"officer-{pair}a", OWNER, now)
        second = signin_throttle.reserve(f"officer-{pair}b", OWNER, now)
        assert first is not None and second is not None, f"refused at pair {pair}"
        signin_throttle.release(first, now)
        signin_throttle.release(second, now)
        db.session.commit()
    assert address_failures(OWNER) == 0


@pytest.mark.parametrize("names", [("officer-a", "officer-b"), ("officer-a", "officer-a")])
def test_tries_whose_clocks_read_apart_are_counted_in_either_order(app, names):
    """Each request reads the clock before its turn at the row: the one that read it a moment
    earlier may come second, and must not find the address or the account waiting."""
    now = utcnow()
    later = signin_throttle.reserve(names[0], OWNER, now + timedelta(milliseconds=5))
    earlier = signin_throttle.reserve(names[1], OWNER, now)
    assert later is not None and earlier is not None
    assert address_failures(OWNER) == 2


def test_parallel_sign_ins_from_one_address_all_succeed(app, clock):
    """Twelve officers at once behind one address, each with a right password and code."""
    names = [f"officer-{n}" for n in range(12)]
    db.session.add_all(make_admin(name, "tianjin", clock.now) for name in names)
    db.session.commit()
    start = threading.Barrier(len(names))
    outcomes = []

    def sign_in_once(name: str) -> None:
        with app.app_context():
            start.wait()
            code = pyotp.TOTP(TOTP_SECRET).at(clock.now)
            outcomes.append(accounts.sign_in(name, PASSWORD, code, OWNER, clock.now).admin)
            db.session.commit()

    threads = [threading.Thread(target=sign_in_once, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == len(names) and None not in outcomes
    db.session.expire_all()
    assert address_failures(OWNER) == 0


def test_the_sweep_forgets_failures_a_day_old(app, owner, clock):
    client = client_at(app, ATTACKER)
    for _ in range(5):
        sign_in(client, "tj-admin", "wrong password")
    count = sa.select(sa.func.count()).select_from(SigninThrottle)
    assert db.session.scalar(count) == 2
    sweeps.run_due(clock.now + timedelta(days=1))
    assert db.session.scalar(count) == 2, "still waiting out the last failure's delay"
    sweeps.run_due(clock.now + timedelta(days=1, minutes=1))
    assert db.session.scalar(count) == 0


# --- sessions -----------------------------------------------------------------------------


def test_a_session_ends_after_15_idle_minutes(client, owner, clock):
    sign_in(client, "tj-admin")
    for _ in range(3):
        clock.now += timedelta(minutes=14)
        assert signed_in(client), "each request keeps the session alive"
    clock.now += timedelta(minutes=15)
    response = client.get("/admin/filings")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


def test_a_session_ends_after_8_hours_however_busy(client, owner, clock):
    sign_in(client, "tj-admin")
    for _ in range(47):
        clock.now += timedelta(minutes=10)
        assert signed_in(client)
    clock.now += timedelta(minutes=10)
    assert not signed_in(client)


def test_the_idle_time_out_is_a_setting(env, request, clock):
    env["ADMIN_IDLE_MINUTES"] = "5"
    request.getfixturevalue("owner")
    client = request.getfixturevalue("client")
    sign_in(client, "tj-admin")
    clock.now += timedelta(minutes=4)
    assert signed_in(client)
    clock.now += timedelta(minutes=5)
    assert not signed_in(client)


def test_time_outs_below_a_minute_are_refused(env):
    assert create_app(env).config["ADMIN_SESSION_HOURS"] == 8
    for name in ("ADMIN_IDLE_MINUTES", "ADMIN_SESSION_HOURS"):
        for bad in ("0", "-3", "ten"):
            with pytest.raises(SettingsError, match=name):
                create_app({**env, name: bad})


def test_a_copied_cookie_stops_working_at_sign_out(app, client, owner):
    sign_in(client, "tj-admin")
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    assert signed_in(thief)
    client.post("/admin/logout", data={"csrf_token": csrf(client)})
    assert not signed_in(client)
    assert not signed_in(thief)


def test_a_remember_cookie_does_not_bring_an_ended_session_back(app, client, owner):
    sign_in(client, "tj-admin")
    cookie = client.get_cookie("session").value
    token = app.session_interface.get_signing_serializer(app).loads(cookie)["_user_id"]
    assert token != str(owner.id), "the cookie names the session, not the account"
    client.post("/admin/logout", data={"csrf_token": csrf(client)})
    revived = app.test_client()
    revived.set_cookie("remember_token", encode_cookie(token))
    assert not signed_in(revived)


# --- passwords ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password, message",
    [
        ("Short 9a", CONSOLE["password_too_short"].format(length=12)),
        ("only lower case letters", CONSOLE["password_too_simple"]),
        ("ONLYUPPER123456", CONSOLE["password_too_simple"]),
        ("My TJ-ADMIN password 1", CONSOLE["password_has_username"]),
        (PASSWORD, CONSOLE["password_reused"].format(count=5)),
    ],
    ids=["short", "two-classes", "two-classes-upper", "username", "current"],
)
def test_a_password_change_keeps_the_rules(client, owner, password, message):
    sign_in(client, "tj-admin")
    response = client.post(
        "/admin/password",
        data={"current": PASSWORD, "new": password, "csrf_token": csrf(client, "/admin/password")},
    )
    assert message in response.get_data(as_text=True)
    assert "change_password" not in audit_actions()


def test_a_password_change_is_audited(client, owner):
    sign_in(client, "tj-admin")
    client.post(
        "/admin/password",
        data={
            "current": PASSWORD,
            "new": "密码也可以是中文 Ok2026",
            "csrf_token": csrf(client, "/admin/password"),
        },
    )
    assert "change_password" in audit_actions()


def fast_hash(password: str) -> str:
    """Where a test is about a rule, not about what a hash costs."""
    return generate_password_hash(password, method="pbkdf2:sha256:1000")


def test_none_of_the_last_five_passwords_comes_back(owner, monkeypatch):
    monkeypatch.setattr(accounts, "generate_password_hash", fast_hash)
    now = utcnow()
    passwords = [PASSWORD] + [f"Rotated password {n}" for n in range(1, 6)]
    for password in passwords[1:5]:
        accounts.reset_password(owner, password, now)
    for used in passwords[:5]:
        with pytest.raises(accounts.AccountError, match="最近 5 次"):
            accounts.reset_password(owner, used, now)
    accounts.reset_password(owner, passwords[5], now)
    accounts.reset_password(owner, PASSWORD, now)
