"""Settings rows generated from config dataclasses with magicgui.

A config field appears in a form when it was declared with
:func:`~napari_unet.core.config.setting` (its metadata has a ``label``): :class:`ConfigWidgets`
makes one magicgui widget per such field (``create_widget`` with the field's type, default,
limits and tooltip), reads them back as field values and applies them to a config with
``replace`` (validated again). :func:`add_rows` lays the rows of several configs into a form
and its "Advanced" section, ordered by their ``order`` hint. A new setting is one field.

Widgets by field: ``bool`` -> check box (labelled by itself); ``choices`` -> combo box (the
value is the item data); ``widget="LineEdit"`` on a float -> a line edit with a number
validator; ``widget="FloatSlider"`` -> a slider with a read-out; an ``(h, w)`` tuple with
``square`` -> one spin box for both sides; ints and floats -> spin boxes (an int with a unit
``suffix`` shows it in a zero-decimal spin box: magicgui's int spin box has no suffix).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from magicgui.widgets import create_widget
from qtpy.QtGui import QDoubleValidator
from qtpy.QtWidgets import (
    QAbstractSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QWidget,
)

from napari_unet._widgets.collapsible import CollapsibleForm
from napari_unet.core.config import Config

C = TypeVar("C", bound=Config)


@dataclasses.dataclass(frozen=True)
class Row:
    """One generated form row: ``label`` ("" for a check box) and its ``widget``."""

    label: str
    widget: QWidget
    advanced: bool
    order: float


def _plain_type(annotation: Any) -> Any:
    """``int | None`` -> ``int``; other annotations unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise ValueError(f"setting {field.name} has no default")


class FieldWidget:
    """The magicgui widget of one config field, converting between widget and field values.

    Attributes:
        name: the field name. meta: its metadata. widget: the magicgui widget.
        native: the Qt widget (``widget.native``).
    """

    def __init__(self, name: str, annotation: Any, value: Any, meta: Mapping[str, Any]) -> None:
        self.name, self.meta = name, meta
        self.kind = _plain_type(annotation)
        self.square = bool(meta.get("square"))
        self.fallback = value
        self.widget = self._create(value)
        self.native = self.widget.native

    def _create(self, value: Any) -> Any:
        meta = self.meta
        options: dict[str, Any] = {"tooltip": meta.get("tooltip") or None}
        shown = self.to_widget(value)
        if meta.get("widget") == "LineEdit":
            widget = create_widget(
                value=shown, annotation=str, widget_type="LineEdit", options=options
            )
            low, high = meta.get("min", -1e300), meta.get("max", 1e300)
            widget.native.setValidator(QDoubleValidator(low, high, 8, widget.native))
            return widget
        if "choices" in meta or meta.get("widget") == "ComboBox":
            pairs = meta.get("choices") or ((value, str(value)),)
            options["choices"] = [(text, key) for key, text in pairs]
            return create_widget(
                value=shown, annotation=str, widget_type="ComboBox", options=options
            )
        if self.kind is bool:
            options["text"] = meta["label"]
            return create_widget(value=bool(shown), annotation=bool, options=options)
        options.update({k: meta[k] for k in ("min", "max", "step") if k in meta})
        number = float if meta.get("suffix") else self.number_type()
        widget = create_widget(
            value=shown, annotation=number, widget_type=meta.get("widget"), options=options
        )
        slider = widget.native.findChild(QSlider)
        if slider is not None:  # a slider with a read-out: Tab goes to the slider
            widget.native.setFocusProxy(slider)
            readout = widget.native.findChild(QAbstractSpinBox)
            if readout is not None:  # as wide as its text, so the slider keeps the room
                readout.setFixedWidth(readout.fontMetrics().horizontalAdvance("0.000") + 8)
        if meta.get("suffix"):
            if self.number_type() is int:
                widget.native.setDecimals(0)
            widget.native.setSuffix(meta["suffix"])
        return widget

    def number_type(self) -> type:
        """``int`` or ``float``: the type of the number shown."""
        return int if self.square or self.kind is int else float

    def to_widget(self, value: Any) -> Any:
        """The widget's value for the field value ``value``."""
        if self.square and isinstance(value, (tuple, list)):
            value = max(value)
        if self.meta.get("widget") == "LineEdit":
            return f"{value:g}"
        return value

    @property
    def value(self) -> Any:
        """The field value shown (an unreadable number falls back to the initial value)."""
        shown = self.widget.value
        if self.meta.get("widget") == "LineEdit":
            try:
                number = float(shown)
            except ValueError:
                return self.fallback
            return number if number > 0 or self.meta.get("min", 1) <= 0 else self.fallback
        if self.kind is bool:
            return bool(shown)
        if isinstance(shown, (int, float)) and not isinstance(shown, bool):
            shown = round(shown) if self.number_type() is int else float(shown)
        return (shown, shown) if self.square else shown

    @value.setter
    def value(self, value: Any) -> None:
        shown = self.to_widget(value)
        low, high = getattr(self.widget, "min", None), getattr(self.widget, "max", None)
        if isinstance(shown, (int, float)) and low is not None and high is not None:
            shown = min(max(shown, low), high)  # as a Qt spin box does; magicgui would raise
        self.widget.value = shown


