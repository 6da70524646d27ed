"""Tenancy of the admin console, enforced in one place: the query.

While a province admin's request is served, every ORM statement that reads or
changes a `TenantOwned` row (filings, verifications, verify attempts, audit
entries) gets `province_slug = <the admin's province>` added to it, wherever the
entity appears — so a view cannot forget the filter. A national admin's requests,
the applicant pages, the API and the jobs are not filtered.
"""

import sqlalchemy as sa
from flask import g, has_app_context
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from portal.models import TenantOwned


def serve_as(province_slug: str | None) -> None:
    """Filter this request's queries to a province; None (a national admin) filters nothing."""
    g.tenant = province_slug


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
