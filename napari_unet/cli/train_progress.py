"""What ``train`` shows and keeps while it runs: a tqdm bar or progress lines, and a history CSV.

:class:`TrainMonitor` takes the events of :func:`napari_unet.core.training.loop.iter_train`:

- on a terminal, a tqdm bar over the step (or minute) budget with the loss and the last
  validation score; elsewhere a progress line every ~10 s (or every ``--log-every`` steps), e.g.
  ``step 200/1000  loss 0.4100  lr 1.0e-03  2:10 left``;
- one line per validation, e.g. ``step 200/1000  val 0.8200 (best so far; start model 0.8900)``:
  "best" is this run's best, and where a start model was scored on the same tiles its score is
  named beside it, so a fine-tune that is still worse than where it started says so;
- ``<out>.history.csv`` (columns ``step, seconds, lr, train_loss, val_score, val_loss, ...``),
  one row per ``log_every`` steps (the mean loss of those steps) plus the validation metrics on
  validation steps, rewritten atomically at every validation, every ~10 s and at the end, so a
  killed run keeps its history up to its last ``latest.pt``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from napari_unet.cli import _progress
from napari_unet.cli._progress import LINE_INTERVAL_S, PROGRESS, Every, bar, clock_text

#: The first columns of the history CSV; ``val_<metric>`` columns follow per validation metric.
HISTORY_COLUMNS: tuple[str, ...] = ("step", "seconds", "lr", "train_loss")

#: Steps per history row when ``--log-every`` is not given.
HISTORY_EVERY = 10


def validation_note(score: float, improved: bool, start_score: float | None) -> str:
    """`` (best)``, `` (best so far; start model 0.8900)`` or ``""`` for a validation line.

    "best" compares with this run's earlier validations; ``start_score`` (the start model on the
    same tiles) is named beside it, so "best" never reads as "better than the start model".
    """
    if not improved:
        return ""
    if start_score is None:
        return " (best)"
    if score > start_score:
        return f" (best; above the start model's {start_score:.4f})"
    return f" (best so far; start model {start_score:.4f})"


class History:
    """Rows of the training history, written as CSV to ``path`` (atomically) when asked."""

    def __init__(self, path: Path, *, resume: bool = False) -> None:
        self.path = path
        self.rows: dict[int, dict[str, Any]] = {}
        self.columns: list[str] = list(HISTORY_COLUMNS)
        if resume and path.is_file():  # continue the history of the run being resumed
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                for name in reader.fieldnames or ():
                    if name not in self.columns:
                        self.columns.append(name)
                for row in reader:
                    if row.get("step", "").isdigit():
                        self.rows[int(row["step"])] = dict(row)
        except (OSError, UnicodeDecodeError, csv.Error):
            self.rows = {}  # an unreadable history is started afresh, never a reason to fail

    def drop_from(self, step: int) -> None:
        """Forget rows at ``step`` and later (a resumed run repeats them)."""
        self.rows = {s: row for s, row in self.rows.items() if s < step}

    def row(self, step: int) -> dict[str, Any]:
        """The row of ``step`` (created empty)."""
        return self.rows.setdefault(step, {"step": step})

    def add_metrics(self, step: int, metrics: dict) -> None:
        """Validation metrics (numbers only) as ``val_<name>`` columns of ``step``'s row."""
        row = self.row(step)
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                column = f"val_{name}"
                if column not in self.columns:
                    self.columns.append(column)
                row[column] = _number(value)

    def write(self) -> None:
        """Replace ``path`` with the rows so far (atomic: a killed run leaves the last version)."""
        from napari_unet.core.atomic import atomic_write_text

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, restval="", lineterminator="\n")
        writer.writeheader()
        for step in sorted(self.rows):
            writer.writerow({k: v for k, v in self.rows[step].items() if k in self.columns})
        atomic_write_text(self.path, text.getvalue())


def _number(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)


