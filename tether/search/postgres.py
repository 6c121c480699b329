"""Search on Postgres: a `tsvector` column (the `simple` configuration over the row's words,
as text.py cuts them, so both backends find the same rows) with a GIN index (migration
0012), ranked by ts_rank."""

from __future__ import annotations

import sqlalchemy as sa

from tether.db.schema import SEARCH_TSV, search, sessions
from tether.search.base import Hit, SearchIndex, ranked
from tether.search.extract import Entry
from tether.search.query import Term, tsquery
from tether.search.text import words

_X, _S = search.c, sessions.c

# ts_rank, negated: higher is better there, lower in `ranked`.
_FIND = ranked(
    f"q AS (SELECT to_tsquery('simple', :query) AS q),"
    f" hits AS (SELECT x.{_X.id.name} AS id, -ts_rank(x.{SEARCH_TSV}, q.q) AS rank"
    f" FROM q, {search.name} x JOIN {sessions.name} s ON s.{_S.id.name} = x.{_X.session_id.name}"
    f" WHERE x.{SEARCH_TSV} @@ q.q AND s.{_S.owner.name} = :owner"
    f" ORDER BY rank, x.{_X.id.name} DESC LIMIT :limit OFFSET :offset)"
)


class PgSearch(SearchIndex):
    extra_column = f", {SEARCH_TSV}"
    named_words = ", to_tsvector('simple', :words)"

    def __init__(self) -> None:
        super().__init__("%s", ", to_tsvector('simple', %s)")

    def rows(self, found: list[Entry]) -> list[tuple[object, ...]]:
        return [(*e, " ".join(words(e.body))) for e in found]

    def find(
        self, conn: sa.Connection, owner: str, terms: list[Term], limit: int, offset: int
    ) -> list[Hit]:
        params = {"query": tsquery(terms), "owner": owner, "limit": limit, "offset": offset}
        return [Hit(*r) for r in conn.execute(_FIND, params)]
