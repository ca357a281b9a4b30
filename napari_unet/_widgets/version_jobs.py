"""Worker jobs of the versions and guidance panels: predict some slices with one or more models.

:func:`run_slice_job` is a plain generator (no Qt, no layers), run with
``napari.qt.threading.create_worker`` on a :class:`SliceJob` holding a copy of the slices. It
yields :class:`~napari_unet._widgets.predict_worker.JobProgress` after every batch of tiles (so a
quit request stops it within one batch) and returns a :class:`SliceResult`: per model the full
class probabilities and, when asked, labels; and, when asked, an uncertainty map (entropy of one
model, or disagreement between two).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet._widgets.predict_worker import JobProgress, PredictionError
from napari_unet.core.errors import UserInputError
from napari_unet.core.inference.config import PredictConfig

logger = logging.getLogger(__name__)

MEASURES = ("none", "entropy", "disagreement")


@dataclasses.dataclass(frozen=True, eq=False)
class SliceJob:
    """Slices to predict with each of ``checkpoints``.

    Attributes:
        checkpoints: checkpoint paths (one model, or two to compare).
        image: (n, C, Y, X) pixels of the slices (a copy).
        slices: their flattened indices in the full image.
        predict: how to predict (tiles, batch, device).
        labels: also make labels (instances for instance models, else semantic).
        measure: ``"none"``, ``"entropy"`` (of the first model) or ``"disagreement"`` (first
            two models).
        loaded: ``{checkpoint path: LoadedModel}`` already loaded (reused).
        num_threads: torch threads for the job, set on the main thread when it starts
            (:func:`~napari_unet._widgets._workers.use_torch_threads`; None: ``cores - 1``).
        volume: a :class:`~napari_unet._widgets.volume_run.VolumeJob` when ``image`` holds the
            Z context ``(len(volume.read), C, Y, X)`` of the ``slices`` (= ``volume.write``) of a
            Z-stack: a 3-D model predicts that slab in 3-D, a 2-D model the slices only.
    """

    checkpoints: tuple[str, ...]
    image: np.ndarray
    slices: tuple[int, ...]
    predict: PredictConfig = dataclasses.field(default_factory=PredictConfig)
    labels: bool = False
    measure: str = "none"
    loaded: dict = dataclasses.field(default_factory=dict)
    num_threads: int | None = None
    volume: Any = None

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, got {self.measure!r}")
        if self.measure == "disagreement" and len(self.checkpoints) < 2:
            raise UserInputError(
                "Disagreement needs two model versions: fine-tune until a second version exists, "
                "or show the entropy instead."
            )
        n = len(self.slices) if self.volume is None else len(self.volume.read)
        if np.ndim(self.image) != 4 or len(self.image) != n:
            raise ValueError(f"image must be (n, C, Y, X) for {n} slice(s)")


@dataclasses.dataclass(frozen=True, eq=False)
class SliceResult:
    """What a :class:`SliceJob` returns.

    Attributes:
        probabilities: per model, (K, n, Y, X) float32 class probabilities.
        labels: per model, (n, Y, X) integer labels, or None when not asked for.
        tasks, outputs: per model, its task and the kind of its labels.
        uncertainty: (n, Y, X) float32 in [0, 1], or None.
        slices: as in the job. loaded: ``{path: LoadedModel}`` for reuse.
    """

    probabilities: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray | None, ...]
    tasks: tuple[str, ...]
    outputs: tuple[str, ...]
    uncertainty: np.ndarray | None
    slices: tuple[int, ...]
    loaded: dict


def run_slice_job(job: SliceJob) -> Generator[JobProgress, None, SliceResult]:
    """Run ``job``; yields progress, returns a :class:`SliceResult`.

    Raises:
        UserInputError: a broken checkpoint, a restoration model, a channel mismatch.
        PredictionError: anything torch raises as a RuntimeError (out of memory...).
    """
    loaded_models = dict(job.loaded)
    probabilities, labels, tasks, outputs = [], [], [], []
    try:
        config = job.predict
        for number, path in enumerate(job.checkpoints, start=1):
            probs, planes, task, output = yield from _one_model(
                job, path, number, loaded_models, config
            )
            probabilities.append(probs)
            labels.append(planes)
            tasks.append(task)
            outputs.append(output)
        uncertainty = _uncertainty(job, probabilities, tasks)
    except RuntimeError as err:
        raise PredictionError(f"{type(err).__name__}: {err}") from err
    return SliceResult(
        probabilities=tuple(probabilities),
        labels=tuple(labels),
        tasks=tuple(tasks),
        outputs=tuple(outputs),
        uncertainty=uncertainty,
        slices=tuple(job.slices),
        loaded=loaded_models,
    )


def _one_model(
    job: SliceJob, path: str, number: int, loaded_models: dict, config: PredictConfig
) -> Generator[JobProgress, None, tuple[np.ndarray, np.ndarray | None, str, str]]:
    """Predict the job's slices with the model at ``path`` (loaded into ``loaded_models``).

    Returns:
        (K, n, Y, X) float32 probabilities, (n, Y, X) labels or None, the task, the output kind.
    """
    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.core.inference.prediction import iter_predict
    from napari_unet.core.models.aux import classes_only, labelling_net

    loaded = loaded_models.get(path)
    if loaded is None:
        yield JobProgress("loading")
        loaded = loaded_models[path] = load_checkpoint(Path(path))
    task = loaded.info.task
    if task == "restoration":
        raise UserInputError(
            f"{Path(path).name} is a restoration model: it has no classes to compare or "
            "measure uncertainty on; pick a segmentation model."
        )
    image, axes, keep = _input(job, loaded.model, path)
    post = loaded.info.postprocess_config()  # the model's own (stored) post-processing
    net = labelling_net(loaded.model, post if job.labels else None)  # distance seeds: K + 1
    steps = iter_predict(
        net,
        image,
        axes,
        task=task,
        normalization=loaded.info.normalization_config(),
        config=config,
    )
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            probs = np.asarray(stop.value, dtype=np.float32)
            break
        yield JobProgress(
            "predicting",
            done=step.done_tiles,
            total=step.total_tiles,
            slice_number=number,
            n_slices=len(job.checkpoints),
        )
    probs = probs.reshape(probs.shape[0], -1, *probs.shape[-2:])[:, keep]
    planes = _labels(probs, task, post, len(job.slices)) if job.labels else None
    return classes_only(probs, loaded.model), planes, task, post.output


def _labels(probs: np.ndarray, task: str, post: Any, n: int) -> np.ndarray:
    """(n, Y, X) labels of (K[+1], n, Y, X) probabilities with the model's post-processing."""
    from napari_unet.core.postprocess.labels import labels_from_probabilities

    return np.stack(
        [labels_from_probabilities(probs[:, i], task=task, config=post) for i in range(n)]
    )


