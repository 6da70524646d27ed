"""With Redis, a captcha's answer is kept there, not in the database (portal/captchas.py):
the same rules as the database's rows (the session's own, once, for five minutes), and the
database again while Redis is away."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from redis.connection import Connection

from portal import captchas
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import Outcome
from portal.models import CaptchaChallenge
from tests.factories import CAPTCHA, form_fields
from tests.servers import RedisServer

UNKNOWN = {"code": "000000", "phone": "13900000009", "id_last6": "011239"}


def page_fields(client) -> dict[str, str]:
    return form_fields(client.get("/tianjin/verify").get_data(as_text=True))


def post(client, fields: dict, captcha: str = CAPTCHA):
    return client.post("/tianjin/verify", data={**fields, **UNKNOWN, "captcha": captcha})


def answered(response) -> bool:
    """Past the captcha: the unknown phone's answer, not the captcha's."""
    page = response.get_data(as_text=True)
    assert (Outcome.CAPTCHA_WRONG.message in page) is (response.status_code == 422)
    return Outcome.NOT_FOUND.message in page


def stored_rows() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(CaptchaChallenge))


@pytest.fixture
def on_redis(on_rq, app, redis_connection):
    return redis_connection


def test_a_page_keeps_its_challenge_in_redis_and_writes_no_row(on_redis, client):
    fields = page_fields(client)
    assert on_redis.exists(f"captcha:challenge:{fields['captcha_id']}")
    assert 0 < on_redis.ttl(f"captcha:challenge:{fields['captcha_id']}") <= 6 * 60
    assert stored_rows() == 0
    assert answered(post(client, fields))
    assert not on_redis.exists(f"captcha:challenge:{fields['captcha_id']}")
    assert stored_rows() == 0


def test_a_page_whose_challenge_is_in_redis_commits_nothing(on_redis, client):
    """It has nothing to write: the empty commit is skipped."""
    commits = []
    record = commits.append
    sa.event.listen(db.session, "after_commit", record)
    try:
        page_fields(client)
        client.get("/tianjin/resend")
        client.get("/tianjin/captcha/new", headers={"HX-Request": "true"})
    finally:
        sa.event.remove(db.session, "after_commit", record)
    assert commits == []


def test_without_redis_a_page_commits_its_challenge(client):
    fields = page_fields(client)
    assert stored_rows() == 1
    assert answered(post(client, fields))


def test_a_challenge_in_redis_is_used_once_whatever_the_answer(on_redis, client):
    fields = page_fields(client)
    assert not answered(post(client, fields, captcha="NOPE"))
    assert not answered(post(client, fields))
    fields = page_fields(client)
    assert answered(post(client, fields))
    assert not answered(post(client, fields))


def test_a_challenge_in_redis_is_only_for_its_own_session(on_redis, app, client):
    with app.app_context():
        others = page_fields(app.test_client())
    own = page_fields(client)
    assert not answered(post(client, {**own, "captcha_id": others["captcha_id"]}))
    assert on_redis.exists(f"captcha:challenge:{others['captcha_id']}"), "not used up by others"


def test_only_a_sessions_first_page_sets_its_cookie(on_redis, client):
    """A challenge is bound to the session by its id, not listed in the cookie: later pages
    and posts leave the cookie as it is (no new signature on every page)."""
    first = client.get("/tianjin/verify")
    assert "session=" in first.headers.get("Set-Cookie", "")
    fields = page_fields(client)
    later = client.get("/tianjin/verify")
    assert "Set-Cookie" not in later.headers
    answer = post(client, fields)
    assert answered(answer)
    assert "Set-Cookie" not in answer.headers


def test_every_open_tab_of_a_session_can_answer_its_challenge(on_redis, client):
    tabs = [page_fields(client) for _ in range(6)]
    assert all(answered(post(client, fields)) for fields in tabs)


@pytest.mark.parametrize("backend_store", ["redis", "database"])
def test_a_made_up_challenge_id_is_refused(request, client, backend_store):
    """Right length, wrong MAC: neither its image nor an answer, wherever challenges are kept."""
    if backend_store == "redis":
        request.getfixturevalue("on_redis")
    own = page_fields(client)["captcha_id"]
    cut = captchas.NONCE_LENGTH
    forged = own[:cut] + ("1" if own[cut] == "0" else "0") + own[cut + 1 :]
    assert client.get(f"/tianjin/captcha/{forged}.png").status_code == 404
    assert not answered(post(client, {**page_fields(client), "captcha_id": forged}))
    assert client.get(f"/tianjin/captcha/{own}.png").status_code == 200


@pytest.mark.parametrize(("age", "accepted"), [(timedelta(minutes=5, seconds=1), False),
                                               (timedelta(minutes=4, seconds=50), True)])  # fmt: skip
def test_a_challenge_in_redis_lasts_five_minutes(on_redis, client, age, accepted):
    fields = page_fields(client)
    key = f"captcha:challenge:{fields['captcha_id']}"
    answer, _, _ = on_redis.get(key).decode().partition("|")
    on_redis.set(key, f"{answer}|{(utcnow() - age).isoformat()}", keepttl=True)
    assert answered(post(client, fields)) is accepted


def test_while_redis_is_away_challenges_are_rows_and_still_used_once(env, tmp_path, client_factory):
    server = RedisServer(tmp_path)
    server.start()
    env["REDIS_URL"] = server.url
    client = client_factory()
    try:
        server.stop()
        fields = page_fields(client)
        assert stored_rows() == 1
        assert answered(post(client, fields))
        assert not answered(post(client, fields))
        server.start()
        rows = stored_rows()  # each answer above carried a new challenge, in the database
        page_fields(client)
        assert stored_rows() == rows, "back in Redis"
    finally:
        server.stop()


@pytest.fixture
def client_factory(request):
    """A client of the app built now (after the test has set its `env`)."""
    return lambda: request.getfixturevalue("client")


def test_a_page_takes_its_challenge_from_the_pool_with_its_image(on_redis, client):
    """The answer and the image come from one pool entry (split by the script in Redis)."""
    on_redis.delete("captcha:pool:test")
    on_redis.rpush("captcha:pool:test", b"WXYZ\0\x89PNG pooled")
    fields = page_fields(client)
    challenge_id = fields["captcha_id"]
    assert on_redis.get(f"captcha:challenge:{challenge_id}").decode().startswith("WXYZ|")
    assert 0 < on_redis.ttl(f"captcha:image:{challenge_id}") <= 60
    assert client.get(f"/tianjin/captcha/{challenge_id}.png").data == b"\x89PNG pooled"
    assert answered(post(client, fields, captcha="wxyz"))
    assert not on_redis.exists("captcha:pool:test")


def test_a_page_finding_the_pool_empty_keeps_the_answer_it_drew(on_redis, client):
    on_redis.delete("captcha:pool:test")
    fields = page_fields(client)
    assert not on_redis.exists(f"captcha:image:{fields['captcha_id']}")
    assert answered(post(client, fields))


def test_a_page_makes_its_challenge_in_one_redis_round_trip(on_redis, client, monkeypatch):
    """Pool pop, image, answer and the refill check in one script: the pool here is low, so
    the refill lock is taken in the same round trip."""
    on_redis.delete("captcha:pool:test", captchas.REFILL_LOCK)
    on_redis.rpush("captcha:pool:test", b"WXYZ\0\x89PNG pooled")
    client.get("/tianjin/verify")  # the refill job is queued once: that costs its own calls
    on_redis.rpush("captcha:pool:test", b"WXYZ\0\x89PNG pooled")
    sent = []
    send = Connection.send_packed_command
    monkeypatch.setattr(
        Connection,
        "send_packed_command",
        lambda self, *args, **kw: sent.append(1) or send(self, *args, **kw),
    )
    fields = page_fields(client)
    assert len(sent) == 1
    assert on_redis.get(f"captcha:image:{fields['captcha_id']}") == b"\x89PNG pooled"
