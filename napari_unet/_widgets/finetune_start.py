"""The Fine-tune dock's start model: the built-in pre-selected for the labels, the learning rate,
and the one line under the settings that says which start and why.

:class:`StartAdvisor` keeps what the panel learns (the built-in it pre-selected, the models made
in "New model", each start model's channels once read) and applies
:mod:`napari_unet._widgets.logic.start_choice` to the form.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from qtpy.QtWidgets import QLabel

from napari_unet._widgets.finetune_form import FinetuneForm
from napari_unet._widgets.logic.start_choice import (
    builtin_for,
    image_channels,
    labels_task,
    start_choice,
)
from napari_unet.core.errors import UserInputError

logger = logging.getLogger(__name__)


class StartAdvisor:
    """Pre-selects the start model and sets the rate and the line for the chosen one.

    Args:
        form: the fine-tune settings. line: the label that shows the line.
    """

    def __init__(self, form: FinetuneForm, line: QLabel) -> None:
        self.form, self.line = form, line
        self.suggested = ""  # the built-in pre-selected for the labels
        self.from_layer = False  # the start was suggested by the labels being corrected
        self.new_models: set[str] = set()  # keys of untrained models made in the dock
        self.channels: dict[str, int] = {}  # start key -> its input channels
        self.applied: tuple[str, float] | None = None  # the (start key, rate) last set

    def new_model(self, path: str) -> None:
        """A model made in "New model" (before it is selected)."""
        self.new_models.add(f"file:{path}")

    def model_channels(self, key: str, channels: int) -> None:
        """The input channels of a start model, once read."""
        self.channels[key] = int(channels)

    def suggest_builtin(self, session: Any) -> None:
        """Select the built-in for the labels' task when the user has no model of their own
        (no version, no file, nothing picked by hand or suggested by the labels layer)."""
        keys = [self.form.start.itemData(i) for i in range(self.form.start.count())]
        own = [k for k in keys if isinstance(k, str) and k.startswith(("version:", "file:"))]
        if session is None or own or self.from_layer or self.form.chosen_by_hand:
            return
        builtins = [k.split(":", 1)[1] for k in keys if str(k).startswith("builtin:")]
        key = builtin_for(labels_task(_images(session)), builtins)
        if key and self.form.suggest_start(key):
            self.suggested = key

    def show(self, session: Any) -> None:
        """Set the learning rate (unless typed) and the line for the chosen start model."""
        key = self.form.start_key()
        if not key:
            self.line.setText("")
            return
        images = _images(session)
        choice = start_choice(
            key,
            self.form.start.currentText(),
            task=labels_task(images),
            suggested=key == self.suggested,
            model_channels=self.channels.get(key),
            channels=image_channels(images),
            new=key in self.new_models,
        )
        if self.applied != (key, choice.lr):  # a rate set since (by hand too) stays
            self.form.set_rate(choice.lr)
            self.applied = (key, choice.lr)
        line, used = choice.line, self.form.learning_rate()
        if not math.isclose(used, choice.lr, rel_tol=1e-6):  # typed by hand: say which one runs
            line += f" You set {used:g}, which is used."
        self.line.setText(line)


def _images(session: Any) -> list[Any]:
    if session is None:
        return []
    try:
        return list(session.images())
    except (UserInputError, OSError) as err:
        logger.warning("cannot list the session's images: %s", err)
        return []
