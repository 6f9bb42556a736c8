"""seal stored secrets: task credentials and webhook signing secrets encrypted at rest; revocation index

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
import sqlalchemy as sa
from alembic import context, op

from vidgate.crypto import Vault, is_sealed

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_tasks = sa.table("tasks", sa.column("id", sa.String), sa.column("credentials", sa.Text))
_keys = sa.table("api_keys", sa.column("id", sa.String), sa.column("webhook_secret", sa.String))


def _vault() -> Vault:
    secret = context.config.attributes.get("secret")
    if not secret:
        raise RuntimeError("migration 0006 seals stored secrets with `secret`: run it through vidgate (vidgate serve)")
    return Vault(secret)


def upgrade() -> None:
    bind = op.get_bind()
    # Ask for the secret before changing anything (SQLite runs DDL outside the transaction).
    stored = [
        bind.execute(sa.select(sa.func.count()).select_from(table).where(table.c[column].is_not(None))).scalar()
        for table, column in ((_tasks, "credentials"), (_keys, "webhook_secret"))
    ]
    vault = _vault() if any(stored) else None
    if bind.dialect.name == "sqlite":
        # Pages this migration frees (the old tasks table, overwritten values) are zeroed, not left holding the
        # plaintext it replaces.
        op.execute("PRAGMA secure_delete = ON")
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column(
            "credentials",
            type_=sa.Text(),
            existing_type=sa.JSON(),
            existing_nullable=False,
            postgresql_using="credentials::text",
        )
    op.create_index("ix_api_keys_revoked", "api_keys", ["revoked_at"])
    if vault is None:
        return

    def seal(context_: str, text: str) -> str:
        assert vault is not None
        return vault.seal(text.encode(), context=context_)

    changed = _rewrite(bind, _tasks, "credentials", "tasks.credentials", lambda value: not is_sealed(value), seal)
    changed += _rewrite(
        bind, _keys, "webhook_secret", "api_keys.webhook_secret", lambda value: not is_sealed(value), seal
    )
    if changed:
        # migrate() then empties SQLite's WAL, whose older frames still hold the plaintext.
        context.config.attributes["replaced_plaintext"] = True


def downgrade() -> None:
    bind = op.get_bind()
    vault = _vault()

    def unseal(context_: str, token: str) -> str:
        return vault.open(token, context=context_).decode()

    _rewrite(bind, _tasks, "credentials", "tasks.credentials", is_sealed, unseal)
    _rewrite(bind, _keys, "webhook_secret", "api_keys.webhook_secret", is_sealed, unseal)
    op.drop_index("ix_api_keys_revoked", table_name="api_keys")
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column(
            "credentials",
            type_=sa.JSON(),
            existing_type=sa.Text(),
            existing_nullable=False,
            postgresql_using="credentials::json",
        )


def _rewrite(
    bind: sa.Connection,
    table: sa.TableClause,
    column: str,
    label: str,
    wanted: Callable[[object], bool],
    change: Callable[[str, str], str],
) -> int:
    """Rewrite the column's non-null values that `wanted` picks, row by row, with `change(context, value)`."""
    rows = bind.execute(sa.select(table.c.id, table.c[column]).where(table.c[column].is_not(None))).all()
    updates = [
        {"row_id": row_id, "value": change(f"{label}:{row_id}", _text(value))}
        for row_id, value in rows
        if wanted(value)
    ]
    if updates:
        statement = table.update().where(table.c.id == sa.bindparam("row_id")).values({column: sa.bindparam("value")})
        bind.execute(statement, updates)
    return len(updates)


def _text(value: object) -> str:
    # A JSON column read back through a plain column may come as text or (asyncpg) already decoded.
    return value if isinstance(value, str) else orjson.dumps(value).decode()
