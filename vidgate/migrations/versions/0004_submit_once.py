"""one request, one upstream task: idempotency keys, one row per upstream task

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("uq_tasks_channel_upstream", "tasks", ["channel", "upstream_id"], unique=True)
    op.create_table(
        "idempotency_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("idem_key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_idempotency_created", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_created", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("uq_tasks_channel_upstream", table_name="tasks")
