"""Import hygiene: a light package import, and a core that never touches napari or Qt."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import napari_unet.core

FORBIDDEN_IN_CORE = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy")


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_package_import_loads_neither_torch_nor_qt() -> None:
    out = _run(
        "import sys, napari_unet; "
        "heavy = ('torch', 'qtpy', 'PyQt6', 'PySide6', 'napari'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    assert out == "[]"


def test_core_never_imports_napari_or_qt() -> None:
    modules = [
        m.name for m in pkgutil.walk_packages(napari_unet.core.__path__, prefix="napari_unet.core.")
    ]
    assert modules, "no core modules found"
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in {FORBIDDEN_IN_CORE!r} if m in sys.modules))\n"
    )
    assert _run(code) == "[]"


def test_cli_help_without_subcommand(capsys) -> None:
    from napari_unet.cli import main

    assert main([]) == 0
    assert "usage: napari-unet-loop" in capsys.readouterr().out


def _imports_of(path, module: str, modules: set[str]) -> set[str]:
    """Which of ``modules`` the module ``module`` (file ``path``) imports anywhere: at module
    level, in functions, under ``TYPE_CHECKING``. ``from pkg import name`` counts as importing
    ``pkg.name`` when that is a module, else ``pkg``."""
    import ast

    base = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            origin = node.module or ""
            if node.level:
                parent = base
                for _ in range(node.level - 1):
                    parent = parent.rpartition(".")[0]
                origin = f"{parent}.{origin}" if origin else parent
            for alias in node.names:
                name = f"{origin}.{alias.name}"
                found.add(name if name in modules else origin)
    return (found & modules) - {module}


def _import_graph(root, package: str) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every ``.py`` under ``root``."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join((package, *parts))] = path
    return {module: _imports_of(path, module, set(files)) for module, path in files.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (``[a, b, ..., a]``), or ``[]``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_widgets_have_no_import_cycles() -> None:
    """No module of ``napari_unet._widgets`` imports, directly or not, one that imports it back
    (module-level, function-level and ``TYPE_CHECKING`` imports all count)."""
    from pathlib import Path

    import napari_unet

    root = Path(napari_unet.__file__).parent / "_widgets"
    graph = _import_graph(root, "napari_unet._widgets")
    assert len(graph) > 20 and graph["napari_unet._widgets.segment_widget"]
    assert _find_cycle(graph) == []
