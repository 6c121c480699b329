"""Approvals: a tool call that waits for a person's answer, answered exactly once.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "tether_approvals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(255), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("requested_at", sa.Float, nullable=False),
        sa.Column("answered_at", sa.Float, nullable=True),
        sa.Column("answered_by", sa.String(64), nullable=True),
    )
    op.create_index("ix_tether_approvals_task_id", "tether_approvals", ["task_id"])
    op.create_index("ix_tether_approvals_session_id", "tether_approvals", ["session_id"])


def downgrade() -> None:
    op.drop_table("tether_approvals")
