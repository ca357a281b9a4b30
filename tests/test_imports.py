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
