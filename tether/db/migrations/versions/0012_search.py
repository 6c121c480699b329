"""Search: a row per title, message, reply, tool result, task input or result
(`tether_search`), and each backend's full-text index over it: on SQLite an FTS5 table whose
content is `tether_search`, kept by triggers in the writer's transaction; on Postgres a
`tsvector` column (written by the writer, from the text's words) with a GIN index.

What the database holds already (titles, and the events search finds) is indexed here,
once, by the rules the writer follows from now on (tether/search/backfill.py).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.create_table(
        "tether_search",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "session_id",
            sa.String(64),
            sa.ForeignKey("tether_sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("task_id", sa.String(255), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_tether_search_session", "tether_search", ["session_id", "seq"])
    if op.get_bind().dialect.name == "sqlite":
        # No diacritics folded: Postgres's `simple` configuration folds none either, so both
        # backends find the same rows. Prefixes of 2 and 3 characters indexed: the word
        # being typed is searched as a prefix (100 ms for `dod*` over 100,000 messages, 3 ms
        # with them; the index 13 % larger).
        op.execute(
            "CREATE VIRTUAL TABLE tether_search_fts USING fts5(body, content='tether_search',"
            " content_rowid='id', tokenize='unicode61 remove_diacritics 0', prefix='2 3')"
        )
        op.execute(
            "CREATE TRIGGER tether_search_ai AFTER INSERT ON tether_search BEGIN"
            " INSERT INTO tether_search_fts(rowid, body) VALUES (new.id, new.body); END"
        )
        op.execute(
            "CREATE TRIGGER tether_search_ad AFTER DELETE ON tether_search BEGIN"
            " INSERT INTO tether_search_fts(tether_search_fts, rowid, body)"
            " VALUES ('delete', old.id, old.body); END"
        )
    else:
        op.add_column("tether_search", sa.Column("tsv", sa.dialects.postgresql.TSVECTOR))
        # fastupdate off: each row goes into the index as it is written, where a pending
        # list (flushed by vacuum) made every search scan it meanwhile (27 ms instead of 0.1
        # for a rare word over 12,000 rows freshly written).
        op.create_index(
            "ix_tether_search_tsv",
            "tether_search",
            ["tsv"],
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        )
    from tether.search.backfill import backfill

    backfill(op.get_bind())


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS tether_search_ai")
        op.execute("DROP TRIGGER IF EXISTS tether_search_ad")
        op.execute("DROP TABLE IF EXISTS tether_search_fts")
    op.drop_table("tether_search")
