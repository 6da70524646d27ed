"""Test data: valid principals and filings, and reading the applicant forms."""

import json
import re
from pathlib import Path

import sqlalchemy as sa
from redis import Redis
from rq import Queue, SimpleWorker

from portal import queues
from portal.extensions import db
from portal.models import Event, Filing, Provider, SmsMessage, Verification

CAPTCHA = "TEST"


def principal(phone: str, id_number: str, name: str = "张三") -> dict:
    return {"name": name, "phone": phone, "id_type": "resident_id", "id_number": id_number}


# Resident ID numbers with valid GB 11643 check characters.
ID_A = "120101199001011239"
ID_B = "11010519491231002X"
ID_C = "620102197812120012"
ID_D = "440304199001010011"


def new_filing_body(reference: str = "REF-1", province: str = "tianjin", **overrides) -> dict:
    body = {
        "province": province,
        "type": "new_filing",
        "reference": reference,
        "entity": {"name": "示例科技有限公司", "principal": principal("13900000001", ID_A)},
        "websites": [
            {
                "domain": "a.example.cn",
                "name": "示例网",
                "principal": principal("13900000002", ID_B, "李四"),
            }
        ],
    }
    body.update(overrides)
    return body


def form_fields(page: str) -> dict[str, str]:
    """The hidden fields of a rendered form: the CSRF token and the captcha challenge."""
    return {
        name: re.search(rf'name="{name}" type="hidden" value="([^"]*)"', page).group(1)
        for name in ("csrf_token", "captcha_id")
    }


def sent_texts(sms_file_path: str) -> list[dict]:
    """What the `file` SMS backend has sent: one dict (`to`, `text`, ...) per text."""
    path = Path(sms_file_path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def queues_on(connection: Redis) -> dict[str, Queue]:
    """The portal's queues on that Redis, as `app.extensions["rq_queues"]` holds them."""
    return {name: Queue(name, connection=connection) for name in queues.QUEUE_NAMES}


def run_worker(queue: Queue, max_jobs: int = 50) -> None:
    """Run every job queued on the portal's queues on `queue`'s Redis (and due retries) in this
    process, texts first as a worker on all three does; bounded so a loop cannot hang."""
    every = list(queues_on(queue.connection).values())
    SimpleWorker(every, connection=queue.connection).work(
        burst=True, with_scheduler=True, max_jobs=max_jobs
    )


def domain_state() -> dict:
    """Everything a verify, resend or submission could change (not captchas or attempts),
    read afresh: compare it before and after to show that a request changed nothing."""
    db.session.expire_all()
    return {
        "filings": db.session.execute(
            sa.select(Filing.id, Filing.status, Filing.return_reason, Filing.deadline)
        ).all(),
        "verifications": db.session.execute(
            sa.select(
                Verification.id,
                Verification.status,
                Verification.wrong_id_count,
                Verification.resend_count,
                Verification.verified_at,
            ).order_by(Verification.id)
        ).all(),
        "events": db.session.scalar(sa.select(sa.func.count()).select_from(Event)),
        "texts": db.session.scalar(sa.select(sa.func.count()).select_from(SmsMessage)),
        "providers": db.session.scalar(sa.select(sa.func.count()).select_from(Provider)),
    }
