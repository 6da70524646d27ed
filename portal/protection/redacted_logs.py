"""Logs never hold a code, an ID number, a personal link's token or a full phone number.

Every log record is redacted as it is made (a record factory runs the filter), so
no logger, handler or library can forget it: 18-character ID numbers and 6-digit
numbers (codes, ID last six) and the token of a personal link (`/v/<token>`, in an SMS
text or a request line) become asterisks, mainland mobiles keep only the part
shown anywhere else (139****0001). Tracebacks are formatted and redacted then too.
The price: any other 6-digit number in a log line (a row id, microseconds) is hidden.
"""

import json
import logging
import re
import secrets
from datetime import UTC, datetime

from flask import Flask, Response, g, has_request_context, request
from flask.logging import default_handler

# Longest first: an ID number holds 6-digit runs, a phone number with +86 holds 11.
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_SIX_DIGITS = re.compile(r"(?<![0-9A-Za-z])\d{5}[\dXx](?![0-9A-Za-z])")
_LINK_TOKEN = re.compile(r"(/v/)[A-Za-z0-9_-]+")


def redact(text: str) -> str:
    text = _LINK_TOKEN.sub(r"\1" + "*" * 16, text)
    text = _ID_NUMBER.sub("*" * 18, text)
    text = _MOBILE.sub(r"\1****\2", text)
    return _SIX_DIGITS.sub("*" * 6, text)


class Redactor(logging.Filter):
    """Rewrites a record in place: its message merged with its arguments, redacted."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be kept
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info:
            record.exc_text = redact(self._formatter.formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record.redacted = True
        return True


_redactor = Redactor()


def install(app: Flask) -> None:
    """Redact every record this process makes, and let the portal's INFO lines through."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacting", False):

        def redacting_factory(*args, **kwargs) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            _redactor.filter(record)
            record.request_id = request_id()
            return record

        redacting_factory.redacting = True
        logging.setLogRecordFactory(redacting_factory)
    portal_logger = logging.getLogger("portal")
    if portal_logger.level == logging.NOTSET:
        portal_logger.setLevel(logging.INFO)
    app.logger  # noqa: B018  (Flask adds its stderr handler to the "portal" logger on first use)
    if app.config.get("LOG_FORMAT", "json") == "json":
        default_handler.setFormatter(JsonFormatter())
    app.before_request(_take_request_id)
    app.after_request(_echo_request_id)


# A request id a client or proxy sends is kept when it looks like one (no spaces, no markup).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id() -> str | None:
    """The current request's id (`X-Request-Id`, honoured or generated); None outside one."""
    return g.get("request_id") if has_request_context() else None


def _take_request_id() -> None:
    given = request.headers.get("X-Request-Id", "")
    g.request_id = given if _REQUEST_ID.fullmatch(given) else secrets.token_hex(16)


def _echo_request_id(response: Response) -> Response:
    if rid := request_id():
        response.headers["X-Request-Id"] = rid
    return response


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id (and traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)