class ConfigWidgets:
    """The widgets of every shown field of a config class.

    Args:
        cls: the config class. initial: field values shown at first, when they differ from
            the field defaults (e.g. the GUI's fine-tuning learning rate).
    """

    def __init__(self, cls: type[Config], initial: Mapping[str, Any] | None = None) -> None:
        self.cls = cls
        hints = typing.get_type_hints(cls)
        initial = dict(initial or {})
        self.fields: dict[str, FieldWidget] = {}
        for field in dataclasses.fields(cls):
            if "label" not in field.metadata:
                continue
            value = initial.pop(field.name, None)
            value = _default(field) if value is None else value
            self.fields[field.name] = FieldWidget(
                field.name, hints[field.name], value, field.metadata
            )
        if initial:
            raise ValueError(f"{cls.__name__}: no shown setting(s) {', '.join(sorted(initial))}")

    def __getitem__(self, name: str) -> FieldWidget:
        return self.fields[name]

    def values(self) -> dict[str, Any]:
        """``{field name: value shown}``."""
        return {name: field.value for name, field in self.fields.items()}

    def apply(self, config: C) -> C:
        """``config`` with the values shown (validated by the config; ``ValueError`` if not)."""
        if not isinstance(config, self.cls):
            raise TypeError(f"expected a {self.cls.__name__}, got {type(config).__name__}")
        return config.replace(**self.values())

    def show(self, config: Config) -> None:
        """Show the values of ``config``'s shown fields."""
        for name, field in self.fields.items():
            field.value = getattr(config, name)

    def rows(self) -> list[Row]:
        """The rows, fields sharing a ``row`` on one line (each with its label in front)."""
        rows: list[Row] = []
        shared: dict[str, QHBoxLayout] = {}
        for field in self.fields.values():
            meta = field.meta
            advanced, order = bool(meta.get("advanced")), float(meta.get("order", 0))
            if "row" not in meta:
                label = "" if field.kind is bool else meta["label"]
                rows.append(Row(label, field.native, advanced, order))
                continue
            line = shared.get(meta["row"])
            if line is None:
                holder = QWidget()
                line = shared[meta["row"]] = QHBoxLayout(holder)
                line.setContentsMargins(0, 0, 0, 0)
                rows.append(Row(meta["row"], holder, advanced, order))
            line.addWidget(QLabel(meta["label"]))
            line.addWidget(field.native, 1)
        return rows


def add_rows(form: QFormLayout, advanced: CollapsibleForm, groups: Iterable[ConfigWidgets]) -> None:
    """Append the rows of ``groups`` to ``form`` and the ``advanced`` section, by ``order``
    (rows with the same order keep their groups' order)."""
    rows = sorted((row for group in groups for row in group.rows()), key=lambda r: r.order)
    for row in rows:
        if row.advanced:
            advanced.add_row(row.label, row.widget)
        else:
            form.addRow(row.label, row.widget)
