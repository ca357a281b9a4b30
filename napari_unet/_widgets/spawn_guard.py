"""Scripts that open napari at their top level, and the spawned trainer that would re-run them.

The trainer runs in a process started with the **spawn** method, which imports the parent's
``__main__`` script again before it starts. A script that opens napari (or calls a function
that does) outside ``if __name__ == "__main__":`` therefore runs again in the trainer: a second
window, a second session folder, then a crash. :func:`unguarded_main_script` finds such a script
before spawning (a small ``ast`` check of the script's top level), and
:func:`exit_if_trainer_child`, called when a plugin dock is made, ends a trainer process that
is re-running one anyway, with :data:`REENTRY_EXIT_CODE`, which the parent turns into
:data:`UNGUARDED_MESSAGE`. No Qt here.
"""

from __future__ import annotations

import ast
import logging
import multiprocessing
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

#: The trainer process's name (``multiprocessing`` sets it before re-running ``__main__``).
TRAINER_PROCESS_NAME = "napari-unet-trainer"
#: Exit code of a trainer process that found itself re-running the user's script.
REENTRY_EXIT_CODE = 73
#: Calls that open napari (by their last name: ``napari.Viewer(...)``, ``napari.run()``...).
NAPARI_CALLS = frozenset({"Viewer", "run", "gui_qt", "imshow", "view_image", "view_labels"})
UNGUARDED_MESSAGE = (
    "Put your script's code under 'if __name__ == \"__main__\":' and run it again: the "
    "fine-tune process re-runs a script's top level, which here opens napari a second time."
)


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either side of the ``==``)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    parts = [node.test.left, *node.test.comparators]
    names = {p.id for p in parts if isinstance(p, ast.Name)}
    values = {p.value for p in parts if isinstance(p, ast.Constant)}
    return "__name__" in names and "__main__" in values


def _call_names(node: ast.AST) -> set[str]:
    """Last names of everything called in ``node`` (``a.b.Viewer()`` -> ``Viewer``)."""
    names = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            if isinstance(func, ast.Attribute):
                names.add(func.attr)
            elif isinstance(func, ast.Name):
                names.add(func.id)
    return names


def opens_napari_unguarded(source: str) -> bool:
    """Whether ``source``'s top level (outside the main guard) opens napari.

    Directly (``napari.Viewer()``, ``napari.run()``) or through a function of the script that
    does (``main()`` at the top level).
    """
    tree = ast.parse(source)
    functions = {
        node.name: node
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    openers = set(NAPARI_CALLS)
    changed = True
    while changed:  # functions of the script that (transitively) open napari
        changed = False
        for name, function in functions.items():
            if name not in openers and _call_names(function) & openers:
                openers.add(name)
                changed = True
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)) or _is_main_guard(node):
            continue
        if _call_names(node) & openers:
            return True
    return False


def unguarded_main_script() -> Path | None:
    """The user's ``__main__`` script when it opens napari outside the main guard, else None."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not str(path).endswith(".py"):
        return None  # napari's own entry point, python -c, IPython, Jupyter: nothing re-runs
    spec = getattr(main, "__spec__", None)
    if spec is not None and str(spec.name).endswith("__main__"):
        return None  # python -m package: spawn does not re-run a package's __main__
    try:
        source = Path(path).read_text(encoding="utf-8")
        unguarded = opens_napari_unguarded(source)
    except (OSError, SyntaxError, ValueError) as err:
        logger.info("cannot check %s for a main guard: %s", path, err)
        return None
    return Path(path) if unguarded else None


def in_trainer_child() -> bool:
    """Whether this is the spawned trainer process (re-running the parent's script)."""
    # the name is set before the parent's script is re-run (``parent_process()`` only after)
    return multiprocessing.current_process().name == TRAINER_PROCESS_NAME


def exit_if_trainer_child() -> None:
    """End a trainer process that is re-running the user's script (before it opens napari more).

    Raises:
        SystemExit: with :data:`REENTRY_EXIT_CODE`, in the trainer process only.
    """
    if in_trainer_child():
        logger.error(UNGUARDED_MESSAGE)
        raise SystemExit(REENTRY_EXIT_CODE)
