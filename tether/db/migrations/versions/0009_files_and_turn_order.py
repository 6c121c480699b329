"""A session's files live in the database (every worker sees them), and each task records
the seq of its creation: a session's turns run in that order, whichever process made them.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "tether_files",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    with op.batch_alter_table("tether_tasks") as batch:
        batch.add_column(sa.Column("created_seq", sa.BigInteger, nullable=True))
    # Tasks made before: the seq of their task.created event.
    op.execute(
        "UPDATE tether_tasks SET created_seq = (SELECT min(e.seq) FROM tether_events e"
        " WHERE e.session_id = tether_tasks.session_id AND e.task_id = tether_tasks.id"
        " AND e.type = 'task.created')"
    )
    op.create_index("ix_tether_tasks_turn_order", "tether_tasks", ["session_id", "created_seq"])


def downgrade() -> None:
    op.drop_index("ix_tether_tasks_turn_order", "tether_tasks")
    with op.batch_alter_table("tether_tasks") as batch:
        batch.drop_column("created_seq")
    op.drop_table("tether_files")
