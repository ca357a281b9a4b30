"""The predict panel of the "U-Net Segment" dock widget.

Pick an image layer, a model, a device, the output and the scope, press Run: a worker thread
(:func:`~napari_unet._widgets.predict_worker.run_prediction`) loads the model, predicts tile by
tile and makes labels, yielding progress; layers change only here, on the main thread, when it
returns. Re-running updates the same tagged labels layer around the user's work: the pixels and
objects the user edited and the reviewed regions are kept (one undoable step of the layer's
history) unless "Overwrite corrected slices" is ticked. With a session open, the model
list also offers its fine-tuned versions, and "Follow the newest model version" (:mod:`hot_swap`)
switches to each new one and refreshes the unreviewed slices in the background.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_unet._widgets import layers as L
from napari_unet._widgets import predict_job as J
from napari_unet._widgets._workers import error_message
from napari_unet._widgets.hot_swap import HotSwap
from napari_unet._widgets.image_list import ImageList
from napari_unet._widgets.label_writes import (
    MergeInput,
)
from napari_unet._widgets.loop_state import LoopState
from napari_unet._widgets.measurements import MeasureButtons
from napari_unet._widgets.model_choice import propose_for
from napari_unet._widgets.output import OutputTarget, OutputWriter
from napari_unet._widgets.predict_form import PredictForm
from napari_unet._widgets.predict_worker import (
    PostprocessChoice,
)
from napari_unet._widgets.progress_view import MessageLine, ProgressView
from napari_unet._widgets.segment_run import RunActions
from napari_unet.core.errors import AxesError, UserInputError

if TYPE_CHECKING:
    import napari

    from napari_unet.core.inference.config import PredictConfig

logger = logging.getLogger(__name__)

RUN_SHORTCUT = "Ctrl+Return"
RUN_HINT = "Ctrl+Enter"


class SegmentPanel(RunActions, QWidget):
    """Predict with a U-Net into an editable Labels layer, without freezing napari.

    Args:
        viewer: the napari viewer.
        parent: the Qt parent.
    """

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.form = PredictForm()
        self.writer = OutputWriter(viewer)
        self.run_button = QPushButton(f"Run ({RUN_HINT})")
        self.run_button.setToolTip(f"Predict with the chosen model ({RUN_HINT})")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current batch of tiles; nothing is written")
        self.cancel_button.setEnabled(False)
        self.progress = ProgressView()
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.message = MessageLine()
        self.loop = LoopState.for_viewer(viewer)
        self._run_key = (id(self), "run")
        self._info_key = (id(self), "model info")
        self.model_dims: dict[str, int] = {}  # checkpoint -> 2 or 3 (spatial dims), once read
        #: Where the running (or last) prediction writes, and how it ended.
        self._target: OutputTarget | None = None
        self._merge_source: MergeInput | None = None  # copies the worker merges around
        self._outcome: str | None = None
        self.num_threads: int | None = None  # torch threads in the worker (None: cores - 1)
        #: The user picked a model in the list: images no longer propose theirs.
        self.model_by_hand = False
        self._proposed_for: Any = None
        self.images = ImageList(viewer, self.form.image)
        self._build()
        self._connect()
        self.hot_swap = HotSwap(self, parent=self)
        self.layout().insertWidget(2, self.hot_swap.follow)
        self._on_image_changed()
        self._on_model_changed(self.form.model.checkpoint() or "")

    def _build(self) -> None:
        title = QLabel("<b>Predict</b>")
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(6)
        layout.addWidget(title)
        layout.addWidget(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.message)
        layout.addWidget(MeasureButtons(self.viewer, self.image_layer))
        order = [*self.form.focus_chain(), self.run_button, self.cancel_button]
        for first, second in itertools.pairwise([*order, self.form.advanced_toggle]):
            QWidget.setTabOrder(first, second)

    def _connect(self) -> None:
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        shortcut = QShortcut(QKeySequence(RUN_SHORTCUT), self)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        shortcut.activated.connect(self.run)
        self.images.changed.connect(self._on_image_changed)
        self.form.model.model_changed.connect(self._on_model_changed)
        self.form.model.activated.connect(self._on_model_activated)

    # ----------------------------------------------------------------- layer list and axes
    def refresh_images(self, *_: Any) -> None:
        """Refill the image list from the viewer's layers."""
        self.images.refresh()

    def image_layer(self) -> Any:
        """The chosen layer (checked before use), or None."""
        return self.images.layer()

    # ----------------------------------------------------------------- PredictionTarget
    @property
    def picker(self) -> Any:
        """The model picker."""
        return self.form.model

    def chosen_axes(self) -> str | None:
        """The axes chosen by hand, or None."""
        return self.form.chosen_axes()

    def predict_settings(self) -> PredictConfig:
        """The ``PredictConfig`` chosen in the form."""
        return self.form.predict_settings()

    def postprocess_settings(self) -> PostprocessChoice:
        """The post-processing chosen in the form (over the model's stored defaults)."""
        return self.form.postprocess_settings()

    def _on_image_changed(self, *_: Any) -> None:
        self.clear_message()
        layer = self.image_layer()
        choices: tuple[str, ...] = ()
        if layer is not None and L.n_values(layer):
            try:
                L.layer_axes(layer)
            except AxesError:
                choices = L.axes_choices(np.ndim(layer.data))
                if choices:
                    self.show_message(
                        f"The axes of '{layer.name}' (shape {tuple(np.shape(layer.data))}) "
                        "cannot be told from its shape: choose them in the Axes list.",
                        source="axes",
                    )
        self.form.show_axes(choices)
        if layer is not None and layer is not self._proposed_for:
            self._proposed_for = layer
            self.propose_model(layer)

    def _on_model_activated(self, *_: Any) -> None:
        self.model_by_hand = True

    def propose_model(self, layer: Any) -> str | None:
        """Pick the built-in model that fits ``layer`` and say why; returns its name.

        Nothing changes once the user picked a model by hand, or while a session version or a
        checkpoint file is chosen.
        """
        choice, changed = propose_for(self.form.model, layer, by_hand=self.model_by_hand)
        if choice is None:
            return None
        if changed or self.status.text() == "Ready.":  # never hide the result of a run
            self.status.setText(
                f"Model {choice.name} chosen for '{layer.name}' ({choice.reason}); pick another "
                "in the Model list if it does not fit."
            )
        logger.info("proposed %s for %s: %s", choice.name, layer.name, choice.reason)
        return choice.name

    # ----------------------------------------------------------------- model defaults
    @property
    def worker(self) -> Any:
        """The running prediction's worker, or None."""
        return self.loop.jobs.worker(self._run_key)

    def _on_model_changed(self, path: str) -> None:
        if " chosen for '" in self.status.text():  # a proposal no longer true (set again after)
            self.status.setText("Ready.")
        if not path:
            return
        self.loop.jobs.start(
            self._info_key,
            J.model_info,
            path,
            what="Reading the model",
            on_done=self._on_model_info,
            on_error=lambda text: self._report(text, source="model"),
        )

    def _on_model_info(self, result: tuple[str, Any, list[str]]) -> None:
        path, info, devices = result
        if path != self.form.model.checkpoint():
            return  # an answer about a model chosen before the current one
        self.form.set_devices(devices)
        if isinstance(info, UserInputError):
            self._on_error(info, source="model")
            return
        self.model_context = {path: info.context_slices}  # 2.5-D: neighbours (segment_run)
        self.model_dims[path] = int(info.spatial_dims)
        self.form.set_model_defaults(
            task=info.task,
            tile_shape=info.tile_shape,
            overlap=info.overlap,
            postprocess=info.postprocess_config(),
        )
        self.form.show_z_flip(
            context_slices=int(info.context_slices or 0), spatial_dims=int(info.spatial_dims)
        )
        self.clear_message("model")

    def show_message(self, text: str, source: str = "run") -> None:
        """Show ``text`` in the red message line (``source``: run, axes or model)."""
        self.message.show_text(text, source)

    def clear_message(self, source: str | None = None) -> None:
        """Hide the message line (only if it came from ``source``, when given)."""
        self.message.clear_text(source)

    def show_status(self, text: str) -> None:
        """Show ``text`` in the status line."""
        self.status.setText(text)

    def _on_error(self, error: BaseException, source: str = "run") -> None:
        self._report(error_message(error, "Prediction"), source)

    def _report(self, text: str, source: str = "run") -> None:
        from napari.utils.notifications import show_error

        self.show_message(text, source=source)
        if source == "run":
            self.status.setText("Stopped by an error; the layers were left as they were.")
        show_error(text)

    def shutdown(self) -> None:
        """Stop a running prediction and background re-prediction (the window is closing)."""
        self.cancel()
        self.hot_swap.repredictor.cancel()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """Stop a running prediction (and background re-prediction) when the widget closes."""
        self.shutdown()
        super().closeEvent(event)
