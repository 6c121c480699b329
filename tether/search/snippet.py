"""A result's snippet: the part of its text around the first match, as plain text pieces
that alternate between not matched and matched (`["before ", "word", " after"]`).

Made here, not by the database (FTS5's `snippet`, Postgres's `ts_headline`), so that the
page never receives markup: it puts each piece in as text, the matched ones in a <mark>, and
nothing a message says can become HTML. Both backends' snippets are alike too."""

from __future__ import annotations

from tether.search.query import Term
from tether.search.text import WORD

WIDTH = 160  # characters of context around the first match, about two lines


def snippet(body: str, terms: list[Term], width: int = WIDTH) -> list[str]:
    """Pieces of `body` around its first matched word: even indexes not matched, odd ones
    matched. The text left out at either end is shown as `…`."""
    whole = {w for t in terms for w in (t.words if not t.prefix else t.words[:-1])}
    starts = tuple(t.words[-1] for t in terms if t.prefix)

    def hit(word: str) -> bool:
        w = word.lower()
        return w in whole or (bool(starts) and w.startswith(starts))

    spans = [m.span() for m in WORD.finditer(body) if hit(m[0])]
    if not spans:
        return [_cut(body, 0, width)]
    first = spans[0][0]
    lo = max(0, first - width // 3)
    if lo:  # start at a word
        space = body.rfind(" ", 0, lo)
        lo = space + 1 if space >= 0 and lo - space < 20 else lo
    hi = min(len(body), lo + width)
    if hi < len(body):
        space = body.find(" ", hi)
        hi = space if 0 <= space - hi < 20 else hi
    pieces: list[str] = []
    at = lo
    for a, b in spans:
        if a < lo or b > hi:
            continue
        pieces.extend((body[at:a], body[a:b]))
        at = b
    pieces.append(body[at:hi])
    if lo:
        pieces[0] = "…" + pieces[0].lstrip()
    if hi < len(body):
        pieces[-1] = pieces[-1].rstrip() + "…"
    return [_flat(p) for p in pieces]


def _cut(body: str, lo: int, width: int) -> str:
    text = body[lo : lo + width]
    return _flat(text + ("…" if len(body) > lo + width else ""))


def _flat(text: str) -> str:
    """One line: a snippet is shown in a list."""
    return text.translate(_LINES)


_LINES = dict.fromkeys(map(ord, "\r\n\t"), " ")
