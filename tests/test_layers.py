"""The house rules (README, "Design"): each layer is a folder, imports only go down, no
import cycles.  Every import counts, the ones inside functions too: a cycle hidden in a
function is still a cycle a reader has to untangle.

Layers, bottom up: the foundation modules at the package root (errors, text escaping,
threads), ``kernel/``, ``core/``, ``analysis/``, ``output/``, ``cli/``, and on top the
package itself (its public API) and ``__main__``.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "pagewalk"
LAYERS = ["", "kernel", "core", "analysis", "output", "cli"]  # "" = the root's foundation modules
TOP = len(LAYERS)


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(name: str) -> bool:
    return (SRC / name.replace(".", "/") / "__init__.py").exists()


def exists(name: str) -> bool:
    """A package, a module, or the compiled module (pagewalk.native, from native.c)."""
    path = SRC / name.replace(".", "/")
    return is_package(name) or path.with_suffix(".py").exists() or path.with_suffix(".c").exists()


def imports(path: pathlib.Path, source: str | None = None) -> set[str]:
    """Every pagewalk module the file (or ``source`` put in its place) imports, anywhere
    in it (top level, functions, TYPE_CHECKING blocks)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "pagewalk")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "pagewalk":
                continue
            modules = {f"{target}.{a.name}" for a in node.names if exists(f"{target}.{a.name}")}
            # ``from . import scan`` imports the module scan, not (in effect) its package
            found.update(modules if len(modules) == len(node.names) else modules | {target})
    # importing a.b.c runs a/__init__ and a/b/__init__ too: those are the package's own business
    return {m for m in found if m != "pagewalk" or name == "pagewalk.__main__"} - {name}


def layer(name: str) -> int:
    parts = name.split(".")
    if name == "pagewalk" or parts[1:] == ["__main__"]:
        return TOP
    if len(parts) == 2 and not is_package(name):
        return 0
    return LAYERS.index(parts[1])


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_folder_is_a_layer():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS) - {""}


def test_imports_only_go_down():
    upward = [f"{a} imports {b}" for a, deps in graph().items() for b in sorted(deps) if layer(b) > layer(a)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("source, upward", [
    ("from ..core import process\n", False),
    ("def f():\n    from ..cli._common import human_bytes\n", True),
    ("from .. import output\n", True),
])
def test_the_check_sees_upward_imports(source, upward):
    """The rules above pass on an empty graph: show they see an upward import, also one
    inside a function."""
    deps = imports(PACKAGE / "analysis" / "usage.py", source)
    assert any(layer(d) > layer("pagewalk.analysis.usage") for d in deps) is upward
