"""The prediction job run in a worker thread: load the model, predict, make labels.

:func:`run_prediction` is a plain generator (no Qt, no layers): the panel runs it with
``napari.qt.threading.create_worker`` and gives it a :class:`PredictJob` holding a copy or view of
the image data. It yields :class:`JobProgress` after every batch of tiles and every post-processed
slice (the worker's quit request is honoured at each yield, so Cancel stops within one batch), and
returns a :class:`JobResult` the panel writes into layers on the main thread.

Threads: torch's intra-op pool is capped at ``cores - 1`` while the job runs, so one core stays
free for the Qt event loop (torch releases the GIL inside its kernels, but a pool that saturates
every core still starves the GUI thread).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet._widgets.layers import offset_ids
from napari_unet._widgets.postprocess_choice import PostprocessChoice
from napari_unet.core.inference.config import PredictConfig

logger = logging.getLogger(__name__)


class PredictionError(Exception):
    """An unexpected failure inside the job (the worker framework swallows RuntimeErrors)."""


@dataclasses.dataclass(frozen=True, eq=False)
class PredictJob:
    """Everything the worker needs, detached from layers and widgets.

    Attributes:
        checkpoint: path of the checkpoint file.
        image: the pixels to predict (a copy or a read-only view), dimensions named by ``axes``.
        axes: e.g. ``"YX"``, ``"CYX"`` (one slice), ``"ZYX"`` (whole stack).
        slices: the flattened slice indices of the full image that ``image`` covers, in order.
        region: ``(slice_y, slice_x)`` to predict in every slice, or None for all of it.
        predict: how to predict (tiles, batch, device, TTA); torch-free, built on the main thread.
        postprocess: the form's :class:`PostprocessChoice` over the model's stored defaults.
        probabilities: also return the foreground probability.
        loaded: a model loaded by an earlier job for the same checkpoint and device (reused).
        num_threads: torch CPU threads, set on the main thread when the job starts (None:
            ``cores - 1``; see :func:`~napari_unet._widgets._workers.use_torch_threads`).
        volume: a 3-D model's :class:`~napari_unet._widgets.volume_run.VolumeJob` (``image``
            is then ``(Z, C, Y, X)``, axes ``"ZCYX"``), or None.
    """

    checkpoint: str
    image: np.ndarray
    axes: str
    slices: tuple[int, ...]
    region: tuple[slice, slice] | None = None
    predict: PredictConfig = dataclasses.field(default_factory=PredictConfig)
    postprocess: PostprocessChoice = dataclasses.field(default_factory=PostprocessChoice)
    probabilities: bool = False
    loaded: Any = None
    num_threads: int | None = None
    volume: Any = None


@dataclasses.dataclass(frozen=True)
class JobProgress:
    """Progress of a job.

    Attributes:
        stage: ``"loading"``, ``"predicting"`` or ``"labelling"``.
        done, total: units done (tiles while predicting, slices while labelling).
        slice_number, n_slices: 1-based slice being worked on, and how many.
    """

    stage: str
    done: int = 0
    total: int = 0
    slice_number: int = 0
    n_slices: int = 0

    def text(self) -> str:
        """One line for the status label, e.g. ``"tile 12/25, slice 3/40"``."""
        if self.stage == "loading":
            return "loading the model…"
        unit = "tile" if self.stage == "predicting" else "labels for slice"
        if self.stage == "labelling":
            return f"{unit} {self.done}/{self.total}"
        text = f"{unit} {self.done}/{self.total}"
        return text + (f", slice {self.slice_number}/{self.n_slices}" if self.n_slices > 1 else "")


@dataclasses.dataclass(frozen=True, eq=False)
class JobResult:
    """What a finished job hands back to the main thread.

    Attributes:
        labels: (n, h, w) integer labels, one plane per entry of ``slices``.
        probabilities: (n, h, w) float32 foreground probability, or None.
        slices, region: where they go (as in the job).
        task, output: the model's task and the labels' kind.
        loaded: the :class:`~napari_unet.core.checkpoint.format.LoadedModel`, for reuse.
        seconds: wall-clock time of the job.
        restored: a restoration model's output (C_out, n, h, w) float32 (``labels`` is then
            empty, (n, 0, 0)); None for segmentation models.
        volume: the labels come from a 3-D model (ids consistent across the slices).
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    slices: tuple[int, ...]
    region: tuple[slice, slice] | None
    task: str
    output: str
    loaded: Any
    seconds: float
    restored: np.ndarray | None = None
    volume: bool = False


def worker_threads(requested: int | None = None) -> int:
    """Torch threads for a GUI job: ``requested``, else ``cores - 1`` capped by torch's setting."""
    import torch

    if requested:
        return int(requested)
    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - 1))


def foreground(probabilities: np.ndarray, task: str) -> np.ndarray:
    """(K, ...) probabilities -> (...) float32 foreground probability (1 - background)."""
    if task == "binary":
        return probabilities[0].astype(np.float32)
    return (1.0 - probabilities[0]).astype(np.float32)


