"""uploads: one object per policy; indexes for the per-key allowance and the sweep

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("policy_id", sa.String(32), nullable=True))
        batch.create_unique_constraint("uq_uploads_policy_id", ["policy_id"])
    op.create_index("ix_uploads_key_created", "uploads", ["key_id", "created_at"])
    op.create_index("ix_uploads_created", "uploads", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_uploads_created", table_name="uploads")
    op.drop_index("ix_uploads_key_created", table_name="uploads")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_constraint("uq_uploads_policy_id", type_="unique")
        batch.drop_column("policy_id")
