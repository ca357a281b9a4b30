"""The live training plot of the Fine-tune dock: loss per step, validation score, versions.

A small matplotlib canvas (``FigureCanvasQTAgg``; matplotlib picks the Qt binding napari already
imported) with the smoothed training loss on the left axis, the validation score on a second
axis and a dotted line at each published version. Events only append data and mark the plot
dirty; a ``QTimer`` redraws at most every :data:`REDRAW_MS` milliseconds, and only when dirty,
with ``draw_idle``. Series are decimated to at most :data:`MAX_POINTS` points, so a long run
never makes a redraw slower. Without matplotlib a one-line text summary stands in.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

logger = logging.getLogger(__name__)

#: Minimum time between two redraws.
REDRAW_MS = 300
#: Most points kept per series (older points are merged pairwise beyond that).
MAX_POINTS = 2000
#: Height of the plot in the dock, in pixels.
PLOT_HEIGHT = 180
#: Weight of the newest loss in the exponential moving average shown.
SMOOTHING = 0.1
LOSS_COLOR = "#4c9be8"
SCORE_COLOR = "#f0a030"
VERSION_COLOR = "#7cc47c"


def _theme_colors(theme: str | None) -> tuple[str | None, str | None]:
    """(background, text) hex colours of a napari theme, or (None, None)."""
    if not theme:
        return None, None
    try:
        from napari.utils.theme import get_theme

        colors = get_theme(theme)
        return colors.background.as_hex(), colors.text.as_hex()
    except Exception as err:  # an unknown or broken theme: fall back to the Qt palette
        logger.debug("no colours for napari theme %r: %s", theme, err)
        return None, None


class Series:
    """(x, y) points, merged pairwise (mean) whenever there are more than ``limit``."""

    def __init__(self, limit: int = MAX_POINTS) -> None:
        self.limit = max(2, int(limit))
        self.x: list[float] = []
        self.y: list[float] = []

    def __len__(self) -> int:
        return len(self.x)

    def append(self, x: float, y: float) -> None:
        """Add a point (decimating when over the limit)."""
        self.x.append(float(x))
        self.y.append(float(y))
        if len(self.x) > self.limit:
            n = len(self.x) // 2 * 2
            xs, ys = np.asarray(self.x[:n]), np.asarray(self.y[:n])
            self.x = list(xs.reshape(-1, 2).mean(axis=1)) + self.x[n:]
            self.y = list(ys.reshape(-1, 2).mean(axis=1)) + self.y[n:]

    def clear(self) -> None:
        """Forget every point."""
        self.x.clear()
        self.y.clear()


class TrainingPlot(QWidget):
    """Training loss and validation score of the running fine-tune job.

    Attributes:
        loss: smoothed loss per step; score: validation score per validation;
        versions: ``[(step, version id)]``; draws: redraws done so far (for tests).
    """

    def __init__(self, parent: QWidget | None = None, *, theme: str | None = None) -> None:
        super().__init__(parent)
        self.loss = Series()
        self.score = Series()
        self.versions: list[tuple[int, str]] = []
        self.draws = 0
        self._ema_sum, self._ema_n = 0.0, 0
        self._dirty = False
        self.summary = QLabel("", wordWrap=True)
        self.summary.setToolTip(
            "Last smoothed training loss and the pixel validation score on the held-back tiles "
            "(last and best); a version is published when it beats its parent there in AP@0.5 "
            "or IoU, each with its own post-processing"
        )
        self.canvas: Any = None
        self._axes: Any = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        try:
            self._build_canvas()
            self.set_theme(theme)
            layout.addWidget(self.canvas)
        except ImportError:  # pragma: no cover - matplotlib is a dependency
            logger.warning("matplotlib is not installed: the training plot is text only")
        layout.addWidget(self.summary)
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._redraw_if_dirty)
        self._timer.start()
        self._redraw()

    # ------------------------------------------------------------------ canvas
    def _build_canvas(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        figure = Figure(figsize=(3.2, 1.8), dpi=100, layout="constrained")
        loss_ax = figure.add_subplot(1, 1, 1)
        score_ax = loss_ax.twinx()
        loss_ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        loss_ax.set_xlabel("step", fontsize=7, labelpad=1)
        loss_ax.set_ylabel("loss", color=LOSS_COLOR, fontsize=7, labelpad=1)
        score_ax.set_ylabel("val. score", color=SCORE_COLOR, fontsize=7, labelpad=1)
        (self._loss_line,) = loss_ax.plot([], [], color=LOSS_COLOR, linewidth=1.2)
        (self._score_line,) = score_ax.plot(
            [], [], color=SCORE_COLOR, linewidth=1.2, marker="o", markersize=2.5
        )
        self._version_lines: list[Any] = []
        self._axes = (loss_ax, score_ax)
        self.canvas = FigureCanvasQTAgg(figure)
        self.canvas.setFixedHeight(PLOT_HEIGHT)
        self.canvas.setMinimumWidth(200)

    def set_theme(self, theme: str | None = None) -> None:
        """Colour the plot like napari's ``theme`` (``"dark"``, ``"light"``; None: the palette)."""
        face, ink = _theme_colors(theme)
        if face is None:
            background = self.palette().color(self.backgroundRole())
            face = background.name()
            ink = "#dddddd" if background.lightness() < 128 else "#333333"
        if self.canvas is None:
            return
        self.canvas.figure.set_facecolor(face)
        for ax in self._axes:
            ax.set_facecolor(face)
            ax.tick_params(colors=ink, labelsize=7, length=2)
            for spine in ax.spines.values():
                spine.set_color(ink)
        self._axes[0].xaxis.label.set_color(ink)
        self._dirty = True

    # ------------------------------------------------------------------ data in
    def add_step(self, step: int, loss: float) -> None:
        """A training step's loss (non-finite losses are skipped)."""
        loss = float(loss)
        if not math.isfinite(loss):
            return
        # bias-corrected moving average: the first points are not pulled towards the first loss
        self._ema_sum = (1 - SMOOTHING) * self._ema_sum + SMOOTHING * loss
        self._ema_n += 1
        self.loss.append(step, self._ema_sum / (1 - (1 - SMOOTHING) ** self._ema_n))
        self._dirty = True

    def add_validation(self, step: int, score: float) -> None:
        """A validation score (e.g. ``metrics["score"]``) after ``step``."""
        score = float(score)
        if math.isfinite(score):
            self.score.append(step, score)
            self._dirty = True

    def add_version(self, step: int, version_id: str) -> None:
        """A version was published at ``step`` (a dotted marker)."""
        self.versions.append((int(step), str(version_id)))
        self._dirty = True

    def clear(self) -> None:
        """Start a new run: forget every point and marker."""
        self.loss.clear()
        self.score.clear()
        self.versions.clear()
        self._ema_sum, self._ema_n = 0.0, 0
        self._dirty = True

    # ------------------------------------------------------------------ drawing
    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self._redraw()

    def _redraw(self) -> None:
        self._dirty = False
        self.draws += 1
        self.summary.setText(self._summary_text())
        if self._axes is None:
            return
        loss_ax, score_ax = self._axes
        self._loss_line.set_data(self.loss.x, self.loss.y)
        self._score_line.set_data(self.score.x, self.score.y)
        for line in self._version_lines:
            line.remove()
        self._version_lines = [
            loss_ax.axvline(step, color=VERSION_COLOR, linewidth=0.8, linestyle=":")
            for step, _ in self.versions[-50:]
        ]
        last = max([1.0, *self.loss.x[-1:], *self.score.x[-1:], *(s for s, _ in self.versions)])
        loss_ax.set_xlim(0, last * 1.02)
        if self.loss.y:
            low, high = min(self.loss.y), max(self.loss.y)
            pad = max(high - low, 1e-3) * 0.08
            loss_ax.set_ylim(max(0.0, low - pad) if low >= 0 else low - pad, high + pad)
        if self.score.y:
            low, high = min(self.score.y), max(self.score.y)
            pad = max((high - low) * 0.15, 0.02)
            score_ax.set_ylim(low - pad, high + pad)
        self.canvas.draw_idle()

    def _summary_text(self) -> str:
        if not self.loss.y and not self.score.y:
            return "No training yet: the loss and validation score appear here."
        parts = []
        if self.loss.y:
            parts.append(f"loss {self.loss.y[-1]:.3g} (step {int(self.loss.x[-1])})")
        if self.score.y:
            last, best = self.score.y[-1], max(self.score.y)
            parts.append(f"pixel val. score {last:.3f} (best {best:.3f})")
        if self.versions:
            parts.append(f"{len(self.versions)} version(s)")
        return " · ".join(parts)
