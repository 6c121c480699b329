"""A conversation is a tree of turns: the turn each follows, and which branch is shown.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("tether_tasks") as batch:
        batch.add_column(sa.Column("follows", sa.String(255), nullable=True))
        batch.add_column(sa.Column("selected_seq", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tether_tasks") as batch:
        batch.drop_column("selected_seq")
        batch.drop_column("follows")
