"""A newcomer's first ten minutes (issue 13, item 8): the home page, the development SMS
inbox, `make run` on an earlier run's instance and `make reset`, and a README whose links
stay inside the clone."""

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.messages import DEV_INBOX
from portal.models import Province
from tests.factories import ID_A, ID_C, new_filing_body, principal

ROOT = Path(__file__).resolve().parent.parent


def hrefs(page: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', page)


def test_home_lists_every_live_province_and_the_console_sign_in(client):
    response = client.get("/")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    links = hrefs(page)
    slugs = sorted(db.session.scalars(sa.select(Province.slug)))
    assert len(slugs) == 31  # every rollout date is past: all are live
    assert [link for link in links if re.fullmatch(r"/[a-z]+/", link)] == [f"/{s}/" for s in slugs]
    assert "/admin/login" in links
    assert "天津市通信管理局" in page


def test_home_leaves_out_a_province_whose_check_is_not_live(client):
    tianjin = db.session.get(Province, "tianjin")
    tianjin.live_from = datetime.now(UTC).date() + timedelta(days=30)
    db.session.get(Province, "gansu").live_from = None
    db.session.commit()
    links = hrefs(client.get("/").get_data(as_text=True))
    assert "/tianjin/" not in links
    assert "/gansu/" not in links
    assert "/beijing/" in links


def test_each_linked_province_page_opens(client):
    for link in hrefs(client.get("/").get_data(as_text=True)):
        if re.fullmatch(r"/[a-z]+/", link):
            assert client.get(link).status_code == 200, link


@pytest.fixture
def two_filings(clock, submit_filing):
    """Tianjin's at 09:00 Shanghai time, Gansu's a minute later."""
    clock.now = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    submit_filing(new_filing_body("TJ-FIRST"))
    clock.now += timedelta(minutes=1)
    gansu = new_filing_body(
        "GS-SECOND",
        province="gansu",
        entity={"name": "甘肃公司", "principal": principal("13900000005", ID_A)},
    )
    gansu["websites"][0]["principal"] = principal("13900000006", ID_C)
    submit_filing(gansu)


def rows(page: str) -> list[str]:
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    return [re.sub(r"\s+", " ", row) for row in body.split("<tr>")[1:]]


def test_sms_inbox_shows_each_texts_filing_province_and_time_newest_first(two_filings, client):
    page = client.get("/dev/sms").get_data(as_text=True)
    shown = rows(page)
    assert len(shown) == 4
    assert all("GS-SECOND" in row and "甘肃" in row and "09:01:00" in row for row in shown[:2])
    assert all("TJ-FIRST" in row and "天津" in row and "09:00:00" in row for row in shown[2:])
    assert "2026-03-02 09:01:00" in shown[0]
    for heading in ("time", "phone", "reference", "province", "text"):
        assert f"<th>{DEV_INBOX[heading]}</th>" in page


def test_sms_inbox_shows_lines_it_cannot_place_without_failing(env, client):
    lines = [
        json.dumps({"to": "13900000001", "text": "旧的短信", "message_id": "sms-999"}),
        "not json",
        json.dumps(["a", "list"]),
        json.dumps({"to": "13900000002", "text": "无编号", "message_id": ["x"]}),
    ]
    Path(env["SMS_FILE_PATH"]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    response = client.get("/dev/sms")
    assert response.status_code == 200
    shown = rows(response.get_data(as_text=True))
    assert len(shown) == 2
    assert all(row.count(DEV_INBOX["unknown"]) == 3 for row in shown)


@pytest.fixture
def make(tmp_path):
    """`make` on the repository's Makefile with a stand-in venv and flask, in `tmp_path`."""
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "installed").touch()  # newer than pyproject.toml: nothing to install
    instance = tmp_path / "instance"
    instance.mkdir()

    def run(target: str) -> str:
        command = ["make", "-C", str(ROOT), target, f"VENV={venv}", f"INSTANCE={instance}"]
        finished = subprocess.run(
            [*command, "FLASK=echo flask"], capture_output=True, text=True, timeout=60
        )
        assert finished.returncode == 0, finished.stderr
        return finished.stdout

    return run, instance


def test_make_run_on_a_fresh_instance_just_runs(make):
    run, _ = make
    output = run("run")
    assert "flask demo" in output
    assert "make reset" not in output


def test_make_run_on_an_earlier_runs_instance_says_how_to_start_afresh(make):
    run, instance = make
    (instance / "portal.sqlite3").touch()
    output = run("run")
    assert "earlier run" in output
    assert "`make reset` starts afresh" in output


def test_make_reset_deletes_the_database_and_the_inbox_only(make):
    run, instance = make
    for name in ("portal.sqlite3", "portal.sqlite3-wal", "portal.sqlite3-shm", "sms.jsonl"):
        (instance / name).touch()
    (instance / "secret_key").write_text("kept")
    run("reset")
    assert sorted(path.name for path in instance.iterdir()) == ["secret_key"]
    assert "make reset" not in run("run")


def test_make_run_links_the_texts_to_the_port_it_serves(make):
    run, _ = make
    output = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "run", "PORT=5004"], capture_output=True, text=True
    ).stdout
    assert "http://127.0.0.1:5004" in output
    assert "--port 5004" in output


def test_readme_links_stay_inside_the_clone():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)]+)\)", readme)
    assert targets, "the README links its docs and screenshots"
    for target in targets:
        if target.startswith(("http://127.0.0.1", "#")):
            continue
        path = (ROOT / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), target
        assert path.exists(), target
    assert "../" not in readme
