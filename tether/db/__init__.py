"""Tether's tables and the database under them.

schema.py      every table (SQLAlchemy Core); `migrations/` (alembic) creates them
engine.py      Database: one writer and many readers, advisory locks, migrating at start
pg_writer.py   the log's commits on Postgres, two messages each
store.py       Store: the sessions, tasks and approvals below, behind one object
sessions.py    sessions (chat sessions; sign-ins are `tether.auth.sessions`)
tasks.py       tasks and their steps, read only (they change through `tether.events.log`)
approvals.py   what a tool call asked a person, answered once
ids.py         new row ids

Events are not here: the log (`tether.events`) writes and reads them.
"""
