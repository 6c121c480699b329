"""Search on Postgres: a `tsvector` column (the `simple` configuration over the row's words,
as text.py cuts them, so both backends find the same rows) with a GIN index (migration
0012), ranked by ts_rank."""

from __future__ import annotations

import sqlalchemy as sa

from tether.db.schema import SEARCH_TSV, search, sessions
from tether.search.base import CANDIDATES, Hit, SearchIndex, ranked
from tether.search.extract import Entry
from tether.search.query import Term, tsquery
from tether.search.text import words

_X, _S = search.c, sessions.c

# The owner's newest CANDIDATES matches (the GIN index for a rare term, the primary key
# read backwards for a common one: the planner picks, from the query's constant, so it is
# written out, not a CTE's), ranked by ts_rank, negated (higher is better there, lower in
# `ranked`).
_QUERY = "to_tsquery('simple', :query)"
_FIND = ranked(
    f"cands AS (SELECT x.{_X.id.name} AS id, x.{SEARCH_TSV} AS tsv FROM {search.name} x"
    f" JOIN {sessions.name} s ON s.{_S.id.name} = x.{_X.session_id.name}"
    f" WHERE x.{SEARCH_TSV} @@ {_QUERY} AND s.{_S.owner.name} = :owner"
    f" ORDER BY x.{_X.id.name} DESC LIMIT {CANDIDATES}),"
    f" hits AS (SELECT id, -ts_rank(tsv, {_QUERY}) AS rank FROM cands"
    f" ORDER BY rank, id DESC LIMIT :limit OFFSET :offset)"
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
