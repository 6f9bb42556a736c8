"""extra outputs: the stored file names of a task's extra outputs (e.g. Seedance's last frame)

Revision ID: 0008_extras
Revises: 0007_scale
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_extras"
down_revision = "0007_scale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Listed on the row, not found by listing the task's folder: an s3:// storage has no folder to list cheaply.
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("extras", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("extras")
