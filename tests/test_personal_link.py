"""The personal link (issue 13, SPEC §5): every code text carries `/<slug>/v/<token>`, which
asks only for the ID last six and a captcha; the token is kept only as a keyed digest and
dies with the code."""

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal import sweeps
from portal.clock import utcnow
from portal.delivery.texts import code_text
from portal.extensions import db
from portal.messages import FIELD_ERRORS, LINK_USED_LABEL, Outcome
from portal.models import Filing, Province, Verification
from portal.protection import limits, sealing
from portal.protection.personal_data import verification_phone
from tests.factories import (
    CAPTCHA,
    form_fields,
    new_filing_body,
    sent_texts,
)

PHONE_A, ID_A_LAST6 = "13900000001", "011239"
PHONE_B, ID_B_LAST6 = "13900000002", "31002X"
BASE_URL = "https://beian.example.gov.cn"
HTMX = {"HX-Request": "true"}
NOT_FOUND = Outcome.NOT_FOUND.message
LINK = re.compile(rf" {re.escape(BASE_URL)}(/[a-z]+/v/[A-Za-z0-9_-]{{16}}) ")
# SPEC §5 and the docs: the longest base URL for which every province's text fits two segments.
LONGEST_BASE_URL = 46
TWO_SEGMENTS = 2 * 67


@pytest.fixture
def env(env):
    env["PUBLIC_BASE_URL"] = BASE_URL
    return env


@pytest.fixture
def links(env):
    """The link of the last text to each phone: `links()[phone]` is `/tianjin/v/<token>`."""

    def read() -> dict[str, str]:
        return {
            text["to"]: LINK.search(text["text"]).group(1)
            for text in sent_texts(env["SMS_FILE_PATH"])
        }

    return read


@pytest.fixture
def sent(submit_filing, links) -> dict[str, str]:
    """A tianjin filing with phones A and B is submitted; the links they were sent."""
    submit_filing()
    return links()


def text(response) -> str:
    return response.get_data(as_text=True)


def post_link(
    client, link: str, id_last6: str, *, headers=None, captcha=CAPTCHA, address="10.0.0.1"
):
    environ = {"REMOTE_ADDR": address}
    page = client.get(link, environ_base=environ)
    assert page.status_code == 200, text(page)
    data = {**form_fields(text(page)), "id_last6": id_last6, "captcha": captcha}
    return client.post(link, data=data, headers=headers or {}, environ_base=environ)


def statuses() -> dict[str, str]:
    db.session.expire_all()
    verifications = db.session.scalars(sa.select(Verification))
    return {verification_phone(v): v.status for v in verifications}


def test_every_text_carries_the_phones_own_link(sent, env):
    texts = sent_texts(env["SMS_FILE_PATH"])
    assert len(texts) == 2
    assert sent[PHONE_A] != sent[PHONE_B]
    for message in texts:
        assert f"请打开 {BASE_URL}{sent[message['to']]} 填写证件号码后六位" in message["text"]


def test_the_link_asks_only_for_the_id_last_six_and_the_captcha(client, sent):
    page = text(client.get(sent[PHONE_A]))
    inputs = set(re.findall(r'<input[^>]*\bname="([a-z_0-9]+)"', page))
    assert inputs == {"csrf_token", "captcha_id", "id_last6", "captcha"}
    assert f'action="{sent[PHONE_A]}#result"' in page


def test_the_right_id_through_the_link_verifies(client, sent):
    response = post_link(client, sent[PHONE_A], ID_A_LAST6)
    assert response.status_code == 200
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(response)
    assert "139****0002" in text(response)
    response = post_link(client, sent[PHONE_B], ID_B_LAST6.lower(), headers=HTMX)
    assert Outcome.ALL_VERIFIED.message in text(response)
    assert "<html" not in text(response)
    assert statuses() == {PHONE_A: "verified", PHONE_B: "verified"}
    assert db.session.scalar(sa.select(Filing.status)) == "under_review"


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_a_verified_link_answers_without_its_form(client, sent, headers):
    answer = text(post_link(client, sent[PHONE_A], ID_A_LAST6, headers=headers))

    assert Outcome.VERIFIED_OTHERS_PENDING.message in answer
    assert LINK_USED_LABEL in answer
    assert "<form" not in answer and 'name="id_last6"' not in answer
    assert "请填写证件号码后六位" not in answer


def test_a_link_whose_id_is_wrong_keeps_its_form(client, sent):
    answer = text(post_link(client, sent[PHONE_A], "999999"))

    assert NOT_FOUND in answer
    assert LINK_USED_LABEL not in answer
    assert 'name="id_last6"' in answer


def test_a_used_unknown_or_expired_link_answers_not_found_alike(client, sent, clock):
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(
        post_link(client, sent[PHONE_A], ID_A_LAST6)
    )
    unknown = "/tianjin/v/" + "A" * 16
    used = client.get(sent[PHONE_A])
    clock.now += timedelta(hours=25)
    expired = client.get(sent[PHONE_B])
    for response in (used, client.get(unknown), expired, client.get("/tianjin/v/x")):
        assert response.status_code == 404
        assert NOT_FOUND in text(response)
        assert "<form" not in text(response)
    assert len({text(response) for response in (used, expired, client.get(unknown))}) == 1


def test_a_post_to_a_used_link_is_not_found_and_changes_nothing(client, sent):
    page = client.get(sent[PHONE_A])
    post_link(client, sent[PHONE_A], ID_A_LAST6)
    data = {**form_fields(text(page)), "id_last6": ID_A_LAST6, "captcha": CAPTCHA}
    response = client.post(sent[PHONE_A], data=data)
    assert NOT_FOUND in text(response)
    assert statuses() == {PHONE_A: "verified", PHONE_B: "pending"}


