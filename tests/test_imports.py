"""Import hygiene: a light package import, and a core that never touches napari or Qt."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import napari_unet
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


def _top_level_assignments(name: str) -> list[str]:
    """Modules of the package that assign ``name`` at top level."""
    import ast
    from pathlib import Path

    package = Path(napari_unet.core.__file__).parents[1]
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            targets += [node.target] if isinstance(node, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found.append(path.relative_to(package).as_posix())
    return found


def test_ignore_index_is_defined_once() -> None:
    assert _top_level_assignments("IGNORE_INDEX") == ["core/training/targets.py"]


def test_training_item_has_one_home() -> None:
    """``TrainingItem`` is imported from ``core.training.items`` (or the package) only."""
    import ast
    from pathlib import Path

    root = Path(napari_unet.core.__file__).parents[2]
    homes = {"napari_unet.core.training.items", "napari_unet.core.training"}
    wrong = []
    for folder in ("napari_unet", "tests", "benchmarks", "scripts"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ImportFrom) or node.module in homes:
                    continue
                if any(alias.name == "TrainingItem" for alias in node.names):
                    wrong.append(f"{path.relative_to(root)}:{node.lineno}")
    assert wrong == []


# --- import cycles ---------------------------------------------------------------------------
#: Cycles in ``_widgets`` still to break: none since the state owner (issue 14) gave ``HotSwap``
#: and ``Repredictor`` a ``PredictionTarget`` instead of ``SegmentPanel``'s attributes.
KNOWN_WIDGET_CYCLES: list[list[str]] = []


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"


def _module_names() -> dict[str, Path]:
    package = Path(napari_unet.__file__).parent
    names = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere: top level, in functions and under
    ``TYPE_CHECKING`` (a type-only import is still a dependency of the design)."""
    names = _module_names()
    graph = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in names else base)
        graph[name] = {t for t in targets if t in names and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_cycle_finder_sees_function_level_and_type_only_imports(tmp_path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    edges = import_graph()
    # function-level import in checkpoint.integrity, type-only import in postprocess.blocks
    assert (
        "napari_unet.core.checkpoint.bioimageio_import"
        in edges["napari_unet.core.checkpoint.integrity"]
    )
    assert "napari_unet.core.postprocess.config" in edges["napari_unet.core.postprocess.blocks"]


def test_no_import_cycles_outside_widgets() -> None:
    """core, session, trainer, cli and the entry points: no cycle, type-only imports included."""
    cycles = import_cycles(import_graph())
    assert [c for c in cycles if not all(m.startswith("napari_unet._widgets") for m in c)] == []


def test_no_import_cycles_in_widgets() -> None:
    cycles = import_cycles(import_graph())
    assert [c for c in cycles if c[0].startswith("napari_unet._widgets")] == []


def test_widget_cycles_are_only_the_known_ones() -> None:
    cycles = import_cycles(import_graph())
    assert [c for c in cycles if c[0].startswith("napari_unet._widgets")] == KNOWN_WIDGET_CYCLES


#: Old module paths kept one release because user documentation named them (relayout shims).
SHIMS = sorted(
    p.stem
    for p in Path(napari_unet.core.__file__).parent.glob("*.py")
    if "relayout shim" in p.read_text(encoding="utf-8")
)


@pytest.mark.parametrize("stem", SHIMS)
def test_old_module_path_warns_and_is_the_new_module(stem: str) -> None:
    import importlib

    old = f"napari_unet.core.{stem}"
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to napari_unet.core."):
        module = importlib.import_module(old)
    assert module.__name__.startswith("napari_unet.core.") and module.__name__ != old
    assert sys.modules[old] is module


# --- module and function size (issue 14) ------------------------------------------------------
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60

#: Modules still over ``MAX_MODULE_LINES``, as paths under ``napari_unet/``. The list may only
#: shrink: split a module, then delete its line here.
LONG_MODULES: set[str] = set()

#: Functions still over ``MAX_FUNCTION_LINES``, as ``path:name``. The list may only shrink.
LONG_FUNCTIONS: set[str] = set()


def size_offenders() -> tuple[set[str], set[str]]:
    """``(modules over MAX_MODULE_LINES, functions over MAX_FUNCTION_LINES)`` of the package."""
    package = Path(napari_unet.__file__).parent
    modules, functions = set(), set()
    for path in sorted(package.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(package).as_posix()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            modules.add(rel)
        for node in ast.walk(ast.parse(text)):
            is_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            if is_function and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                functions.add(f"{rel}:{node.name}")
    return modules, functions


def test_no_new_long_modules_or_functions() -> None:
    """Nothing new over the size limits; a module or function split off the list must leave it."""
    modules, functions = size_offenders()
    assert modules - LONG_MODULES == set(), "split these modules (over 300 lines)"
    assert functions - LONG_FUNCTIONS == set(), "split these functions (over 60 lines)"
    assert LONG_MODULES - modules == set(), "now short enough: delete them from LONG_MODULES"
    assert LONG_FUNCTIONS - functions == set(), "now short enough: delete them from LONG_FUNCTIONS"


# --- the same size rule for benchmarks/ and scripts/ --------------------------------------------
#: ``benchmarks/*.py`` and ``scripts/*.py`` still over ``MAX_MODULE_LINES``, as paths under the
#: repository. The list may only shrink.
LONG_SCRIPT_MODULES: set[str] = set()

#: Their functions still over ``MAX_FUNCTION_LINES``, as ``path:name``. The list may only shrink.
LONG_SCRIPT_FUNCTIONS: set[str] = {
    "scripts/screenshot_protect.py:main",
    "scripts/screenshot_walkthrough.py:main",
}


def file_size_offenders(paths: list[Path], root: Path) -> tuple[set[str], set[str]]:
    """``(files over MAX_MODULE_LINES, path:function over MAX_FUNCTION_LINES)``, paths relative
    to ``root``."""
    modules, functions = set(), set()
    for path in sorted(paths):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(root).as_posix()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            modules.add(rel)
        for node in ast.walk(ast.parse(text)):
            is_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            if is_function and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                functions.add(f"{rel}:{node.name}")
    return modules, functions


def test_size_rule_counts_lines_of_modules_and_functions(tmp_path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))  # 61 lines with def
    (tmp_path / "long.py").write_text("def f():\n" + body + "\n" * 300, encoding="utf-8")
    (tmp_path / "short.py").write_text("def g():\n" + body[: body.rindex("    x")], "utf-8")
    modules, functions = file_size_offenders(sorted(tmp_path.glob("*.py")), tmp_path)
    assert (modules, functions) == ({"long.py"}, {"long.py:f"})


def test_benchmarks_and_scripts_keep_the_size_rule() -> None:
    """``benchmarks/*.py`` and ``scripts/*.py``: at most 300 lines a module, 60 a function; the
    allow-lists only shrink."""
    root = Path(__file__).resolve().parents[1]
    paths = [*root.glob("benchmarks/*.py"), *root.glob("scripts/*.py")]
    assert len(paths) > 30, "benchmarks/ and scripts/ not found"
    modules, functions = file_size_offenders(paths, root)
    assert modules - LONG_SCRIPT_MODULES == set(), "split these modules (over 300 lines)"
    assert functions - LONG_SCRIPT_FUNCTIONS == set(), "split these functions (over 60 lines)"
    assert LONG_SCRIPT_MODULES - modules == set(), "now short enough: delete from the list"
    assert LONG_SCRIPT_FUNCTIONS - functions == set(), "now short enough: delete from the list"
