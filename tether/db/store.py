"""The database's sessions, tasks and approvals, behind one object the runtime, the services
and the routes hold. Each noun's reads and writes live in its own module, which says what it
reads and writes:

    db/sessions.py   sessions: create, list, rename, delete; a sidebar's state
    db/tasks.py      tasks (read only: they change through the log) and their steps
    db/approvals.py  what a tool call asked a person, answered once

Events are read and written by `tether.events.log`; a stream's snapshot and first page by
`tether.events.reader`.
"""

from __future__ import annotations

from tether.db.approvals import Approvals
from tether.db.sessions import Sessions
from tether.db.tasks import Tasks

__all__ = ["Store"]


class Store(Sessions, Tasks, Approvals):
    """Every read and write of sessions, tasks and approvals, on one database (`self.db`)."""
