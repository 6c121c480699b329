"""Idempotency-Key: a retried request that starts a task gets the task the first try
started, and the key sent again with another request is refused (the runtime compares the
fingerprints)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header

from tether import quotas
from tether.web.deps import Svc

IDEMPOTENCY_KEY = Annotated[
    str | None,
    Header(
        pattern=r"^[\x21-\x7e]{1,200}$",
        description="Retrying the same request with the same key returns the task the first "
        "try started (200). A key belongs to one route of one session: the same key with "
        "another body is a 422.",
    ),
]


@dataclass(frozen=True, slots=True)
class Idempotent:
    """What an Idempotency-Key makes of a request: the task id it starts, and the
    fingerprint of what it asks (kept with the task: the key sent again with another
    request is refused)."""

    task_id: str | None = None
    request_hash: str | None = None


def idempotent(user: str, session_id: str, route: str, key: str | None, request: Any) -> Idempotent:
    """A key is scoped to its user, session and route (the key of a batch task sent with a
    message starts a message's turn, not that batch task); `request` is what was asked (the
    body as sent, and any id in the path)."""
    if key is None:
        return Idempotent()
    task = hashlib.sha256(f"{user}\0{session_id}\0{route}\0{key}".encode())
    asked = hashlib.sha256(json.dumps(request, sort_keys=True).encode())
    return Idempotent("t_" + task.hexdigest()[:24], asked.hexdigest())


async def check_storage(svc: Svc, user: str, once: Idempotent) -> None:
    """507 past the user's storage quota, unless this is a retry of a request that was
    accepted (its task exists): that retry gets its task, as any retry does."""
    if once.task_id is None or not await svc.store.task_exists(once.task_id):
        await quotas.check_storage(svc.db, svc.settings, user)
