"""Sessions, tasks and the per-session event log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "tether_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("head_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("low_seq", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_tether_sessions_owner", "tether_sessions", ["owner"])
    op.create_table(
        "tether_tasks",
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
    )
    op.create_index("ix_tether_tasks_session", "tether_tasks", ["session_id", "created_at"])
    op.create_index("ix_tether_tasks_parent", "tether_tasks", ["parent_id"])
    op.create_index("ix_tether_tasks_status", "tether_tasks", ["status"])
    op.create_table(
        "tether_events",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("task_id", sa.String(255), nullable=True),
        sa.Column("parent_task_id", sa.String(255), nullable=True),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("key", sa.String(512), nullable=True),
        sa.UniqueConstraint("session_id", "key", name="uq_tether_events_key"),
    )


def downgrade() -> None:
    op.drop_table("tether_events")
    op.drop_table("tether_tasks")
    op.drop_table("tether_sessions")
