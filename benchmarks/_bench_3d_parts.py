"""Data, training under a CPU-time budget, and scoring for ``bench_3d.py``.

- ISBI 2012 (``../shared/data/isbi2012``): the 30-slice training stack as one (30, 512, 512)
  volume; membrane = label 0 (the challenge convention) is the binary foreground.
- embryo_nuclei3d: two (51, 120, 122) stacks with nucleus instances, voxel (1.75, 0.8, 0.8) µm.
- :func:`train_budget`: ``iter_train`` stopped when this process has spent ``cpu_s`` seconds of
  CPU time (``time.process_time``: one torch thread, so the 2-D and 3-D models get the same
  compute, not the same wall time on a shared machine).
- :func:`stitch_z`: 2-D instance labels per slice linked across Z by overlap (the usual way a 2-D
  model's slices are turned into 3-D objects, e.g. Cellpose's ``stitch_threshold``).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage.io import imread

from napari_unet.core.inference.normalization import NormalizationConfig, normalize
from napari_unet.core.training.items import TrainingItem

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ISBI_VOXEL = (50.0, 4.0, 4.0)  # nm, nominal (README)
EMBRYO_VOXEL = (1.75, 0.8, 0.8)  # µm (README)
#: The embryo README's suggested annotated slices per volume.
EMBRYO_SLICES = {"00": (12, 22, 33), "01": (14, 21, 32)}


def isbi_volume(root: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """``(image (30, 512, 512) uint8, membrane (30, 512, 512) bool)``."""
    folder = root / "isbi2012"
    names = sorted(p.name for p in (folder / "images").glob("*.png"))
    image = np.stack([imread(folder / "images" / n) for n in names])
    membrane = np.stack([imread(folder / "labels" / n) == 0 for n in names])
    return image, membrane


def embryo_volume(name: str, root: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """``(image (51, 120, 122) uint16, instance labels uint16)`` of stack ``name``."""
    folder = root / "embryo_nuclei3d"
    return imread(folder / "images" / f"{name}.tif"), imread(folder / "labels" / f"{name}.tif")


def slice_mask(shape: tuple[int, ...], slices: tuple[int, ...]) -> np.ndarray:
    """(Z, Y, X) bool: the XY slices ``slices`` are annotated."""
    mask = np.zeros(shape, bool)
    mask[list(slices)] = True
    return mask


def stack_normalized(image: np.ndarray) -> np.ndarray:
    """(Z, Y, X) -> float32, one percentile range for the whole stack (as 3-D prediction does)."""
    flat = normalize(image.reshape(1, -1, image.shape[-1]), NormalizationConfig())
    return flat.reshape(image.shape)


def volume_item(image: np.ndarray, labels: np.ndarray, mask: np.ndarray, name: str) -> TrainingItem:
    """One (1, Z, Y, X) item, the volume normalised as a whole (as 3-D prediction does)."""
    return TrainingItem(stack_normalized(image)[None], labels, mask, name)


def slice_items(
    image: np.ndarray,
    labels: np.ndarray,
    slices: tuple[int, ...],
    name: str,
    *,
    joint: bool = False,
) -> list[TrainingItem]:
    """The annotated slices as 2-D items, each normalised on its own (as 2-D prediction does),
    or with ``joint`` as part of the stack (:func:`stack_normalized`, for a stack whose end
    slices hold no object: a slice's own percentiles would stretch its noise into objects)."""
    if joint:
        volume = stack_normalized(image)
        return [TrainingItem(volume[z][None], labels[z], None, f"{name}[{z}]") for z in slices]
    return [
        TrainingItem(
            normalize(image[z][None], NormalizationConfig()), labels[z], None, f"{name}[{z}]"
        )
        for z in slices
    ]


@dataclasses.dataclass(frozen=True)
class Trained:
    """A model trained under a CPU budget: steps done, CPU and wall seconds spent."""

    model: object
    steps: int
    cpu_s: float
    wall_s: float
    diverged: tuple[str, ...] = ()
    #: ``tuned`` runs: ``provenance["operating_point"]`` and ``["postprocess"]`` of ``best.pt``
    operating_point: dict | None = None
    postprocess: dict | None = None


def train_budget(
    model,
    items,
    *,
    task: str,
    cpu_s: float,
    patch,
    batch: int,
    seed: int,
    device: str,
    lr: float = 1e-3,
    flip_context: bool = True,
    cosine: bool = False,
    tuned: bool = False,
):
    """Train ``model`` on ``items`` until ``cpu_s`` seconds of process CPU time are spent.

    ``cosine``: the rate comes down over the budget (:func:`_train_cosine`); default: a huge step
    budget keeps it at its peak to the end (the final weights are a snapshot at that rate).
    ``tuned``: the product's protocol (``train --minutes``): annotated tiles held back
    (``val_fraction`` 0.1; a volume within one tile holds back a slice), validated during training
    and the operating point re-tuned on them after it (:attr:`Trained.postprocess`). fp32
    on the CPU for both models (no bf16 autocast); ``flip_context``: a 2.5-D model's neighbour
    slices reversed at random (``AugmentConfig.flip_context``). A run that diverges (NaN loss)
    goes on from its last ``latest.pt`` (written every 50 steps) at a tenth of the learning rate
    for the rest of the budget; the divergences are returned so the report can say so.
    """
    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.core.errors import TrainingDivergedError
    from napari_unet.core.training.loop import train

    config = _budget_config(task, batch, patch, lr, seed, device, flip_context)
    if tuned:
        config = config.replace(val_fraction=0.1, tune_postprocess=True)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    steps, diverged = 0, []
    while (left := cpu_s - (time.process_time() - cpu0)) > 1:
        try:
            if cosine:
                result = _train_cosine(model, items, config, left)
            else:
                result = train(
                    model, items, config, stop=lambda: time.process_time() - cpu0 >= cpu_s
                )
            steps += result.steps
            break
        except TrainingDivergedError as err:
            diverged.append(str(err).split(";")[0])
            latest = Path(config.checkpoint_dir) / "latest.pt"
            if latest.exists():
                model.load_state_dict(load_checkpoint(latest).model.state_dict())
                steps += int(load_checkpoint(latest).training_state["step"])
            config = config.replace(lr=config.lr / 10, seed=config.seed + 1)
    trained = Trained(model, steps, time.process_time() - cpu0, time.perf_counter() - wall0)
    return _with_operating_point(trained, config, tuple(diverged))


def _with_operating_point(trained: Trained, config, diverged: tuple[str, ...]) -> Trained:
    """``trained`` with its divergences and, for a tuned run, what ``best.pt`` stored."""
    from napari_unet.core.checkpoint.format import load_checkpoint

    provenance = {}
    if config.tune_postprocess and (best := Path(config.checkpoint_dir) / "best.pt").exists():
        provenance = load_checkpoint(best).info.provenance
    return dataclasses.replace(
        trained,
        diverged=diverged,
        operating_point=provenance.get("operating_point"),
        postprocess=provenance.get("postprocess"),
    )


def _budget_config(task, batch, patch, lr, seed, device, flip_context):
    """The :class:`TrainConfig` of :func:`train_budget` (a huge step budget, no validation)."""
    from napari_unet.core.training.config import AugmentConfig
    from napari_unet.core.training.loop import TrainConfig

    return TrainConfig(
        task=task,
        steps=1_000_000,
        batch_size=batch,
        patch_shape=patch,
        lr=lr,
        val_fraction=0.0,  # every CPU second goes into training, for both models alike
        val_every=50,  # no validation data: this only writes latest.pt
        seed=seed,
        device=device,
        num_threads=1,
        bf16_cpu=False,
        tune_postprocess=False,
        augment=AugmentConfig(flip_context=flip_context),
        checkpoint_dir=tempfile.mkdtemp(prefix="bench3d-"),
    )


def _train_cosine(model, items, config, cpu_s: float):
    """``train`` with ``minutes = cpu_s / 60`` on a loop clock that reads process CPU time (as
    ``bench_learn.py`` does): the cosine schedule comes down to zero over the budget and the final
    weights are kept, as ``train --minutes`` does."""
    import types

    from _learn_recipe import patched

    import napari_unet.core.training.loop as core_loop
    from napari_unet.core.training.loop import train

    cpu_clock = types.SimpleNamespace(perf_counter=time.process_time)
    with patched(core_loop, "time", cpu_clock):
        return train(model, items, config.replace(steps=None, minutes=cpu_s / 60.0))


def stitch_z(labels: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """(Z, Y, X) per-slice instance ids -> ids linked across Z (best IoU >= ``threshold``)."""
    out = np.zeros(labels.shape, np.int32)
    next_id = 1
    for z in range(labels.shape[0]):
        for value in np.unique(labels[z])[1:]:
            region = labels[z] == value
            best, best_iou = 0, threshold
            if z:
                below = out[z - 1][region]
                for candidate in np.unique(below[below > 0]):
                    other = out[z - 1] == candidate
                    overlap = np.count_nonzero(region & other) / np.count_nonzero(region | other)
                    if overlap >= best_iou:
                        best, best_iou = int(candidate), overlap
            if not best:
                best, next_id = next_id, next_id + 1
            out[z][region] = best
    return out
