"""The log's commits on Postgres: one connection on the event loop, two round trips each.

A commit of the log reads (locks its sessions, looks up keys and task statuses), decides in
Python what to write, then writes. Sent one statement at a time from a writer thread, that
was about a dozen round trips, each paying for a thread hand-off and for taking the GIL back
(on a busy process, most of a commit's time). Here the reads go as one message with BEGIN,
and the writes as one message with COMMIT (a batch of large events as several, of about
MESSAGE_BYTES each), from the event loop.

Why one message of literal values, not pipelining or bound parameters:
- A message of several statements is the simple query protocol, which takes no bound
  parameters, so values are rendered as literals by psycopg's own quoting (`as_literal`,
  what its client-side cursors use), between the pieces of text around the statement's
  `%s` marks (the format paramstyle: the text's own `%` is `%%`, so nothing else in the
  text, a `?` operator or a function call in a row, is taken for a mark).
- Postgres ends a transaction left idle past `idle_in_transaction_session_timeout` (a frozen
  process's, see engine.py) only once it has answered a whole message. Between the two
  messages it has, so a process frozen there loses its locks after the timeout. A pipeline,
  whose statements go out as they are queued, gave no such guarantee (b6e7747).
- In READ COMMITTED each statement of a message takes its own snapshot, so the reads after
  the lock see every commit made before the lock was granted.
- Nothing is prepared: each statement is planned with its values and the table as it is,
  where psycopg's prepared statements kept a plan made while the table was empty (a scan of
  the whole event table for each key lookup, slower with every event).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any, NamedTuple

import sqlalchemy as sa


class Stmt(NamedTuple):
    """A statement in its dialect's driver SQL, and its parameters: a tuple, or a list of
    tuples (run once for each, as executemany). SQLite's marks are `?`; Postgres's are
    psycopg's `%s` (the format paramstyle, where the text's own `%` is written `%%`), so on
    Postgres no text of a statement (a `?` operator, a quote) is ever taken for a mark."""

    sql: str
    params: Any


class InsertRows(Stmt):
    """An INSERT of many rows (`params`: a list of tuples) whose text is `head`, its VALUES
    row, then `tail`: on Postgres its rows go as multi-row INSERTs. Where the row is in the
    text is recorded by whoever wrote the text (`insert_rows`), never found by parsing it."""

    row: tuple[int, int]  # sql[row[0] : row[1]] is the VALUES row, "(%s, %s, ...)"


def insert_rows(head: str, row: str, tail: str, rows: list[tuple[Any, ...]]) -> InsertRows:
    stmt = InsertRows(head + row + tail, rows)
    stmt.row = (len(head), len(head) + len(row))
    return stmt


Rows = list[list[tuple[Any, ...]]]

# About the most one message carries: a batch of large events is written in several (its
# transaction stays open between them), not rendered and held whole. Postgres refuses a
# message of 1 GB; the log's batches are bounded in count, not in bytes.
MESSAGE_BYTES = 8 << 20

_PERCENT = re.compile(r"%(.?)", re.DOTALL)


@lru_cache(maxsize=1024)
def parts(sql: str) -> tuple[bytes, ...]:
    """The text of a statement in the format paramstyle around each of its `%s` marks (a
    `%%` is the text's own `%`): values go between them. Anything else after a `%` is
    refused, as psycopg refuses it."""
    out: list[bytes] = []
    piece: list[str] = []
    pos = 0
    for m in _PERCENT.finditer(sql):
        piece.append(sql[pos : m.start()])
        if m[1] == "%":
            piece.append("%")
        elif m[1] == "s":
            out.append("".join(piece).encode())
            piece = []
        else:
            raise ValueError(f"only %s and %% may follow a % in {sql[:200]!r}")
        pos = m.end()
    piece.append(sql[pos:])
    out.append("".join(piece).encode())
    return tuple(out)


class PgWriter:
    """One autocommit connection, made when first used and again after it is lost."""

    def __init__(self, engine: sa.Engine) -> None:
        # What SQLAlchemy would connect with (host, database, options ...), but psycopg's
        # own adapters: values here are plain str, int, float, None and lists of str.
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        kwargs.pop("context", None)
        self._args, self._kwargs = args, kwargs
        self._conn: Any = None
        self._tx: Any = None
        self._lock = asyncio.Lock()

    async def transact(self, reads: Sequence[Stmt], then: Callable[[Rows], Sequence[Stmt]]) -> None:
        """BEGIN and the reads; `then(rows of each read)` on the loop; its writes and
        COMMIT. Any failure rolls back (nothing of it happened) and is raised as
        SQLAlchemy's wrapping of it, as the rest of the code sees database errors."""
        import psycopg

        async with self._lock:
            conn = await self._connection()
            try:
                rows = await self._send(conn, [b"BEGIN", *self._render(reads)])
                message: list[bytes] = []
                size = 0
                for stmt in chain(self._render(then(rows)), [b"COMMIT"]):
                    message.append(stmt)
                    size += len(stmt)
                    if size >= MESSAGE_BYTES:
                        await self._send(conn, message)
                        message, size = [], 0
                if message:
                    await self._send(conn, message)
            except psycopg.Error as exc:
                await self._abort(conn)
                raise sa.exc.DBAPIError.instance(
                    "", None, exc, psycopg.Error, connection_invalidated=self._conn is None
                ) from exc
            except BaseException:
                # A bug in `then` (rolled back), or cut in the middle (cancelled): then the
                # transaction's state is not known, the connection goes, Postgres rolls back.
                await self._abort(conn)
                raise

    async def _connection(self) -> Any:
        import psycopg
        from psycopg.adapt import Transformer

        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                *self._args, autocommit=True, **self._kwargs
            )
            self._conn.adapters.register_dumper(float, _exact_float_dumper())
            self._tx = Transformer(self._conn)
        return self._conn

    def _render(self, stmts: Sequence[Stmt]) -> Iterator[bytes]:
        """Each statement with its values in it, quoted by psycopg (`as_literal`); the rows
        of an `InsertRows` as multi-row INSERTs of about MESSAGE_BYTES each. A generator: a
        large batch is rendered a message at a time, the loop running between them."""
        lit = self._tx.as_literal
        for stmt in stmts:
            sql, params = stmt
            if not isinstance(params, list):
                yield fill(parts(sql), params, lit)
                continue
            if not isinstance(stmt, InsertRows):
                for p in params:
                    yield fill(parts(sql), p, lit)
                continue
            head, row, tail = _insert_parts(sql, *stmt.row)
            chunk: list[bytes] = []
            size = 0
            for p in params:
                chunk.append(fill(row, p, lit))
                size += len(chunk[-1])
                if size >= MESSAGE_BYTES:
                    yield head + b", ".join(chunk) + tail
                    chunk, size = [], 0
            if chunk:
                yield head + b", ".join(chunk) + tail

    @staticmethod
    async def _send(conn: Any, stmts: list[bytes]) -> Rows:
        """One message; the rows of each statement that returns rows, in order."""
        from psycopg.pq import ExecStatus

        cur = conn.cursor()
        await cur.execute(b"; ".join(stmts))
        rows: Rows = []
        while True:
            if cur.pgresult is not None and cur.pgresult.status == ExecStatus.TUPLES_OK:
                rows.append(await cur.fetchall())
            if not cur.nextset():
                return rows

    async def _abort(self, conn: Any) -> None:
        from psycopg.pq import TransactionStatus

        try:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                await conn.execute("ROLLBACK")
            if not conn.closed and not conn.broken:
                return
        except BaseException:  # noqa: BLE001 - then the connection goes
            pass
        self._conn = None
        conn.pgconn.finish()  # at once, without waiting on a connection that may be gone

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None


