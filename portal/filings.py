"""Filings from access providers: which phones are checked, intake, and status changes."""

import functools
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from portal import events, live_codes, personal_links, rules_cache
from portal.api.schemas import (
    FilingIn,
    Principal,
)
from portal.clock import next_day_noon
from portal.delivery import outbox
from portal.extensions import db
from portal.models import (
    FINAL_STATUSES,
    ErasureDue,
    Filing,
    FilingStatus,
    FilingType,
    LiveCode,
    MessageKind,
    MessageStatus,
    PendingFiling,
    Provider,
    Record,
    SmsMessage,
    Verification,
    VerificationStatus,
)
from portal.protection import sealing
from portal.protection.personal_data import (
    id_last6_digest,
    mask_id,
    mask_phone,
    phone_matches,
    seal_code,
    seal_principals,
    sealed_phone,
)

# A filing in one of these is done with: the retention period runs from then (SPEC §10).

# The parts of a filing whose principals are checked, by type (SPEC §3).
CHECKED_PARTS = {
    FilingType.NEW_FILING: ("entity", "websites"),
    FilingType.NEW_WEBSITE: ("websites",),
    FilingType.NEW_ACCESS: ("websites",),
    FilingType.CANCEL_FILING: ("entity",),
    FilingType.CANCEL_WEBSITE: ("websites",),
    FilingType.CANCEL_ACCESS: ("websites",),
}
CHANGE_SCOPE_PARTS = {
    "entity": ("entity",),
    "website": ("websites",),
    "both": ("entity", "websites"),
}
BODY_DIGEST_PURPOSE = "filing-body"


class IntakeError(Exception):
    """A submission refused: the field it concerns, a stable code and a readable detail."""

    def __init__(self, field: str, code: str, detail: str):
        super().__init__(detail)
        self.field, self.code, self.detail = field, code, detail


class ReferenceConflict(IntakeError):
    """The reference names a filing of this provider submitted with another body."""

    def __init__(self, filing: Filing):
        super().__init__(
            "reference",
            "reference_conflict",
            f"reference {filing.reference!r} was submitted before with another body "
            f"(filing {filing.id}); a new filing needs a new reference",
        )


@dataclass(frozen=True)
class Person:
    """One distinct phone of a filing: the roles it holds and the ID number behind it."""

    phone: str
    id_number: str
    roles: tuple[str, ...]


class Intake(NamedTuple):
    """What an intake did: the filing, whether it is new, and the codes it issued."""

    filing: Filing
    created: bool
    codes: list["IssuedCode"]


@dataclass
class IssuedCode:
    """A verification just written by intake, as its answer shows it and as
    `personal_links.issue` gives it its link (no ORM object is made)."""

    id: int
    phone_masked: str
    roles: list[str]
    status: str = VerificationStatus.PENDING
    link_digest: str | None = None


def submit(provider: Provider, data: FilingIn, now: datetime) -> tuple[Filing, bool]:
    """Take a filing in (`take_in`); returns it, loaded in the session, and whether it is new."""
    filing, created, _codes = take_in(provider, data, now)
    return (db.session.get(Filing, filing.id) if created else filing), created


def take_in(provider: Provider, data: FilingIn, now: datetime) -> Intake:
    """Take a filing in. A known reference returns its filing when the body is the same, and
    is refused when it is not, whatever the checks of the body say: the reference is looked up
    when the body is refused or when the insert finds it taken."""
    body = _canonical_body(data)
    try:
        province_slug, people, checked = _checks(data, now)
    except IntakeError:
        existing = _resubmitted(provider, data, body)
        if existing is None:
            raise
        return Intake(existing, False, [])
    # Drawn before the first write, which on SQLite locks out every other intake till commit.
    codes = _unused_codes(province_slug, len(people)) if checked else []
    inserted = _insert_unless_referenced(provider, data, body, province_slug, len(codes), now)
    if inserted is None:
        return Intake(_resubmitted(provider, data, body), False, [])
    filing, verification_ids = inserted
    issued = _issue_codes(filing, people, codes, verification_ids, now) if codes else []
    return Intake(filing, True, issued)


