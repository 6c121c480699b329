"""Steps recorded by Tether, in the transaction of their events (no longer DBOS's steps).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "tether_steps",
        sa.Column("task_id", sa.String(255), primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("output", sa.Text, nullable=False),
    )
    op.create_index("ix_tether_steps_session", "tether_steps", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_tether_steps_session", "tether_steps")
    op.drop_table("tether_steps")
