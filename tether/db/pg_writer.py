"""The log's commits on Postgres: one connection on the event loop, two round trips each.

A commit of the log reads (locks its sessions, looks up keys and task statuses), decides in
Python what to write, then writes. Sent one statement at a time from a writer thread, that
was about a dozen round trips, each paying for a thread hand-off and for taking the GIL back
(on a busy process, most of a commit's time). Here the reads go as one message with BEGIN,
and the writes as one message with COMMIT, from the event loop.

Why one message of literal values, not pipelining or bound parameters:
- A message of several statements is the simple query protocol, which takes no bound
  parameters, so values are rendered as literals by psycopg's own quoting (`as_literal`,
  what its client-side cursors use).
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
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

Stmt = tuple[str, Any]
"""Driver SQL with `?` marks, and its parameters: a tuple, or a list of tuples (run once
for each, as executemany)."""

Rows = list[list[tuple[Any, ...]]]


@lru_cache(maxsize=256)
def _pieces(sql: str) -> tuple[bytes, ...]:
    """The statement's text around its `?` marks (our statements have no `?` otherwise)."""
    return tuple(p.encode() for p in sql.split("?"))


@lru_cache(maxsize=64)
def _values_split(sql: str) -> tuple[str, str, str] | None:
    """An INSERT's text before its VALUES row, the row, and what follows (ON CONFLICT ...):
    many rows go as one multi-row INSERT."""
    head, sep, rest = sql.partition(" VALUES (")
    if not sep or not head.lstrip().upper().startswith("INSERT"):
        return None
    row, close, tail = rest.partition(")")
    return head + " VALUES ", "(" + row + close, tail


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
                await self._send(conn, [*self._render(then(rows)), b"COMMIT"])
            except psycopg.Error as exc:
                await self._abort(conn)
                raise sa.exc.DBAPIError.instance(
                    "", None, exc, psycopg.Error, connection_invalidated=self._conn is None
                ) from exc
            except BaseException:
                # Cut in the middle (cancelled) or a bug in `then`: the transaction's state
                # is not known, so the connection goes, and Postgres rolls back.
                await self._abort(conn)
                raise

    async def _connection(self) -> Any:
        import psycopg
        from psycopg.adapt import Transformer

        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                *self._args, autocommit=True, **self._kwargs
            )
            self._tx = Transformer(self._conn)
        return self._conn

    def _render(self, stmts: Sequence[Stmt]) -> list[bytes]:
        lit = self._tx.as_literal
        out: list[bytes] = []
        for sql, params in stmts:
            if isinstance(params, list):
                split = _values_split(sql)
                if split is not None:
                    if params:
                        head, row, tail = split
                        rows = b", ".join(_fill(_pieces(row), p, lit) for p in params)
                        out.append(head.encode() + rows + tail.encode())
                    continue
                out.extend(_fill(_pieces(sql), p, lit) for p in params)
            else:
                out.append(_fill(_pieces(sql), params, lit))
        return out

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


def _fill(pieces: tuple[bytes, ...], params: Sequence[Any], lit: Callable[[Any], bytes]) -> bytes:
    if len(params) != len(pieces) - 1:
        raise ValueError(f"{len(pieces) - 1} marks but {len(params)} parameters")
    out = [pieces[0]]
    for value, piece in zip(params, pieces[1:], strict=True):
        out.append(lit(value))
        out.append(piece)
    return b"".join(out)
