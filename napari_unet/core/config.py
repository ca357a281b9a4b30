"""Typed, frozen configuration records that round-trip to plain dicts and JSON.

Every config in the core is a ``@dataclass(frozen=True)`` subclass of :class:`Config` with real
defaults, validated in ``__post_init__``. ``to_dict``/``from_dict`` turn them into plain data for
checkpoints, session files and the CLI (tuples become lists in JSON and are turned back).

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo(Config):
    ...     tile_shape: tuple[int, int] = (256, 256)
    >>> Demo.from_dict(Demo().to_dict()) == Demo()
    True
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, TypeVar

C = TypeVar("C", bound="Config")

#: What a model's output means. Stored in every checkpoint.
#: - ``binary``: 1 channel, sigmoid; labels are ``p >= threshold``.
#: - ``semantic``: K >= 2 channels, softmax, channel k = class k; labels are the argmax.
#: - ``instances``: 3 channels (0 background, 1 interior, 2 boundary), softmax; labels are
#:   instance ids from seeded watershed.
#: - ``restoration``: an image (same channels as the input), no activation.
Task = Literal["binary", "semantic", "instances", "restoration"]
TASKS: tuple[str, ...] = ("binary", "semantic", "instances", "restoration")
#: Numeric precisions of inference (see ``core.device.autocast_dtype``); here, not in
#: ``core.device``, so that torch-free configs can check them.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
#: Adam learning rates: to fine-tune a trained network, and to train one from scratch (the GUI's
#: defaults and the human-in-the-loop benchmark's; here so that neither needs torch to read them).
LR_FINETUNE = 1e-4
LR_SCRATCH = 1e-3


def setting(default: Any, label: str, *, tooltip: str = "", **hints: Any) -> Any:
    """A dataclass field the GUI shows: ``default`` plus how to show it, as field metadata.

    The settings forms (``napari_unet._widgets.config_form``) are generated from these; the
    metadata is plain data, so a config module stays free of Qt and magicgui.

    Args:
        default: the field's default (immutable).
        label: the row label (a check box shows it as its own text).
        tooltip: one sentence: what it does, and when to change it.
        **hints: ``min``, ``max``, ``step``; ``suffix`` (a unit, e.g. ``" px"``); ``choices``
            (``((value, text), ...)``); ``widget`` (a magicgui widget type, e.g.
            ``"LineEdit"``, ``"FloatSlider"``, ``"ComboBox"``); ``square`` (an ``(h, w)``
            field shown as one side); ``row`` (fields with the same row share one line, each
            with its label in front); ``advanced`` (in the collapsed "Advanced" section);
            ``order`` (position among the generated rows of its section).

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Demo(Config):
        ...     batch_size: int = setting(4, "Batch size", min=1, max=64, advanced=True)
        >>> dataclasses.fields(Demo)[0].metadata["label"]
        'Batch size'
    """
    return dataclasses.field(
        default=default, metadata={"label": label, "tooltip": tooltip, **hints}
    )


def check_task(task: str) -> str:
    """Return ``task`` if it is one of :data:`TASKS`, else raise ``ValueError`` naming them."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    return task


def _convert(value: Any, annotation: Any) -> Any:
    """Turn JSON-ish ``value`` back into the type named by ``annotation`` (lists -> tuples)."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Config) and isinstance(value, dict):
        return annotation.from_dict(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0]) for v in value)
        if args and len(args) == len(value):
            return tuple(_convert(v, a) for v, a in zip(value, args))
        return tuple(value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(annotation):
            if arg is type(None) and value is None:
                return None
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            try:
                return _convert(value, arg)
            except (TypeError, ValueError):
                continue
    return value


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class for frozen configuration dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict (nested configs become dicts, tuples become lists)."""

        def plain(value: Any) -> Any:
            if isinstance(value, Config):
                return value.to_dict()
            if isinstance(value, (tuple, list)):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {str(k): plain(v) for k, v in value.items()}
            return value

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError`` naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} expects a dict, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}")
        kwargs = {k: _convert(v, hints.get(k, Any)) for k, v in data.items()}
        return cls(**kwargs)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)
