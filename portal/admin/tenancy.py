"""Tenancy of the admin console, enforced in one place: the query.

While a province admin's request is served, every ORM statement that reads or
changes a `TenantOwned` row (filings, verifications, verify attempts, audit
entries) gets `province_slug = <the admin's province>` added to it, wherever the
entity appears — so a view cannot forget the filter. A national admin's requests,
the applicant pages, the API and the jobs are not filtered.
"""

from collections.abc import Iterator

import sqlalchemy as sa
from flask import g, has_app_context, stream_with_context
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from portal.models import TenantOwned


def serve_as(province_slug: str | None) -> None:
    """Filter this request's queries to a province; None (a national admin) filters nothing."""
    g.tenant = province_slug


def stream_as_tenant(rows: Iterator[str]) -> Iterator[str]:
    """`stream_with_context` for the console: a streamed body is read after the request's
    teardown has left the tenant, so it is read as the request's tenant again."""
    tenant = g.get("tenant")

    def as_tenant() -> Iterator[str]:
        serve_as(tenant)
        try:
            yield from rows
        finally:
            serve_as(None)

    return stream_with_context(as_tenant())


def _add_tenant_criteria(state: ORMExecuteState) -> None:
    tenant = g.get("tenant") if has_app_context() else None
    if tenant is None or not (state.is_select or state.is_update or state.is_delete):
        return
    state.statement = state.statement.options(
        with_loader_criteria(
            TenantOwned, lambda cls: cls.province_slug == tenant, include_aliases=True
        )
    )


sa.event.listen(Session, "do_orm_execute", _add_tenant_criteria)
