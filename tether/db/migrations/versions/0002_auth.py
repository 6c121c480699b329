"""Users, auth sessions and refresh tokens.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "tether_users",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "tether_auth_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_seen_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("revoked_reason", sa.Text, nullable=True),
    )
    op.create_index("ix_tether_auth_sessions_user_id", "tether_auth_sessions", ["user_id"])
    op.create_table(
        "tether_refresh_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("auth_session_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
    )
    op.create_index(
        "ix_tether_refresh_tokens_auth_session_id", "tether_refresh_tokens", ["auth_session_id"]
    )
    # Sessions were owned by the one local user, "owner"; give that user a row.
    op.execute(
        "INSERT INTO tether_users (id, name, password_hash, created_at) "
        "VALUES ('owner', 'owner', NULL, 0)"
    )


def downgrade() -> None:
    op.drop_table("tether_refresh_tokens")
    op.drop_table("tether_auth_sessions")
    op.drop_table("tether_users")
