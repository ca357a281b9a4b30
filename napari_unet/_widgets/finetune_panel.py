"""The fine-tune panel: what the model will learn from, the settings, Start/Stop, the live plot.

Training data is every edited or reviewed slice of the session open in the viewer's
:class:`~napari_unet._widgets.loop_state.LoopState` — nothing to export. The summary
(:mod:`~napari_unet._widgets.data_summary`) refreshes a moment after each saved review. Start
builds a :class:`~napari_unet.trainer.events.FinetuneRequest` and hands it to a
:class:`~napari_unet._widgets.trainer_client.TrainerClient` (a separate process; its events come
back as Qt signals on the main thread). Each version it publishes is announced on the loop
state, so the Segment dock can switch to it. In "keep learning" mode, slices reviewed while it
runs are sent to the trainer.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_unet._widgets import finetune_request as R
from napari_unet._widgets import validation_pins as P
from napari_unet._widgets._workers import guard
from napari_unet._widgets.data_summary import DataSummary, SummaryCache
from napari_unet._widgets.finetune_control import (
    NO_SESSION,
    NOTHING_REVIEWED,
    TrainingControl,
)
from napari_unet._widgets.finetune_form import FinetuneForm
from napari_unet._widgets.finetune_start import StartAdvisor
from napari_unet._widgets.loop_state import LoopState
from napari_unet._widgets.new_model_section import NewModelSection
from napari_unet._widgets.progress_view import MessageLine
from napari_unet._widgets.training_plot import TrainingPlot
from napari_unet.core.errors import UserInputError

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

START_SHORTCUT, START_HINT = "Ctrl+Return", "Ctrl+Enter"
STOP_SHORTCUT, STOP_HINT = "Ctrl+Shift+Return", "Ctrl+Shift+Enter"
REFRESH_MS = 400
STOP_TIP = "Finish at the next step; the best model is already saved"
PIN_RECT_TIP = "Draw rectangles in a 'validation regions' layer, then click again to pin them"


class FinetunePanel(TrainingControl, QWidget):
    """Fine-tune the model on the session's corrections in a background process.

    Args:
        viewer: the napari viewer. parent: the Qt parent.
        client: the trainer client (default: a new ``TrainerClient``; tests pass fakes).
    """

    def __init__(
        self, viewer: napari.Viewer, parent: QWidget | None = None, *, client: Any = None
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.loop = LoopState.for_viewer(viewer)
        self.form = FinetuneForm()
        self.new_model = NewModelSection(viewer)  # its models become the start model
        self.plot = TrainingPlot(theme=getattr(viewer, "theme", None))
        self.cache = SummaryCache()
        self.summary = DataSummary()
        self.guidance = QLabel(NO_SESSION, wordWrap=True)
        self.data_label = QLabel("", wordWrap=True)
        self.start_line = QLabel("", wordWrap=True)  # which start model and why, in one line
        self.advisor = StartAdvisor(self.form, self.start_line)
        self.pin_slice_button = QPushButton("Pin slice", toolTip="Hold back the shown slice")
        self.pin_rect_button = QPushButton("Pin rectangles…", toolTip=PIN_RECT_TIP)
        self.start_button = QPushButton()
        self.stop_button = QPushButton(f"Stop ({STOP_HINT})", enabled=False, toolTip=STOP_TIP)
        self.status = QLabel("Ready.", wordWrap=True)
        self.timing = QLabel("", wordWrap=True)
        self.message = MessageLine()
        if client is None:
            from napari_unet._widgets.trainer_client import TrainerClient

            client = TrainerClient(self, viewer=viewer)
        self.client = client
        self.scores = R.RunScores()
        self._started_at, self._last_step, self._last_step_at = None, None, 0.0
        self._tasks: dict[str, str] = {}  # start key -> task of that model
        self._dims: dict[str, int] = {}  # start key -> 2, or 3: the summary splits volumes
        self._info_keys: dict[str, str] = {}  # checkpoint path asked about -> start key
        self._refresh_timer = QTimer(self, singleShot=True, interval=REFRESH_MS)
        self._refresh_timer.timeout.connect(self.refresh)
        self._clock = QTimer(self, interval=1000)
        self._clock.timeout.connect(self._show_timing)
        self._build()
        self._connect()
        self._on_keep_learning(False)
        self.refresh()
        self._suggest_start(self.loop.labels_layer)

    def _build(self) -> None:
        pins = QHBoxLayout()
        pins.addWidget(QLabel("Validation"))
        pins.addWidget(self.pin_slice_button)
        pins.addWidget(self.pin_rect_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 2)
        buttons.addWidget(self.stop_button, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(6)
        layout.addWidget(QLabel("<b>Fine-tune</b>"))
        for widget in (self.guidance, self.data_label):
            layout.addWidget(widget)
        layout.addLayout(pins)
        layout.addWidget(self.form)
        layout.addWidget(self.start_line)
        layout.addWidget(self.new_model)
        layout.addLayout(buttons)
        for widget in (self.status, self.timing, self.plot, self.message):
            layout.addWidget(widget)
        self.guidance.setStyleSheet("font-style: italic;")
        order = [*self.form.focus_chain(), self.start_button, self.stop_button]
        for first, second in itertools.pairwise([*order, self.form.advanced_toggle]):
            QWidget.setTabOrder(first, second)

    def _connect(self) -> None:
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        for keys, slot in ((START_SHORTCUT, self.start), (STOP_SHORTCUT, self.stop)):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
        # bound methods only (no lambdas): the loop state lives as long as the viewer, and a
        # closure over the panel would keep both alive
        self.pin_slice_button.clicked.connect(self._on_pin_slice)
        self.pin_rect_button.clicked.connect(self._on_pin_rectangles)
        self.form.keep_learning_changed.connect(self._on_keep_learning)
        self.form.start_changed.connect(self._on_start_changed)
        self.form.lr.textEdited.connect(lambda _: self.advisor.show(self.session))
        self.new_model.created.connect(self.advisor.new_model)  # before it is selected
        self.new_model.created.connect(self.form.select_file)
        self.new_model.created.connect(self.form.use_scratch_rate)  # after select_file's rate
        self.loop.session_changed.connect(self._on_session_changed)
        self.loop.reviewed.connect(self._on_reviewed)
        self.loop.version_added.connect(self.schedule_refresh)
        self.loop.labels_layer_changed.connect(self._suggest_start)
        self.loop.labels_predicted.connect(self._suggest_start)
        self.viewer.events.theme.connect(self._on_theme)
        client = self.client
        client.step.connect(self.on_step)
        client.validation.connect(self.on_validation)
        client.version.connect(self.on_version)
        client.finished.connect(self.on_finished)
        client.failed.connect(self.on_failed)
        client.running_changed.connect(self._on_running)
        for name, slot in (("pool_changed", self.on_pool_changed), ("skipped", self.on_skipped)):
            if hasattr(client, name):  # a stand-in client may lack them
                getattr(client, name).connect(slot)

    def _on_theme(self, event: Any = None) -> None:
        self.plot.set_theme(self.viewer.theme)

    # ------------------------------------------------------------------ data summary
    @property
    def session(self) -> Any:
        """The session open in this viewer, or None."""
        return self.loop.session

    def schedule_refresh(self, *_: Any) -> None:
        """Refresh the summary and the start models in a moment (coalesces bursts of saves)."""
        self._refresh_timer.start()

    def _on_session_changed(self, session: Any) -> None:
        self.cache.clear()
        self.refresh()

    def _on_reviewed(self, image_id: str, slices: list) -> None:
        self.schedule_refresh()
        request = getattr(self.client, "request", None)
        if self.client.running and request is not None and request.keep_learning:
            self.client.send_corrections([(image_id, int(s)) for s in slices])

    def refresh(self) -> None:
        """Recount the training data and relist the start models (cheap: cached per slice)."""
        session = self.session
        self.summary = DataSummary()
        if session is not None:
            try:
                self.summary = self.cache.summary(
                    session, fraction=R.VAL_FRACTION, tile=R.VAL_TILE, seed=R.VAL_SEED,
                    volumetric=self._dims.get(self.form.start_key()) == 3,
                )  # fmt: skip
            except (UserInputError, OSError) as err:
                self.show_error(f"Cannot read the session's corrections: {err}")
        self._show_state()
        R.list_start_models(self.form, session)
        self.advisor.suggest_builtin(session)
        self.advisor.show(session)

    def _show_state(self) -> None:
        session, running = self.session, self.client.running
        guidance = NO_SESSION if session is None else NOTHING_REVIEWED if self.summary.empty else ""
        self.guidance.setText(guidance)
        self.guidance.setVisible(bool(guidance))
        self.data_label.setText("\n".join(self.summary.lines()) if session is not None else "")
        self.data_label.setVisible(session is not None and not self.summary.empty)
        self.start_button.setEnabled(not guidance and not running)
        self.stop_button.setEnabled(running)
        for button in (self.pin_slice_button, self.pin_rect_button):
            button.setEnabled(session is not None)

    def _on_keep_learning(self, on: bool) -> None:
        text = "Start keep-learning" if on else "Start training"
        self.start_button.setText(f"{text} ({START_HINT})")
        self.start_button.setToolTip(
            "Train until stopped; corrections you save meanwhile join the training data"
            if on
            else "Train for the budget; each better model becomes a new version"
        )

    def _suggest_start(self, layer: Any = None) -> None:
        """Start from the model that made the labels being corrected (unless picked by hand)."""
        from napari_unet._widgets.layers import plugin_tag

        tag = plugin_tag(layer) if layer is not None else None
        if not tag or tag.get("role") != "labels":
            return
        key = R.start_key_of_model(tag.get("model"), self.session)
        if self.form.suggest_start(key):
            self.advisor.from_layer = True
            logger.info("fine-tune starts from %s (the model of '%s')", key, layer.name)

    def _on_start_changed(self, key: str) -> None:
        self.advisor.show(self.session)
        self.schedule_refresh()  # a 3-D start holds back volumes
        path = R.start_path(key, self.session)
        if not path or key in self._tasks:
            return
        from napari_unet._widgets.predict_job import model_info

        self._info_keys[str(path)] = key
        self.loop.jobs.start(
            (id(self), "model info", str(path)),
            model_info,
            str(path),
            what="Reading the start model",
            on_done=self._on_model_info,
            on_error=self.show_error,
        )

    def _on_model_info(self, result: tuple) -> None:
        path, info, devices = result
        self.form.set_devices(devices)
        key = self._info_keys.pop(path, "")
        if isinstance(info, UserInputError):
            if key == self.form.start_key():
                self.show_error(str(info))
        else:
            self._tasks[key], self._dims[key] = info.task, info.spatial_dims
            self.schedule_refresh()  # a 3-D start holds back volumes (the data summary)
            # per slice: a 2.5-D model's input is each slice with its neighbours, not adapted
            per_slice = info.in_channels // (2 * int(info.context_slices or 0) + 1)
            self.advisor.model_channels(key, per_slice)
            if info.untrained:  # a new model's file, loaded by hand: it learns from scratch
                self.advisor.new_models.add(key)
            if key == self.form.start_key():
                self.advisor.show(self.session)

    # ------------------------------------------------------------------ pins
    def _guard(self, action: Any) -> Any:
        return guard(action, self.show_error)

    def _on_pin_slice(self) -> None:
        self._guard(self.pin_slice)

    def _on_pin_rectangles(self) -> None:
        self._guard(self.pin_rectangles)

    def pin_slice(self) -> None:
        """Hold back the slice on screen for validation."""
        if self.session is None:
            raise UserInputError(NO_SESSION)
        image_id, index = P.pin_current_slice(self.viewer, self.session)
        self.status.setText(
            f"Slice {index} of {R.image_name(self.session, image_id)} is now validation data."
        )
        self.refresh()

    def pin_rectangles(self) -> None:
        """Pin the drawn rectangles (or open the regions layer to draw them)."""
        if self.session is None:
            raise UserInputError(NO_SESSION)
        n = P.pin_drawn_rectangles(self.viewer, self.session)
        if not n:
            self.status.setText("Draw rectangles, then click 'Pin rectangles…' again.")
            return
        self.status.setText(f"{n} rectangle(s) pinned as validation data.")
        self.refresh()
