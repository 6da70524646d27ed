"""The audit log (SPEC §10): every console action, every view of a filing's personal data and
every CSV export — who, when, what, from which address — in a chain that shows tampering.

Each entry's mac is HMAC(key, the previous entry's mac ‖ the entry's canonical bytes), under
the `CRYPTO_SUITE` of its day (HMAC-SHA256, or HMAC-SM3 under `sm`) and a key derived from the
current `DATA_KEY`; the entry names both, so after a suite switch or a key rotation the old
entries stay verifiable while their key is still listed in `DATA_KEY`. The chain's one row
(`AuditChain`) holds the head, which each append locks until its transaction ends, and the
anchor that the oldest kept entry chains to, which retention moves on; the row carries a MAC
of its own, so entries cut off at either end show too.
"""

import functools
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, hmac
from flask import current_app, has_request_context, request

from portal.extensions import db
from portal.models import Admin, AuditChain, AuditEntry

HASHES = {"standard": hashes.SHA256, "sm": hashes.SM3}
CHAIN_ID = 1
PRUNE_BATCH = 10_000
VERIFY_BATCH = 1_000


def record(
    admin: Admin,
    action: str,
    target: str,
    now: datetime,
    *,
    province_slug: str | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEntry:
    """Append an entry; it is written with the caller's transaction, which holds the chain's
    head until it commits or rolls back."""
    seq, previous_mac, anchor_seq, anchor_mac = _take_next_seq()
    suite, data_key = _current_key()
    entry = AuditEntry(
        seq=seq,
        at=now,
        admin_id=admin.id,
        admin_username=admin.username,
        province_slug=province_slug,
        action=action,
        target=target,
        before=_as_stored(before),
        after=_as_stored(after),
        address=request.remote_addr if has_request_context() else None,
        suite=suite,
        key_id=key_id(data_key),
    )
    entry.mac = _mac(suite, data_key, previous_mac.encode() + _canonical(entry))
    db.session.add(entry)
    _store_chain(seq, entry.mac, anchor_seq, anchor_mac)
    return entry


def _take_next_seq() -> sa.Row:
    """The next sequence number and the chain as it stood. Incrementing first takes the row's
    write lock (PostgreSQL) or the database's (SQLite) before anything is read."""
    return db.session.execute(
        sa.update(AuditChain)
        .where(AuditChain.id == CHAIN_ID)
        .values(head_seq=AuditChain.head_seq + 1)
        .returning(
            AuditChain.head_seq, AuditChain.head_mac, AuditChain.anchor_seq, AuditChain.anchor_mac
        )
    ).one()


def _store_chain(head_seq: int, head_mac: str, anchor_seq: int, anchor_mac: str) -> None:
    suite, data_key = _current_key()
    db.session.execute(
        sa.update(AuditChain)
        .where(AuditChain.id == CHAIN_ID)
        .values(
            head_seq=head_seq,
            head_mac=head_mac,
            anchor_seq=anchor_seq,
            anchor_mac=anchor_mac,
            suite=suite,
            key_id=key_id(data_key),
            tag=_mac(suite, data_key, _chain_bytes(head_seq, head_mac, anchor_seq, anchor_mac)),
        )
    )


def _as_stored(value: dict | None) -> dict | None:
    """The value as the JSON column gives it back, so its canonical bytes never change."""
    return None if value is None else json.loads(json.dumps(value))


def _canonical(entry: AuditEntry | sa.Row) -> bytes:
    fields = {
        "seq": entry.seq,
        "at": entry.at.astimezone(UTC).isoformat(),
        "admin_id": entry.admin_id,
        "admin_username": entry.admin_username,
        "province_slug": entry.province_slug,
        "action": entry.action,
        "target": entry.target,
        "before": entry.before,
        "after": entry.after,
        "address": entry.address,
        "suite": entry.suite,
        "key_id": entry.key_id,
    }
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _chain_bytes(head_seq: int, head_mac: str, anchor_seq: int, anchor_mac: str) -> bytes:
    return json.dumps(["audit chain", head_seq, head_mac, anchor_seq, anchor_mac]).encode()


# Keys and MACs


def _current_key() -> tuple[str, str]:
    return current_app.config.get("CRYPTO_SUITE", "standard"), current_app.config["DATA_KEYS"][0]


@functools.lru_cache(maxsize=16)
def key_id(data_key: str) -> str:
    """A name for a `DATA_KEY` that reveals nothing of it."""
    return _hmac(hashes.SHA256, data_key.encode(), b"key id")[:16]


def _mac(suite: str, data_key: str, message: bytes) -> str:
    return _hmac(HASHES[suite], _audit_key(suite, data_key), message)


@functools.lru_cache(maxsize=16)
def _audit_key(suite: str, data_key: str) -> bytes:
    return bytes.fromhex(_hmac(HASHES[suite], data_key.encode(), b"audit"))


def _hmac(algorithm: type[hashes.HashAlgorithm], key: bytes, message: bytes) -> str:
    mac = hmac.HMAC(key, algorithm())
    mac.update(message)
    return mac.finalize().hex()


def _key_named(name: str) -> str | None:
    return next((key for key in current_app.config["DATA_KEYS"] if key_id(key) == name), None)


def _signed_by(suite: str, name: str, message: bytes, mac: str) -> bool:
    data_key = _key_named(name)
    if data_key is None or suite not in HASHES:
        return False
    return secrets.compare_digest(_mac(suite, data_key, message), mac)


# Verification


@dataclass
class Verdict:
    """What `flask audit verify` prints: `entries` chained entries read, `intact`, and when
    not, the first entry (or the chain row) that does not match."""

    entries: int = 0
    unchained: int = 0
    mismatch: dict | None = None

    @property
    def intact(self) -> bool:
        return self.mismatch is None

    def as_json(self) -> dict:
        shown = {"entries": self.entries, "intact": self.intact}
        if self.unchained:
            shown["unchained"] = self.unchained
        if self.mismatch:
            shown["first_mismatch"] = self.mismatch
        return shown


@dataclass
class _Walk:
    """Where the walk along the chain stands: the seq and previous mac the next entry needs."""

    seq: int
    mac: str
    verdict: Verdict = field(default_factory=Verdict)


def verify() -> Verdict:
    """Walk the chain from its anchor to its head; stop at the first thing that does not match."""
    chain = db.session.get(AuditChain, CHAIN_ID, populate_existing=True)
    if chain is None or not _chain_row_intact(chain):
        return Verdict(mismatch={"chain": "the chain's head or anchor was changed"})
    walk = _Walk(chain.anchor_seq, chain.anchor_mac)
    for entry in _entries_in_order():
        problem = _check(entry, walk)
        if problem:
            walk.verdict.mismatch = {"id": entry.id, "seq": entry.seq, "problem": problem}
            return walk.verdict
    if (walk.seq - 1, walk.mac) != (chain.head_seq, chain.head_mac):
        walk.verdict.mismatch = {
            "seq": walk.seq,
            "problem": f"entries {walk.seq} to {chain.head_seq} are missing",
        }
    return walk.verdict


def _chain_row_intact(chain: AuditChain) -> bool:
    if not chain.tag:  # as migrated, before the first entry
        return (chain.head_seq, chain.head_mac, chain.anchor_seq) == (0, "", 1)
    message = _chain_bytes(chain.head_seq, chain.head_mac, chain.anchor_seq, chain.anchor_mac)
    return _signed_by(chain.suite, chain.key_id, message, chain.tag)


def _entries_in_order() -> Iterable[sa.Row]:
    """Plain rows, not ORM objects: a third of the time on a long chain."""
    statement = sa.select(AuditEntry.__table__).order_by(AuditEntry.seq, AuditEntry.id)
    return db.session.execute(statement.execution_options(yield_per=VERIFY_BATCH))


def _check(entry: sa.Row, walk: _Walk) -> str | None:
    """Why the entry does not fit the chain where the walk stands, or None (and walk on)."""
    if entry.seq <= 0 and not entry.mac:
        walk.verdict.unchained += 1  # written before the chain began (migration `audit`)
        return None
    if entry.seq < walk.seq:
        return "not in the chain: inserted, or out of its place"
    if entry.seq > walk.seq:
        return f"the entry before it (seq {walk.seq}) is missing"
    message = walk.mac.encode() + _canonical(entry)
    if not _signed_by(entry.suite, entry.key_id, message, entry.mac):
        if _key_named(entry.key_id) is None:
            return f"made under key {entry.key_id}, which DATA_KEY no longer holds"
        return "changed: its mac does not match"
    walk.seq, walk.mac = entry.seq + 1, entry.mac
    walk.verdict.entries += 1
    return None


# Retention


def prune(now: datetime) -> int:
    """Delete the entries older than `AUDIT_RETENTION_DAYS`, oldest first, in batches; the
    anchor moves on to the first entry kept, so the rest stays verifiable."""
    cutoff = now - timedelta(days=current_app.config["AUDIT_RETENTION_DAYS"])
    last_old = db.session.scalar(
        sa.select(sa.func.max(AuditEntry.seq)).where(AuditEntry.at < cutoff)
    )
    pruned = 0
    while last_old is not None:
        first = db.session.scalar(sa.select(sa.func.min(AuditEntry.seq)))
        if first is None or first > last_old:
            break
        pruned += _prune_through(min(first + PRUNE_BATCH - 1, last_old))
        db.session.commit()
    return pruned


def _prune_through(seq: int) -> int:
    last_mac = db.session.scalar(sa.select(AuditEntry.mac).where(AuditEntry.seq == seq))
    deleted = db.session.execute(
        sa.delete(AuditEntry)
        .where(AuditEntry.seq <= seq)
        .execution_options(synchronize_session=False)
    ).rowcount
    chain = db.session.scalar(
        sa.select(AuditChain)
        .where(AuditChain.id == CHAIN_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if last_mac is not None and seq >= chain.anchor_seq:
        _store_chain(chain.head_seq, chain.head_mac, seq + 1, last_mac)
    return deleted
