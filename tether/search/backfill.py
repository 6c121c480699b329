"""What the database held before search (migration 0012): its titles, and the events that
search finds, indexed once by the rules the log's writer follows from then on."""

from __future__ import annotations

import sqlalchemy as sa

from tether.db.schema import events, sessions
from tether.model import Event
from tether.search import index_for
from tether.search.extract import TYPES, Entry, entries

BATCH = 2000


def backfill(conn: sa.Connection) -> None:
    index = index_for(conn.dialect.name == "sqlite")
    titles = conn.execute(sa.select(sessions.c.id, sessions.c.title).where(sessions.c.title != ""))
    index.write(conn, [Entry(sid, 0, None, "title", title) for sid, title in titles])
    e = events.c
    after: tuple[str, int] = ("", 0)
    while True:
        rows = conn.execute(
            sa.select(e.seq, e.session_id, e.task_id, e.parent_task_id, e.type, e.data, e.ts)
            .where(e.type.in_(sorted(TYPES)), sa.tuple_(e.session_id, e.seq) > after)
            .order_by(e.session_id, e.seq)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        found: list[Entry] = []
        for r in rows:
            found.extend(entries(r[1], [Event(*r)]))
        index.write(conn, found)
        after = (rows[-1][1], rows[-1][0])
