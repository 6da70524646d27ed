"""The rollout (each province's settings) and the filing-type rules, as every applicant page
and every intake reads them: from a copy each process keeps for up to `SECONDS`.

They change a few times a year, from the national console, and were read on every request.
A commit that changes a province or a rule (through the ORM session: the console, the CLI,
a test) drops this process's copy at once; every other process reads the tables again at
most `SECONDS` later, which bounds how late a rollout change reaches a page. Each copy
belongs to one app (`app.extensions`), so two apps in one process never share one, and is
keyed by province: a page gets only its own province's row.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date
from typing import TypeVar

import sqlalchemy as sa
from flask import Flask, current_app, has_app_context, render_template
from flask_sqlalchemy.session import Session
from markupsafe import Markup

from portal.extensions import db
from portal.models import FilingTypeRule, Province

T = TypeVar("T")

SECONDS = 3.0
WATCHED = {Province.__tablename__, FilingTypeRule.__tablename__}


@dataclass(frozen=True)
class ProvinceSettings:
    """A province's row, detached from any session (shared by the requests of a process)."""

    slug: str
    name: str
    abbreviation: str
    authority: str
    batch: int | None
    live_from: date | None
    code_validity_hours: int
    resend_limit: int

    is_live = Province.is_live  # the same rule, read from the same field

    @classmethod
    def of(cls, province: Province) -> "ProvinceSettings":
        return cls(**{field.name: getattr(province, field.name) for field in fields(cls)})


@dataclass(frozen=True)
class _Copy:
    read_at: float
    provinces: dict[str, ProvinceSettings]
    checked_types: dict[str, bool]
    # Parts of pages made only of the above (`rendered`), dropped with the copy.
    parts: dict[tuple[str, str], Markup] = field(default_factory=dict)


def init_app(app: Flask) -> None:
    app.extensions["rules_cache"] = None


def province(slug: str) -> ProvinceSettings | None:
    return _copy().provinces.get(slug)


def checked_types() -> dict[str, bool]:
    """Whether each filing type's principals are checked by SMS."""
    return _copy().checked_types


def rendered(template: str, slug: str) -> Markup:
    """A template that reads only the province's settings and the rules, rendered once per
    copy: the help beside every form changes only when they do."""
    return kept(
        (template, slug), lambda: Markup(render_template(template, province=province(slug)))
    )


def kept(key: tuple, make: Callable[[], T]) -> T:
    """What `make` builds from nothing but the provinces' settings and the rules, built once
    per copy and dropped with it."""
    parts = _copy().parts
    if key not in parts:
        parts[key] = make()
    return parts[key]


def _copy() -> _Copy:
    copy = current_app.extensions["rules_cache"]
    if copy is None or time.monotonic() - copy.read_at > SECONDS:
        copy = _read()
        current_app.extensions["rules_cache"] = copy
    return copy


def _read() -> _Copy:
    read_at = time.monotonic()  # before the reads: a change committed meanwhile is not missed
    with db.engine.connect() as connection:
        provinces = connection.execute(sa.select(*Province.__table__.columns)).all()
        rules = connection.execute(
            sa.select(FilingTypeRule.type, FilingTypeRule.verification_required)
        ).all()
    return _Copy(
        read_at=read_at,
        provinces={row.slug: ProvinceSettings.of(row) for row in provinces},
        checked_types=dict(rules),
    )


def _drop_copy() -> None:
    if has_app_context() and "rules_cache" in current_app.extensions:
        current_app.extensions["rules_cache"] = None


@sa.event.listens_for(Session, "after_flush")
def _note_changed_rows(session, _flush_context) -> None:
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(row, Province | FilingTypeRule) for row in changed):
        session.info["rules_changed"] = True


@sa.event.listens_for(Session, "do_orm_execute")
def _note_changing_statements(state) -> None:
    changing = state.is_insert or state.is_update or state.is_delete
    if changing and getattr(state.statement.table, "name", None) in WATCHED:
        state.session.info["rules_changed"] = True


@sa.event.listens_for(Session, "after_commit")
def _drop_copy_after_change(session) -> None:
    if session.info.pop("rules_changed", False):
        _drop_copy()


@sa.event.listens_for(Session, "after_rollback")
def _forget_rolled_back_change(session) -> None:
    session.info.pop("rules_changed", None)
