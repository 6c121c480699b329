"""Model calls' token usage and cost, one row per call (written with its `model.usage`
event), each user's spend per month, and a session's budget.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    op.create_table(
        "tether_usage",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("task_id", sa.String(255), nullable=False),
        sa.Column("turn_id", sa.String(255), nullable=False),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.Float, nullable=True),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_tether_usage_owner_ts", "tether_usage", ["owner", "ts"])
    op.create_table(
        "tether_usage_months",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("cost", sa.Float, nullable=False),
    )
    with op.batch_alter_table("tether_sessions") as batch:
        batch.add_column(sa.Column("budget", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tether_sessions") as batch:
        batch.drop_column("budget")
    op.drop_table("tether_usage_months")
    op.drop_index("ix_tether_usage_owner_ts", "tether_usage")
    op.drop_table("tether_usage")
