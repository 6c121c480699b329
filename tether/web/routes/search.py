"""Search across the caller's sessions: `GET /api/search?q=…`, ranked, a page at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from tether import search
from tether.errors import BadRequest
from tether.web.bodies import StrictRoute
from tether.web.deps import Caller, Svc
from tether.web.problems import problems
from tether.web.responses import json_response
from tether.web.schemas import SearchPage

router = APIRouter(prefix="/api", tags=["search"], route_class=StrictRoute)

PAGE_DEFAULT = 20
PAGE_MAX = 50
MAX_OFFSET = 1000  # ranked results beyond this are not worth a page: say more in the query


@router.get(
    "/search",
    response_model=None,
    responses={200: {"model": SearchPage}, **problems(400, 401, 429)},
)
async def search_sessions(
    caller: Caller,
    svc: Svc,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=search.MAX_QUERY,
            pattern=r"\S",
            description='Words to find (all of them); `"a phrase"`; `word*`: words it begins.',
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="Results per page.")] = (
        PAGE_DEFAULT
    ),
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,4}$", description="The `next` of the last page.")
    ] = None,
) -> Response:
    """Your sessions' titles, messages, replies, tool results and tasks that hold every word
    of `q`, best first, with a snippet around the match. Only yours, ever."""
    terms = search.parse(q)
    offset = int(cursor or 0)
    if offset > MAX_OFFSET:
        raise BadRequest(f"results go {MAX_OFFSET} deep at most; narrow the search")
    index = svc.store.search
    hits = (
        await svc.db.read(lambda c: index.find(c, caller.user, terms, limit + 1, offset))
        if terms
        else []
    )
    page = hits[:limit]
    more = len(hits) > limit and offset + limit <= MAX_OFFSET
    return json_response(
        {
            "results": [
                {
                    "session_id": h.session_id,
                    "title": h.title,
                    "kind": h.kind,
                    "seq": h.seq,
                    "task_id": h.task_id,
                    "snippet": search.snippet(h.body, terms),
                }
                for h in page
            ],
            "next": str(offset + limit) if more else None,
        }
    )
