"""JSON responses written in one `json.dumps`, bypassing FastAPI's per-field encoding."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from tether.model import escape_line_breakers


def json_response(value: Any, status_code: int = 200) -> Response:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if not text.isascii():
        text = escape_line_breakers(text)
    return Response(text, status_code=status_code, media_type="application/json")
