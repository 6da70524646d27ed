"""The OpenAPI document of the provider API, generated from the pydantic schemas it validates with."""

from functools import cache

from pydantic.json_schema import models_json_schema

from portal.api.examples import EXAMPLES
from portal.api.schemas import EventList, FilingIn, FilingOut, Problem

DESCRIPTION = (
    "Submit ICP filings whose principals' phones are checked by SMS, and follow them. "
    "Authenticate with `Authorization: Bearer <api key>`. Errors are "
    "`application/problem+json` (RFC 9457) with a stable `code`; a field error names the "
    "field in `errors`. Resubmitting a `reference` with the same body returns its filing "
    "(200); with another body it is refused (409 `reference_conflict`). Status changes are "
    "also POSTed to your callback URL, signed with `X-Signature: sha256=<HMAC-SHA256 of the "
    "body>`."
)
_FILING_ID = {"name": "filing_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: str, media: str = "application/json") -> dict:
    return {"description": description, "content": {media: {"schema": _ref(schema)}}}


def _problem(description: str) -> dict:
    return _answer(description, "Problem", "application/problem+json")


def _rate_limited() -> dict:
    answer = _problem(
        "Too many calls for this provider, or too many unknown keys from this address"
    )
    answer["headers"] = {
        "Retry-After": {
            "description": "Seconds until a call is let through again",
            "schema": {"type": "integer"},
        }
    }
    return answer


@cache
def document() -> dict:
    _, schemas = models_json_schema(
        [
            (FilingIn, "validation"),
            (FilingOut, "serialization"),
            (EventList, "serialization"),
            (Problem, "serialization"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    unauthorised = _problem("Missing or unknown API key")
    rate_limited = _rate_limited()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "备案短信核验 — access-provider API",
            "version": "1",
            "description": DESCRIPTION,
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
        "tags": [{"name": "filings", "description": "Your filings, their checks and their events"}],
        "paths": {
            "/filings": {
                "post": {
                    "operationId": "createFiling",
                    "tags": ["filings"],
                    "summary": "Submit a filing; its principals' phones get their codes",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": _ref("FilingIn"), "examples": EXAMPLES}
                        },
                    },
                    "responses": {
                        "201": _answer("The filing, accepted", "FilingOut"),
                        "200": _answer(
                            "The filing already submitted with this reference", "FilingOut"
                        ),
                        "400": _problem("The body is not JSON"),
                        "401": unauthorised,
                        "409": _problem(
                            "This reference was submitted before with another body "
                            "(code `reference_conflict`)"
                        ),
                        "413": _problem("The body is larger than 1 MiB"),
                        "415": _problem("The body is not sent as application/json"),
                        "422": _problem("A field is invalid; `errors` names it"),
                        "429": rate_limited,
                        "503": _problem("A concurrent submission got in the way; send it again"),
                    },
                }
            },
            "/filings/{filing_id}/events": {
                "get": {
                    "operationId": "listFilingEvents",
                    "tags": ["filings"],
                    "summary": "A filing's status-change events and each webhook attempt",
                    "parameters": [_FILING_ID],
                    "responses": {
                        "200": _answer("The events, oldest first", "EventList"),
                        "401": unauthorised,
                        "404": _problem("No filing of yours has this id"),
                        "429": rate_limited,
                    },
                }
            },
            "/filings/{filing_id}": {
                "get": {
                    "operationId": "getFiling",
                    "tags": ["filings"],
                    "summary": "A filing of yours, with its verifications",
                    "parameters": [_FILING_ID],
                    "responses": {
                        "200": _answer("The filing", "FilingOut"),
                        "401": unauthorised,
                        "404": _problem("No filing of yours has this id"),
                        "429": rate_limited,
                    },
                }
            },
        },
    }
