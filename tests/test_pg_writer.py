"""pg_writer renders a commit's values into its SQL as literals (db/pg_writer.py says why):
whatever a value holds, it must come back exactly as it went, through Postgres itself."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.pg import fresh_database
from tether.db.pg_writer import PgWriter, Rows, Stmt, insert_rows, parts

# NUL is refused before anything reaches the log (tests/test_nul.py); Postgres text cannot
# hold it. Surrogates are not text a client can send (they do not encode).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
HOSTILE = st.sampled_from(
    [
        "",
        "it's",
        "?",
        "? ?? ?| ?&",
        ")",
        "), (",
        "') , ('",
        "%s",
        "%%s %(x)s $1 :name {} {0}",
        "\\",
        "\\'",
        "E'\\x00'",
        "$$ $tag$",
        "'; DROP TABLE t; --",
        '{a,"b"} NULL {} \\" ,',
        "Zürich · 東京 · 🧵 · \u200b · \t\r\n",
    ]
)
ANY_TEXT = st.one_of(TEXT, HOSTILE, st.lists(st.one_of(TEXT, HOSTILE)).map("".join))
FLOATS = st.one_of(
    st.floats(),  # with nan, ±inf, -0.0, subnormals
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 1 / 3, 2.0**53 + 1]),
)
ROW = st.tuples(
    st.one_of(st.none(), ANY_TEXT),
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    st.one_of(st.none(), FLOATS),
    st.one_of(st.none(), st.binary()),
    st.one_of(st.none(), st.lists(st.one_of(st.none(), ANY_TEXT), max_size=5)),
)
ROWS = st.lists(st.tuples(ANY_TEXT, ROW), min_size=1, max_size=8, unique_by=lambda r: r[0])

_COLUMNS = "k, t, i, f, b, a"
_TABLE = "CREATE TABLE rt (k text PRIMARY KEY, t text, i bigint, f float8, b bytea, a text[])"


class Writer:
    """One PgWriter on a fresh database, driven from a loop of its own (hypothesis runs
    the examples synchronously)."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        self.loop = asyncio.new_event_loop()
        self.writer = PgWriter(self.engine)
        self.run([], lambda rows: [Stmt(_TABLE, ())])

    def run(self, reads: list[Stmt], then: Any) -> Rows:
        got: Rows = []

        def writes(rows: Rows) -> list[Stmt]:
            got.extend(rows)
            return list(then(rows))

        self.loop.run_until_complete(self.writer.transact(reads, writes))
        return got

    def close(self) -> None:
        self.loop.run_until_complete(self.writer.close())
        self.loop.close()
        self.engine.dispose()


@pytest.fixture(scope="module")
def writer() -> Iterator[Writer]:
    with fresh_database() as url:
        w = Writer(url)
        try:
            yield w
        finally:
            w.close()


def same(a: Any, b: Any) -> bool:
    """Equal, and the same float exactly: -0.0 is not 0.0, nan is nan."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=ROWS)
def test_any_value_under_any_key_comes_back_exactly(writer: Writer, rows: list[Any]) -> None:
    keys = [k for k, _ in rows]
    marks = "(%s, %s, %s, %s, %s, %s)"
    # The rows as one multi-row INSERT, then each again as an UPDATE of its own (the two
    # ways pg_writer renders): both must store what they were given.
    writer.run(
        [],
        lambda _: [
            Stmt("DELETE FROM rt", ()),
            insert_rows(
                f"INSERT INTO rt ({_COLUMNS}) VALUES ", marks, "", [(k, *r) for k, r in rows]
            ),
            Stmt(
                "UPDATE rt SET t = %s, i = %s, f = %s, b = %s, a = %s WHERE k = %s",
                [(*r, k) for k, r in rows],
            ),
        ],
    )
    # Read back by the keys, each rendered into a statement of its own too.
    got = writer.run(
        [Stmt(f"SELECT {_COLUMNS} FROM rt WHERE k = %s", (k,)) for k in keys], lambda _: []
    )
    for (k, want), found in zip(rows, got, strict=True):
        assert len(found) == 1, f"key {k!r} not found"
        (row,) = found
        back = (row[0], row[1], row[2], row[3], None if row[4] is None else bytes(row[4]), row[5])
        assert same(back, (k, *want)), (back, (k, *want))


def test_a_question_mark_or_a_function_call_in_a_statement_is_not_a_mark(writer: Writer) -> None:
    # `?` is a jsonb operator; a row may call a function: neither is where a value goes.
    rows = writer.run(
        [
            Stmt("SELECT %s::jsonb ? %s, '?' || %s", ('{"a": 1}', "a", "?)")),
            Stmt("SELECT 'it''s 100%%' || %s", ("!",)),
        ],
        lambda _: [
            Stmt("DELETE FROM rt", ()),
            insert_rows(
                "INSERT INTO rt (k, t) VALUES ",
                "(lower(%s), concat(%s, ')', '?'))",
                " ON CONFLICT (k) DO NOTHING",
                [("A?", "x)"), ("B)", "?")],
            ),
        ],
    )
    assert rows == [[(True, "??)")], [("it's 100%!",)]]
    got = writer.run([Stmt("SELECT k, t FROM rt ORDER BY k", ())], lambda _: [])
    assert got == [[("a?", "x))?"), ("b)", "?)?")]]


def test_marks_are_the_format_paramstyle() -> None:
    assert parts("a %s b %% c %s") == (b"a ", b" b % c ", b"")
    assert parts("? ) VALUES (") == (b"? ) VALUES (",)
    with pytest.raises(ValueError):
        parts("100% sure")
