"""Comparing two model versions on the current slice (the versions panel's "Compare").

:class:`Comparer` predicts the slice on screen with both versions in one worker
(:func:`~napari_unet._widgets.version_jobs.run_slice_job`), then, on the main thread, writes each
result into a Labels layer ``"compare <version id>"`` (role ``compare``, aligned with the image)
and reports, side by side, their stored validation metrics and — when the slice has reviewed
pixels in the plugin labels layer — their foreground IoU against those reviewed labels.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal

from napari_unet._widgets import layers as L
from napari_unet._widgets._workers import training_running
from napari_unet._widgets.loop_state import LoopState
from napari_unet._widgets.predict_job import check_output_memory
from napari_unet._widgets.repredict import current_image_slice
from napari_unet._widgets.version_jobs import SliceJob, SliceResult, run_slice_job
from napari_unet.core.io.lazy import stack_slices

logger = logging.getLogger(__name__)

ROLE = "compare"


def primary_metric(metrics: dict | None) -> float | None:
    """The validation number a version is judged by (``score``, else a known metric), or None."""
    for key in ("score", "mean_iou", "foreground_iou", "iou", "dice", "average_precision"):
        value = (metrics or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def data_text(data: dict | None) -> str:
    """A short summary of what a version was trained on, e.g. ``"2 img, 5 slices, 12k px"``."""
    data = data or {}
    parts = []
    for keys, unit in (
        (("n_images", "images"), "img"),
        (("n_items", "slices", "n_slices"), "slices"),
        (("annotated_pixels", "pixels"), "px"),
        (("objects",), "obj"),
    ):
        value = next((data[k] for k in keys if isinstance(data.get(k), (int, float))), None)
        if value is not None:
            text = f"{value / 1000:.0f}k" if value >= 10_000 else f"{value:g}"
            parts.append(f"{text} {unit}")
    return ", ".join(parts) or ", ".join(f"{k}={v}" for k, v in list(data.items())[:3])


def held_back_text(metrics: dict) -> str:
    """`` Held-back AP@0.5 0.700 > parent 0.650; post-processing: threshold 0.9, ...`` for a
    version's metrics (empty when it was not compared with its parent)."""
    from napari_unet.core.training.operating_point import settings_text

    score, parent = metrics.get("held_back_score"), metrics.get("parent_held_back_score")
    if score is None:
        return ""
    against = "" if parent is None else f" > parent {parent:.3f}"
    chosen = metrics.get("operating_point")
    tuned = f"; post-processing {settings_text(chosen)}" if chosen else ""
    return f" Held-back {metrics.get('held_back_metric', 'score')} {score:.3f}{against}{tuned}."


def time_text(created: str | None) -> str:
    """``"2024-05-01 14:03"`` from an ISO time stamp (as stored)."""
    return (created or "").replace("T", " ")[:16]


def reviewed_score(labels: np.ndarray, reference: np.ndarray, reviewed: np.ndarray) -> float:
    """Foreground IoU of ``labels`` vs ``reference`` on the ``reviewed`` pixels (all (Y, X))."""
    from napari_unet.core.evaluation.metrics import iou

    return float(iou(labels[reviewed] > 0, reference[reviewed] > 0))


