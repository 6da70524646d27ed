"""Filings loaded with COPY for the benchmarks at national scale, as the portal writes them.

`copy_rows` is the loader both scale benchmarks share (tests/load/sweep_scale.py,
tests/load/console_scale.py). `national_rows` makes the console's data: filings of every
type over 31 provinces and `MONTHS` months, each with its verifications (sealed phones and
codes, digests, masks: portal/protection/personal_data.py), its texts, its status-change
events and the admins' decisions and views in the audit log, in the proportions a year of
the check would leave (`Mix`). Rows are made in Python and written by `COPY … FROM STDIN`;
row ids are given here, so `reset_sequences` moves the tables' sequences past them.
"""

import json
import random
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from types import SimpleNamespace

import psycopg

from portal import audit
from portal.clock import next_day_noon
from portal.models import FilingStatus, FilingType, ReturnReason, VerificationStatus
from portal.protection import sealing
from portal.protection.personal_data import (
    id_last6_digest,
    mask_id,
    mask_phone,
    seal_code,
    seal_principals,
    sealed_phone,
)
from tests.load.data import FILING_TYPES, id_number_for

FILING_COLUMNS = (
    "id", "provider_id", "reference", "province_slug", "type", "change_scope", "status",
    "return_reason", "content", "body_digest", "personal_data_sealed", "created_at",
    "deadline", "review_note", "final_at",
)  # fmt: skip
VERIFICATION_COLUMNS = (
    "id", "filing_id", "province_slug", "phone_sealed", "phone_digest", "phone_masked",
    "roles", "code_digest", "code_sealed", "id_digest", "id_masked", "status",
    "wrong_id_count", "resend_count", "noon_resend_at", "noon_resent", "verified_at",
    "link_digest",
)  # fmt: skip
# The pending verifications' codes (portal/models.py `LiveCode`), due for the noon resend.
LIVE_CODE_COLUMNS = ("verification_id", "province_slug", "code_digest", "noon_resend_at")
MESSAGE_COLUMNS = (
    "id", "verification_id", "kind", "status", "attempts", "last_error", "created_at",
    "next_attempt_at", "sent_at", "gateway", "gateway_message_id", "delivery", "receipt_code",
    "receipt_at",
)  # fmt: skip
# The final filings' entries in the erasure's list (portal/models.py `ErasureDue`); the pending
# filings' list is written by the triggers on `filings` (migration 0019).
ERASURE_DUE_COLUMNS = ("filing_id", "final_at")
EVENT_COLUMNS = (
    "id", "filing_id", "provider_id", "type", "occurred_at", "status", "return_reason",
    "attempts", "next_attempt_at", "delivered_at",
)  # fmt: skip
AUDIT_COLUMNS = (
    "id", "seq", "at", "admin_id", "admin_username", "province_slug", "action", "target",
    "before", "after", "address", "suite", "key_id", "mac",
)  # fmt: skip
SEQUENCES = {
    "verifications": "verifications_id_seq",
    "sms_messages": "sms_messages_id_seq",
    "audit_entries": "audit_entries_id_seq",
}

MONTHS = 12
# Filings a province takes, relative to the smallest: the coast files most of the websites.
PROVINCE_WEIGHTS = {
    "guangdong": 14, "beijing": 10, "shanghai": 9, "zhejiang": 9, "jiangsu": 8,
    "shandong": 5, "fujian": 5, "sichuan": 5, "henan": 4, "hubei": 4, "hunan": 3,
    "hebei": 3, "anhui": 3, "shaanxi": 2, "chongqing": 2, "liaoning": 2, "jiangxi": 2,
    "guangxi": 2, "yunnan": 2, "tianjin": 2,
}  # fmt: skip
# A tenth of the phones belong to people who file for many websites (agencies, hosting staff).
FREQUENT_PHONES = 10_000
GATEWAYS = ("aliyun", "tencent")


def copy_rows(url: str, tables: dict[str, tuple[Iterable[str], Iterable[tuple]]]) -> None:
    """COPY each table's rows (`{table: (columns, rows)}`, in that order) in one transaction.
    A table the database does not have yet (one migrated to an older revision) is left out."""
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        for table, (columns, rows) in tables.items():
            if cursor.execute("SELECT to_regclass(%s)", [table]).fetchone()[0] is None:
                continue
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        connection.commit()


def analyze(url: str, tables: Iterable[str]) -> None:
    """VACUUM ANALYZE, as autovacuum would have by the time a table is this size: the
    planner's statistics, and the visibility map that index-only scans read."""
    with psycopg.connect(url, autocommit=True) as connection:
        for table in tables:
            connection.execute(f"VACUUM ANALYZE {table}")