def _input(job: SliceJob, model: Any, path: str) -> tuple[np.ndarray, str, Any]:
    """``(image, axes, kept slices of the output)`` for one model: a 3-D model gets the Z
    slab (``job.volume``) as a volume, a 2-D model the job's slices only."""
    if getattr(model, "spatial_dims", 2) != 3:
        if job.volume is None:
            return job.image, "SCYX", slice(None)
        return job.image[job.volume.offsets], "SCYX", slice(None)
    if job.volume is None:
        raise UserInputError(
            f"{Path(path).name} is a 3-D model and this image has no Z axis of several slices: "
            "measure it with a 2-D model, or open a Z-stack."
        )
    return job.image, "ZCYX", job.volume.offsets


def _uncertainty(job: SliceJob, probabilities: list, tasks: list) -> np.ndarray | None:
    """(n, Y, X) entropy of the first model or disagreement of the first two; None if unasked."""
    from napari_unet.core.inference.uncertainty import disagreement, entropy

    n = len(job.slices)
    if job.measure == "entropy":
        return np.stack([entropy(probabilities[0][:, i]) for i in range(n)])
    if job.measure == "disagreement":
        return np.stack(
            [
                _disagree(probabilities[0][:, i], probabilities[1][:, i], disagreement, tasks)
                for i in range(n)
            ]
        )
    return None


def _disagree(first: np.ndarray, second: np.ndarray, disagreement: Any, tasks: list) -> np.ndarray:
    """Disagreement of two (K, Y, X) predictions; models with different classes compare their
    foreground probability."""
    if first.shape == second.shape:
        return disagreement(first, second)
    fg = [p[:1] if t == "binary" else 1.0 - p[:1] for p, t in zip((first, second), tasks)]
    return disagreement(fg[0], fg[1])
