"""Tether: long-running server-side agent tasks that delegate to sub-agents, with a durable
per-session event log and a stream that resumes exactly."""

__version__ = "0.2.0"

from tether.errors import (
    BadRequest,
    CursorGone,
    DelegationFailed,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    TaskCancelled,
    TaskError,
    TetherError,
    TooManyAttempts,
    Unauthorized,
)
from tether.model import Event, Session, Task, TaskStatus
from tether.runtime.agent import agent
from tether.runtime.context import Child, TaskContext
from tether.settings import Settings

__all__ = [
    "BadRequest",
    "Child",
    "CursorGone",
    "DelegationFailed",
    "Event",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "PayloadTooLarge",
    "Session",
    "Settings",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskError",
    "TaskStatus",
    "TetherError",
    "TooManyAttempts",
    "Unauthorized",
    "__version__",
    "agent",
]