def carry_on(url: str, seeding: "Seeding") -> None:
    """Start the next load after the rows already there (the portal's, a load's before):
    ids, and the audit chain's last entry."""
    with psycopg.connect(url) as connection:
        for table, attribute in (("verifications", "next_verification"),
                                 ("sms_messages", "next_message"),
                                 ("audit_entries", "next_audit")):  # fmt: skip
            setattr(seeding, attribute,
                    connection.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0])  # fmt: skip
        last = connection.execute("SELECT seq, mac FROM audit_entries ORDER BY seq DESC LIMIT 1")
        seeding.audit_seq, seeding.audit_mac = last.fetchone() or (0, "")


def reset_sequences(url: str) -> None:
    with psycopg.connect(url) as connection:
        for table, sequence in SEQUENCES.items():
            connection.execute(
                f"SELECT setval('{sequence}', (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )


@dataclass
class Mix:
    """What happened to the filings of one age, as fractions."""

    # Final filings: how many were returned (expired, failed) and rejected; the rest approved.
    expired: float = 0.07
    failed: float = 0.03
    rejected: float = 0.06
    resent: float = 0.08
    noon_resent: float = 0.25
    undelivered: float = 0.02
    failed_texts: float = 0.005
    viewed: float = 0.2


@dataclass
class Part:
    """Filings `first`.. of a load of `of` filings; `beside` another part loading at the same
    time, which keeps the audit chain (this one writes no entry, its ids start at `ids_from`)."""

    first: int
    of: int
    beside: bool = False
    ids_from: int = 0


@dataclass
class Seeding:
    """The state of a load that goes on across `national_rows` calls: ids and the audit chain."""

    provinces: list[str]
    provider_ids: list[int]
    admins: dict[str, tuple[int, str]]  # province slug (or "") → (admin id, username)
    now: datetime
    next_verification: int = 1
    next_message: int = 1
    next_audit: int = 1
    audit_seq: int = 0
    audit_mac: str = ""
    suite: str = "standard"
    data_key: str = ""
    mix: Mix = field(default_factory=Mix)
    # Whether to write the admins' entries: a load beside another one cannot chain them.
    audit: bool = True


def national_rows(seeding: Seeding, indices: range, spread: range) -> dict:
    """The `copy_rows` tables for the filings `indices`, part of a load `spread` whose filings
    are taken in evenly over the `MONTHS` months up to now."""
    random.seed(indices.start)
    tables = {
        "filings": (FILING_COLUMNS, []),
        "verifications": (VERIFICATION_COLUMNS, []),
        "live_codes": (LIVE_CODE_COLUMNS, []),
        "sms_messages": (MESSAGE_COLUMNS, []),
        "events": (EVENT_COLUMNS, []),
        "erasure_due": (ERASURE_DUE_COLUMNS, []),
        "audit_entries": (AUDIT_COLUMNS, []),
    }
    span = timedelta(days=30 * MONTHS)
    weights = list(accumulate(PROVINCE_WEIGHTS.get(slug, 1) for slug in seeding.provinces))
    types, type_weights = zip(*FILING_TYPES, strict=True)
    type_weights = list(accumulate(type_weights))
    for index in indices:
        created = (
            seeding.now - span + span * ((index - spread.start + random.random()) / len(spread))
        )
        province = random.choices(seeding.provinces, cum_weights=weights)[0]
        filing_type = random.choices(types, cum_weights=type_weights)[0]
        _filing(seeding, tables, index, created, province, filing_type)
    return {table: (columns, rows) for table, (columns, rows) in tables.items()}


def _filing(seeding, tables, index, created, province, filing_type) -> None:
    mix, now = seeding.mix, seeding.now
    filing_id = secrets.token_hex(16)
    provider_id = seeding.provider_ids[index % len(seeding.provider_ids)]
    phones = _phones(index, filing_type)
    checked = bool(phones)
    status, reason, decided = _outcome(mix, created, now, checked)
    deadline = created + timedelta(hours=24) if checked else None
    change_scope = "both" if filing_type == FilingType.CHANGE_FILING and len(phones) == 2 else None
    if filing_type == FilingType.CHANGE_FILING and change_scope is None:
        change_scope = "website"
    content, principals = _content(index, phones)
    naive = _naive
    tables["filings"][1].append((
        filing_id, provider_id, reference(index), province, filing_type, change_scope, status,
        reason, json.dumps(content, ensure_ascii=False), secrets.token_hex(32),
        seal_principals(filing_id, principals), naive(created), naive(deadline),
        "符合要求" if decided and status != FilingStatus.RETURNED else None, naive(decided),
    ))  # fmt: skip
    if decided:
        tables["erasure_due"][1].append((filing_id, naive(decided)))
    for number, (phone, roles) in enumerate(phones):
        _verification(seeding, tables, filing_id, province, created, phone, roles, status, reason,
                      2 * index + number)  # fmt: skip
    events = []
    if checked and status != FilingStatus.PENDING_VERIFICATION and status != "returned":
        reviewed = created + timedelta(minutes=random.randint(2, 600))
        events.append((min(reviewed, now), "under_review"))
    if decided:
        events.append((decided, status))
    for at, shown in events:
        tables["events"][1].append((
            secrets.token_hex(16), filing_id, provider_id, "filing.status_changed", naive(at),
            shown, reason if shown == FilingStatus.RETURNED else None, 1, None,
            naive(at + timedelta(seconds=1)),
        ))  # fmt: skip
    if decided and status in (FilingStatus.APPROVED, FilingStatus.REJECTED):
        _audit(seeding, tables, decided, province, "approve" if status == "approved" else "reject",
               filing_id, {"status": "under_review"}, {"status": status, "note": "符合要求"})  # fmt: skip
    if random.random() < mix.viewed:
        viewed = min(created + timedelta(hours=random.randint(1, 48)), now)
        _audit(seeding, tables, viewed, province,
               "view_filing", filing_id, None, None)  # fmt: skip


def _outcome(mix: Mix, created: datetime, now: datetime, checked: bool):
    """(status, return reason, when decided) for a filing taken in at `created`: a checked
    filing waits for its codes for up to a day, then goes to review or back to its provider."""
    draw = random.random()
    expiry = created + timedelta(hours=24)
    if checked and (draw < mix.expired or now - created < timedelta(hours=20) and draw < 0.7):
        if expiry > now:
            return str(FilingStatus.PENDING_VERIFICATION), None, None
        return str(FilingStatus.RETURNED), str(ReturnReason.EXPIRED), expiry
    failed_at = created + timedelta(hours=3)
    if checked and draw < mix.expired + mix.failed and failed_at <= now:
        return str(FilingStatus.RETURNED), str(ReturnReason.VERIFICATION_FAILED), failed_at
    decided = created + timedelta(hours=random.uniform(2, 72))
    if decided > now:
        return str(FilingStatus.UNDER_REVIEW), None, None
    if draw > 1 - mix.rejected:
        return str(FilingStatus.REJECTED), None, decided
    return str(FilingStatus.APPROVED), None, decided


def _phones(index: int, filing_type: str) -> list[tuple[str, list[str]]]:
    if filing_type.startswith("cancel_"):
        return []
    site = site_phone(index)
    if filing_type == FilingType.NEW_FILING and index % 5:
        return [(_phone(2 * index), ["entity"]), (site, ["website:site.example.cn"])]
    if filing_type == FilingType.NEW_FILING:
        return [(site, ["entity", "website:site.example.cn"])]
    if filing_type == FilingType.CHANGE_FILING and index % 3 == 0:
        return [(_phone(2 * index), ["entity"]), (site, ["website:site.example.cn"])]
    return [(site, ["website:site.example.cn"])]


def reference(index: int) -> str:
    return f"BA-{index:09d}"


def site_phone(index: int) -> str:
    """The phone of filing `index`'s website principal."""
    return _phone(2 * index + 1)


def _phone(number: int) -> str:
    if number % 10 == 0:
        number = number // 10 % FREQUENT_PHONES
    return f"1{3 + number % 7}{number:09d}"


def _content(index: int, phones: list[tuple[str, list[str]]]) -> tuple[dict, dict]:
    """The filing's content (masked) and its principals (to be sealed), as the intake keeps them."""
    domain = f"site{index}.example.cn"
    content: dict = {"websites": []}
    principals: dict = {"websites": []}
    entity_phone = phones[0][0] if phones else _phone(2 * index)
    site_principal = phones[-1][0] if phones else site_phone(index)
    for key, phone, name in (("entity", entity_phone, "张三"), ("site", site_principal, "李四")):
        masked = {"phone_masked": mask_phone(phone), "id_type": "resident_id",
                  "id_masked": mask_id(id_number_for(phone))}  # fmt: skip
        if key == "entity":
            content["entity"] = {"name": f"备案科技{index}有限公司", "principal": masked}
            principals["entity"] = {"name": name, "phone": phone}
        else:
            content["websites"].append({"domain": domain, "name": "备案网", "principal": masked})
            principals["websites"].append({"name": name, "phone": phone})
    return content, principals


def _verification(seeding, tables, filing_id, province, created, phone, roles, filing_status,
                  reason, code_number) -> None:  # fmt: skip
    mix, naive = seeding.mix, _naive
    status = {
        FilingStatus.PENDING_VERIFICATION: VerificationStatus.PENDING,
        ReturnReason.EXPIRED: VerificationStatus.EXPIRED,
        ReturnReason.VERIFICATION_FAILED: VerificationStatus.FAILED,
    }.get(reason or filing_status, VerificationStatus.VERIFIED)
    status = str(status)
    # Live codes are unique per province; these are unique over the whole load.
    code = f"{code_number % 1_000_000:06d}"
    verification_id = seeding.next_verification
    seeding.next_verification += 1
    noon = next_day_noon(created)
    verified_at = (
        created + timedelta(minutes=random.randint(1, 600))
        if status == VerificationStatus.VERIFIED
        else None
    )
    resends = 1 if random.random() < mix.resent else 0
    noon_resent = noon < seeding.now and (verified_at is None or verified_at > noon)
    noon_resent = noon_resent and status != VerificationStatus.FAILED
    id_number = id_number_for(phone)
    sealed = sealed_phone(filing_id, phone)
    tables["verifications"][1].append((
        verification_id, filing_id, province, sealed["phone_sealed"], sealed["phone_digest"],
        sealed["phone_masked"], json.dumps(roles, ensure_ascii=False),
        sealing.digest("code", code), seal_code(filing_id, code),
        id_last6_digest(id_number[-6:]), mask_id(id_number), status,
        5 if status == VerificationStatus.FAILED else 0, resends, naive(noon), noon_resent,
        naive(verified_at), secrets.token_hex(32),
    ))  # fmt: skip
    if status == VerificationStatus.PENDING:
        tables["live_codes"][1].append((verification_id, province, sealing.digest("code", code),
                                        None if noon_resent else naive(noon)))  # fmt: skip
    sent = [("initial", created)]
    if resends:
        sent.append(("resend", created + timedelta(minutes=random.randint(5, 300))))
    if noon_resent:
        sent.append(("noon_resend", noon))
    for kind, at in sent:
        _message(seeding, tables, verification_id, kind, at)


def _message(seeding, tables, verification_id: int, kind: str, at: datetime) -> None:
    mix, naive = seeding.mix, _naive
    message_id = seeding.next_message
    seeding.next_message += 1
    draw = random.random()
    gateway = GATEWAYS[message_id % 2]
    sent_at = at + timedelta(milliseconds=random.randint(50, 900))
    if draw < mix.failed_texts:
        row = (message_id, verification_id, kind, "failed", 5, "HTTP 503", naive(at), None,
               None, None, None, None, None, None)  # fmt: skip
    else:
        delivery = "undelivered" if draw < mix.failed_texts + mix.undelivered else "delivered"
        receipt_at = sent_at + timedelta(seconds=random.randint(2, 40))
        if receipt_at > seeding.now:
            delivery = None
        row = (message_id, verification_id, kind, "sent", 1, None, naive(at), None,
               naive(sent_at), gateway, secrets.token_hex(10), delivery,
               {"delivered": "DELIVRD", "undelivered": "MK:0001"}.get(delivery),
               naive(receipt_at) if delivery else None)  # fmt: skip
    tables["sms_messages"][1].append(row)


def _audit(seeding, tables, at, province, action, filing_id, before, after) -> None:
    """An entry chained to the one before, as portal/audit.py writes it."""
    if not seeding.audit:
        return
    admin_id, username = seeding.admins.get(province) or seeding.admins[""]
    seeding.audit_seq += 1
    entry = SimpleNamespace(
        seq=seeding.audit_seq, at=at, admin_id=admin_id, admin_username=username,
        province_slug=province, action=action, target=f"filing {filing_id}", before=before,
        after=after, address="10.8.0.12", suite=seeding.suite,
        key_id=audit.key_id(seeding.data_key),
    )  # fmt: skip
    mac = audit._mac(seeding.suite, seeding.data_key,
                     seeding.audit_mac.encode() + audit._canonical(entry))  # fmt: skip
    seeding.audit_mac = mac
    tables["audit_entries"][1].append((
        seeding.next_audit, entry.seq, _naive(at), admin_id, username, province, action,
        entry.target, json.dumps(before, ensure_ascii=False) if before else None,
        json.dumps(after, ensure_ascii=False) if after else None, entry.address, entry.suite,
        entry.key_id, mac,
    ))  # fmt: skip
    seeding.next_audit += 1


def _naive(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment else None


def chunks(indices: range, size: int) -> Iterator[range]:
    for first in range(indices.start, indices.stop, size):
        yield range(first, min(first + size, indices.stop))
