"""Search on SQLite: an FTS5 table over `tether_search.body` (its content table), kept by
triggers in the writer's transaction (migration 0012), ranked by bm25."""

from __future__ import annotations

import sqlalchemy as sa

from tether.db.schema import SEARCH_FTS, search, sessions
from tether.search.base import Hit, SearchIndex, ranked
from tether.search.query import Term, fts5

_X, _S = search.c, sessions.c

# FTS5's rank is bm25 (lower is better).
_FIND = ranked(
    f"hits AS (SELECT x.{_X.id.name} AS id, f.rank AS rank"
    f" FROM {SEARCH_FTS} f JOIN {search.name} x ON x.{_X.id.name} = f.rowid"
    f" JOIN {sessions.name} s ON s.{_S.id.name} = x.{_X.session_id.name}"
    f" WHERE {SEARCH_FTS} MATCH :match AND s.{_S.owner.name} = :owner"
    f" ORDER BY f.rank, x.{_X.id.name} DESC LIMIT :limit OFFSET :offset)"
)


class SqliteSearch(SearchIndex):
    def __init__(self) -> None:
        super().__init__("?", "")

    def find(
        self, conn: sa.Connection, owner: str, terms: list[Term], limit: int, offset: int
    ) -> list[Hit]:
        params = {"match": fts5(terms), "owner": owner, "limit": limit, "offset": offset}
        return [Hit(*r) for r in conn.execute(_FIND, params)]
