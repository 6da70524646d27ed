"""The embedded default's demo data: what a newcomer's first `make run` shows."""

import re

import pyotp
import sqlalchemy as sa

from portal.extensions import db
from portal.models import Filing


def run_demo(app) -> str:
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_loads_filings_whose_codes_reach_the_inbox(app, client, sent_codes):
    output = run_demo(app)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Filing)) == 3
    assert set(sent_codes()) == {"13900000001", "13900000002", "13900000003", "13900000004"}
    inbox = client.get("/dev/sms").get_data(as_text=True)
    assert all(code in inbox for code in sent_codes().values())
    links = re.findall(r'<a href="(http://127\.0\.0\.1:5000/[a-z]+/v/[A-Za-z0-9_-]{16})"', inbox)
    assert len(links) == inbox.count("<tr>") - 1, "each text's link opens from the inbox"
    for link in links:
        assert client.get(link.removeprefix("http://127.0.0.1:5000")).status_code == 200
    key = re.search(r"API key: (\S+)", output).group(1)
    listed = client.get("/api/v1/filings/none", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 404, "the printed key is accepted"


def test_the_two_tianjin_demo_filings_have_no_phone_in_common(app, client):
    """Each text in the inbox then belongs to one filing: the phone tells which."""
    run_demo(app)
    inbox = client.get("/dev/sms").get_data(as_text=True)
    phones: dict[str, set[str]] = {"DEMO-TJ-1": set(), "DEMO-TJ-2": set()}
    for row in inbox.split("<tbody>")[1].split("<tr>")[1:]:
        cells = re.findall(r"<td>(.*?)</td>", row, re.S)
        if cells[2] in phones:
            phones[cells[2]].add(cells[1])
    assert phones["DEMO-TJ-1"] and phones["DEMO-TJ-2"]
    assert phones["DEMO-TJ-1"].isdisjoint(phones["DEMO-TJ-2"])


def test_demo_runs_again_without_duplicates_and_with_fresh_secrets(app):
    first, second = run_demo(app), run_demo(app)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Filing)) == 3
    assert re.search(r"API key: (\S+)", first).group(1) != re.search(
        r"API key: (\S+)", second
    ).group(1)


def test_demo_console_accounts_sign_in(app, client):
    """With the printed password and the code `admins code` prints: no authenticator app needed."""
    output = run_demo(app)
    password = re.search(r"password (\S+)", output).group(1)
    secret = re.search(r"demo-tianjin: TOTP secret (\S+)", output).group(1)
    code = app.test_cli_runner().invoke(args=["admins", "code", "demo-tianjin"]).output.strip()
    assert pyotp.TOTP(secret).verify(code, valid_window=1)
    page = client.get("/admin/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    data = {"csrf_token": token, "username": "demo-tianjin", "password": password, "otp": code}
    assert client.post("/admin/login", data=data).status_code == 302
    assert "DEMO-TJ-1" in client.get("/admin/filings").get_data(as_text=True)
