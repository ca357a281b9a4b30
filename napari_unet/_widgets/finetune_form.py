"""The controls of the fine-tune panel: start model, budget, learning rate, augmentation...

:class:`FinetuneForm` only holds and reads values (``train_settings`` gives ``TrainConfig``
fields); :class:`~napari_unet._widgets.finetune_panel.FinetunePanel` wires it to the session and
the trainer. Start models are keyed ``"builtin:<name>"``, ``"version:<id>"`` or
``"file:<path>"``; :func:`start_from_value` turns a key into ``FinetuneRequest.start_from``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QDoubleValidator
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_unet._widgets.collapsible import CollapsibleForm
from napari_unet.core.config import LR_FINETUNE, LR_SCRATCH

LOAD_ITEM = "load:"
DEFAULT_MINUTES = 5
DEFAULT_STEPS = 500
#: Keep-learning runs until Stop; this cap (minutes) only ends a run someone forgot about.
KEEP_LEARNING_MINUTES = 24 * 60
#: Budgets: key, label, (minimum, maximum, default, step), suffix.
BUDGETS = {
    "minutes": ("minutes", (1, 24 * 60, DEFAULT_MINUTES, 1), " min"),
    "steps": ("steps", (10, 10**6, DEFAULT_STEPS, 50), ""),
}


def start_from_value(key: str) -> str:
    """``FinetuneRequest.start_from`` of a start key: built-in name, version id or file path."""
    return key.split(":", 1)[1]


def _spin(low: float, high: float, value: float, step: float, tooltip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setDecimals(2)
    spin.setValue(value)
    spin.setToolTip(tooltip)
    return spin


def _int_spin(low: int, high: int, value: int, step: int, tooltip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setToolTip(tooltip)
    return spin


class FinetuneForm(QWidget):
    """Fine-tuning settings with good defaults.

    Signals:
        start_changed(str): the start-model key changed ("" when none).
        keep_learning_changed(bool): the "keep learning" box was toggled.
    """

    start_changed = Signal(str)
    keep_learning_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.start = QComboBox()
        self.start.setToolTip("The model to fine-tune: built-in, an earlier version, or a file")
        self.start.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.start.setMinimumContentsLength(14)
        self.budget_kind = QComboBox()
        for key, (text, _, _) in BUDGETS.items():
            self.budget_kind.addItem(text, key)
        self.budget_kind.setToolTip("Stop after this much time, or this many steps")
        self.budget = QSpinBox()
        self.budget.setToolTip("Training budget (the best model so far is kept at every moment)")
        self.lr = QLineEdit(f"{LR_FINETUNE:g}")
        self.lr.setValidator(QDoubleValidator(1e-7, 1.0, 8))
        self.lr.setToolTip("Learning rate: 1e-4 to fine-tune a trained model, 1e-3 from scratch")
        self.augment = QSlider(Qt.Orientation.Horizontal)
        self.augment.setRange(0, 100)
        self.augment.setValue(50)
        self.augment.setToolTip("Augmentation strength (flips, elastic, affine, intensity), 0–1")
        self.augment_label = QLabel("0.50")
        self.augment_label.setMinimumWidth(28)
        self.freeze = QCheckBox("Freeze encoder")
        self.freeze.setToolTip("Train only the decoder: faster, safer with very few corrections")
        self.advanced_section = CollapsibleForm("Advanced")
        self.advanced_toggle = self.advanced_section.toggle
        self.advanced = self.advanced_section.content
        self.ce = _spin(0, 10, 1.0, 0.1, "Weight of the (border-weighted) cross entropy")
        self.dice = _spin(0, 10, 0.0, 0.1, "Weight of the soft Dice loss")
        self.jaccard = _spin(0, 10, 0.0, 0.1, "Weight of the −log Jaccard loss")
        self.patch = _int_spin(32, 2048, 256, 32, "Side of the training patches (output window)")
        self.patch.setSuffix(" px")
        self.batch = _int_spin(1, 64, 4, 1, "Patches per step (lower it on a small GPU)")
        self.keep_learning = QCheckBox("Keep learning")
        self.keep_learning.setToolTip(
            "Continuous mode: corrections saved while training runs join the training data"
        )
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu"])
        self.device.setToolTip("Where the trainer runs (auto: the GPU when there is one)")
        cores = os.cpu_count() or 1
        self.threads = _int_spin(1, max(cores, 1), max(1, cores - 1), 1, "Trainer CPU threads")
        #: Checkpoint files loaded as start models (kept when the list is refilled).
        self.files: list[str] = []
        self._lr_edited = False
        #: The user picked the start model by hand: suggestions no longer change it.
        self.chosen_by_hand = False
        self._listed: tuple = ()
        self._previous = -1
        self._layout()
        self._connect()
        self._on_budget_kind()

    def _layout(self) -> None:
        budget = QHBoxLayout()
        budget.addWidget(self.budget, 2)
        budget.addWidget(self.budget_kind, 1)
        augment = QHBoxLayout()
        augment.addWidget(self.augment, 1)
        augment.addWidget(self.augment_label)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Start from", self.start)
        form.addRow("Budget", budget)
        form.addRow("Learning rate", self.lr)
        form.addRow("Augmentation", augment)
        form.addRow("", self.freeze)
        losses = QHBoxLayout()
        for name, spin in (("CE", self.ce), ("Dice", self.dice), ("Jacc.", self.jaccard)):
            losses.addWidget(QLabel(name))
            losses.addWidget(spin, 1)
        self.advanced_section.add_row("Loss weights", losses)
        self.advanced_section.add_row("Patch size", self.patch)
        self.advanced_section.add_row("Batch size", self.batch)
        self.advanced_section.add_row("", self.keep_learning)
        self.advanced_section.add_row("Device", self.device)
        self.advanced_section.add_row("Threads", self.threads)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.advanced_section)

    def _connect(self) -> None:
        self.budget_kind.currentIndexChanged.connect(self._on_budget_kind)
        self.augment.valueChanged.connect(self._on_augment)
        self.lr.textEdited.connect(self._on_lr_edited)
        self.start.activated.connect(self._on_start_activated)
        self.start.currentIndexChanged.connect(self._on_start_index)
        self.keep_learning.toggled.connect(self._on_keep_learning)

    def focus_chain(self) -> list[QWidget]:
        """The main controls in keyboard (Tab) order."""
        return [self.start, self.budget, self.budget_kind, self.lr, self.augment, self.freeze]

    def _on_budget_kind(self, *_: Any) -> None:
        _, (low, high, default, step), suffix = BUDGETS[self.budget_kind.currentData()]
        self.budget.setRange(low, high)
        self.budget.setSingleStep(step)
        self.budget.setSuffix(suffix)
        self.budget.setValue(default)

    def _on_keep_learning(self, on: bool) -> None:
        """Keep learning has no budget: it runs until Stop (capped at a day)."""
        for widget in (self.budget, self.budget_kind):
            widget.setEnabled(not on)
        self.budget.setToolTip(
            "Keep learning runs until you press Stop (at most 24 h)"
            if on
            else "Training budget (the best model so far is kept at every moment)"
        )
        self.keep_learning_changed.emit(on)

    def _on_augment(self, value: int) -> None:
        self.augment_label.setText(f"{value / 100:.2f}")

    def _on_lr_edited(self, _: str) -> None:
        self._lr_edited = True

    # ------------------------------------------------------------------ start models
    def set_start_models(self, builtins: list[str], versions: list[tuple[str, str]]) -> None:
        """List built-in names, ``(version id, label)`` pairs and loaded files; keeps the choice.

        With no earlier choice, the newest version is selected, else the first built-in; a
        version new since the last call is selected too (the next round starts from the
        latest model), unless a checkpoint file was chosen.
        """
        listed = (tuple(builtins), tuple(versions), tuple(self.files))
        if listed == self._listed:
            return  # unchanged: leave the combo alone (its popup may be open)
        known = {v for v, _ in self._listed[1]} if self._listed else set()
        self._listed = listed
        current = self.start_key()
        if versions and versions[-1][0] not in known and not current.startswith("file:"):
            current = f"version:{versions[-1][0]}"
        self.start.blockSignals(True)
        self.start.clear()
        for name in builtins:
            self.start.addItem(f"{name} (built-in)", f"builtin:{name}")
        if builtins and versions:
            self.start.insertSeparator(self.start.count())
        for version_id, label in reversed(versions):
            self.start.addItem(label, f"version:{version_id}")
        for path in self.files:
            self.start.addItem(Path(path).name, f"file:{path}")
            self.start.setItemData(self.start.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        if self.start.count():
            self.start.insertSeparator(self.start.count())
        self.start.addItem("Load…", LOAD_ITEM)
        index = self.start.findData(current) if current else -1
        if index < 0 and versions:
            index = self.start.findData(f"version:{versions[-1][0]}")
        if index < 0:
            index = 0 if self.start.itemData(0) != LOAD_ITEM else -1
        self.start.setCurrentIndex(index)
        self._previous = index
        self.start.blockSignals(False)
        if self.start_key() != current:
            self._on_start_index(index)

    def start_key(self) -> str:
        """The chosen start key (``builtin:…``, ``version:…``, ``file:…``), or ""."""
        data = self.start.currentData()
        return data if isinstance(data, str) and data and data != LOAD_ITEM else ""

    def select_file(self, path: str) -> None:
        """Add (when new) and select a checkpoint file as the start model."""
        key = f"file:{path}"
        if path not in self.files:
            self.files.append(path)
        index = self.start.findData(key)
        if index < 0:
            index = max(self.start.findData(LOAD_ITEM), 0)
            self.start.insertItem(index, Path(path).name, key)
            self.start.setItemData(index, path, Qt.ItemDataRole.ToolTipRole)
        self.start.setCurrentIndex(index)

    def suggest_start(self, key: str) -> bool:
        """Select ``key`` unless the user chose a start model by hand; True when selected."""
        if self.chosen_by_hand or not key:
            return False
        index = self.start.findData(key)
        if index < 0:
            return False
        if index != self.start.currentIndex():
            self.start.setCurrentIndex(index)
        return True

    def _on_start_activated(self, index: int) -> None:
        if self.start.itemData(index) != LOAD_ITEM:
            self.chosen_by_hand = True
            return
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Start from a checkpoint",
            str(Path.home()),
            "Models: checkpoints, bioimage.io packages (*.pt *.pth *.zip);;All (*)",
        )
        if path:
            self.chosen_by_hand = True
            self.select_file(path)
        else:
            self.start.setCurrentIndex(self._previous)

    def _on_start_index(self, index: int) -> None:
        if self.start.itemData(index) == LOAD_ITEM:
            return  # the dialog decides (activated)
        self._previous = index
        key = self.start_key()
        if not self._lr_edited:  # every start model here is a trained network
            self.lr.setText(f"{LR_FINETUNE:g}" if key else f"{LR_SCRATCH:g}")
        self.start_changed.emit(key)

    # ------------------------------------------------------------------ values
    def set_devices(self, devices: list[str]) -> None:
        """Offer ``auto`` and ``devices`` (keeps the current choice when still present)."""
        current = self.device.currentText()
        self.device.clear()
        self.device.addItems(["auto", *[d for d in devices if d != "auto"]])
        self.device.setCurrentIndex(max(self.device.findText(current), 0))

    def learning_rate(self) -> float:
        """The learning rate typed (the fine-tuning default when the text is not a number)."""
        try:
            value = float(self.lr.text())
        except ValueError:
            return LR_FINETUNE
        return value if value > 0 else LR_FINETUNE

    def train_settings(self) -> dict:
        """``TrainConfig`` fields chosen in the form (budget, optimiser, loss, augmentation)."""
        kind = self.budget_kind.currentData()
        patch = int(self.patch.value())
        if self.keep_learning.isChecked():  # until Stop: no budget, so no decay to follow
            budget = {"steps": None, "minutes": float(KEEP_LEARNING_MINUTES)}
            budget["schedule"] = "constant"
        else:
            budget = {
                "steps": int(self.budget.value()) if kind == "steps" else None,
                "minutes": float(self.budget.value()) if kind == "minutes" else None,
            }
        return {
            **budget,
            "lr": self.learning_rate(),
            "batch_size": int(self.batch.value()),
            "patch_shape": (patch, patch),
            "freeze_encoder": self.freeze.isChecked(),
            "loss": {
                "ce": float(self.ce.value()),
                "dice": float(self.dice.value()),
                "jaccard": float(self.jaccard.value()),
            },
            "augment": {"strength": self.augment.value() / 100.0},
            "device": self.device.currentText() or "auto",
            "num_threads": int(self.threads.value()),
        }
