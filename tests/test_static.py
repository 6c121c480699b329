"""The page's files: every module it imports is preloaded from index.html (a module found
one import at a time costs a round trip per level before the page can start)."""

from __future__ import annotations

import re

from tests.helpers.server import ROOT

STATIC = ROOT / "tether" / "web" / "static"


def _imports(name: str, seen: set[str]) -> set[str]:
    if name in seen:
        return seen
    seen.add(name)
    text = (STATIC / name).read_text()
    for dep in re.findall(r'^import [^;]*?from "\./([^"]+)"', text, flags=re.M):
        base = str((STATIC / name).parent.relative_to(STATIC) / dep).removeprefix("./")
        _imports(base, seen)
    return seen


def test_every_module_the_page_imports_is_preloaded() -> None:
    html = (STATIC / "index.html").read_text()
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/([^"]+)">', html))
    assert preloaded == _imports("app.js", set())
