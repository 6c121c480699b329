"""Search on SQLite: an FTS5 table over `tether_search.body` (its content table), kept by
triggers in the writer's transaction (migration 0012), ranked by bm25."""

from __future__ import annotations

import sqlalchemy as sa

from tether.db.schema import SEARCH_FTS, search, sessions
from tether.search.base import CANDIDATES, Hit, SearchIndex, ranked
from tether.search.query import Term, fts5

_X, _S = search.c, sessions.c

# FTS5 reads a term's rows newest first (rowid DESC) and stops at CANDIDATES of the owner's;
# its rank (bm25, lower is better) is worked out for those only.
_FIND = ranked(
    f"cands AS (SELECT f.rowid AS id, f.rank AS rank FROM {SEARCH_FTS} f"
    f" JOIN {search.name} x ON x.{_X.id.name} = f.rowid"
    f" JOIN {sessions.name} s ON s.{_S.id.name} = x.{_X.session_id.name}"
    f" WHERE {SEARCH_FTS} MATCH :match AND s.{_S.owner.name} = :owner"
    f" ORDER BY f.rowid DESC LIMIT {CANDIDATES}),"
    f" hits AS (SELECT id, rank FROM cands ORDER BY rank, id DESC LIMIT :limit OFFSET :offset)"
)


class SqliteSearch(SearchIndex):
    def __init__(self) -> None:
        super().__init__("?", "")

    def find(
        self, conn: sa.Connection, owner: str, terms: list[Term], limit: int, offset: int
    ) -> list[Hit]:
        params = {"match": fts5(terms), "owner": owner, "limit": limit, "offset": offset}
        return [Hit(*r) for r in conn.execute(_FIND, params)]
