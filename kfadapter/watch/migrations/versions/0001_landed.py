"""The schema of the first landed store (tracked runs, outbox, meta, lease).

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the landed tables (a store made by the landed version is stamped at this revision instead)."""
    op.create_table(
        "tracked_runs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("trainingjob_id", sa.Text, nullable=False),
        sa.Column("pipeline_name", sa.Text),
        sa.Column("experiment_id", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("trainingjob_id", sa.Text, nullable=False),
        sa.Column("run_status", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_attempt_at", sa.Float),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", sa.Float),
    )
    op.create_index("outbox_due", "outbox", ["delivered_at", "next_attempt_at"])
    op.create_table(
        "meta",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )
    op.create_table(
        "lease",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop everything."""
    for table in ("lease", "meta", "outbox", "tracked_runs"):
        op.drop_table(table)
