"""The controls of the fine-tune panel: start model, budget, learning rate, augmentation...

:class:`FinetuneForm` only holds and reads values. The start model and the budget are built by
hand (a list that follows the session; one number for two exclusive fields); every other row
is generated (:mod:`~napari_unet._widgets.config_form`) from the fields of ``TrainConfig``,
``LossConfig``, ``AugmentConfig`` and ``FinetuneRequest`` declared with
:func:`~napari_unet.core.config.setting`. ``train_settings`` gives a ``TrainConfig`` and
``request_settings`` a ``FinetuneRequest``; the
:class:`~napari_unet._widgets.finetune_panel.FinetunePanel` wires it to the session and the
trainer. Start models are keyed ``"builtin:<name>"``, ``"version:<id>"`` or ``"file:<path>"``;
:func:`start_from_value` turns a key into ``FinetuneRequest.start_from``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_unet._widgets.collapsible import CollapsibleForm
from napari_unet._widgets.config_form import ConfigWidgets, add_rows
from napari_unet.core.config import LR_FINETUNE, LR_SCRATCH
from napari_unet.core.training.config import AugmentConfig, LossConfig, TrainConfig
from napari_unet.trainer.events import FinetuneRequest, default_num_threads

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
        self.train_fields = ConfigWidgets(TrainConfig, {"lr": LR_FINETUNE})
        self.loss_fields = ConfigWidgets(LossConfig)
        self.augment_fields = ConfigWidgets(AugmentConfig, {"strength": 0.5})
        self.request_fields = ConfigWidgets(FinetuneRequest, {"num_threads": default_num_threads()})
        self.groups = (
            self.train_fields,
            self.loss_fields,
            self.augment_fields,
            self.request_fields,
        )
        self.fields = {n: f for g in self.groups for n, f in g.fields.items()}
        self.fields["device"].widget.choices = ["auto", "cpu"]
        self.fields["num_threads"].widget.max = max(os.cpu_count() or 1, 1)
        native = {name: field.native for name, field in self.fields.items()}
        self.lr, self.augment = native["lr"], native["strength"]
        self.freeze = native["freeze_encoder"]
        self.ce, self.dice, self.jaccard = native["ce"], native["dice"], native["jaccard"]
        self.patch, self.batch = native["patch_shape"], native["batch_size"]
        self.keep_learning, self.device = native["keep_learning"], native["device"]
        self.threads = native["num_threads"]
        self.advanced_section = CollapsibleForm("Advanced")
        self.advanced_toggle = self.advanced_section.toggle
        self.advanced = self.advanced_section.content
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
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Start from", self.start)
        form.addRow("Budget", budget)
        add_rows(form, self.advanced_section, self.groups)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.advanced_section)

    def _connect(self) -> None:
        self.budget_kind.currentIndexChanged.connect(self._on_budget_kind)
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

    def set_rate(self, lr: float) -> None:
        """Show ``lr`` as the learning rate unless the user typed one."""
        if not self._lr_edited:
            self.lr.setText(f"{lr:g}")

    def use_scratch_rate(self, *_: object) -> None:
        """An untrained start model (the "New model" section): the from-scratch learning rate."""
        self.set_rate(LR_SCRATCH)

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
        self.fields["device"].widget.choices = ["auto", *[d for d in devices if d != "auto"]]

    def learning_rate(self) -> float:
        """The learning rate typed (the fine-tuning default when the text is not a number)."""
        return float(self.fields["lr"].value)

    def loss_total(self) -> float:
        """The sum of the loss weights (0: no loss to train with)."""
        return float(sum(self.loss_fields.values().values()))

    def train_settings(self, base: TrainConfig | None = None) -> TrainConfig:
        """``base`` with the form's budget, optimiser, loss and augmentation settings.

        Raises:
            ValueError: a setting the config refuses (all loss weights 0...).
        """
        base = base or TrainConfig()
        if self.keep_learning.isChecked():  # until Stop: no budget, so no decay to follow
            minutes = float(KEEP_LEARNING_MINUTES)
            budget = base.replace(steps=None, minutes=minutes, schedule="constant")
        elif self.budget_kind.currentData() == "steps":
            budget = base.replace(steps=int(self.budget.value()), minutes=None)
        else:
            budget = base.replace(steps=None, minutes=float(self.budget.value()))
        return self.train_fields.apply(budget).replace(
            loss=self.loss_fields.apply(budget.loss),
            augment=self.augment_fields.apply(budget.augment),
        )

    def request_settings(self, request: FinetuneRequest) -> FinetuneRequest:
        """``request`` with the form's keep-learning, device and threads (the trainer's
        ``TrainConfig`` gets the same device and threads)."""
        request = self.request_fields.apply(request)
        train = request.train_config.replace(device=request.device, num_threads=request.num_threads)
        return request.replace(train_config=train)