def metrics_table(entries: list[Any], scores: list[float] | None) -> str:
    """An HTML table: one column per version, one row per stored metric (+ reviewed score)."""
    keys = sorted({k for e in entries for k, v in (e.metrics or {}).items() if _number(v)})
    head = "".join(f"<th>{html.escape(e.name)} ({e.id})</th>" for e in entries)
    rows = [f"<tr><th></th>{head}</tr>"]
    for key in keys:
        cells = "".join(
            f"<td>{e.metrics[key]:.3f}</td>" if _number(e.metrics.get(key)) else "<td>—</td>"
            for e in entries
        )
        rows.append(f"<tr><td>{html.escape(key)}</td>{cells}</tr>")
    if scores is not None:
        cells = "".join(f"<td>{s:.3f}</td>" for s in scores)
        rows.append(f"<tr><td>IoU vs reviewed</td>{cells}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Comparer(QObject):
    """Runs one comparison at a time.

    Signals:
        done(str): the comparison's HTML summary (metrics side by side).
        failed(str): the sentence to show.
    """

    done = Signal(str)
    failed = Signal(str)

    def __init__(self, viewer: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.loop = LoopState.for_viewer(viewer)
        self._key = (id(self), "compare")
        self._request: dict[str, Any] = {}

    @property
    def worker(self) -> Any:
        """The running comparison's worker, or None."""
        return self.loop.jobs.worker(self._key)

    def cancel(self) -> None:
        """Stop a running comparison (nothing is written)."""
        self.loop.jobs.cancel(self._key)

    def start(self, entries: list[Any], paths: list[str]) -> None:
        """Compare the versions ``entries`` (checkpoint ``paths``) on the current slice."""
        image, axes, layout, current = current_image_slice(self.viewer, then="then compare.")
        names = {layer.name for layer in self.viewer.layers}
        new_layers = sum(f"compare {entry.id}" not in names for entry in entries)
        check_output_memory(image.name, layout, 4 * new_layers)  # labels of up to 4 bytes each
        job = SliceJob(
            checkpoints=tuple(paths),
            image=stack_slices(image.data, axes, [current]),
            slices=(current,),
            labels=True,
            loaded=self.loop.models.get_many(paths),
            num_threads=1 if training_running() else None,
        )
        self._request = {"image": image.name, "layout": layout, "axes": axes, "entries": entries}
        self.loop.jobs.start(
            self._key,
            run_slice_job,
            job,
            what="Comparison",
            on_done=self._on_returned,
            on_error=self.failed.emit,
            torch_threads=job.num_threads,
        )

    def _on_returned(self, result: SliceResult) -> None:
        self.loop.models.put_many(result.loaded)
        request = self._request
        if request["image"] not in self.viewer.layers:
            self.failed.emit("The image was removed during the comparison; nothing was shown.")
            return
        image = self.viewer.layers[request["image"]]
        layout, entries = request["layout"], request["entries"]
        s = result.slices[0]
        for entry, labels in zip(entries, result.labels):
            self._write_layer(image, layout, request["axes"], entry.id, s, labels[0])
        self.done.emit(metrics_table(entries, self._scores(image.name, layout, s, result)))

    def _scores(self, name: str, layout: Any, s: int, result: SliceResult) -> list[float] | None:
        layer = L.find_plugin_layer(self.viewer, role="labels", image_layer=name)
        if layer is None or tuple(layer.data.shape) != tuple(layout.spatial_shape):
            return None
        reviewed = (L.plugin_tag(layer) or {}).get("reviewed")
        if not isinstance(reviewed, np.ndarray) or reviewed.shape != layer.data.shape:
            return None
        index = L.slice_index(layout, s)
        mask = reviewed[index]
        if not mask.any():
            return None
        reference = np.asarray(layer.data[index])
        return [reviewed_score(labels[0], reference, mask) for labels in result.labels]

    def _write_layer(
        self, image: Any, layout: Any, axes: str, version_id: str, s: int, plane: np.ndarray
    ) -> None:
        name = f"compare {version_id}"
        index = L.slice_index(layout, s)
        existing = next(
            (
                la
                for la in self.viewer.layers
                if la.name == name and (L.plugin_tag(la) or {}).get("role") == ROLE
            ),
            None,
        )
        if existing is not None and tuple(existing.data.shape) == tuple(layout.spatial_shape):
            data = np.asarray(existing.data)
            if np.result_type(data.dtype, plane.dtype) != data.dtype:
                data = data.astype(np.result_type(data.dtype, plane.dtype))
            data[index] = plane
            existing.data = data
            existing.refresh()
            return
        data = np.zeros(layout.spatial_shape, dtype=plane.dtype)
        data[index] = plane
        tag = {"role": ROLE, "image_layer": image.name, "version": version_id}
        self.viewer.add_labels(
            data,
            name=name,
            metadata={L.TAG: tag},
            opacity=0.6,
            **L.spatial_transform(image, axes),
        )
