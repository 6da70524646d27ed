"""Delivery receipts pushed by the gateways (SPEC §9): `POST /sms/receipts/<gateway>/<token>`.

A batch is taken in three statements whatever its size: one SELECT finds its texts (by
the gateway's id, or by ours where the gateway carries it back), one UPDATE (executemany)
records each receipt on a text that has none yet, so the same receipt twice changes
nothing, and the commit. A receipt for a text we do not know is acknowledged and logged;
a body not in the gateway's format gets 400 and changes nothing; a wrong token, 404.
"""

import hmac
import logging
from datetime import datetime

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, jsonify, request

from portal import monitoring
from portal.clock import utcnow
from portal.delivery import reroute
from portal.delivery.gateways import RECEIPT_FORMATS, Receipt
from portal.extensions import db
from portal.models import Delivery, SmsMessage

log = logging.getLogger(__name__)

bp = Blueprint("receipts", __name__, url_prefix="/sms/receipts")


@bp.post("/<gateway>/<token>")
def take(gateway: str, token: str):
    receipt_format = RECEIPT_FORMATS.get(gateway)
    if receipt_format is None or not _token_is_right(token):
        abort(404)
    try:
        receipts = receipt_format.parse(request.get_data())
    except ValueError as error:
        return jsonify(receipt_format.refused(f"malformed receipts: {error}"[:300])), 400
    now = utcnow()
    if record(gateway, receipts, now):
        reroute.reroute_due(now)
    db.session.commit()
    return jsonify(receipt_format.accepted)


def _token_is_right(token: str) -> bool:
    expected = current_app.config["SMS_RECEIPT_TOKEN"]
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def record(gateway: str, receipts: list[Receipt], now: datetime) -> int:
    """Record each receipt on its text, unless it has one already; flushes. Returns how many
    said undelivered."""
    rows = _texts_named_by(gateway, receipts)
    by_gateway_id = {row.gateway_message_id: row for row in rows if row.gateway == gateway}
    by_our_id = {row.id: row for row in rows}
    updates: dict[int, dict] = {}
    for receipt in receipts:
        row = by_gateway_id.get(receipt.gateway_id) or _by_our_id(by_our_id, gateway, receipt)
        if row is None:
            monitoring.SMS_RECEIPTS.labels(gateway, "unknown").inc()
            log.info("receipt from %s for an unknown text %s", gateway, receipt.gateway_id)
        elif row.delivery is not None or row.id in updates:
            monitoring.SMS_RECEIPTS.labels(gateway, "repeated").inc()
        else:
            updates[row.id] = _update(row, receipt, now)
            delivery = updates[row.id]["receipt_delivery"]
            monitoring.SMS_RECEIPTS.labels(gateway, delivery).inc()
    if updates:
        _apply(list(updates.values()))
    return sum(
        1 for update in updates.values() if update["receipt_delivery"] == Delivery.UNDELIVERED
    )


def _texts_named_by(gateway: str, receipts: list[Receipt]) -> list[sa.Row]:
    gateway_ids = {receipt.gateway_id for receipt in receipts}
    our_ids = {receipt.message_id for receipt in receipts if receipt.message_id is not None}
    named = sa.and_(SmsMessage.gateway == gateway, SmsMessage.gateway_message_id.in_(gateway_ids))
    if our_ids:
        named = sa.or_(named, SmsMessage.id.in_(our_ids))
    return db.session.execute(
        sa.select(
            SmsMessage.id,
            SmsMessage.gateway,
            SmsMessage.gateway_message_id,
            SmsMessage.delivery,
            SmsMessage.rerouted_from,
        ).where(named)
    ).all()


def _by_our_id(rows: dict[int, sa.Row], gateway: str, receipt: Receipt) -> sa.Row | None:
    """The text by our id, if it went (or is going) to this gateway and has no other id there:
    how a receipt finds a text whose gateway timed out before giving its id."""
    row = rows.get(receipt.message_id)
    if row is None or row.gateway not in (gateway, None):
        return None
    return row if row.gateway_message_id in (None, receipt.gateway_id) else None


def _update(row: sa.Row, receipt: Receipt, now: datetime) -> dict:
    return {
        "message_id": row.id,
        "receipt_gateway_id": receipt.gateway_id,
        "receipt_delivery": Delivery.DELIVERED if receipt.delivered else Delivery.UNDELIVERED,
        "receipt_status_code": receipt.code[:64],
        "receipt_time": receipt.at or now,
        "receipt_reroute_at": reroute.after_receipt(receipt.delivered, row.rerouted_from, now),
    }


def _apply(updates: list[dict]) -> None:
    table = SmsMessage.__table__
    db.session.execute(
        table.update()
        .where(table.c.id == sa.bindparam("message_id"), table.c.delivery.is_(None))
        .values(
            gateway_message_id=sa.func.coalesce(
                table.c.gateway_message_id, sa.bindparam("receipt_gateway_id")
            ),
            delivery=sa.bindparam("receipt_delivery"),
            receipt_code=sa.bindparam("receipt_status_code"),
            receipt_at=sa.bindparam("receipt_time", type_=table.c.receipt_at.type),
            reroute_at=sa.bindparam("receipt_reroute_at", type_=table.c.reroute_at.type),
        ),
        updates,
    )
