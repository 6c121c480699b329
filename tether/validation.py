"""Validation errors in plain words: what a person reads under a form field ("At most 64."),
not pydantic's wording ("Input should be less than or equal to 64")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _n(n: Any, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _size(ctx: Mapping[str, Any], key: str, err: Mapping[str, Any]) -> str | None:
    n = ctx.get(key)
    if n is None:
        return None
    text = isinstance(err.get("input"), str) or err.get("type", "").startswith("string_")
    return _n(n, "character", "characters") if text else _n(n, "item", "items")


def plain(err: Mapping[str, Any]) -> str:
    """One pydantic error (with its `ctx`) as a short sentence."""
    kind = str(err.get("type", ""))
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    words: str | None = None
    if kind == "missing":
        words = "Required"
    elif kind in ("less_than_equal", "greater_than_equal", "less_than", "greater_than"):
        bound = ctx.get({"less_than_equal": "le", "greater_than_equal": "ge"}.get(kind, kind))
        if bound is None:
            bound = ctx.get({"less_than": "lt", "greater_than": "gt"}[kind])
        head = {
            "less_than_equal": "At most",
            "greater_than_equal": "At least",
            "less_than": "Less than",
            "greater_than": "More than",
        }[kind]
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # "At least 0", not "At least 0.0"
        words = f"{head} {bound}" if bound is not None else None
    elif kind in ("string_too_long", "too_long"):
        size = _size(ctx, "max_length", err)
        words = f"At most {size}" if size else None
    elif kind in ("string_too_short", "too_short"):
        size = _size(ctx, "min_length", err)
        if ctx.get("min_length") == 1:
            words = "Required" if kind == "string_too_short" else "At least one item"
        elif size:
            words = f"At least {size}"
    elif kind in ("literal_error", "enum"):
        words = f"Choose {ctx['expected']}" if ctx.get("expected") else None
    elif kind in ("int_parsing", "int_type", "int_from_float"):
        words = "A whole number"
    elif kind in ("float_parsing", "float_type", "finite_number"):
        words = "A number"
    elif kind in ("bool_parsing", "bool_type"):
        words = "Yes or no (true or false)"
    elif kind == "string_type":
        words = "Text"
    elif kind == "list_type":
        words = "A list"
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        words = "An object with named fields"
    elif kind == "extra_forbidden":
        words = "Not a field this takes"
    elif kind in ("value_error", "assertion_error"):
        raw = str(err.get("msg", ""))
        for prefix in ("Value error, ", "Assertion failed, "):
            raw = raw.removeprefix(prefix)
        words = raw
    if words is None:
        raw = str(err.get("msg", "")) or "Not valid"
        words = (
            "Should be " + raw[len("Input should be ") :]
            if raw.startswith("Input should be ")
            else raw
        )
    words = words.strip()
    words = words[:1].upper() + words[1:]
    return words if words.endswith((".", "!", "?")) else words + "."


def plain_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's errors as `{loc, msg, type}`: `msg` in plain words, `ctx` left out (it may
    hold values JSON cannot carry)."""
    return [
        {"loc": [str(x) for x in e.get("loc", ())], "msg": plain(e), "type": str(e.get("type", ""))}
        for e in errors
    ]


NUL_REFUSED = (
    "holds a NUL character (U+0000), which Tether does not store (Postgres keeps no NUL in text)"
)


def holds_nul(value: Any) -> bool:
    """Whether a JSON value has a NUL in any of its strings or keys."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if "\x00" in v:
                return True
        elif isinstance(v, dict):
            for k, item in v.items():
                if "\x00" in k:
                    return True
                stack.append(item)
        elif isinstance(v, list):
            stack.extend(v)
    return False
