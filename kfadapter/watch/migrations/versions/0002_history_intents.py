"""History columns on the outbox, execution intents, lookups by training job.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the history columns and the intents table; existing rows keep their values."""
    for column in (sa.Column("pipeline_name", sa.Text), sa.Column("experiment_id", sa.Text),
                   sa.Column("tracked_at", sa.Float), sa.Column("tm_answer", sa.Text)):
        op.add_column("outbox", column)
    op.create_index("outbox_trainingjob", "outbox", ["trainingjob_id"])
    op.create_index("tracked_runs_trainingjob", "tracked_runs", ["trainingjob_id"])
    op.create_table(
        "intents",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("trainingjob_id", sa.Text, nullable=False),
        sa.Column("pipeline_name", sa.Text, nullable=False),
        sa.Column("run_name", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop what upgrade added (SQLite drops columns through a table copy)."""
    op.drop_table("intents")
    op.drop_index("tracked_runs_trainingjob", "tracked_runs")
    op.drop_index("outbox_trainingjob", "outbox")
    with op.batch_alter_table("outbox") as batch:
        for name in ("tm_answer", "tracked_at", "experiment_id", "pipeline_name"):
            batch.drop_column(name)
