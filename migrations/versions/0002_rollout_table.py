"""load the rollout table (SPEC §2) and the verification rule per filing type (SPEC §3)

Revision ID: 0002
Revises: 0001
"""

import csv
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ROLLOUT_CSV = Path(__file__).resolve().parents[2] / "provinces" / "rollout.csv"

provinces = sa.table(
    "provinces",
    sa.column("slug", sa.String),
    sa.column("name", sa.String),
    sa.column("abbreviation", sa.String),
    sa.column("authority", sa.String),
    sa.column("batch", sa.Integer),
    sa.column("live_from", sa.Date),
    sa.column("code_validity_hours", sa.Integer),
    sa.column("resend_limit", sa.Integer),
)
filing_type_rules = sa.table(
    "filing_type_rules", sa.column("type", sa.String), sa.column("verification_required", sa.Boolean)
)
CHECKED_TYPES = {"new_filing": True, "new_website": True, "new_access": True, "change_filing": True,
                 "cancel_filing": False, "cancel_website": False, "cancel_access": False}


def upgrade():
    with ROLLOUT_CSV.open(encoding="utf-8") as source:
        rows = [
            {**row, "batch": int(row["batch"]), "live_from": date.fromisoformat(row["live_from"]),
             "code_validity_hours": 24, "resend_limit": 2}
            for row in csv.DictReader(source)
        ]
    op.bulk_insert(provinces, rows)
    op.bulk_insert(
        filing_type_rules,
        [{"type": name, "verification_required": on} for name, on in CHECKED_TYPES.items()],
    )


def downgrade():
    op.execute(filing_type_rules.delete())
    op.execute(provinces.delete())
