"""Failed sign-ins shared by every process on one database (each row one failure).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "tether_auth_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_tether_auth_failures_key_at", "tether_auth_failures", ["key", "at"])


def downgrade() -> None:
    op.drop_table("tether_auth_failures")
