"""The log's SQL: every statement a commit runs, its text made from db/schema.py's tables.

Texts are driver SQL, written once per dialect (`LogSql(pg)`), cached by shape (how many
ids an IN list holds): a commit builds no statement object and compiles nothing (compiling
a Core statement cost about half a millisecond here, most of a commit). The marks are the
dialect's (pg_writer.Stmt): `?` on SQLite, `%s` on Postgres.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from tether.db.pg_writer import InsertRows, Stmt, insert_rows
from tether.db.schema import events, search, sessions, steps, tasks
from tether.events.append import NEW_TASK_COLUMNS
from tether.model import TERMINAL_VALUES

IN_CHUNK = 500  # bound on bound parameters in one IN (...)

_E, _S, _T, _ST = events.c, sessions.c, tasks.c, steps.c


def _names(*columns: sa.Column[Any]) -> str:
    return ", ".join(c.name for c in columns)


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    return (items[i : i + IN_CHUNK] for i in range(0, len(items), IN_CHUNK))


class LogSql:
    """The statements of the log's commits on one dialect."""

    def __init__(self, pg: bool) -> None:
        self.pg = pg
        m = self.mark = "%s" if pg else "?"
        self._in = lru_cache(maxsize=IN_CHUNK)(self._in_text)
        self._lock_text = lru_cache(maxsize=IN_CHUNK)(lambda n: self._lock.format(self._in(n)))
        self._statuses_text = lru_cache(maxsize=IN_CHUNK)(
            lambda n: self._statuses.format(self._in(n))
        )
        self._update_task = lru_cache(maxsize=256)(self._update_task_text)
        lock = " FOR UPDATE" if pg else ""
        self._lock = (
            f"SELECT {_names(_S.id, _S.head_seq, _S.low_seq)} FROM {sessions.name}"
            f" WHERE {_S.id.name} IN ({{}}) ORDER BY {_S.id.name}{lock}"
        )
        self._statuses = (
            f"SELECT {_names(_T.id, _T.status)} FROM {tasks.name} WHERE {_T.id.name} IN ({{}})"
        )
        # One lookup of the (session_id, key) index per pair. Postgres plans an IN list of
        # hundreds of keys as a scan of the session's whole index range, which made each
        # commit cost time in proportion to the session's length.
        self._keys_pg = (
            f"SELECT e.{_E.session_id.name}, e.{_E.key.name}"
            f" FROM unnest({m}::text[], {m}::text[]) AS k(sid, key) JOIN {events.name} e"
            f" ON e.{_E.session_id.name} = k.sid AND e.{_E.key.name} = k.key"
        )
        self._keys_sqlite = f"SELECT {_names(_E.session_id, _E.key)} FROM {events.name} WHERE "
        self._key_term = f"({_E.session_id.name} = ? AND {_E.key.name} IN ({{}}))"
        self._insert_task = (
            f"INSERT INTO {tasks.name} ({', '.join(NEW_TASK_COLUMNS)}) VALUES ",
            "(" + self._in_text(len(NEW_TASK_COLUMNS)) + ")",
        )
        event_columns = (
            _E.session_id, _E.seq, _E.task_id, _E.parent_task_id, _E.type, _E.data, _E.ts, _E.key
        )  # fmt: skip
        self._insert_event = self._insert_head(events, event_columns)
        step_columns = (_ST.task_id, _ST.n, _ST.session_id, _ST.name, _ST.output)
        conflict = f" ON CONFLICT ({_names(_ST.task_id, _ST.n)}) DO "
        head, row = self._insert_head(steps, step_columns)
        self._insert_step = (head, row, conflict + "NOTHING")
        self._replace_step = (
            head,
            row,
            conflict + f"UPDATE SET {_ST.name.name} = excluded.{_ST.name.name},"
            f" {_ST.output.name} = excluded.{_ST.output.name}",
        )
        in_range = f"{_E.session_id.name} = {m} AND {_E.seq.name} > {m} AND {_E.seq.name} <= {m}"
        terminal = ", ".join([m] * len(TERMINAL_VALUES))
        self._prune = (
            f"DELETE FROM {events.name} WHERE {in_range} AND ({_E.key.name} IS NULL"
            f" OR {_E.task_id.name} IS NULL OR {_E.task_id.name} NOT IN (SELECT {_T.id.name}"
            f" FROM {tasks.name} WHERE {_T.session_id.name} = {m}"
            f" AND {_T.status.name} NOT IN ({terminal})))"
        )
        self._blank = f"UPDATE {events.name} SET {_E.data.name} = 'null' WHERE {in_range}"
        # What search found there goes too: a result never points to a pruned event.
        self._unfind = (
            f"DELETE FROM {search.name} WHERE {search.c.session_id.name} = {m}"
            f" AND {search.c.seq.name} > {m} AND {search.c.seq.name} <= {m}"
        )
        self._delete_ended = (
            f"DELETE FROM {events.name} WHERE {_E.session_id.name} = {m}"
            f" AND {_E.seq.name} <= {m} AND {_E.task_id.name} IN ({{}})"
        )
        self._advance = (
            f"UPDATE {sessions.name} SET {_S.head_seq.name} = {m}, {_S.low_seq.name} = {m},"
            f" {_S.task_count.name} = {_S.task_count.name} + {m},"
            f" {_S.used_bytes.name} = {_S.used_bytes.name} + {m} WHERE {_S.id.name} = {m}"
        )
        self._used = (
            f"UPDATE {sessions.name} SET {_S.used_bytes.name} = {_S.used_bytes.name} + {m}"
            f" WHERE {_S.id.name} = {m}"
        )

    def _insert_head(self, table: sa.Table, columns: Sequence[sa.Column[Any]]) -> tuple[str, str]:
        row = "(" + ", ".join([self.mark] * len(columns)) + ")"
        return f"INSERT INTO {table.name} ({_names(*columns)}) VALUES ", row

    def _in_text(self, n: int) -> str:
        return ", ".join([self.mark] * n)

    def _update_task_text(self, columns: tuple[str, ...]) -> str:
        # `columns` are checked names (append.TASK_COLUMNS and the log's own).
        sets = ", ".join(f"{c} = {self.mark}" for c in columns)
        return f"UPDATE {tasks.name} SET {sets} WHERE {_T.id.name} = {self.mark}"

    # -- the reads, under the sessions' locks --------------------------------------------

    def lock_sessions(self, ids: list[str]) -> list[Stmt]:
        """Each session's (id, head_seq, low_seq), its row locked until the commit
        (Postgres; SQLite's writer holds the whole file), in id order: two writers never
        deadlock here."""
        return [Stmt(self._lock_text(len(c)), tuple(c)) for c in chunks(ids)]

    def existing_keys(self, keys: list[tuple[str, str]]) -> list[Stmt]:
        """Which of these (session, key) pairs are in the log already: rows (session, key)."""
        if not keys:
            return []
        if self.pg:
            return [Stmt(self._keys_pg, ([sid for sid, _ in keys], [key for _, key in keys]))]
        # `(session_id = ? AND key IN (…)) OR …`: an index search per session on SQLite,
        # where a row-value IN would scan the whole index.
        by_session: dict[str, list[str]] = {}
        for sid, key in keys:
            by_session.setdefault(sid, []).append(key)
        out: list[Stmt] = []
        terms: list[str] = []
        params: list[str] = []
        for sid, ks in by_session.items():
            for chunk in chunks(ks):
                terms.append(self._key_term.format(self._in(len(chunk))))
                params.append(sid)
                params.extend(chunk)
                if len(params) >= IN_CHUNK:
                    out.append(Stmt(self._keys_sqlite + " OR ".join(terms), tuple(params)))
                    terms, params = [], []
        if terms:
            out.append(Stmt(self._keys_sqlite + " OR ".join(terms), tuple(params)))
        return out

    def statuses(self, task_ids: set[str | None]) -> list[Stmt]:
        """Rows (id, status) of these tasks."""
        ids = [t for t in task_ids if t is not None]
        return [Stmt(self._statuses_text(len(c)), tuple(c)) for c in chunks(ids)]

    # -- the writes ----------------------------------------------------------------------

    def insert_tasks(self, rows: list[tuple[Any, ...]]) -> InsertRows:
        """Rows of the values of append.NEW_TASK_COLUMNS, in that order."""
        return insert_rows(*self._insert_task, "", rows)

    def insert_events(self, rows: list[tuple[Any, ...]]) -> InsertRows:
        """Rows (session_id, seq, task_id, parent_task_id, type, data, ts, key)."""
        return insert_rows(*self._insert_event, "", rows)

    def insert_steps(self, rows: list[tuple[Any, ...]], replace: bool) -> InsertRows:
        """Rows (task_id, n, session_id, name, output); a step's record that is there
        already is kept, unless `replace`."""
        return insert_rows(*(self._replace_step if replace else self._insert_step), rows)

    def update_tasks(self, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> Stmt:
        """Rows (*values of columns, task id)."""
        return Stmt(self._update_task(columns), rows)

    def prune(self, session_id: str, low: int, new_low: int) -> list[Stmt]:
        """Retention: events in (low, new_low] leave the log. An event of a task that may
        still run keeps its row (not its data): a replay after a crash must find its key,
        or it would append the event again. Search's rows for them go (a kept row's data is
        blanked: nothing there to find)."""
        return [
            Stmt(self._prune, (session_id, low, new_low, session_id, *TERMINAL_VALUES)),
            Stmt(self._blank, (session_id, low, new_low)),
            Stmt(self._unfind, (session_id, low, new_low)),
        ]

    def delete_ended(self, session_id: str, new_low: int, ended: list[str]) -> list[Stmt]:
        """Rows kept below low_seq for their keys go once their task has ended."""
        return [
            Stmt(self._delete_ended.format(self._in(len(c))), (session_id, new_low, *c))
            for c in chunks(ended)
        ]

    def advance_sessions(self, rows: list[tuple[Any, ...]]) -> Stmt:
        """Rows (head_seq, low_seq, tasks added, bytes written, session id)."""
        return Stmt(self._advance, rows)

    def add_used_bytes(self, rows: list[tuple[Any, ...]]) -> Stmt:
        """Rows (bytes written, session id)."""
        return Stmt(self._used, rows)
