"""Full-text search across a user's sessions: titles, messages, replies, tool results, task
inputs and results. One interface (`SearchIndex`, base.py), one module per backend."""

from __future__ import annotations

from tether.search.base import Hit, SearchIndex, forget_session
from tether.search.query import MAX_QUERY, Term, parse
from tether.search.snippet import snippet

__all__ = [
    "MAX_QUERY",
    "Hit",
    "SearchIndex",
    "Term",
    "forget_session",
    "index_for",
    "parse",
    "snippet",
]


def index_for(sqlite: bool) -> SearchIndex:
    """The index of a database's backend."""
    if sqlite:
        from tether.search.sqlite import SqliteSearch

        return SqliteSearch()
    from tether.search.postgres import PgSearch

    return PgSearch()