def _checks(data: FilingIn, now: datetime) -> tuple[str, list[Person], bool]:
    """The filing's province, the people to check and whether they are checked; or an
    IntakeError."""
    province = rules_cache.province(data.province)
    if province is None:
        raise IntakeError("province", "unknown_province", f"no province {data.province!r}")
    people = people_to_check(data)
    if data.type == FilingType.NEW_ACCESS:
        _check_against_records(data)
    checked = bool(people) and province.is_live(now) and _type_is_checked(data.type)
    return province.slug, people, checked


def _resubmitted(provider: Provider, data: FilingIn, body: str) -> Filing | None:
    """The provider's filing of this reference, if the body is the same; a conflict if not."""
    existing = find_by_reference(provider.id, data.reference)
    if existing is not None and not _same_body(existing, body):
        raise ReferenceConflict(existing)
    return existing


def _insert_unless_referenced(
    provider: Provider, data: FilingIn, body: str, province_slug: str, codes: int, now: datetime
) -> tuple[Filing, list[int]] | None:
    """The new filing, inserted unless the provider's reference is taken (then None), and ids
    for its `codes` verifications: one statement checks and inserts (and on PostgreSQL takes
    the ids from their sequence), and a concurrent intake of the reference is waited for. The
    filing is described from what was written: a Filing that is not in the session."""
    filing_id = uuid.uuid4().hex
    content, principals = _stored_content(data)
    row = {
        "id": filing_id,
        "provider_id": provider.id,
        "reference": data.reference,
        "province_slug": province_slug,
        "type": data.type,
        "change_scope": data.change_scope,
        "content": content,
        "body_digest": sealing.digest(BODY_DIGEST_PURPOSE, body),
        "personal_data_sealed": seal_principals(filing_id, principals),
        "created_at": now,
        "status": FilingStatus.PENDING_VERIFICATION if codes else FilingStatus.UNDER_REVIEW,
    }
    dialect = _dialect()
    inserted = db.session.execute(_insert_filing(dialect), {**row, "codes": codes}).one_or_none()
    if inserted is None:
        return None
    if dialect == "postgresql":
        ids = inserted.verification_ids or []
    else:
        ids = _next_verification_ids_sqlite(codes) if codes else []
    return Filing(**row), ids


_filings = Filing.__table__


@functools.cache
def _insert_filing(dialect: str) -> sa.Insert:
    insert = _INSERTS[dialect](_filings)
    statement = insert.on_conflict_do_nothing(index_elements=["provider_id", "reference"])
    if dialect != "postgresql":
        return statement.returning(_filings.c.id)
    sequence = sa.func.pg_get_serial_sequence("verifications", "id")
    ids = (
        sa.select(sa.func.array_agg(sa.func.nextval(sequence)))
        .select_from(sa.func.generate_series(1, sa.bindparam("codes", type_=sa.Integer)))
        .scalar_subquery()
    )
    return statement.returning(_filings.c.id, ids.label("verification_ids"))


def _next_verification_ids_sqlite(count: int) -> list[int]:
    """The ids SQLite would give the new verifications: this transaction holds the database's
    write lock since the filing's insert, so no other writer takes them before the commit."""
    last = db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(_verifications.c.id), 0)))
    return list(range(last + 1, last + 1 + count))


_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def find_by_reference(provider_id: int, reference: str) -> Filing | None:
    return db.session.scalar(
        sa.select(Filing).where(Filing.provider_id == provider_id, Filing.reference == reference)
    )


