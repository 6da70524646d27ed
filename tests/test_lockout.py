"""Issue 13, tried as an attacker would: someone who knows only a phone number cannot block
its owner. On the real stack: rate limits on, Redis (the suite's database, or a Redis of
the test's own that is restarted), texts delivered by an RQ worker."""

import re
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from redis import Redis

from portal import sweeps
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import Outcome
from portal.models import Filing, PhoneCount
from portal.protection import limits
from tests.factories import CAPTCHA, form_fields, run_worker, sent_texts
from tests.servers import RedisServer

PHONE_A, ID_A_LAST6 = "13900000001", "011239"
PHONE_B = "13900000002"
TOO_MANY = Outcome.TOO_MANY_ATTEMPTS.message
LINK = re.compile(r"https?://\S+?(/[a-z]+/v/[A-Za-z0-9_-]{16}) ")
CODE = re.compile(r"核验码为(\d{6})")


@pytest.fixture
def limited(env) -> None:
    env["RATELIMIT_ENABLED"] = "true"


@pytest.fixture
def texts(limited, queue, submit_filing, env) -> dict[str, dict[str, str]]:
    """A tianjin filing is submitted and its texts delivered by a worker: each phone's code and
    link."""
    submit_filing()
    run_worker(queue)
    return {
        text["to"]: {
            "code": CODE.search(text["text"]).group(1),
            "link": LINK.search(text["text"]).group(1),
        }
        for text in sent_texts(env["SMS_FILE_PATH"])
    }


def post(client, url: str, values: dict, *, address: str, captcha: str = CAPTCHA):
    """GET the form from `address` for its hidden fields, then POST it from there."""
    environ = {"REMOTE_ADDR": address}
    page = client.get(url, environ_base=environ).get_data(as_text=True)
    data = {**form_fields(page), "captcha": captcha, **values}
    return client.post(url, data=data, environ_base=environ)


def said(response) -> str:
    return response.get_data(as_text=True)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def filing_status() -> str:
    db.session.expire_all()
    return db.session.scalar(sa.select(Filing.status))


def test_posts_with_a_wrong_captcha_do_not_block_the_owner(texts, client):
    """Ten verify posts and five resend posts with the owner's phone and wrong captchas, from
    many addresses: the owner's own posts still go through."""
    code = texts[PHONE_A]["code"]
    guess = {"code": wrong(code), "phone": PHONE_A, "id_last6": ID_A_LAST6}
    for number in range(limits.VERIFY_POSTS_PER_PHONE.amount):
        response = post(client, "/tianjin/verify", guess, address=f"10.1.0.{number}", captcha="NO")
        assert Outcome.CAPTCHA_WRONG.message in said(response)
    resend = {"phone": PHONE_A, "id_last6": ID_A_LAST6}
    for number in range(limits.RESEND_POSTS_PER_PHONE.amount):
        response = post(client, "/tianjin/resend", resend, address=f"10.2.0.{number}", captcha="NO")
        assert Outcome.CAPTCHA_WRONG.message in said(response)

    assert Outcome.RESEND_SENT.message in said(
        post(client, "/tianjin/resend", resend, address="192.0.2.7")
    )
    right = {**guess, "code": code}
    owner = post(client, "/tianjin/verify", right, address="192.0.2.7")
    assert owner.status_code == 200
    assert Outcome.VERIFIED_OTHERS_PENDING.message in said(owner)


def test_a_phone_cooled_down_by_a_stranger_verifies_through_its_link(texts, client):
    """Wrong codes with solved captchas, from several addresses, until the phone cools down and
    its verify posts are used up: the form refuses the owner, the link does not."""
    code = texts[PHONE_A]["code"]
    guess = {"code": wrong(code), "phone": PHONE_A, "id_last6": ID_A_LAST6}
    answers = [
        post(client, "/tianjin/verify", guess, address=f"10.3.0.{number}")
        for number in range(limits.VERIFY_POSTS_PER_PHONE.amount + 2)
    ]
    misses = limits.MISSES_PER_PHONE.amount
    assert [response.status_code for response in answers] == [200] * misses + [429] * (
        len(answers) - misses
    )
    right = {**guess, "code": code}
    refused = post(client, "/tianjin/verify", right, address="192.0.2.7")
    assert refused.status_code == 429
    assert TOO_MANY in said(refused)
    assert filing_status() == "pending_verification"

    owner = post(client, texts[PHONE_A]["link"], {"id_last6": ID_A_LAST6}, address="192.0.2.7")
    assert owner.status_code == 200
    assert Outcome.VERIFIED_OTHERS_PENDING.message in said(owner)


@pytest.fixture
def own_redis(tmp_path, env, limited):
    """A Redis of the test's own, without persistence, for the jobs and the rate limits."""
    server = RedisServer(tmp_path)
    server.start()
    env["REDIS_URL"] = server.url
    yield server
    server.stop()


def test_the_wrong_code_budget_survives_a_redis_restart(own_redis, app, client, submit_filing, env):
    submit_filing()
    run_worker(app.extensions["rq_queues"]["sms"])
    (text_a,) = [text for text in sent_texts(env["SMS_FILE_PATH"]) if text["to"] == PHONE_A]
    code, link = CODE.search(text_a["text"]).group(1), LINK.search(text_a["text"]).group(1)
    guess = {"code": wrong(code), "phone": PHONE_A, "id_last6": ID_A_LAST6}
    statuses = []
    for number in range(limits.MISSES_PER_PHONE.amount + 2):
        statuses.append(
            post(client, "/tianjin/verify", guess, address=f"10.4.0.{number}").status_code
        )
        own_redis.stop()
        own_redis.start()
        assert Redis.from_url(own_redis.url).dbsize() == 0  # the restart kept nothing
    assert statuses == [200] * limits.MISSES_PER_PHONE.amount + [429, 429]

    owner = post(client, link, {"id_last6": ID_A_LAST6}, address="192.0.2.7")
    assert Outcome.VERIFIED_OTHERS_PENDING.message in said(owner)


def test_parallel_wrong_codes_take_no_more_than_the_budget(limited, app):
    """Twelve misses of one phone at the same moment: exactly the five allowed are counted."""
    barrier = threading.Barrier(12, timeout=30)
    taken: list[bool] = []
    now = utcnow()

    def attempt() -> None:
        with app.app_context():
            barrier.wait()
            taken.append(limits.take(limits.MISSES_PER_PHONE, PHONE_A, now))
            db.session.commit()

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(taken) == [False] * 7 + [True] * limits.MISSES_PER_PHONE.amount


def test_the_sweep_drops_counts_whose_window_is_over(limited, app):
    now = utcnow()
    limits.take(limits.MISSES_PER_PHONE, PHONE_A, now - limits.MISSES_PER_PHONE.window)
    limits.take(limits.MISSES_PER_PHONE, PHONE_B, now - timedelta(minutes=1))
    db.session.commit()
    sweeps.run_due(now)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PhoneCount)) == 1
    left = limits.MISSES_PER_PHONE.amount - 1
    assert [limits.take(limits.MISSES_PER_PHONE, PHONE_B, now) for _ in range(left + 1)] == [
        True
    ] * left + [False], "phone B's count was kept"
