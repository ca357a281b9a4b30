"""One rank of a 2-process DDP run for ``tests/test_train_ddp.py`` (started with spawn)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


def items():
    """Two synthetic 64x64 nuclei images with their instance labels (binary targets)."""
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.synthetic import synthetic_nuclei
    from napari_unet.core.training.items import TrainingItem

    out = []
    for seed in range(2):
        image, labels = synthetic_nuclei((64, 64), n_nuclei=6, radius=(5.0, 8.0), seed=seed)
        image = normalize(image[None].astype(np.float32))
        out.append(TrainingItem(image=image, labels=(labels > 0).astype(np.int32), name=str(seed)))
    return out


def train_rank(rank: int, world: int, port: int, folder: str) -> None:
    """Train 4 steps as ``rank``; save the parameters and this rank's first training batch."""
    from napari_unet.core.models import build_model
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.core.training.distributed import RankInfo
    from napari_unet.core.training.distributed_loop import iter_train_distributed
    from napari_unet.core.training.step import StepRunner

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=1)
    config = TrainConfig(task="binary", steps=4, batch_size=2, patch_shape=(32, 32),
                         val_every=2, val_fraction=0.3, device="cpu", num_threads=1,
                         checkpoint_dir=str(Path(folder) / "run"))  # fmt: skip
    batches = []
    original = StepRunner.batch

    def recording(self):
        image, classes, weights = original(self)
        batches.append(image.numpy().copy())
        return image, classes, weights

    StepRunner.batch = recording  # only in this spawned process
    events = list_events(iter_train_distributed(model, items(), config, RankInfo(rank, world)))
    np.savez(
        Path(folder) / f"rank{rank}.npz",
        first_batch=batches[0],
        steps=len([e for e in events if type(e).__name__ == "StepEvent"]),
        losses=[e.loss for e in events if type(e).__name__ == "StepEvent"],
        **{k: v.detach().numpy() for k, v in model.named_parameters()},  # BN buffers: rank 0's
    )


def list_events(generator) -> list:
    """Every event of ``generator`` (its result is dropped)."""
    return list(generator)