class TrainMonitor:
    """Shows training progress and keeps the history; call it with every training event.

    Args:
        config: the run's ``TrainConfig`` (its budget gives "step 200/1000" and the time left).
        history: where the rows go (``None``: no history file).
        log_every: steps between progress lines and history rows (``None``: a line every ~10 s,
            a row every :data:`HISTORY_EVERY` steps).
        start_score: the start model's validation score on the same tiles, if known.
    """

    def __init__(
        self,
        config: Any,
        history: History | None,
        *,
        log_every: int | None = None,
        start_score: float | None = None,
    ) -> None:
        self.config, self.history = config, history
        self.log_every, self.start_score = log_every, start_score
        self.row_every = log_every or HISTORY_EVERY
        self.terminal = _progress.on_terminal()
        self.line_due = Every(LINE_INTERVAL_S)
        self.save_due = Every(LINE_INTERVAL_S)
        self._losses: list[float] = []
        self._line_losses: list[float] = []
        self._first_step: int | None = None
        self._last: Any = None  # the last StepEvent
        self._val = ""
        if config.steps is not None:
            self.bar = bar(total=config.steps, desc="train", unit="step")
        else:
            self.bar = bar(total=round(60 * config.minutes), desc="train", unit="s")

    # ------------------------------------------------------------------ events
    def __call__(self, event: Any) -> None:
        from napari_unet.core.training.config import StepEvent, ValidationEvent

        if isinstance(event, StepEvent):
            self._step(event)
        elif isinstance(event, ValidationEvent):
            self._validation(event)

    def _step(self, event: Any) -> None:
        if self._first_step is None:
            self._first_step = event.step
            if self.history is not None:
                self.history.drop_from(event.step)
        self._last = event
        self._losses.append(event.loss)
        self._line_losses.append(event.loss)
        self.bar.update(self._bar_position(event) - self.bar.n)
        if event.step % self.row_every == 0:
            self._add_row(event)
            if self.history is not None and self.save_due():
                self.history.write()
        if self.terminal:
            self.bar.set_postfix_str(f"loss {event.loss:.4f}{self._val}", refresh=False)
        elif self._line_wanted(event):
            loss = sum(self._line_losses) / len(self._line_losses)
            self._line_losses.clear()
            PROGRESS.info(
                "%s  loss %.4f  lr %.1e%s",
                self._where(event),
                loss,
                event.lr,
                self._left(event),
            )

    def _validation(self, event: Any) -> None:
        score = float(event.metrics.get("score", float("nan")))
        note = validation_note(score, event.improved, self.start_score)
        self._val = f"  val {score:.4f}"
        if self.history is not None:
            if event.step not in self.history.rows and self._last is not None:
                self._add_row(self._last)
            self.history.add_metrics(event.step, event.metrics)
            self.history.write()
        where = self._where(self._last) if self._last is not None else f"step {event.step}"
        left = self._left(self._last) if self._last is not None else ""
        PROGRESS.info("%s  val %.4f%s%s", where, score, note, left)

    def close(self, *, save: bool = True) -> None:
        """Close the bar and (``save``) write the last rows of the history."""
        self.bar.close()
        if save and self.history is not None:
            if self._losses and self._last is not None:
                self._add_row(self._last)
            if self.history.rows:
                self.history.write()

    # ------------------------------------------------------------------ helpers
    def _add_row(self, event: Any) -> None:
        row = self.history.row(event.step) if self.history is not None else {}
        row.update(
            seconds=_number(round(event.elapsed_s, 3)),
            lr=_number(event.lr),
        )
        if self._losses:
            row["train_loss"] = _number(sum(self._losses) / len(self._losses))
        self._losses.clear()

    def _line_wanted(self, event: Any) -> bool:
        if self.log_every is not None:
            return event.step % self.log_every == 0
        return self.line_due()

    def _bar_position(self, event: Any) -> int:
        if self.config.steps is not None:
            return min(event.step, self.config.steps)
        return min(round(event.elapsed_s), round(60 * self.config.minutes))

    def _where(self, event: Any) -> str:
        if self.config.steps is not None:
            return f"step {event.step}/{self.config.steps}"
        budget = clock_text(60 * self.config.minutes)
        return f"step {event.step} ({clock_text(event.elapsed_s)} of {budget})"

    def _left(self, event: Any) -> str:
        done = self.config.progress(event.step, event.elapsed_s)
        if not 0 < done < 1:
            return ""
        return f"  {clock_text(event.elapsed_s * (1 - done) / done)} left"
