"""The layout half of the gate: `tether/`'s import graph has no cycles, no module is long,
and an engine's library is imported by its one boundary module (DBOS: runtime/durable.py).

Every import counts, including those under ``if TYPE_CHECKING:`` and those inside functions:
a cycle hidden in a function body is still a cycle a reader has to untangle. A module may
import a sibling package's ``__init__`` only if that ``__init__`` does not lead back.

    python -m scripts.check_layout            # exit 1 and name each cycle / long module
    python -m scripts.check_layout --graph    # print the graph (module -> imports)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "tether"
MAX_LINES = 450
# Generated or data-like modules the length rule does not apply to.
LONG_OK = ("tether/db/migrations/",)
# Libraries one module alone may import: the boundary to that engine.
CONFINED = {"dbos": "tether.runtime.durable"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The tether modules `path` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def resolve(target: str) -> str | None:
        # The longest known module that `target` names (`a.b.c` may be a name in `a.b`).
        while target:
            if target in known:
                return target
            target = target.rpartition(".")[0]
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE and (hit := resolve(alias.name)):
                    found.add(hit)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                hit = resolve(f"{mod}.{alias.name}") or resolve(mod)
                if hit:
                    found.add(hit)
    found.discard(name)
    return found


def confined_imports() -> list[str]:
    """`module imports lib` for each import of a CONFINED library outside its one module."""
    out = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        name = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                libs = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                libs = [node.module.split(".")[0]]
            else:
                continue
            out += [
                f"{name} imports {lib}: only {CONFINED[lib]} may (the boundary to {lib})"
                for lib in libs
                if lib in CONFINED and CONFINED[lib] != name
            ]
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in (ROOT / PACKAGE).rglob("*.py")}
    known = set(files)
    return {name: imports_of(path, name, known) for name, path in sorted(files.items())}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def long_modules() -> list[tuple[str, int]]:
    out = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(LONG_OK):
            continue
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            out.append((rel, n))
    return out


def main(argv: list[str]) -> int:
    g = graph()
    if "--graph" in argv:
        for name, deps in g.items():
            print(f"{name} -> {', '.join(sorted(deps)) or '-'}")
        return 0
    bad = 0
    for comp in cycles(g):
        bad += 1
        edges = [f"{a} -> {b}" for a in comp for b in sorted(g[a]) if b in comp]
        print(f"import cycle among {len(comp)} modules:\n  " + "\n  ".join(edges))
    for line in confined_imports():
        bad += 1
        print(line)
    for rel, n in long_modules():
        bad += 1
        print(f"{rel}: {n} lines (the limit is {MAX_LINES}); split it by job")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
