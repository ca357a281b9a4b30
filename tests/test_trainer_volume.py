"""The fine-tune process with a 3-D start model: session slices become sparse volume items."""

from __future__ import annotations

import queue

import numpy as np
import pytest
from trainer_kill_helper import request

from napari_unet.core.checkpoint.format import load_checkpoint
from napari_unet.core.errors import TrainingDataError
from napari_unet.session import Session
from napari_unet.trainer.events import PoolChanged, TrainerFailed, TrainerFinished, VersionPublished
from napari_unet.trainer.process import run_trainer
from napari_unet.trainer.volume import volume_items
from tests.volume_helpers import balls


def start_3d(path):
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet3d_aniso", depth=1, base_channels=4, out_channels=1)
    return save_checkpoint(path, model, task="binary")


def session_with_two_slices(folder):
    """A (16, 64, 64) Z-stack with slices 6 and 9 reviewed (binary labels)."""
    image, truth = balls()
    session = Session.create(folder)
    image_id = session.add_image("balls", axes="ZYX", image=image, task="binary")
    for z in (6, 9):
        labels = (truth[z] > 0).astype(np.uint8)
        session.save_slice(image_id, z, labels=labels, reviewed=np.ones(labels.shape, bool))
    return session, image_id, truth


def run_inline(req) -> list:
    events = queue.Queue()
    run_trainer(req.to_dict(), events, queue.Queue())
    return [events.get_nowait() for _ in range(events.qsize())]


def test_reviewed_slices_become_one_sparse_volume_item(tmp_path):
    session, image_id, truth = session_with_two_slices(tmp_path / "s")
    from napari_unet.core.inference.normalization import NormalizationConfig

    (item,) = volume_items(session, session.training_items(), NormalizationConfig())
    assert item.image.shape == (1, *truth.shape) and item.image.dtype == np.float32
    assert item.labels.shape == truth.shape and item.name == f"{image_id}/volume"
    annotated = np.flatnonzero(item.mask.any(axis=(1, 2)))
    assert annotated.tolist() == [6, 9]  # every other voxel is ignored
    np.testing.assert_array_equal(item.labels[6] > 0, truth[6] > 0)


def test_a_3d_start_model_fine_tunes_on_volumes_and_publishes(tmp_path):
    folder = tmp_path / "session"
    session_with_two_slices(folder)
    start = start_3d(tmp_path / "start3d.pt")
    train = {"steps": 3, "val_fraction": 0.0, "patch_shape": [32, 32], "batch_size": 1}
    events = run_inline(request(folder, start, train=train))
    assert isinstance(events[-1], TrainerFinished), events[-1]
    (pool, *_) = [e for e in events if isinstance(e, PoolChanged)]
    assert pool.n_items == 1 and pool.annotated_pixels == 2 * 64 * 64
    (published,) = [e for e in events if isinstance(e, VersionPublished)]
    loaded = load_checkpoint(published.path)
    assert loaded.info.spatial_dims == 3 and loaded.info.arch == "unet3d_aniso"


def test_a_2d_image_in_the_session_is_one_sentence_for_a_3d_model(tmp_path):
    folder = tmp_path / "session"
    session = Session.create(folder)
    image, truth = balls()
    image_id = session.add_image("plane", axes="YX", image=image[6], task="binary")
    labels = (truth[6] > 0).astype(np.uint8)
    session.save_slice(image_id, 0, labels=labels, reviewed=np.ones(labels.shape, bool))
    with pytest.raises(TrainingDataError, match="3-D model learns from Z-stacks"):
        from napari_unet.core.inference.normalization import NormalizationConfig

        volume_items(session, session.training_items(), NormalizationConfig())
    events = run_inline(request(folder, start_3d(tmp_path / "s.pt"), train={"steps": 1}))
    assert isinstance(events[-1], TrainerFailed) and "Z-stacks" in events[-1].message
    assert "\n" not in events[-1].message


def test_new_model_section_offers_a_3d_unet_with_the_voxel_size(tmp_path):
    from napari_unet.core.checkpoint.new_model import (
        NEW_ARCHITECTURES,
        NewModelConfig,
        new_checkpoint,
    )

    assert "unet3d_aniso" in dict(NEW_ARCHITECTURES)
    config = NewModelConfig(arch="unet3d_aniso", task="instances", voxel_size=(4.0, 1.0, 1.0))
    loaded = load_checkpoint(new_checkpoint(config, tmp_path / "new3d.pt"))
    assert loaded.info.spatial_dims == 3 and loaded.model.out_channels == 3
    assert tuple(loaded.model.config["voxel_size"]) == (4.0, 1.0, 1.0)
