"""scale-out: channel slots (a hard max_in_flight across processes) and local render jobs in the database

Revision ID: 0007_scale
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_scale"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_slots",
        sa.Column("channel", sa.String(100), primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True),
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("taken_at", sa.Float, nullable=False),
    )
    op.create_index("ix_channel_slots_task", "channel_slots", ["task_id"])
    op.create_table(
        "render_jobs",
        sa.Column("task_id", sa.String(40), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("done_frames", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total_frames", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("runs", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("render_jobs")
    op.drop_index("ix_channel_slots_task", table_name="channel_slots")
    op.drop_table("channel_slots")
