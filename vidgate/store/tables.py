"""The schema, as SQLAlchemy Core tables; Alembic migrations create it."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Times are UNIX seconds as doubles: comparable, portable across SQLite and PostgreSQL, sub-second.
Time = sa.Float

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(24), nullable=False),
    sa.Column("models", sa.JSON, nullable=True),
    sa.Column("rpm", sa.Integer, nullable=True),
    # Money is integer micro-dollars (1 USD = 1_000_000): exact, and summable in SQL.
    sa.Column("quota_micros", sa.BigInteger, nullable=True),
    sa.Column("webhook_url", sa.String(2000), nullable=True),
    # Sealed (crypto.Vault, context "api_keys.webhook_secret:<id>"): it must stay usable to sign deliveries.
    sa.Column("webhook_secret", sa.String(200), nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("revoked_at", Time, nullable=True),
    # Every process watches for revocations (auth.KeyRing) through this index.
    sa.Index("ix_api_keys_revoked", "revoked_at"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("model", sa.String(100), nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("upstream_id", sa.String(200), nullable=True),
    # The channel's credentials as JSON, sealed (crypto.Vault, context "tasks.credentials:<id>").
    sa.Column("credentials", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("progress", sa.Integer, nullable=False, server_default="0"),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("seconds", sa.Integer, nullable=False),
    sa.Column("size", sa.String(16), nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("error_code", sa.String(100), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("remixed_from", sa.String(40), nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("completed_at", Time, nullable=True),
    sa.Column("expires_at", Time, nullable=True),
    sa.Column("deadline_at", Time, nullable=False),
    # The poller's bookkeeping: when to look next, who holds the row, how often it failed to read.
    sa.Column("next_poll_at", Time, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", Time, nullable=True),
    sa.Column("polls", sa.Integer, nullable=False, server_default="0"),
    sa.Column("poll_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_poll_error", sa.Text, nullable=True),
    # The stored result (storage keys, relative to media_dir for file: storage), and what probing it found.
    sa.Column("video_path", sa.String(300), nullable=True),
    sa.Column("thumbnail_path", sa.String(300), nullable=True),
    sa.Column("spritesheet_path", sa.String(300), nullable=True),
    sa.Column("duration", sa.Float, nullable=True),
    sa.Column("width", sa.Integer, nullable=True),
    sa.Column("height", sa.Integer, nullable=True),
    sa.Column("has_audio", sa.Boolean, nullable=True),
    sa.Column("deleted_at", Time, nullable=True),
    sa.Column("price_micros", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("attempts", sa.JSON, nullable=True),
    # Stored file names of extra outputs (Progress.extras), beside the video: ["extra-last_frame.png"].
    sa.Column("extras", sa.JSON, nullable=True),
    sa.Index("ix_tasks_key_seq", "key_id", "seq"),
    sa.Index("ix_tasks_next_poll", "next_poll_at"),
    # One upstream task belongs to one row at most: two reconcilers cannot adopt the same one.
    sa.Index("uq_tasks_channel_upstream", "channel", "upstream_id", unique=True),
)

# Idempotency-Key headers of POST /v1/videos (per API key), written with the task row they created, so
# concurrent duplicates collide on the primary key and one task is made. Rows older than 24 h are swept.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("idem_key", sa.String(255), primary_key=True),
    # SHA-256 of the request as parsed (fields and file bytes), so a changed body is told from a retry.
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("task_id", sa.String(40), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Index("ix_idempotency_created", "created_at"),
)

# Files sent through the DashScope upload flow; `oss://<key>` inputs resolve to them for their owner only.
uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("path", sa.String(400), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content_type", sa.String(100), nullable=True),
    sa.Column("created_at", Time, nullable=False),
    # The upload policy the object came under: one object per policy.
    sa.Column("policy_id", sa.String(32), nullable=True),
    sa.UniqueConstraint("policy_id", name="uq_uploads_policy_id"),
    sa.Index("ix_uploads_key_created", "key_id", "created_at"),
    sa.Index("ix_uploads_created", "created_at"),
)


# Every movement of money, one row each: reserve at submit, settle on completion, refund on failure.
# (task_id, kind) is unique, so no task is ever reserved, settled or refunded twice.
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("task_id", sa.String(40), nullable=False),
    sa.Column("model", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount_micros", sa.BigInteger, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.UniqueConstraint("task_id", "kind", name="uq_ledger_task_kind"),
    sa.Index("ix_ledger_key", "key_id", "created_at"),
)

# Webhook events to deliver (written with the task's terminal transition: an outbox), and their fate.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("task_id", sa.String(40), nullable=False),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Time, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("lease_until", Time, nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("delivered_at", Time, nullable=True),
    sa.UniqueConstraint("task_id", "event_type", name="uq_webhook_task_event"),
    sa.Index("ix_webhook_due", "status", "next_attempt_at"),
)

# Channel health as the circuit breakers see it, so `vidgate channels` (another process) can show it.
channel_health = sa.Table(
    "channel_health",
    metadata,
    sa.Column("channel", sa.String(100), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),  # closed | open | half_open
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("open_until", Time, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("updated_at", Time, nullable=False),
)

# Reserved places under a channel's max_in_flight: slot n of a channel is held by at most one task (the
# primary key), so racing submits in any number of processes cannot together put more tasks upstream.
channel_slots = sa.Table(
    "channel_slots",
    metadata,
    sa.Column("channel", sa.String(100), primary_key=True),
    sa.Column("slot", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.String(40), nullable=False),
    sa.Column("taken_at", Time, nullable=False),
    sa.Index("ix_channel_slots_task", "task_id"),
)

# Local render jobs (the `local` provider), so any process or replica can run or resume one: the spec to
# render, who renders it under a lease, how far it got, and how it ended.
render_jobs = sa.Table(
    "render_jobs",
    metadata,
    sa.Column("task_id", sa.String(40), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # queued | running | done | failed | cancelled
    sa.Column("done_frames", sa.Integer, nullable=False, server_default="0"),
    sa.Column("total_frames", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", Time, nullable=True),
    sa.Column("runs", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)