def _canonical_body(data: FilingIn) -> str:
    """The body as validated (defaults filled in, spaces trimmed, domains in lower case, ID
    numbers normalised) in one spelling: key order, spacing and the letter case of a domain or
    an ID number do not make another body; the order of the websites does."""
    return json.dumps(
        data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def _same_body(filing: Filing, body: str) -> bool:
    if filing.body_digest is None:  # taken in before the digest was kept
        return True
    return sealing.matches(filing.body_digest, BODY_DIGEST_PURPOSE, body)


def people_to_check(data: FilingIn) -> list[Person]:
    """One person per distinct phone; principals sharing a phone must share the ID number."""
    people: dict[str, Person] = {}
    for field, role, principal in _checked_principals(data):
        known = people.get(principal.phone)
        if known is None:
            people[principal.phone] = Person(principal.phone, principal.id_number, (role,))
        elif known.id_number != principal.id_number:
            raise IntakeError(
                f"{field}.id_number",
                "shared_phone_id_mismatch",
                f"phone {mask_phone(principal.phone)} is given for two different ID numbers",
            )
        else:
            people[principal.phone] = Person(known.phone, known.id_number, (*known.roles, role))
    return list(people.values())


def _checked_principals(data: FilingIn) -> list[tuple[str, str, Principal]]:
    if data.type == FilingType.CHANGE_FILING:
        if data.change_scope is None:
            raise IntakeError("change_scope", "required", "change_filing needs change_scope")
        parts = CHANGE_SCOPE_PARTS[data.change_scope]
    elif data.change_scope is not None:
        raise IntakeError("change_scope", "not_allowed", "change_scope is for change_filing only")
    else:
        parts = CHECKED_PARTS[data.type]
    found = []
    if "entity" in parts:
        if data.entity is None:
            raise IntakeError("entity", "required", f"{data.type} needs the entity")
        found.append(("entity.principal", "entity", data.entity.principal))
    if "websites" in parts:
        if not data.websites:
            raise IntakeError("websites", "required", f"{data.type} needs at least one website")
        for index, site in enumerate(data.websites):
            found.append((f"websites.{index}.principal", f"website:{site.domain}", site.principal))
    return found


def _check_against_records(data: FilingIn) -> None:
    domains = [site.domain for site in data.websites]
    on_record = dict(
        db.session.execute(
            sa.select(Record.domain, Record.principal_phone_digest).where(
                Record.domain.in_(domains)
            )
        ).all()
    )
    for index, site in enumerate(data.websites):
        recorded = on_record.get(site.domain)
        if recorded is not None and not phone_matches(recorded, site.principal.phone):
            raise IntakeError(
                f"websites.{index}.principal.phone",
                "phone_differs_from_record",
                f"{site.domain} is on record with another principal phone: change it at the "
                "original provider first, or cancel the filing and submit it as new_website",
            )


def _type_is_checked(filing_type: str) -> bool:
    return rules_cache.checked_types().get(filing_type, False)


def _issue_codes(
    filing: Filing, people: list[Person], codes: list[str], ids: list[int], now: datetime
) -> list[IssuedCode]:
    """The filing's verifications, each holding its code in the live codes, and their first
    texts, sent once the transaction commits. Core inserts of rows complete before they are
    written: the links are made from the verifications' ids, taken with the filing's insert
    (the ORM's unit of work and an update of the links cost more than the statements)."""
    issued, verifications, reserved = [], [], []
    for id_, person, code in zip(ids, people, codes, strict=True):
        row = _verification_row(id_, filing, person, code)
        issued.append(IssuedCode(id=id_, phone_masked=row["phone_masked"], roles=row["roles"]))
        personal_links.issue(issued[-1], code)
        verifications.append({**row, "link_digest": issued[-1].link_digest})
        reserved.append(
            {"verification_id": id_, "province_slug": filing.province_slug,
             "code_digest": row["code_digest"], "noon_resend_at": row["noon_resend_at"]}
        )  # fmt: skip
    texts = [
        {"verification_id": id_, "kind": MessageKind.INITIAL, "status": MessageStatus.QUEUED,
         "attempts": 0, "created_at": now, "next_attempt_at": now}
        for id_ in ids
    ]  # fmt: skip
    for message_id in _WRITE_CODES[_dialect()](verifications, reserved, texts):
        outbox.text_after_commit(message_id)
    return issued


def _verification_row(id_: int, filing: Filing, person: Person, code: str) -> dict:
    return {
        "id": id_,
        "filing_id": filing.id,
        "province_slug": filing.province_slug,
        **sealed_phone(filing.id, person.phone),
        "roles": list(person.roles),
        "code_digest": sealing.digest("code", code),
        "code_sealed": seal_code(filing.id, code),
        "id_digest": id_last6_digest(person.id_number[-6:]),
        "id_masked": mask_id(person.id_number),
        "status": VerificationStatus.PENDING,
        "wrong_id_count": 0,
        "resend_count": 0,
        "noon_resend_at": next_day_noon(filing.created_at),
        "noon_resent": False,
    }


def _dialect() -> str:
    return db.session.get_bind().dialect.name


_verifications = Verification.__table__
_live_codes = LiveCode.__table__
_texts = SmsMessage.__table__


def _write_codes_postgresql(verifications: list, reserved: list, texts: list) -> list[int]:
    """The three inserts in one statement (the texts' and the live codes' references to the
    verifications are checked at its end); the texts' ids. A value the rows share is one
    parameter (the live codes' values are their verifications')."""
    connection = db.session.connection()
    sql, processors = _codes_statement(len(verifications), connection.dialect)
    values = {f"v_{column}": verifications[0][column] for column in _SHARED_BY_VERIFICATIONS}
    values |= {f"t_{column}": texts[0][column] for column in _SHARED_BY_TEXTS}
    for index, row in enumerate(verifications):
        values |= {f"v{index}_{column}": row[column] for column in _VERIFICATION_OWN}
    parameters = {
        name: values[name] if process is None else process(values[name])
        for name, process in processors.items()
    }
    return list(connection.exec_driver_sql(sql, parameters).scalars())


@functools.lru_cache(maxsize=16)
def _codes_statement(count: int, dialect: sa.Dialect) -> tuple[str, dict]:
    """The statement for `count` codes, compiled once, and each parameter's bind processor.
    SQLAlchemy compiles a multi-row insert at every call (it cannot cache one), which cost
    more than the statements it saves; psycopg parses a statement again at every call when it
    has more than 50 parameters, hence the shared ones (up to three codes stay under). Every
    column is given: a multi-row insert leaves Python defaults out."""
    processors: dict = {}

    def param(table: sa.Table, column: str, name: str) -> sa.BindParameter:
        type_ = table.c[column].type
        processors[name] = type_.dialect_impl(dialect).bind_processor(dialect)
        return sa.bindparam(name, type_=type_)

    def verification(i: int) -> dict:
        own = {c: param(_verifications, c, f"v{i}_{c}") for c in _VERIFICATION_OWN}
        return own | {c: param(_verifications, c, f"v_{c}") for c in _SHARED_BY_VERIFICATIONS}

    def live_code(i: int) -> dict:
        return {
            "verification_id": param(_verifications, "id", f"v{i}_id"),
            "province_slug": param(_verifications, "province_slug", "v_province_slug"),
            "code_digest": param(_verifications, "code_digest", f"v{i}_code_digest"),
            "noon_resend_at": param(_verifications, "noon_resend_at", "v_noon_resend_at"),
        }

    def text(i: int) -> dict:
        shared = {c: param(_texts, c, f"t_{c}") for c in _SHARED_BY_TEXTS}
        return {"verification_id": param(_verifications, "id", f"v{i}_id"), **shared}

    verifications = sa.insert(_verifications).values([verification(i) for i in range(count)])
    reserved = sa.insert(_live_codes).values([live_code(i) for i in range(count)])
    statement = (
        sa.insert(_texts)
        .values([text(i) for i in range(count)])
        .returning(_texts.c.id)
        .add_cte(verifications.cte("new_verifications"), reserved.cte("new_live_codes"))
    )
    return statement.compile(dialect=dialect).string, processors


_VERIFICATION_OWN = (
    "id", "phone_sealed", "phone_digest", "phone_masked", "roles", "code_digest", "code_sealed",
    "id_digest", "id_masked", "link_digest",
)  # fmt: skip
_SHARED_BY_VERIFICATIONS = (
    "filing_id", "province_slug", "status", "wrong_id_count", "resend_count", "noon_resend_at",
    "noon_resent",
)  # fmt: skip
_SHARED_BY_TEXTS = ("kind", "status", "attempts", "created_at", "next_attempt_at")


def _write_codes_sqlite(verifications: list, reserved: list, texts: list) -> list[int]:
    db.session.execute(_verifications.insert(), verifications)
    db.session.execute(_live_codes.insert(), reserved)
    return list(db.session.scalars(_texts.insert().returning(_texts.c.id), texts))


_WRITE_CODES = {"postgresql": _write_codes_postgresql, "sqlite": _write_codes_sqlite}


def send_codes(verifications: list[Verification], kind: MessageKind, now: datetime) -> None:
    """Send each verification's code (again) once the transaction commits."""
    messages = [
        SmsMessage(verification_id=v.id, kind=kind, created_at=now, next_attempt_at=now)
        for v in verifications
    ]
    db.session.add_all(messages)
    db.session.flush()
    for message in messages:
        outbox.text_after_commit(message.id)


def _unused_codes(province_slug: str, count: int) -> list[str]:
    """`count` different random codes that no live verification of the province holds (the
    live codes' unique key backs this up: a concurrent intake may commit one of them before
    this one does, and the API then takes the filing in again). One query for all of them;
    only a clash is drawn again."""
    codes: list[str] = []
    while len(codes) < count:
        drawn = _draw_codes(count - len(codes), avoiding=codes)
        held = _codes_held(province_slug, drawn)
        codes += [code for code in drawn if code not in held]
    return codes


def _draw_codes(count: int, avoiding: list[str]) -> list[str]:
    drawn: list[str] = []
    while len(drawn) < count:
        code = f"{secrets.randbelow(1_000_000):06d}"
        if code not in avoiding and code not in drawn:
            drawn.append(code)
    return drawn


def _codes_held(province_slug: str, codes: list[str]) -> set[str]:
    """Those of the codes a live verification of the province holds, under any data key: a
    code issued before a key rotation is still live."""
    by_digest = {digest: code for code in codes for digest in sealing.digests("code", code)}
    return {by_digest[digest] for digest in live_codes.held(province_slug, list(by_digest))}


def _stored_content(data: FilingIn) -> tuple[dict, dict]:
    """The filing as submitted with its principals' phones and IDs masked and no names; and
    the principals' names and phones, in the same shape, to be sealed."""

    def masked(p: Principal) -> dict:
        return {
            "phone_masked": mask_phone(p.phone),
            "id_type": p.id_type,
            "id_masked": mask_id(p.id_number),
        }

    def personal(p: Principal) -> dict:
        return {"name": p.name, "phone": p.phone}

    content: dict = {"websites": []}
    principals: dict = {"websites": []}
    if data.entity:
        content["entity"] = {"name": data.entity.name, "principal": masked(data.entity.principal)}
        principals["entity"] = personal(data.entity.principal)
    for site in data.websites:
        content["websites"].append(
            {"domain": site.domain, "name": site.name, "principal": masked(site.principal)}
        )
        principals["websites"].append(personal(site.principal))
    return content, principals


def lock(filing_id: str) -> Filing:
    """The filing, its row locked until commit: status changes of one filing never interleave."""
    return db.session.scalars(
        sa.select(Filing)
        .where(Filing.id == filing_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def change_status(filing: Filing, status: FilingStatus, now: datetime, reason: str | None = None):
    """Move a (locked) filing to a new status; its event and its entries in the due lists
    (portal/models.py `PendingFiling`, `ErasureDue`) are written in the same transaction."""
    filing.status = status
    filing.return_reason = reason
    if status != FilingStatus.PENDING_VERIFICATION:
        db.session.execute(sa.delete(PendingFiling).where(PendingFiling.filing_id == filing.id))
    if status in FINAL_STATUSES:
        filing.final_at = now
        db.session.add(ErasureDue(filing_id=filing.id, final_at=now))
    db.session.flush()
    outbox.events_after_commit(events.record_status_changes([filing.id], now))
