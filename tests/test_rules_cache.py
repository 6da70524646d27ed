"""The rollout and the filing-type rules are kept per process for a few seconds
(portal/rules_cache.py): a change from the national console reaches this process at once and
every other process within `rules_cache.SECONDS`, and a page reads only its own province."""

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal.clock import utcnow
from portal.extensions import db
from portal.models import FilingTypeRule, Province
from tests.admins import csrf, make_admin, sign_in
from tests.test_startup import STARTUP_SECONDS, free_port, process_env

ROOT = Path(__file__).resolve().parent.parent
# "Within a few seconds" (issue 14), fixed here rather than read from rules_cache.SECONDS: a
# copy kept too long then fails the test instead of stretching its wait.
SEEN_WITHIN = 6.0
VALIDITY = "验证码自首次发送起 {hours} 小时内有效"


@pytest.fixture
def national_admin(app, client):
    db.session.add(make_admin("boss", None, utcnow()))
    db.session.commit()
    sign_in(client, "boss")


@pytest.fixture
def other_process(env, tmp_path):
    """The portal in gunicorn, two worker processes, on the test's database."""
    port = free_port()
    settings = {**env, "PORT": str(port), "HOST": "127.0.0.1", "PYTHONPATH": str(ROOT)}
    settings |= {"GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "2"}
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "wsgi:app"],
            cwd=ROOT,
            env=process_env(tmp_path, settings),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/healthz", server, log)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text(errors="replace")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(log.read_text(errors="replace"))


def _page(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _change_tianjin(client, **values) -> None:
    data = {"live_from": "2017-12-18", "code_validity_hours": "24", "resend_limit": "2"}
    response = client.post(
        "/admin/rollout/tianjin", data={**data, **values, "csrf_token": csrf(client)}
    )
    assert response.status_code == 302


def _every_worker_shows(url: str, wanted, seconds: float) -> bool:
    """True once ten answers in a row (both workers, several threads) satisfy `wanted`."""
    deadline, in_a_row = time.monotonic() + seconds, 0
    while time.monotonic() < deadline and in_a_row < 10:
        in_a_row = in_a_row + 1 if wanted(*_page(url)) else 0
    return in_a_row == 10


def test_a_rollout_change_reaches_the_other_processes_within_seconds(
    national_admin, client, other_process
):
    tianjin, gansu = f"{other_process}/tianjin/verify", f"{other_process}/gansu/verify"
    for _ in range(10):  # every worker has read the rollout before the change
        assert VALIDITY.format(hours=24) in _page(tianjin)[1]
        assert _page(gansu)[0] == 200

    _change_tianjin(client, code_validity_hours="48")
    assert VALIDITY.format(hours=48) in client.get("/tianjin/verify").get_data(as_text=True)
    shows_48 = lambda status, page: VALIDITY.format(hours=48) in page  # noqa: E731
    assert _every_worker_shows(tianjin, shows_48, SEEN_WITHIN)
    assert VALIDITY.format(hours=24) in _page(gansu)[1], "one province's change stays its own"

    tomorrow = time.strftime("%Y-%m-%d", time.localtime(time.time() + 2 * 86400))
    _change_tianjin(client, live_from=tomorrow)
    assert client.get("/tianjin/verify").status_code == 404
    assert _every_worker_shows(tianjin, lambda status, page: status == 404, SEEN_WITHIN)
    assert _page(gansu)[0] == 200


def test_a_filing_type_rule_change_reaches_the_other_processes_within_seconds(
    national_admin, client, other_process
):
    page = f"{other_process}/tianjin/verify"
    row = '<th scope="row">取消接入</th><td>{}</td>'
    for _ in range(10):  # every worker has read the rules before the change
        assert row.format("暂不验证") in _page(page)[1]

    data = {"verification_required": "y", "csrf_token": csrf(client)}
    assert client.post("/admin/rules/cancel_access", data=data).status_code == 302
    assert row.format("网站负责人") in client.get("/tianjin/verify").get_data(as_text=True)
    shows_rule = lambda status, text: row.format("网站负责人") in text  # noqa: E731
    assert _every_worker_shows(page, shows_rule, SEEN_WITHIN)


def test_each_page_gets_its_own_provinces_settings(client):
    db.session.execute(sa.update(Province).where(Province.slug == "gansu").values(resend_limit=5))
    db.session.commit()
    for slug, authority, limit in [
        ("tianjin", "天津市通信管理局", 2),
        ("gansu", "甘肃省通信管理局", 5),
    ]:
        page = client.get(f"/{slug}/resend").get_data(as_text=True)
        assert authority in page and f"每个验证码最多可手动重发 {limit} 次" in page


def test_a_change_rolled_back_keeps_the_copy(app, client):
    assert client.get("/tianjin/verify").status_code == 200
    copy = app.extensions["rules_cache"]
    db.session.get(FilingTypeRule, "cancel_access").verification_required = True
    db.session.flush()
    db.session.rollback()
    db.session.commit()
    assert app.extensions["rules_cache"] is copy
    db.session.get(FilingTypeRule, "cancel_access").verification_required = True
    db.session.commit()
    assert app.extensions["rules_cache"] is None
