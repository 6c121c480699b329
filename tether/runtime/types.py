"""Types the runtime's modules share: a task's outcome, and the fence a worker passes in."""

from __future__ import annotations

from typing import Any, Protocol

from tether.model import TaskStatus

# A task's outcome as recorded: (status, result, error).
Outcome = tuple[TaskStatus, Any, Any]


class Fence(Protocol):
    """On a shared database: whether a task running here is still this process's own. A
    worker silent past the stale time (frozen, cut off) may have been taken for dead and its
    tasks handed to another worker; its copies of them must then do nothing more.
    `workers.Fence` is the one; an embedded runtime has none."""

    @property
    def executor_id(self) -> str:
        """This process's DBOS executor id: the work it resumes at start is this id's."""
        ...

    def suspect(self) -> bool:
        """Whether this worker may have been taken for dead: steps and child starts then
        `check` before they run (an in-memory test otherwise)."""
        ...

    async def check(self, task_id: str) -> None:
        """Raise TaskMoved if the task was handed to another worker."""
        ...

    async def moved_elsewhere(self, task_id: str) -> bool:
        """Whether the task was handed to another worker while it ran here."""
        ...
