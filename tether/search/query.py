"""A person's query as terms, never as either backend's query syntax.

What is typed is cut into words (text.py's); `"two words"` is a phrase, and a word typed
with `*` after it matches words it begins. Every other mark (`-`, `NEAR`, parentheses,
`:`…) is text like any other, so nothing typed is an operator of FTS5 or `tsquery`. The
terms are written out for each backend here from words that hold only letters and digits.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from tether.errors import BadRequest
from tether.search.text import WORD

MAX_QUERY = 500  # characters
MAX_TERMS = 16

_PART = re.compile(r'"([^"]*)"?|(\S+)')


class Term(NamedTuple):
    words: tuple[str, ...]  # more than one: a phrase
    prefix: bool  # the last word matches the words it begins


def parse(q: str) -> list[Term]:
    """The terms of a query, the first MAX_TERMS of them; none when it holds no word (only
    marks or emoji: nothing can match). BadRequest when it is blank or too long."""
    if not q.strip():
        raise BadRequest("type something to search for")
    if len(q) > MAX_QUERY:
        raise BadRequest(f"a search is at most {MAX_QUERY} characters; this one has {len(q)}")
    terms: list[Term] = []
    for m in _PART.finditer(q):
        phrase, plain = m[1], m[2]
        text = phrase if phrase is not None else plain
        found = tuple(WORD.findall(text.lower()))
        if not found:
            continue
        if phrase is not None:
            terms.append(Term(found, False))
            continue
        # `foo-bar` is two words, both wanted; `foo*` matches the words it begins.
        *whole, last = found
        terms.extend(Term((w,), False) for w in whole)
        terms.append(Term((last,), plain.endswith("*") and plain.rstrip("*").endswith(last)))
    return list(dict.fromkeys(terms))[:MAX_TERMS]


def fts5(terms: list[Term]) -> str:
    """An FTS5 MATCH expression: every term wanted, each a quoted string (words of letters
    and digits only, so no quote to escape)."""
    return " ".join('"' + " ".join(t.words) + '"' + ("*" if t.prefix else "") for t in terms)


def tsquery(terms: list[Term]) -> str:
    """A `to_tsquery('simple', …)` text: every term wanted, a phrase as `<->`, a prefix as
    `:*`; each word quoted (letters and digits only)."""
    return " & ".join(
        "(" + " <-> ".join(f"'{w}'" for w in t.words) + (":*" if t.prefix else "") + ")"
        for t in terms
    )
