"""Sessions count their tasks (kept by the log writer, under the session row), and an index
for paging a user's sessions newest first.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("tether_sessions") as batch:
        batch.add_column(sa.Column("task_count", sa.BigInteger, nullable=False, server_default="0"))
    op.execute(
        "UPDATE tether_sessions SET task_count = "
        "(SELECT count(*) FROM tether_tasks WHERE tether_tasks.session_id = tether_sessions.id)"
    )
    op.create_index(
        "ix_tether_sessions_owner_created", "tether_sessions", ["owner", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_tether_sessions_owner_created", "tether_sessions")
    with op.batch_alter_table("tether_sessions") as batch:
        batch.drop_column("task_count")
