from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tether.web.deps import Caller, Svc

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


@router.get("/{task_id}")
async def get_task(task_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
    return (await svc.store.task(task_id, caller.user)).to_dict()


@router.post("/{task_id}/cancel")
async def cancel_task(task_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
    assert svc.runtime is not None
    return (await svc.runtime.cancel(task_id, caller.user)).to_dict()
