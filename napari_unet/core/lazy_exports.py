"""Lazy package exports: a package names torch-heavy public names without importing them.

A package ``__init__`` keeps ``import napari_unet`` and the torch-free paths light by resolving
some of its public names on first access (PEP 562 module ``__getattr__``)::

    __getattr__ = lazy_getattr(__name__, globals(), {"predict": "pkg.prediction"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_getattr(
    package: str, namespace: MutableMapping[str, Any], table: Mapping[str, str]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` on first use and caches the value.

    Args:
        package: the package's ``__name__`` (for the error message).
        namespace: the package's ``globals()`` (the value is stored there, so the import runs once).
        table: public name -> the module that defines it.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 (PEP 562 module __getattr__)
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