def test_a_link_opens_nothing_on_another_provinces_page(client, sent):
    other = sent[PHONE_A].replace("/tianjin/", "/gansu/")
    response = client.get(other)
    assert response.status_code == 404
    assert NOT_FOUND in text(response)


def test_wrong_ids_through_the_link_count_toward_the_five(client, sent):
    for _ in range(4):
        assert NOT_FOUND in text(post_link(client, sent[PHONE_A], "999999"))
    response = post_link(client, sent[PHONE_A], "999999")
    assert Outcome.FAILED.message in text(response)
    filing = db.session.scalar(sa.select(Filing))
    db.session.refresh(filing)
    assert (filing.status, filing.return_reason) == ("returned", "verification_failed")
    assert client.get(sent[PHONE_B]).status_code == 404


def test_the_link_form_checks_its_fields_and_captcha(client, sent):
    before = statuses()
    short = post_link(client, sent[PHONE_A], "12")
    assert short.status_code == 422
    assert FIELD_ERRORS["id_last6_format"] in text(short)
    wrong_captcha = post_link(client, sent[PHONE_A], ID_A_LAST6, captcha="NOPE", headers=HTMX)
    assert wrong_captcha.status_code == 422
    assert Outcome.CAPTCHA_WRONG.message in text(wrong_captcha)
    assert statuses() == before


def test_the_link_takes_no_per_phone_limit(sent, client, app):
    """Holding the link proves the text arrived: the phone's cool-down and post limits do not
    apply (the attack itself, on the real stack, is in tests/test_lockout.py)."""
    app.config["RATELIMIT_ENABLED"] = True
    for limit in (limits.MISSES_PER_PHONE, limits.VERIFY_POSTS_PER_PHONE):
        while limits.take(limit, PHONE_A, utcnow()):
            pass
    db.session.commit()
    response = post_link(client, sent[PHONE_A], ID_A_LAST6, address="10.0.9.9")
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(response)


def test_resends_and_the_noon_resend_carry_the_same_link(client, sent, links, env):
    page = client.get("/tianjin/resend")
    data = {**form_fields(text(page)), "phone": PHONE_A, "id_last6": ID_A_LAST6, "captcha": CAPTCHA}
    assert Outcome.RESEND_SENT.message in text(client.post("/tianjin/resend", data=data))
    assert links()[PHONE_A] == sent[PHONE_A]
    noon = db.session.scalar(sa.select(Verification.noon_resend_at).limit(1))
    db.session.execute(sa.update(Filing).values(deadline=noon + timedelta(hours=1)))
    sweeps.run_due(noon)
    assert links() == sent
    assert len(sent_texts(env["SMS_FILE_PATH"])) == 5


def test_the_database_keeps_only_the_tokens_digest(client, sent):
    tokens = {link.rsplit("/", 1)[1] for link in sent.values()}
    with db.engine.connect() as connection:
        for table in db.metadata.sorted_tables:
            for row in connection.execute(sa.select(table)):
                stored = " ".join(str(value) for value in row)
                assert not any(token in stored for token in tokens), table.name
    digests = set(db.session.scalars(sa.select(Verification.link_digest)))
    assert digests == {sealing.digest("personal-link", token) for token in tokens}


def test_a_link_sent_before_a_key_rotation_still_works(app, client, sent, links):
    """DATA_KEY="new,old": the old link opens the form, and a resend carries the same link."""
    app.config["DATA_KEYS"] = ("new-key", "test-secret")
    page = client.get("/tianjin/resend")
    data = {**form_fields(text(page)), "phone": PHONE_B, "id_last6": ID_B_LAST6, "captcha": CAPTCHA}
    assert Outcome.RESEND_SENT.message in text(client.post("/tianjin/resend", data=data))
    assert links()[PHONE_B] == sent[PHONE_B]
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(
        post_link(client, sent[PHONE_A], ID_A_LAST6)
    )


def test_a_verification_made_before_links_gets_one_with_its_next_text(app, client, sent, links):
    db.session.execute(sa.update(Verification).values(link_digest=None))
    db.session.commit()
    assert client.get(sent[PHONE_A]).status_code == 404
    page = client.get("/tianjin/resend")
    data = {**form_fields(text(page)), "phone": PHONE_A, "id_last6": ID_A_LAST6, "captcha": CAPTCHA}
    assert Outcome.RESEND_SENT.message in text(client.post("/tianjin/resend", data=data))
    assert links()[PHONE_A] == sent[PHONE_A]
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(
        post_link(client, sent[PHONE_A], ID_A_LAST6)
    )


def test_every_provinces_text_fits_two_segments(app, sent):
    """A Chinese text is sent as UCS-2: 70 characters in one segment, 67 a part when split."""
    token = sent[PHONE_A].rsplit("/", 1)[1]
    base_url = "https://" + "x" * (LONGEST_BASE_URL - len("https://"))
    for province in db.session.scalars(sa.select(Province)):
        province.code_validity_hours = 99
        link = f"{base_url}/{province.slug}/v/{token}"
        assert len(code_text(province, "123456", link)) <= TWO_SEGMENTS, province.slug


@pytest.mark.parametrize(
    ("id_type", "id_number", "typed"),
    [("passport", "EA123456B", "23456b"), ("hk_macao_permit", "H12345AB9", "345AB9")],
)
def test_an_id_last_six_with_letters_verifies(
    client, submit_filing, links, id_type, id_number, typed
):
    body = new_filing_body()
    body["entity"]["principal"].update(id_type=id_type, id_number=id_number)
    submit_filing(body)
    response = post_link(client, links()[PHONE_A], typed)
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(response)
