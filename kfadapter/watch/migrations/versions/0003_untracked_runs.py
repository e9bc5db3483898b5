"""Runs whose tracking DELETE /runs/<id> stopped, kept in their training job's history.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the untracked_runs table."""
    op.create_table(
        "untracked_runs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("trainingjob_id", sa.Text, nullable=False),
        sa.Column("pipeline_name", sa.Text),
        sa.Column("experiment_id", sa.Text),
        sa.Column("tracked_at", sa.Float),
        sa.Column("untracked_at", sa.Float, nullable=False),
    )
    op.create_index("untracked_runs_trainingjob", "untracked_runs", ["trainingjob_id"])


def downgrade() -> None:
    """Drop the untracked_runs table."""
    op.drop_index("untracked_runs_trainingjob", "untracked_runs")
    op.drop_table("untracked_runs")
