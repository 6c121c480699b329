"""Tether's tables (SQLAlchemy Core). Alembic migrations in `migrations/` create them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

sessions = sa.Table(
    "tether_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False, index=True),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    # The last seq allocated; allocation happens under this row (UPDATE ... RETURNING).
    sa.Column("head_seq", sa.BigInteger, nullable=False, server_default="0"),
    # Events with seq <= low_seq were pruned by retention; older cursors are 410.
    sa.Column("low_seq", sa.BigInteger, nullable=False, server_default="0"),
    # How many tasks the session has (kept by the log writer, which creates them).
    sa.Column("task_count", sa.BigInteger, nullable=False, server_default="0"),
    # Bytes written for the session (its events' data, its steps' records, its tasks' inputs
    # and results), kept by the log writer under this row: a user's storage is the sum over
    # their sessions, read without scanning the log (tether/quotas.py).
    sa.Column("used_bytes", sa.BigInteger, nullable=False, server_default="0"),
    # What the owner allows the session's model calls to cost (NULL: no limit).
    sa.Column("budget", sa.Float, nullable=True),
    sa.Index("ix_tether_sessions_owner_created", "owner", "created_at", "id"),
)

tasks = sa.Table(
    "tether_tasks",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column(
        "session_id",
        sa.String(64),
        sa.ForeignKey("tether_sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("parent_id", sa.String(255), nullable=True),
    sa.Column("agent", sa.String(128), nullable=False),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("progress_n", sa.Integer, nullable=True),
    sa.Column("progress_m", sa.Integer, nullable=True),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("app_version", sa.String(128), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("ended_at", sa.Float, nullable=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    # A conversation's turns form a tree: the turn this one follows (NULL: a first message,
    # or a turn stored before the tree, which follows the turn created before it).
    sa.Column("follows", sa.String(255), nullable=True),
    # The seq of the newest event that showed this turn's branch (its creation, or a
    # `conversation.selected`): at each fork the turn with the highest is the one shown.
    sa.Column("selected_seq", sa.BigInteger, nullable=True),
    # The seq of its `task.created` event: a session's turns run one at a time in this
    # order (a database rule, whichever process created them).
    sa.Column("created_seq", sa.BigInteger, nullable=True),
    # A task started under an Idempotency-Key: the SHA-256 of what was asked (route, body),
    # so that the key sent again with another request is refused, not answered with this.
    sa.Column("request_hash", sa.String(64), nullable=True),
    sa.Index("ix_tether_tasks_session", "session_id", "created_at"),
    sa.Index("ix_tether_tasks_turn_order", "session_id", "created_seq"),
    sa.Index("ix_tether_tasks_parent", "parent_id"),
    sa.Index("ix_tether_tasks_status", "status"),
)

events = sa.Table(
    "tether_events",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.String(255), nullable=True),
    sa.Column("parent_task_id", sa.String(255), nullable=True),
    sa.Column("type", sa.String(128), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    # Idempotency key: a step re-run after a crash re-emits the same keys, which are dropped.
    sa.Column("key", sa.String(512), nullable=True),
    sa.UniqueConstraint("session_id", "key", name="uq_tether_events_key"),
)

# What search finds (tether/search/): a row per title, message, reply, tool result, task
# input or result, written in the transaction that commits its event (or renames the
# session). The full-text index over `body` is the backend's own (migration 0012): an FTS5
# table kept by triggers on SQLite, the `tsv` column and its GIN index on Postgres.
search = sa.Table(
    "tether_search",
    metadata,
    # SQLite's rowid (the FTS5 table's content_rowid), a bigserial on Postgres.
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column(
        "session_id",
        sa.String(64),
        sa.ForeignKey("tether_sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("seq", sa.BigInteger, nullable=False),  # its event's; 0 for the title
    sa.Column("task_id", sa.String(255), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),  # title, message, reply, tool, task, result
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_tether_search_session", "session_id", "seq"),
)
SEARCH_FTS = "tether_search_fts"  # SQLite: the FTS5 table over search.body
SEARCH_TSV = "tsv"  # Postgres: search's tsvector column (GIN-indexed)

# A step's recorded outcome (its output, or the exception it raised), written in the same
# transaction as the events it emitted: a replay after a crash returns it instead of running
# the step again, and a step is never recorded without its events (or they without it).
steps = sa.Table(
    "tether_steps",
    metadata,
    sa.Column("task_id", sa.String(255), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("output", sa.Text, nullable=False),  # base64 pickle of (ok, value)
    sa.Index("ix_tether_steps_session", "session_id"),
)

# A session's workspace: its files, in the database so that every worker sees them (a turn
# moved to another worker after a crash finds the files the first one wrote).
files = sa.Table(
    "tether_files",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("path", sa.String(1024), primary_key=True),  # normalized: "dir/name.txt"
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

users = sa.Table(
    "tether_users",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    # argon2id; NULL for the owner, who signs in with the bootstrap secret.
    sa.Column("password_hash", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

auth_sessions = sa.Table(
    "tether_auth_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_seen_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("revoked_reason", sa.Text, nullable=True),
)

# Refresh tokens, stored as SHA-256 hashes. One auth session is one rotation family.
refresh_tokens = sa.Table(
    "tether_refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("auth_session_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float, nullable=True),
)

# Approvals a task asked for (a tool call that needs a person's yes). Answered once.
approvals = sa.Table(
    "tether_approvals",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(255), nullable=False, index=True),
    sa.Column("session_id", sa.String(64), nullable=False, index=True),
    sa.Column("tool", sa.String(128), nullable=False),
    sa.Column("args", sa.Text, nullable=False),
    # pending, approved, denied
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("requested_at", sa.Float, nullable=False),
    sa.Column("answered_at", sa.Float, nullable=True),
    sa.Column("answered_by", sa.String(64), nullable=True),
)

# Read-only links to one session. The token is shown once, when the link is made, and kept
# only as its SHA-256 (as refresh tokens are); a revoked or expired link reads nothing.
shares = sa.Table(
    "tether_shares",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column(
        "session_id",
        sa.String(64),
        sa.ForeignKey("tether_sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("label", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),  # NULL: until revoked
    sa.Column("revoked_at", sa.Float, nullable=True),
)

# Failed sign-ins, shared by every process on one database (each row one failure).
auth_failures = sa.Table(
    "tether_auth_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_tether_auth_failures_key_at", "key", "at"),
)

# Workers on one shared database: each writes its heartbeat; the work of one whose heartbeat
# is stale is handed to the others.
executors = sa.Table(
    "tether_executors",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)

# One row per model call (attempt) that reported usage, written by the log's commit hook in the
# transaction of its `model.usage` event (tether/db/usage.py): sums per turn, session and
# user without reading the log. No foreign key: a deleted session's calls were paid for and
# still count toward its owner's budget.
usage = sa.Table(
    "tether_usage",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("task_id", sa.String(255), nullable=False),
    sa.Column("turn_id", sa.String(255), nullable=False),  # the top-level task (the turn)
    sa.Column("agent", sa.String(128), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost", sa.Float, nullable=True),  # NULL: the agent has no prices
    sa.Column("ts", sa.Float, nullable=False),
    sa.Index("ix_tether_usage_owner_ts", "owner", "ts"),
)

# A user's spend per calendar month (UTC, "2026-12"), kept by the same commit hook in the
# same transaction: the budget check before each model call reads one row, however many
# calls the month holds.
usage_months = sa.Table(
    "tether_usage_months",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("cost", sa.Float, nullable=False),
)
