"""Tiny sessions and requests for the trainer tests (imported by the test files).

A session with one (2, 64, 64) stack of bright discs on noise; slice 0 is reviewed (labels 0/1),
slice 1 is not. The start model is a depth-2 binary U-Net with 4 base channels saved beside it.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.session import Session
from napari_unet.trainer.events import FinetuneRequest

SHAPE = (64, 64)


def discs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A (64, 64) uint16 image of bright discs on noise and its 0/1 uint8 labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    labels = np.zeros(SHAPE, np.uint8)
    for _ in range(4):
        cy, cx, r = rng.integers(8, 56), rng.integers(8, 56), rng.integers(5, 10)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    image = 1000.0 + 2000.0 * labels + rng.normal(0, 300, SHAPE)
    return image.clip(0, 65535).astype(np.uint16), labels


def start_model(path: Path, *, task: str = "binary", out_channels: int = 1) -> Path:
    """Save a tiny untrained U-Net checkpoint at ``path``."""
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=out_channels)
    return save_checkpoint(path, model, task=task)


def make_session(
    folder: Path, *, review: bool = True, labels_task: str = "binary", n_slices: int = 2
) -> tuple[Session, str, list[np.ndarray]]:
    """A session with one stack; slice 0 reviewed when ``review``. Returns the labels too."""
    pairs = [discs(seed) for seed in range(n_slices)]
    image = np.stack([p[0] for p in pairs])
    session = Session.create(folder)
    image_id = session.add_image("discs", axes="ZYX", image=image, task=labels_task)
    if review:
        review_slice(session, image_id, 0, pairs[0][1])
    return session, image_id, [p[1] for p in pairs]


def review_slice(session: Session, image_id: str, index: int, labels: np.ndarray) -> None:
    """Save ``labels`` for a slice and mark all of it reviewed."""
    session.save_slice(image_id, index, labels=labels, reviewed=np.ones(labels.shape, bool))


def request(folder: Path, start: Path | str, **changes: Any) -> FinetuneRequest:
    """A fast request: tiny patches, validation every step, CPU, one thread, no nice."""
    train = {
        "steps": 4,
        "batch_size": 2,
        "patch_shape": [32, 32],
        "val_fraction": 0.5,
        "val_tile": 32,
        "val_every": 2,
        "amp": False,
        "channels_last": False,
        "device": "cpu",
    }
    train.update(changes.pop("train", {}))
    settings = {
        "session": str(folder),
        "start_from": str(start),
        "train_config": train,
        "num_threads": 1,
        "device": "cpu",
        "nice": 0,
    }
    settings.update(changes)
    return FinetuneRequest(**settings)


def collect(events: Any, until: Any, timeout: float) -> list[Any]:
    """Events from ``events`` until ``until(event)`` is true or ``timeout`` s passed."""
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            event = events.get(timeout=0.05)
        except queue.Empty:
            continue
        seen.append(event)
        if until(event):
            break
    return seen
