"""quota, ledger, webhooks, channel health

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Time = sa.Float
Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("quota_micros", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("webhook_url", sa.String(2000), nullable=True))
        batch.add_column(sa.Column("webhook_secret", sa.String(200), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("price_micros", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("attempts", sa.JSON, nullable=True))
    op.create_table(
        "ledger",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_micros", sa.BigInteger, nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.UniqueConstraint("task_id", "kind", name="uq_ledger_task_kind"),
    )
    op.create_index("ix_ledger_key", "ledger", ["key_id", "created_at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", Time, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("lease_until", Time, nullable=True),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("delivered_at", Time, nullable=True),
        sa.UniqueConstraint("task_id", "event_type", name="uq_webhook_task_event"),
    )
    op.create_index("ix_webhook_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "channel_health",
        sa.Column("channel", sa.String(100), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("open_until", Time, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("updated_at", Time, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("channel_health")
    op.drop_table("webhook_deliveries")
    op.drop_table("ledger")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("attempts")
        batch.drop_column("price_micros")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("webhook_secret")
        batch.drop_column("webhook_url")
        batch.drop_column("quota_micros")
