"""The province console: dashboard, filing search and detail, review, resend, audit log.

Queries here name no province: the tenant filter (portal/admin/tenancy.py) adds it.
"""

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta

import sqlalchemy as sa
from flask import (
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from portal import audit, review
from portal.admin import ROW_ID, bp, province_names, shanghai
from portal.admin.forms import AuditSearchForm, FilingSearchForm, ReasonForm
from portal.admin.tenancy import stream_as_tenant
from portal.clock import SHANGHAI, iso_shanghai, shanghai_date, utcnow
from portal.delivery.gateways import RECEIPT_FORMATS
from portal.extensions import db
from portal.messages import ACTION_LABELS, CONSOLE, NOTIFICATION
from portal.models import (
    AuditEntry,
    Event,
    Filing,
    FilingStatus,
    MessageStatus,
    PendingFiling,
    Provider,
    SmsMessage,
    Verification,
    VerifyAttempt,
)
from portal.protection.personal_data import filing_principals, mask_phone, phone_digests
from portal.resend import resend_verification

PAGE_SIZE = 25
# A search's filings are counted up to this many; past it the page says so (CONSOLE).
COUNT_CAP = 10_000
# Deeper than this, a search is better narrowed; and the offset stays a small number.
MAX_PAGE = 100_000
CSV_LIMIT = 50_000
# Filings read per query while the export streams: memory stays the same however many there are.
CSV_PAGE = 500
CSV_COLUMNS = [
    "id",
    "reference",
    "province",
    "type",
    "status",
    "return_reason",
    "created_at",
    "deadline",
    "provider",
    "phones",
]
# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CLOSE_TO_DEADLINE = timedelta(hours=2)
# A text sent this long ago without a receipt is shown on the dashboard.
RECEIPT_OVERDUE = timedelta(minutes=10)
AUDIT_CSV_PAGE = 1000


@bp.get("/")
def dashboard():
    now = utcnow()
    today = _shanghai_midnight(shanghai_date(now))
    week = today - timedelta(days=6)
    return render_template(
        "admin/dashboard.html",
        today=_count_by(Filing.status, Filing.created_at >= today),
        week=_count_by(Filing.status, Filing.created_at >= week),
        returned=_count_by(
            Filing.return_reason, Filing.status == FilingStatus.RETURNED, Filing.created_at >= week
        ),
        closing=db.session.scalars(
            sa.select(Filing)
            .join(PendingFiling, PendingFiling.filing_id == Filing.id)
            .where(
                Filing.status == FilingStatus.PENDING_VERIFICATION,
                PendingFiling.deadline > now,
                PendingFiling.deadline <= now + CLOSE_TO_DEADLINE,
            )
            .order_by(PendingFiling.deadline)
            .limit(50)
        ).all(),
        failed_sms=db.session.execute(
            sa.select(SmsMessage, Verification)
            .join(Verification)
            .where(SmsMessage.status == MessageStatus.FAILED)
            .order_by(SmsMessage.created_at.desc())
            .limit(50)
        ).all(),
        delivery_rates={
            "hour": _delivery_by_gateway(now - timedelta(hours=1)),
            "day": _delivery_by_gateway(now - timedelta(days=1)),
        },
        without_receipt=_sent_without_receipt(now),
    )


def _delivery_by_gateway(since: datetime) -> dict[str, dict[str, int]]:
    """Per gateway that sends receipts, the texts it took since then: how many, and what
    their receipts said."""
    rows = db.session.execute(
        sa.select(SmsMessage.gateway, SmsMessage.delivery, sa.func.count())
        .join(Verification)
        .where(SmsMessage.sent_at >= since, SmsMessage.gateway.in_(RECEIPT_FORMATS))
        .group_by(SmsMessage.gateway, SmsMessage.delivery)
    )
    rates: dict[str, dict[str, int]] = {}
    for gateway, delivery, count in rows:
        counts = rates.setdefault(gateway, {"sent": 0, "delivered": 0, "undelivered": 0})
        counts["sent"] += count
        if delivery:
            counts[delivery] += count
    return rates


def _sent_without_receipt(now: datetime) -> list[tuple[SmsMessage, Verification]]:
    """Texts of the last day sent more than `RECEIPT_OVERDUE` ago whose receipt never came."""
    return db.session.execute(
        sa.select(SmsMessage, Verification)
        .join(Verification)
        .where(
            SmsMessage.gateway.in_(RECEIPT_FORMATS),
            SmsMessage.status == MessageStatus.SENT,
            SmsMessage.delivery.is_(None),
            SmsMessage.sent_at >= now - timedelta(days=1),
            SmsMessage.sent_at <= now - RECEIPT_OVERDUE,
        )
        .order_by(SmsMessage.sent_at.desc())
        .limit(50)
    ).all()


def _count_by(column, *conditions) -> dict[str, int]:
    rows = db.session.execute(
        sa.select(column, sa.func.count()).select_from(Filing).where(*conditions).group_by(column)
    )
    return dict(rows.all())


def _shanghai_midnight(day) -> datetime:
    return datetime.combine(day, time(0), tzinfo=SHANGHAI)


@bp.get("/filings")
def filings():
    form = _search_form()
    page = _requested_page()
    statement = _search(form)
    rows = db.session.execute(
        statement.with_only_columns(*LISTED)
        # Newest first, as the (…, created_at, id) indexes read backwards: a page deep in a
        # broad search reads its offset's entries from the index, with no sort.
        .order_by(Filing.created_at.desc(), Filing.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    template = "admin/_filings_table.html" if _htmx() else "admin/filings.html"
    context = {
        "form": form,
        "rows": rows[:PAGE_SIZE],
        "page": page,
        "more": len(rows) > PAGE_SIZE,
        "count": _capped_count(statement),
        "search_args": _search_args(form),
    }
    return render_template(template, **context), 200, {"Vary": "HX-Request"}


# What the listing shows of a filing.
LISTED = (
    Filing.id,
    Filing.reference,
    Filing.province_slug,
    Filing.type,
    Filing.status,
    Filing.return_reason,
    Filing.created_at,
    Filing.deadline,
)


def _capped_count(search: sa.Select) -> str:
    """How many filings the search finds, counted no further than COUNT_CAP: counting the
    national admin's 1,000,000 filings took half a second of every first page."""
    counted = search.with_only_columns(Filing.id).limit(COUNT_CAP + 1).subquery()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(counted))
    if total > COUNT_CAP:
        return CONSOLE["count_over_cap"].format(cap=COUNT_CAP)
    return CONSOLE["count"].format(count=total)


@bp.get("/filings.csv")
def filings_csv():
    form = _search_form()
    audit.record(
        current_user,
        "export_csv",
        "filings",
        utcnow(),
        province_slug=current_user.province_slug,
        after={"search": _audited(_search_args(form))},
    )
    db.session.commit()
    return Response(
        stream_as_tenant(_csv_lines(_search(form))),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=filings.csv"},
    )


def _audited(search: dict[str, str]) -> dict[str, str]:
    """The search as the audit log keeps it: a phone number masked, as everywhere in the log."""
    return {**search, "phone": mask_phone(search["phone"])} if "phone" in search else search


def _csv_lines(search: sa.Select) -> Iterator[str]:
    """The export, oldest first, streamed a page at a time."""
    yield "\ufeff" + _csv_line(CSV_COLUMNS)
    for page, phones in _pages_by_age(search):
        yield "".join(_csv_line(_csv_cells(filing, phones[filing.id])) for filing in page)


# What the export shows of a filing, read as plain rows: making 50,000 ORM objects (and
# their collections of verifications) took most of an export's time.
CSV_FIELDS = (*LISTED, Filing.provider_id)


def _pages_by_age(search: sa.Select) -> Iterator[tuple[list[sa.Row], dict[str, list[str]]]]:
    """The search's filings (at most CSV_LIMIT), CSV_PAGE at a time, by (created_at, id) as
    the console's indexes hold them, each page with its filings' masked phones: two queries a
    page, however many filings there are."""
    by_age = search.with_only_columns(*CSV_FIELDS).order_by(Filing.created_at, Filing.id)
    statement, left = by_age, CSV_LIMIT
    while left > 0:
        page = db.session.execute(statement.limit(min(CSV_PAGE, left))).all()
        yield page, _masked_phones([filing.id for filing in page])
        if len(page) < CSV_PAGE:
            return
        left -= len(page)
        last = (page[-1].created_at, page[-1].id)
        statement = by_age.where(sa.tuple_(Filing.created_at, Filing.id) > last)


def _masked_phones(filing_ids: list[str]) -> dict[str, list[str]]:
    phones: dict[str, list[str]] = {filing_id: [] for filing_id in filing_ids}
    rows = db.session.execute(
        sa.select(Verification.filing_id, Verification.phone_masked)
        .where(Verification.filing_id.in_(filing_ids))
        .order_by(Verification.id)
    )
    for filing_id, phone in rows:
        phones[filing_id].append(phone)
    return phones


def _csv_cells(filing: sa.Row, phones: list[str]) -> list:
    """The filing as the API shows it, less what needs more queries (each text's delivery)."""
    return [
        filing.id,
        filing.reference,
        filing.province_slug,
        filing.type,
        filing.status,
        filing.return_reason or "",
        iso_shanghai(filing.created_at),
        iso_shanghai(filing.deadline) or "",
        filing.provider_id,
        " ".join(phones),
    ]


def _csv_line(cells: list) -> str:
    sink = io.StringIO()
    csv.writer(sink).writerow([_neutralised(str(cell)) for cell in cells])
    return sink.getvalue()


def _neutralised(cell: str) -> str:
    """A cell a spreadsheet would run as a formula, made text by a leading apostrophe."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def _requested_page() -> int:
    """`?page=`: not a number reads as the first page; out of range is a bad request."""
    page = request.args.get("page", 1, type=int)
    if not 1 <= page <= MAX_PAGE:
        abort(400)
    return page


def _search_form() -> FilingSearchForm:
    form = FilingSearchForm(request.args)
    form.provider.choices = [SelectChoice("", "全部")] + [
        SelectChoice(str(id_), name) for id_, name in _providers_in_view()
    ]
    form.province.choices = [SelectChoice("", "全部")] + [
        SelectChoice(slug, name) for slug, name in province_names().items()
    ]
    form.validate()
    return form


def _providers_in_view() -> list[sa.Row]:
    """A national admin sees every provider; a province admin those that filed there (the
    tenant filter narrows the filings)."""
    statement = sa.select(Provider.id, Provider.name).order_by(Provider.name)
    if not current_user.national:
        statement = statement.where(Provider.id.in_(sa.select(Filing.provider_id)))
    return db.session.execute(statement).all()


def _search_args(form: FilingSearchForm) -> dict[str, str]:
    """The search as given, for links to its other pages and its export: only the form's own
    fields (`?endpoint=` or `?_external=` must not reach `url_for`)."""
    return {name: value for name, value in request.args.items() if name in form and value}


def _search(form: FilingSearchForm) -> sa.Select:
    statement = sa.select(Filing)
    value = {field.name: field.data for field in form if not field.errors}
    if value.get("reference"):
        statement = statement.where(Filing.reference == value["reference"].strip())
    if value.get("phone"):
        statement = statement.where(Filing.id.in_(_filings_with_phone(value["phone"].strip())))
    if value.get("status"):
        statement = statement.where(Filing.status == value["status"])
    if value.get("status") == FilingStatus.PENDING_VERIFICATION:
        # The few pending filings from their own list, not by reading every filing's status.
        statement = statement.where(Filing.id.in_(sa.select(PendingFiling.filing_id)))
    if value.get("provider"):
        statement = statement.where(Filing.provider_id == int(value["provider"]))
    if value.get("province"):
        statement = statement.where(Filing.province_slug == value["province"])
    if value.get("created_from"):
        statement = statement.where(Filing.created_at >= _shanghai_midnight(value["created_from"]))
    if value.get("created_to"):
        end = _shanghai_midnight(value["created_to"]) + timedelta(days=1)
        statement = statement.where(Filing.created_at < end)
    return statement


def _filings_with_phone(phone: str) -> sa.Select:
    return sa.select(Verification.filing_id).where(
        Verification.phone_digest.in_(phone_digests(phone))
    )


@bp.get("/filings/<filing_id>")
def filing(filing_id: str):
    found = _filing_or_404(filing_id)
    page = render_template(
        "admin/filing.html",
        filing=found,
        principals=filing_principals(found),
        erased_notice=_erased_notice(found),
        provider=db.session.get(Provider, found.provider_id),
        timeline=_timeline(found),
        reason_form=ReasonForm(),
    )
    # The page shows the filing's personal data: who looked at it is audited.
    audit.record(
        current_user,
        "view_filing",
        f"filing {found.id}",
        utcnow(),
        province_slug=found.province_slug,
    )
    db.session.commit()
    return page


def _erased_notice(filing: Filing) -> str | None:
    if filing.personal_data_erased_at is None:
        return None
    erased_on = filing.personal_data_erased_at.astimezone(SHANGHAI).date()
    return CONSOLE["personal_data_erased"].format(date=erased_on.isoformat())


def _timeline(filing: Filing) -> list[dict]:
    """Everything that happened to a filing, oldest first."""
    phone_of = {v.id: v.phone_masked for v in filing.verifications}
    verification_ids = list(phone_of)
    entries = [{"at": filing.created_at, "what": "submitted", "filing": filing}]
    for message in db.session.scalars(
        sa.select(SmsMessage).where(SmsMessage.verification_id.in_(verification_ids))
    ):
        entries.append(
            {
                "at": message.created_at,
                "what": "sms",
                "message": message,
                "phone": phone_of[message.verification_id],
            }
        )
    for attempt in db.session.scalars(
        sa.select(VerifyAttempt).where(VerifyAttempt.verification_id.in_(verification_ids))
    ):
        entries.append(
            {
                "at": attempt.attempted_at,
                "what": "attempt",
                "attempt": attempt,
                "phone": phone_of[attempt.verification_id],
            }
        )
    for event in db.session.scalars(sa.select(Event).where(Event.filing_id == filing.id)):
        entries.append(
            {"at": event.occurred_at, "what": "event", "event": event, "told": _told(event)}
        )
    return sorted(entries, key=lambda entry: entry["at"])


def _told(event: Event) -> str:
    """How far the provider was told of a status change."""
    if event.delivered_at:
        return NOTIFICATION["delivered"].format(at=shanghai(event.delivered_at))
    if event.next_attempt_at:
        return NOTIFICATION["pending"].format(at=shanghai(event.next_attempt_at))
    # The job posts nothing, and stops, for a provider without a callback URL.
    return NOTIFICATION["gave_up" if event.deliveries else "no_callback"]


@bp.post(f"/filings/<filing_id>/verifications/<{ROW_ID}:verification_id>/resend")
def resend(filing_id: str, verification_id: int):
    found = _filing_or_404(filing_id)
    verification = db.session.scalar(
        sa.select(Verification).where(
            Verification.id == verification_id, Verification.filing_id == found.id
        )
    )
    if verification is None:
        abort(404)
    now = utcnow()
    before = {"resend_count": verification.resend_count}
    outcome = resend_verification(verification, found.province, now)
    audit.record(
        current_user,
        "resend",
        f"filing {found.id} phone {verification.phone_masked}",
        now,
        province_slug=found.province_slug,
        before=before,
        after={"outcome": outcome.name},
    )
    db.session.commit()
    flash(outcome.message)
    return redirect(url_for("admin.filing", filing_id=found.id))


@bp.post("/filings/<filing_id>/<any(approve, reject):decision>")
def decide(filing_id: str, decision: str):
    found = _filing_or_404(filing_id)
    form = ReasonForm()
    if not form.validate():
        flash(CONSOLE["reason_required"])
        return redirect(url_for("admin.filing", filing_id=found.id))
    now = utcnow()
    before = {"status": found.status}
    try:
        (review.approve if decision == "approve" else review.reject)(found, form.reason.data, now)
    except review.NotUnderReview:
        db.session.rollback()
        flash(CONSOLE["not_under_review"])
        return redirect(url_for("admin.filing", filing_id=found.id))
    audit.record(
        current_user,
        decision,
        f"filing {found.id}",
        now,
        province_slug=found.province_slug,
        before=before,
        after={"status": found.status, "note": form.reason.data},
    )
    db.session.commit()
    flash(CONSOLE["approved" if decision == "approve" else "rejected"])
    return redirect(url_for("admin.filing", filing_id=found.id))


@bp.get("/audit")
def audit_log():
    form = _audit_form()
    page = _requested_page()
    entries = db.session.scalars(
        _audit_search(form)
        .order_by(AuditEntry.seq.desc())
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    template = "admin/_audit_table.html" if _htmx() else "admin/audit.html"
    context = {
        "form": form,
        "entries": entries,
        "page": page,
        "page_size": PAGE_SIZE,
        "filters": _audit_filters(form),
    }
    return render_template(template, **context), 200, {"Vary": "HX-Request"}


def _audit_filters(form: AuditSearchForm) -> dict[str, str]:
    """The filters given, and nothing else the query string holds (links are made of them)."""
    return {field.name: request.args[field.name] for field in form if request.args.get(field.name)}


AUDIT_CSV_HEADER = [
    "seq",
    "at",
    "admin",
    "address",
    "province",
    "action",
    "target",
    "before",
    "after",
]


@bp.get("/audit.csv")
def audit_csv():
    """The entries the page's filters select, oldest first; the export is audited itself."""
    form = _audit_form()
    filters = _audit_filters(form)
    audit.record(
        current_user,
        "export_audit",
        "audit log",
        utcnow(),
        province_slug=current_user.province_slug,
        after={"filters": filters},
    )
    db.session.commit()
    rows = _audit_csv_rows(_audit_search(form))
    return Response(
        stream_as_tenant(rows),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=audit.csv"},
    )


def _audit_csv_rows(statement: sa.Select) -> Iterator[str]:
    """The CSV text, one page of entries (one query) at a time, by seq."""
    yield "\ufeff" + _csv_line(AUDIT_CSV_HEADER)
    last_seq = None
    while True:
        page = statement.order_by(AuditEntry.seq).limit(AUDIT_CSV_PAGE)
        if last_seq is not None:
            page = page.where(AuditEntry.seq > last_seq)
        entries = db.session.scalars(page).all()
        if not entries:
            return
        yield "".join(_csv_line(_audit_csv_cells(entry)) for entry in entries)
        last_seq = entries[-1].seq


def _audit_csv_cells(entry: AuditEntry) -> list:
    return [
        entry.seq,
        entry.at.astimezone(SHANGHAI).isoformat(),
        entry.admin_username,
        entry.address or "",
        entry.province_slug or "",
        entry.action,
        entry.target,
        json.dumps(entry.before, ensure_ascii=False) if entry.before else "",
        json.dumps(entry.after, ensure_ascii=False) if entry.after else "",
    ]


def _audit_form() -> AuditSearchForm:
    form = AuditSearchForm(request.args)
    # Every action the console records has a label; reading the log's distinct actions
    # instead scanned the whole log (a million entries) on every page.
    form.action.choices = [SelectChoice("", "全部")] + [
        SelectChoice(action, label) for action, label in ACTION_LABELS.items()
    ]
    form.validate()
    return form


def _audit_search(form: AuditSearchForm) -> sa.Select:
    statement = sa.select(AuditEntry)
    value = {field.name: field.data for field in form if not field.errors}
    if value.get("date_from"):
        statement = statement.where(AuditEntry.at >= _shanghai_midnight(value["date_from"]))
    if value.get("date_to"):
        end = _shanghai_midnight(value["date_to"]) + timedelta(days=1)
        statement = statement.where(AuditEntry.at < end)
    if value.get("actor"):
        statement = statement.where(AuditEntry.admin_username == value["actor"].strip())
    if value.get("action"):
        statement = statement.where(AuditEntry.action == value["action"])
    return statement


def _filing_or_404(filing_id: str) -> Filing:
    found = db.session.scalar(sa.select(Filing).where(Filing.id == filing_id))
    if found is None:
        abort(404)
    return found


def _htmx() -> bool:
    return bool(request.headers.get("HX-Request")) and not request.headers.get(
        "HX-History-Restore-Request"
    )
