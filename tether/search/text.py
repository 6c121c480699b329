"""What text search stores and how it is cut into words: one definition of a word for both
backends, so SQLite's FTS5 and Postgres's `tsvector` find the same rows.

A word is a run of letters and digits (Unicode's), as FTS5's `unicode61` tokenizer cuts
text; Postgres's own parser would make `report.pdf` or `example.com/x` one token, so its
`tsvector` is built from these words instead, not from the raw text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

WORD = re.compile(r"[^\W_]+")

# A row's body at most: a tool's result or a task's input may be 100 KiB; the start of it
# is what a person searches for, and indexing the rest would cost every commit.
MAX_BODY = 20_000

# NUL (which Postgres's text refuses) and the other control characters but tab and newline.
_CONTROL = dict.fromkeys([*range(0, 9), 11, 12, *range(14, 32), 127])


def clean(text: str, limit: int = MAX_BODY) -> str:
    """Text as the index stores it: bounded, without control characters or lone
    surrogates (which no database column of text takes: a failed index write would fail
    the log's commit)."""
    text = text[:limit].translate(_CONTROL)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def words(text: str) -> list[str]:
    """The text's words, lower case."""
    return WORD.findall(text.lower())


def strings(value: Any, limit: int = MAX_BODY) -> str:
    """The strings in a JSON value (a task's input or result), one a line, up to `limit`
    characters: what a person would search a task by, without the JSON around it."""
    out: list[str] = []
    size = 0
    for s in _walk(value):
        out.append(s)
        size += len(s) + 1
        if size >= limit:
            break
    return clean("\n".join(out), limit)


def _walk(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield str(value)
