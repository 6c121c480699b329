"""A task started under an Idempotency-Key keeps its request's fingerprint: a retry with the
same key and another request is refused (422) instead of answered with the first task.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("tether_tasks") as batch:
        batch.add_column(sa.Column("request_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tether_tasks") as batch:
        batch.drop_column("request_hash")
