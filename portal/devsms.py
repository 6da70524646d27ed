"""The development SMS inbox at `/dev/sms`: what the `file` backend has sent, newest first, each
text with its filing's reference, its province and when it was sent. Never in production."""

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, current_app, render_template

from portal.clock import SHANGHAI
from portal.extensions import db
from portal.messages import DEV_INBOX
from portal.models import Filing, Province, SmsMessage, Verification

bp = Blueprint("devsms", __name__, url_prefix="/dev")

SHOWN = 50


@dataclass(frozen=True)
class InboxText:
    to: str
    text: str
    reference: str | None = None
    province: str | None = None
    sent_at: datetime | None = None


@bp.get("/sms")
def inbox():
    texts = sorted(_with_filings(_last_sent()), key=_newest_first, reverse=True)
    return render_template(
        "dev/sms.html",
        texts=texts,
        backend=current_app.config["SMS_BACKEND"],
        text=DEV_INBOX,
        shanghai=SHANGHAI,
    )


def _last_sent() -> list[dict]:
    """The last SHOWN lines of the file, newest first; a line that is not JSON is skipped."""
    path = Path(current_app.config["SMS_FILE_PATH"])
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    sent = []
    for line in reversed(lines[-SHOWN:]):
        try:
            sent.append(json.loads(line))
        except ValueError:
            continue
    return [line for line in sent if isinstance(line, dict)]


def _with_filings(sent: list[dict]) -> list[InboxText]:
    """Each line with its row's filing, province and time; lines of another database get none."""
    row_ids = [_row_id(line.get("message_id")) for line in sent]
    rows = db.session.execute(
        sa.select(SmsMessage.id, Filing.reference, Province.name, SmsMessage.sent_at)
        .join(Verification, SmsMessage.verification_id == Verification.id)
        .join(Filing, Verification.filing_id == Filing.id)
        .join(Province, Filing.province_slug == Province.slug)
        .where(SmsMessage.id.in_([row_id for row_id in row_ids if row_id is not None]))
    )
    about = {row.id: (row.reference, row.name, row.sent_at) for row in rows}
    return [
        InboxText(str(line.get("to", "")), str(line.get("text", "")), *about.get(row_id, ()))
        for line, row_id in zip(sent, row_ids, strict=True)
    ]


def _row_id(message_id) -> int | None:
    """The `sms_messages` id in a message id `sms-<id>`."""
    digits = str(message_id or "").removeprefix("sms-")
    return int(digits) if digits.isdigit() else None


def _newest_first(text: InboxText) -> datetime:
    return text.sent_at or datetime.min.replace(tzinfo=SHANGHAI)