@lru_cache(maxsize=1)
def _exact_float_dumper() -> type[Any]:
    """psycopg's float literal, but a negative one quoted: psycopg writes -0.0 as ` -0.0`,
    which Postgres reads as the numeric 0 (the sign lost); `'-0.0'::float8` keeps it."""
    from psycopg.types.numeric import FloatDumper

    class ExactFloat(FloatDumper):
        def quote(self, obj: Any) -> bytes:
            value = bytes(super().quote(obj))
            return b"'" + value[1:] + b"'::float8" if value.startswith(b" -") else value

    return ExactFloat


@lru_cache(maxsize=64)
def _insert_parts(sql: str, start: int, end: int) -> tuple[bytes, tuple[bytes, ...], bytes]:
    """An INSERT's text before its VALUES row, the row around its marks, the text after."""
    (head,), row, (tail,) = parts(sql[:start]), parts(sql[start:end]), parts(sql[end:])
    return head, row, tail


def fill(pieces: tuple[bytes, ...], params: Sequence[Any], lit: Callable[[Any], bytes]) -> bytes:
    """The statement whose text around its marks is `pieces`, with `params` in them."""
    if len(params) != len(pieces) - 1:
        raise ValueError(f"{len(pieces) - 1} marks but {len(params)} parameters")
    out = [pieces[0]]
    for value, piece in zip(params, pieces[1:], strict=True):
        out.append(lit(value))
        out.append(piece)
    return b"".join(out)
