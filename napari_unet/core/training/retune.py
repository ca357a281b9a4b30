"""Re-tune a trained model's post-processing on its held-back tiles (issue 17).

After training, :func:`tune_best` scores the candidate operating points
(:mod:`napari_unet.core.training.operating_point` for instance models,
:mod:`~napari_unet.core.training.operating_point_semantic` for binary and 2-class semantic ones)
on the validation tiles the run never trained on
and stores the best in ``best.pt`` (``provenance["postprocess"]``, ``["operating_point"]``), so the
version the user gets carries settings chosen on their own data, not inherited from its parent.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path

from napari_unet.core.training.config import CheckpointEvent, TrainConfig, TrainEvent
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.run_parts import RunParts, RunProgress


def tune_best(
    best_path: Path, val_items: Sequence[TrainingItem], config: TrainConfig
) -> tuple[dict | None, bool]:
    """Re-tune the post-processing of ``best_path`` on ``val_items`` and store it there.

    Returns:
        ``(report, changed)``: ``provenance["operating_point"]`` now in the checkpoint (None when
        the held-back tiles hold no object: nothing is written) and whether the stored
        post-processing changed.
    """
    from napari_unet.core.checkpoint.format import load_checkpoint, save_checkpoint
    from napari_unet.core.inference.prediction import PredictConfig

    loaded = load_checkpoint(best_path)
    info = loaded.info
    predict_config = PredictConfig(
        tile_shape=info.tile_shape or (512, 512), overlap=info.overlap, device=config.device
    )
    point = _choose(loaded.model, info, val_items, predict_config, config)
    if point is None:
        return None, False
    provenance = {**info.provenance, "operating_point": point.report()}
    if point.changed:
        inherited = info.provenance.get("postprocess") or {}
        provenance["postprocess"] = {**inherited, **point.settings()}
    save_checkpoint(
        best_path,
        loaded.model,
        task=info.task,
        class_names=info.class_names,
        normalization=info.normalization,
        tile_shape=info.tile_shape,
        overlap=info.overlap,
        provenance=provenance,
        name=info.name,
        description=info.description,
    )
    return point.report(), point.changed


def _choose(model, info, val_items: Sequence[TrainingItem], predict_config, config: TrainConfig):
    """The instance or the binary/2-class semantic operating point (None: nothing to tune)."""
    tile = config.val_tile
    if info.task == "instances":
        from napari_unet.core.training.operating_point import choose_operating_point

        return choose_operating_point(
            model, val_items, base=info.postprocess_config(), predict_config=predict_config,
            tile=tile,
        )  # fmt: skip
    from napari_unet.core.training.operating_point_semantic import (
        choose_semantic_operating_point,
    )

    return choose_semantic_operating_point(
        model, val_items, task=info.task, base=info.postprocess_config(output="semantic"),
        predict_config=predict_config, tile=tile, targets=config.targets,
    )  # fmt: skip


def retune_after_training(
    run: RunParts, progress: RunProgress, reason: str
) -> Generator[TrainEvent, None, dict | None]:
    """Re-choose the post-processing on the held-back tiles (not after a Stop): instance models
    (2-D and 3-D), binary and 2-class semantic 2-D models."""
    from napari_unet.core.training.operating_point_semantic import tunable_semantic

    config = run.config
    tunable = config.task == "instances" or tunable_semantic(
        config.task, int(getattr(run.model, "out_channels", 0))
    )
    tune = config.tune_postprocess and tunable and bool(progress.val_batches)
    volume = getattr(run.model, "spatial_dims", 2) == 3  # 3-D: instances only (3-D watershed)
    tune = tune and (config.task == "instances" or not volume)
    if not tune or progress.step == 0 or reason == "stopped":  # a Stop must stop now
        return None
    report, changed = tune_best(run.writer.best_path, run.validation.items, config)
    if changed:  # listeners (the trainer process) publish the re-tuned model
        yield CheckpointEvent(
            progress.step, run.writer.best_path, "best", dict(progress.best_metrics)
        )
    return report
