from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tether.model import Task
from tether.runtime.engine import Runtime
from tether.web.deps import Caller, Svc

router = APIRouter(prefix="/api", tags=["sessions"])


class SessionIn(BaseModel):
    title: str = Field("", max_length=200)


class TaskIn(BaseModel):
    agent: str = Field(min_length=1, max_length=128, description="A registered agent's name.")
    input: Any = Field(default_factory=dict, description="The agent's input (see GET /api/agents).")


def _runtime(svc: Svc) -> Runtime:
    assert svc.runtime is not None
    return svc.runtime


def tree(tasks: list[Task]) -> list[dict[str, Any]]:
    """Nest tasks under their parents: roots in creation order, each with its children."""
    nodes = {t.id: {**t.to_dict(), "children": []} for t in tasks}
    roots = []
    for t in tasks:
        node = nodes[t.id]
        parent = nodes.get(t.parent_id) if t.parent_id else None
        (parent["children"] if parent is not None else roots).append(node)
    return roots


@router.post("/sessions", status_code=201)
async def create_session(caller: Caller, svc: Svc, body: SessionIn | None = None) -> dict[str, Any]:
    s = await svc.store.create_session(caller.user, (body or SessionIn()).title)
    return s.to_dict()


@router.get("/sessions")
async def list_sessions(caller: Caller, svc: Svc) -> dict[str, Any]:
    return {"sessions": [s.to_dict() for s in await svc.store.list_sessions(caller.user)]}


@router.get("/sessions/{session_id}")
async def get_session(session_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
    s, tasks = await svc.store.snapshot(session_id, caller.user)
    return {**s.to_dict(), "tasks": tree(tasks)}


@router.post("/sessions/{session_id}/tasks", status_code=201)
async def create_task(session_id: str, body: TaskIn, caller: Caller, svc: Svc) -> dict[str, Any]:
    await svc.store.session(session_id, caller.user)
    task = await _runtime(svc).create_task(session_id, body.agent, body.input)
    return task.to_dict()


@router.get("/sessions/{session_id}/tasks")
async def list_tasks(session_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
    s, tasks = await svc.store.snapshot(session_id, caller.user)
    return {"session_id": s.id, "head_seq": s.head_seq, "tasks": tree(tasks)}


@router.get("/agents", tags=["agents"])
async def list_agents(_caller: Caller, svc: Svc) -> dict[str, Any]:
    return {"agents": [a.to_dict() for a in svc.registry.all()]}
