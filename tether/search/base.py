"""The search index behind one small interface, one module per backend (sqlite.py: FTS5;
postgres.py: `tsvector` and GIN). Rows are written in the transaction that commits what
they point to: the log's commit (a commit hook, `EventLog.add_commit_hook`) and a session's
create, rename and delete. So a result never points to nothing, and a commit rolled back
leaves no row."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import NamedTuple

import sqlalchemy as sa

from tether.db.pg_writer import InsertRows, Stmt, insert_rows
from tether.db.schema import search, sessions
from tether.model import Event
from tether.search.extract import Entry, entries
from tether.search.query import Term
from tether.search.text import clean, words

_X, _S = search.c, sessions.c
COLUMNS = (_X.session_id, _X.seq, _X.task_id, _X.kind, _X.body)


# A common word matches most of a user's rows: those ranked are its newest this many
# matches (the newest first, as the index reads them), so a search costs the same however
# long the history. Fewer matches than this are all ranked. (Over 100,000 messages on
# SQLite, a common word: 27 ms with 2,000, 4 ms with 500.)
CANDIDATES = 500


def ranked(hits: str) -> sa.TextClause:
    """A find query: the CTE `hits` (rows `id, rank` of the owner's matches, lowest rank
    best, `:limit` of them after `:offset`), then the page's rows read whole: a common
    word's thousands of matches never read their bodies."""
    return sa.text(
        f"WITH {hits} SELECT x.{_X.session_id.name}, s.{_S.title.name}, x.{_X.seq.name},"
        f" x.{_X.task_id.name}, x.{_X.kind.name}, x.{_X.body.name}"
        f" FROM hits JOIN {search.name} x ON x.{_X.id.name} = hits.id"
        f" JOIN {sessions.name} s ON s.{_S.id.name} = x.{_X.session_id.name}"
        f" ORDER BY hits.rank, hits.id DESC"
    )


class Hit(NamedTuple):
    """One row found: where it points and what it says (the snippet is made from `body`)."""

    session_id: str
    title: str
    seq: int
    task_id: str | None
    kind: str
    body: str


class SearchIndex(ABC):
    """Where search's rows go and how they are found, on one backend."""

    # Postgres: the tsvector column, and what fills it from the row's words (text.py's).
    extra_column = ""
    named_words = ""

    def __init__(self, mark: str, words_row: str) -> None:
        names = ", ".join(c.name for c in COLUMNS)
        self._head = f"INSERT INTO {search.name} ({names}{self.extra_column}) VALUES "
        self._row = "(" + ", ".join([mark] * len(COLUMNS)) + words_row + ")"

    def rows(self, found: list[Entry]) -> list[tuple[object, ...]]:
        """The VALUES of each row the hook inserts."""
        return [tuple(e) for e in found]

    def on_commit(self, committed: Mapping[str, list[Event]]) -> list[Stmt]:
        """The log's commit hook: the rows of what this commit appends (one statement
        whatever the batch's size, none for a commit of nothing searchable)."""
        found = [e for sid, evs in committed.items() for e in entries(sid, evs)]
        if not found:
            return []
        stmt: InsertRows = insert_rows(self._head, self._row, "", self.rows(found))
        return [stmt]

    def set_title(self, conn: sa.Connection, session_id: str, title: str) -> None:
        """Make `title` the session's title row, in the caller's transaction (its create or
        rename): the old one goes."""
        conn.execute(sa.delete(search).where(_X.session_id == session_id, _X.kind == "title"))
        self.write(conn, [Entry(session_id, 0, None, "title", clean(title))])

    def write(self, conn: sa.Connection, found: list[Entry]) -> None:
        """Add these rows in the caller's transaction (a title; the migration's backfill)."""
        found = [e for e in found if e.body.strip()]
        if found:
            marks = ", ".join(f":{c.name}" for c in COLUMNS)
            insert = sa.text(f"{self._head}({marks}{self.named_words})")
            conn.execute(insert, [{**e._asdict(), "words": " ".join(words(e.body))} for e in found])

    @abstractmethod
    def find(
        self, conn: sa.Connection, owner: str, terms: list[Term], limit: int, offset: int
    ) -> list[Hit]:
        """The owner's rows that hold every term, best first (the backend's rank: bm25,
        ts_rank), `limit` of them after the first `offset`. Never another owner's."""


def forget_session(conn: sa.Connection, session_id: str) -> None:
    """The session's rows go with it (its delete's transaction)."""
    conn.execute(sa.delete(search).where(_X.session_id == session_id))