def run_prediction(job: PredictJob) -> Generator[JobProgress, None, JobResult]:
    """Run ``job``; yields :class:`JobProgress`, returns a :class:`JobResult`.

    Raises:
        UserInputError: a broken checkpoint, wrong axes, a channel mismatch, a missing device.
        PredictionError: anything torch raises as a RuntimeError (out of memory...).
    """

    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.core.inference.prediction import iter_predict
    from napari_unet.core.models.aux import classes_only, labelling_net
    from napari_unet.core.postprocess.labels import labels_from_probabilities

    start = time.perf_counter()
    try:
        loaded = job.loaded
        if loaded is None:
            yield JobProgress("loading")
            loaded = load_checkpoint(Path(job.checkpoint))
        info = loaded.info
        _warm_imports()
        if info.task == "restoration":  # an image, not labels: the writer adds an Image layer
            return (yield from _restore(job, loaded, start, iter_predict))
        postprocess = job.postprocess.apply(info)
        if job.volume is not None:
            return (yield from predict_volume(job, loaded, postprocess, start, iter_predict))
        # a distance head's channel rides along to the labels only (core.models.aux)
        net = labelling_net(loaded.model, postprocess)
        probabilities = yield from _predict(job, loaded, job.predict, iter_predict, net=net)
        n = len(job.slices)
        probabilities = probabilities.reshape(probabilities.shape[0], n, *probabilities.shape[-2:])
        planes = []
        next_id = 0
        for i in range(n):
            plane = labels_from_probabilities(
                probabilities[:, i], task=info.task, config=postprocess
            )
            if postprocess.output == "instances" and next_id:
                plane = offset_ids(plane, next_id)  # ids stay unique across the stack
            next_id = max(next_id, int(plane.max()) if plane.size else 0)
            planes.append(plane)
            yield JobProgress("labelling", done=i + 1, total=n, n_slices=n)
        dtype = np.result_type(*(p.dtype for p in planes))
        labels = np.stack([p.astype(dtype, copy=False) for p in planes])
        classes = classes_only(probabilities, loaded.model)
        fg = foreground(classes, info.task) if job.probabilities else None
    except RuntimeError as err:  # e.g. out of memory; superqt would only warn about it
        raise PredictionError(f"{type(err).__name__}: {err}") from err
    return JobResult(
        labels=labels,
        probabilities=fg,
        slices=tuple(job.slices),
        region=job.region,
        task=info.task,
        output=postprocess.output,
        loaded=loaded,
        seconds=time.perf_counter() - start,
    )


def predict_volume(
    job: PredictJob, loaded: Any, postprocess: Any, start: float, iter_predict: Any
) -> Generator[JobProgress, None, JobResult]:
    """A 3-D model's job: predict the ``(Z, C, Y, X)`` image as a volume, label it in 3-D.

    Returns:
        A :class:`JobResult` with ``labels`` ``(n, h, w)``: one plane per written slice
        (``job.volume.write``), object ids consistent across them; ``volume=True``.
    """
    from napari_unet.core.postprocess.volume import volume_labels

    info = loaded.info
    probabilities = yield from _predict(job, loaded, job.predict, iter_predict)  # (K, Z, h, w)
    yield JobProgress("labelling", done=0, total=1)
    labels = volume_labels(
        probabilities, task=info.task, config=postprocess, spacing=job.volume.spacing
    )
    yield JobProgress("labelling", done=1, total=1)
    keep = job.volume.offsets
    return JobResult(
        labels=np.ascontiguousarray(labels[keep]),
        probabilities=foreground(probabilities[:, keep], info.task) if job.probabilities else None,
        slices=tuple(job.slices),
        region=job.region,
        task=info.task,
        output=postprocess.output,
        loaded=loaded,
        seconds=time.perf_counter() - start,
        volume=True,
    )


def _restore(
    job: PredictJob, loaded: Any, start: float, iter_predict: Any
) -> Generator[JobProgress, None, JobResult]:
    """The restored image of a restoration model, (C_out, n, h, w), in a :class:`JobResult`."""
    restored = yield from _predict(job, loaded, job.predict, iter_predict)
    n = len(job.slices)
    restored = np.asarray(restored, dtype=np.float32)
    return JobResult(
        labels=np.zeros((n, 0, 0), np.uint8),
        probabilities=None,
        slices=tuple(job.slices),
        region=job.region,
        task="restoration",
        output="restored",
        loaded=loaded,
        seconds=time.perf_counter() - start,
        restored=restored.reshape(restored.shape[0], n, *restored.shape[-2:]),
    )


def _predict(
    job: PredictJob, loaded: Any, config: PredictConfig, iter_predict: Any, net: Any = None
) -> Generator[JobProgress, None, Any]:
    """Predict the job's image with ``net`` (default: the checkpoint's model); the result."""
    from napari_unet.core.io.axes import to_stack

    n_slices = to_stack(job.image, job.axes)[1].n_slices
    steps = iter_predict(
        loaded.model if net is None else net,
        job.image,
        job.axes,
        task=loaded.info.task,
        normalization=loaded.info.normalization_config(),
        config=config,
        region=job.region,
    )
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        yield JobProgress(
            "predicting",
            done=step.done_tiles,
            total=step.total_tiles,
            slice_number=step.slice_index + 1,
            n_slices=n_slices,
        )


def _warm_imports() -> None:
    """Import here, off the main thread, what napari imports lazily when the first Labels layer
    is added (pandas, for layer features: 0.6 s that would otherwise freeze the final redraw)."""
    import contextlib
    import importlib

    for name in ("pandas",):
        with contextlib.suppress(ImportError):  # napari depends on it; nothing to warm otherwise
            importlib.import_module(name)
