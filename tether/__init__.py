"""Tether: long-running server-side agent tasks that delegate to sub-agents, with a durable
per-session event log and a stream that resumes exactly."""

import importlib as _importlib
import typing as _typing

__version__ = "0.2.0"

# The names below are imported when first used (PEP 562): `import tether.client` (the SDK)
# must not load the server's database and runtime modules.
_HOMES = {
    "BadRequest": "tether.errors",
    "Child": "tether.runtime.context",
    "CursorGone": "tether.errors",
    "DelegationFailed": "tether.errors",
    "Event": "tether.model",
    "Forbidden": "tether.errors",
    "InvalidInput": "tether.errors",
    "NotFound": "tether.errors",
    "PayloadTooLarge": "tether.errors",
    "Session": "tether.model",
    "Settings": "tether.settings",
    "Task": "tether.model",
    "TaskCancelled": "tether.errors",
    "TaskContext": "tether.runtime.context",
    "TaskError": "tether.errors",
    "TaskStatus": "tether.model",
    "TetherError": "tether.errors",
    "TooManyAttempts": "tether.errors",
    "Unauthorized": "tether.errors",
    "agent": "tether.runtime.agent",
}

if _typing.TYPE_CHECKING:
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


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tether' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


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
