"""The audit log: every admin action, who, when, what, before and after."""

from datetime import datetime

from portal.extensions import db
from portal.models import Admin, AuditEntry


def record(
    admin: Admin,
    action: str,
    target: str,
    now: datetime,
    *,
    province_slug: str | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> None:
    db.session.add(
        AuditEntry(
            at=now,
            admin_id=admin.id,
            admin_username=admin.username,
            province_slug=province_slug,
            action=action,
            target=target,
            before=before,
            after=after,
        )
    )
