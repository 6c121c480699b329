"""Sessions count the bytes written for them (kept by the log writer): a user's storage
quota is read as a sum over their sessions, not over the log.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    with op.batch_alter_table("tether_sessions") as batch:
        batch.add_column(sa.Column("used_bytes", sa.BigInteger, nullable=False, server_default="0"))
    # What the sessions hold already, counted once (as the writer counts from now on).
    op.execute(
        "UPDATE tether_sessions SET used_bytes = "
        "(SELECT coalesce(sum(length(data)), 0) + 64 * count(*) FROM tether_events"
        " WHERE tether_events.session_id = tether_sessions.id)"
        " + (SELECT coalesce(sum(length(output)), 0) FROM tether_steps"
        " WHERE tether_steps.session_id = tether_sessions.id)"
        " + (SELECT coalesce(sum(length(input) + coalesce(length(result), 0)), 0)"
        " FROM tether_tasks WHERE tether_tasks.session_id = tether_sessions.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("tether_sessions") as batch:
        batch.drop_column("used_bytes")
