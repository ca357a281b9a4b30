"""Start, Stop and the trainer's events of the fine-tune panel (moved out of ``finetune_panel``):
a mixin of :class:`~napari_unet._widgets.finetune_panel.FinetunePanel`, which provides the
``client``, ``form``, ``session``, ``summary``, ``plot``, ``scores``, the status, message and
timing lines and the clock.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from napari_unet._widgets import finetune_request as R
from napari_unet._widgets.version_compare import held_back_text
from napari_unet.core.errors import UserInputError

logger = logging.getLogger("napari_unet._widgets.finetune_panel")  # its messages, as before

NO_SESSION = (
    "No session: create one in the U-Net Segment dock (Session → Create session) and mark a "
    "slice reviewed to train."
)
NOTHING_REVIEWED = (
    "Nothing reviewed yet: correct a prediction in the U-Net Segment dock and mark the slice "
    "reviewed (Correct → Slice), then Start."
)


class TrainingControl:
    """Start and stop training, and show what the trainer reports."""

    def build_request(self) -> Any:
        """The ``FinetuneRequest`` of the current settings (raises ``UserInputError``)."""
        if self.session is None:
            raise UserInputError(NO_SESSION)
        if self.summary.empty:
            raise UserInputError(NOTHING_REVIEWED)
        key = self.form.start_key()
        return R.build_request(self.form, self.session, key, self._tasks.get(key))

    def start(self) -> None:
        """Start training with the current settings (no-op while training runs)."""
        if self.client.running:
            return
        self.message.clear_text()
        self.refresh()
        try:
            request = self.build_request()
            self.client.start(request)
        except UserInputError as err:
            self.show_error(str(err))
            return
        self.plot.clear()
        self.scores.reset()
        self._skipped = None  # the run's last VersionSkipped
        self._started_at, self._last_step = time.monotonic(), None
        self.status.setText("Starting the trainer…")
        self._clock.start()
        self._show_timing()

    def stop(self) -> None:
        """Ask the trainer to finish at the next step (terminated if it takes over 2 s)."""
        if self.client.running:
            self.status.setText("Stopping…")
            self.client.stop()

    def _on_running(self, running: bool) -> None:
        if not running:
            self._clock.stop()
            self._show_timing()
        self._show_state()

    def on_step(self, event: Any) -> None:
        """A training step (``StepEvent``): plot it, update the time estimate."""
        self.plot.add_step(event.step, event.loss)
        self._last_step, self._last_step_at = event, time.monotonic()
        if self.status.text().startswith("Starting"):
            self.status.setText("Training…")
        self._show_timing()

    def on_validation(self, event: Any) -> None:
        """A validation (``ValidationEvent``): plot its score."""
        score = event.metrics.get("score")
        if score is not None:
            self.plot.add_validation(event.step, score)
            self.status.setText(R.validation_text(event, self.scores))

    def on_version(self, event: Any) -> None:
        """A version was published: mark it, announce it to the Segment dock."""
        self.plot.add_version(event.step, event.version_id)
        self.scores.published = event.version_id
        self.status.setText(R.version_text(event) + held_back_text(event.metrics))
        self.loop.add_version(event.version_id)

    def on_skipped(self, event: Any) -> None:
        """A best model was not published (``VersionSkipped``): why, with both scores."""
        kept = self.scores.published or "the start model"
        message = event.message[:1].upper() + event.message[1:]
        self.status.setText(f"Step {event.step}: {message}; {kept} stays.")
        self._skipped = event

    def on_pool_changed(self, event: Any) -> None:
        """The trainer's pool (``PoolChanged``): say what it trains on."""
        if event.added:  # the trainer's held-back tiles changed: its start score is void
            self.scores.start = None
        self.status.setText(R.pool_text(event))
        flipped = getattr(event, "flipped", "")
        if flipped and not event.added:  # once per run: the status line moves on
            from napari.utils.notifications import show_info

            show_info(flipped[:1].upper() + flipped[1:] + ".")

    def on_finished(self, event: Any) -> None:
        """Training ended normally (``TrainerFinished``); without a new version, the last
        refusal says why (the held-back scores, not the pixel validation curve)."""
        text = R.finished_text(event, self.scores)
        skipped = getattr(self, "_skipped", None)
        if skipped is not None and not event.best_version and event.steps:
            head = text.split(": no version published")[0]
            why = skipped.message.removeprefix("version not published: ")
            kept = self.scores.published or "the start model"
            text = f"{head}: no version published (step {skipped.step}: {why}); {kept} stays."
        self.status.setText(text)

    def on_failed(self, message: str) -> None:
        """Training failed: a notification and the red line (never a traceback dialog)."""
        self.status.setText("Training stopped by an error.")
        self.show_error(R.with_image_names(message, self.session))

    def show_error(self, text: str) -> None:
        """Show ``text`` in the red line and as a napari notification."""
        from napari.utils.notifications import show_error

        logger.warning("fine-tune: %s", text)
        self.message.show_text(text)
        show_error(text)

    def _show_timing(self) -> None:
        request = getattr(self.client, "request", None)
        running = self.client.running
        args = (self._started_at, self._last_step, self._last_step_at, request)
        self.timing.setText(R.timing_text(*args, running=running))
