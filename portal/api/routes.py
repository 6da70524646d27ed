"""The access-provider API (SPEC §6): JSON in, JSON or problem+json out."""

import json
import logging

import sqlalchemy as sa
from flask import Blueprint, Response, g, render_template, request
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from portal.api.description import describe, describe_event, taken_in
from portal.api.openapi import document
from portal.api.schemas import EventList, FieldError, FilingIn, FilingOut, Problem
from portal.clock import utcnow
from portal.delivery import outbox
from portal.extensions import db
from portal.filings import IntakeError, ReferenceConflict, take_in
from portal.messages import Outcome
from portal.models import Event, Filing
from portal.protection import limits
from portal.providers import authenticate

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api/v1")
reference = Blueprint("api_reference", __name__, url_prefix="/api")

# A concurrent intake can trip a unique index between this one's checks and its insert.
INTAKE_ATTEMPTS = 3


class ApiProblem(Exception):
    def __init__(self, status: int, code: str, title: str, detail=None, errors=(), headers=None):
        super().__init__(title)
        self.problem = Problem(
            status=status, code=code, title=title, detail=detail, errors=list(errors)
        )
        self.headers = headers or {}


@bp.errorhandler(ApiProblem)
def problem_response(error: ApiProblem) -> Response:
    response = _json(
        error.problem.model_dump(mode="json"), error.problem.status, "application/problem+json"
    )
    response.headers.update(error.headers)
    if error.problem.status == 401:  # RFC 9110 §15.5.2: a 401 names the scheme to use
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _rate_limited() -> ApiProblem:
    seconds = limits.retry_after()
    return ApiProblem(
        429,
        "rate_limited",
        "Too many requests; retry after the Retry-After delay",
        Outcome.TOO_MANY_ATTEMPTS.message,
        headers={"Retry-After": str(seconds)} if seconds else None,
    )


@bp.before_request
def require_api_key():
    """An address that sent too many unknown keys is refused before any key is looked up;
    a known key is then counted against its provider's limit."""
    if request.endpoint == "api.openapi":
        return
    if not limits.api_address_allowed():
        raise _rate_limited()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    provider = authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if provider is None:
        limits.count_unknown_api_key()
        raise ApiProblem(
            401, "unauthorized", "A valid API key is required (Authorization: Bearer …)"
        )
    if not limits.take_api_call(provider.id):
        raise _rate_limited()
    g.provider = provider


@bp.post("/filings")
def create_filing() -> Response:
    data = _parse(FilingIn)
    try:
        answer, created = _take_in(data)
    except ReferenceConflict as error:
        raise _refused(409, "This reference was used for another filing", error) from error
    except IntakeError as error:
        raise _refused(422, "The filing cannot be accepted", error) from error
    return _json(answer.model_dump(mode="json"), 201 if created else 200)


def _take_in(data: FilingIn) -> tuple[FilingOut, bool]:
    """Submit and commit; the answer is described from what the intake wrote. When
    a concurrent intake committed the same code or the same reference first, the unique index
    refuses this one; taken in again, it sees the other's rows: it draws around its codes, or
    finds the filing of the reference."""
    for attempt in range(1, INTAKE_ATTEMPTS + 1):
        try:
            filing, created, codes = take_in(g.provider, data, utcnow())
            answer = taken_in(filing, codes) if created else describe(filing)
            db.session.commit()
            if created and codes and outbox.texts_run_in_process():
                # The commit sent the texts and set the deadline: read them (a new filing is
                # described from what intake wrote, not loaded in the session).
                answer = describe(db.session.get(Filing, filing.id))
            return answer, created
        except IntegrityError:
            db.session.rollback()
            log.warning("intake attempt %d of %d met a concurrent intake", attempt, INTAKE_ATTEMPTS)
    raise ApiProblem(503, "try_again", "The filing could not be taken in; send it again")


def _refused(status: int, title: str, error: IntakeError) -> ApiProblem:
    return ApiProblem(
        status,
        error.code,
        title,
        error.detail,
        [FieldError(field=error.field, message=error.detail)],
    )


@bp.get("/filings/<filing_id>")
def get_filing(filing_id: str) -> Response:
    return _json(describe(_own_filing(filing_id)).model_dump(mode="json"))


def _own_filing(filing_id: str) -> Filing:
    """The calling provider's filing: another provider's answers 404, as an unknown id does."""
    if "\x00" in filing_id:  # PostgreSQL refuses NUL in text; no id holds one anyway
        raise ApiProblem(404, "not_found", "No such filing")
    filing = db.session.scalar(
        sa.select(Filing).where(Filing.id == filing_id, Filing.provider_id == g.provider.id)
    )
    if filing is None:
        raise ApiProblem(404, "not_found", "No such filing")
    return filing


@bp.get("/filings/<filing_id>/events")
def list_events(filing_id: str) -> Response:
    """The status-change events of a filing of yours, with each webhook attempt."""
    filing = _own_filing(filing_id)
    events = db.session.scalars(
        sa.select(Event)
        .where(Event.filing_id == filing.id)
        .order_by(Event.occurred_at, Event.id)
        .options(selectinload(Event.deliveries))
    )
    described = describe(filing)
    listing = EventList(events=[describe_event(event, described) for event in events])
    return _json(listing.model_dump(mode="json"))


@bp.get("/openapi.json")
def openapi() -> Response:
    return _json(document())


@reference.get("/docs")
def docs() -> str:
    """The API reference, rendered from the OpenAPI document by the vendored Swagger UI."""
    return render_template("api/docs.html")


def _parse(schema):
    if not request.is_json:
        raise ApiProblem(415, "unsupported_media_type", "Send the body as application/json")
    try:
        body = request.get_json(silent=True)
    except (
        RecursionError
    ):  # nesting too deep for the JSON parser: not a ValueError, so not silenced
        body = None
    if body is None:
        raise ApiProblem(400, "malformed_json", "The body is not valid JSON")
    try:
        return schema.model_validate(body)
    except ValidationError as error:
        errors = [
            FieldError(field=".".join(map(str, item["loc"])) or "(body)", message=item["msg"])
            for item in error.errors(include_url=False, include_input=False)
        ]
        raise ApiProblem(422, "invalid_fields", "Some fields are invalid", errors=errors) from error


def _json(payload: dict, status: int = 200, mimetype: str = "application/json") -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status=status, mimetype=mimetype)
