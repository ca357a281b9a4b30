"""What the training loop writes: checkpoint provenance, ``latest.pt`` and ``best.pt``."""

from __future__ import annotations

from typing import Any

from napari_unet.core.training.config import CheckpointEvent
from napari_unet.core.training.run_parts import RunParts, RunProgress
from napari_unet.core.training.split import is_flat_copy
from napari_unet.core.training.state import capture_state


def provenance(run: RunParts, progress: RunProgress, metrics: dict[str, float]) -> dict[str, Any]:
    """The provenance written into a checkpoint: data sizes, steps, time, metrics, settings."""
    return {
        "data": {
            "n_images": sum(not is_flat_copy(item) for item in run.sampler.items),
            "annotated_pixels": run.sampler.annotated_pixels(),
            "validation_pixels": run.validation.annotated_pixels() if progress.val_batches else 0,
        },
        "steps": progress.step,
        "elapsed_s": round(progress.elapsed, 3),
        "metrics": metrics,
        "seed": run.config.seed,
        "train_config": run.config.to_dict(),
    }


def save_latest(run: RunParts, progress: RunProgress) -> CheckpointEvent:
    """Write ``latest.pt`` with the full training state (for resuming)."""
    state = capture_state(
        step=progress.step,
        elapsed_s=progress.elapsed,
        optimizer=run.optimizer,
        schedule=run.schedule,
        scaler=run.runner.scaler,
        sampler=run.sampler,
        generator=run.generator,
        extra={
            "best_score": progress.best_score,
            "best_metrics": progress.best_metrics,
            "bad_validations": progress.bad_validations,
            "train_config": run.config.to_dict(),
        },
    )
    path = run.writer.write("latest", provenance(run, progress, progress.best_metrics), state)
    progress.last_saved, progress.saved_s = progress.step, progress.elapsed
    return CheckpointEvent(step=progress.step, path=path, kind="latest")


def write_best(run: RunParts, progress: RunProgress, metrics: dict[str, float]) -> CheckpointEvent:
    """Write the model now as ``best.pt`` (the published model) with its validation ``metrics``."""
    path = run.writer.write("best", provenance(run, progress, metrics))
    progress.best_written, progress.best_step = True, progress.step
    return CheckpointEvent(progress.step, path, "best", dict(metrics))
