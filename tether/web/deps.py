"""Request dependencies. Every route takes the caller's `Principal` and scopes reads to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from tether.services import Services

OWNER = "owner"


@dataclass(frozen=True, slots=True)
class Principal:
    user: str


async def current_principal() -> Principal:
    # Until users and tokens arrive, the one local user owns everything.
    return Principal(OWNER)


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


Caller = Annotated[Principal, Depends(current_principal)]
Svc = Annotated[Services, Depends(get_services)]
