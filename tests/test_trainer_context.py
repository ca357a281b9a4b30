"""The fine-tune process with a 2.5-D start model (issue 20): each corrected slice is fed with
its neighbours from the session's image (mirrored at the stack's ends); versions stay 2.5-D."""

from __future__ import annotations

import queue

import numpy as np
from trainer_kill_helper import request

from napari_unet.core.checkpoint.format import load_checkpoint, save_checkpoint
from napari_unet.core.inference.normalization import NormalizationConfig
from napari_unet.core.models import build_model
from napari_unet.session import Session
from napari_unet.trainer.context import context_slice_items
from napari_unet.trainer.events import PoolChanged, TrainerFailed, TrainerFinished, VersionPublished
from napari_unet.trainer.process import run_trainer
from tests.volume_helpers import balls


def start_25d(path, radius=1):
    import torch

    torch.manual_seed(0)
    net = build_model("unet", depth=1, base_channels=4, in_channels=2 * radius + 1, out_channels=1)
    return save_checkpoint(path, net, task="binary", provenance={"context_slices": radius})


def session_with_slices(folder, slices=(0, 6, 9)):
    """A (16, 64, 64) Z-stack whose ``slices`` are reviewed (binary labels)."""
    image, truth = balls()
    session = Session.create(folder)
    image_id = session.add_image("balls", axes="ZYX", image=image, task="binary")
    for z in slices:
        labels = (truth[z] > 0).astype(np.uint8)
        session.save_slice(image_id, z, labels=labels, reviewed=np.ones(labels.shape, bool))
    return session, image_id, image, truth


def run_inline(req) -> list:
    events = queue.Queue()
    run_trainer(req.to_dict(), events, queue.Queue())
    return [events.get_nowait() for _ in range(events.qsize())]


def test_each_corrected_slice_gets_its_mirrored_neighbours(tmp_path):
    session, image_id, image, truth = session_with_slices(tmp_path / "s", slices=(0, 6, 15))
    raw = NormalizationConfig(mode="none")
    items = context_slice_items(session, session.training_items(), 2, raw, flat_copies=False)
    assert [item.name for item in items] == [f"{image_id}/{z:05d}" for z in (0, 6, 15)]
    first, middle, last = items
    assert first.image.shape == (5, 64, 64) and first.image.dtype == np.float32
    np.testing.assert_array_equal(first.image, image[[2, 1, 0, 1, 2]])  # mirrored at z = 0
    np.testing.assert_array_equal(middle.image, image[4:9])
    np.testing.assert_array_equal(last.image, image[[13, 14, 15, 14, 13]])
    np.testing.assert_array_equal(middle.labels, truth[6] > 0)


def test_a_25d_start_model_fine_tunes_and_publishes_a_25d_version(tmp_path):
    folder = tmp_path / "session"
    session_with_slices(folder)
    start = start_25d(tmp_path / "start.pt")
    train = {"steps": 3, "val_fraction": 0.0, "batch_size": 1}
    events = run_inline(request(folder, start, train=train))
    assert isinstance(events[-1], TrainerFinished), events[-1]
    (pool, *_) = [e for e in events if isinstance(e, PoolChanged)]
    assert pool.n_items == 3 and pool.annotated_pixels == 3 * 64 * 64
    (published,) = [e for e in events if isinstance(e, VersionPublished)]
    loaded = load_checkpoint(published.path)
    assert loaded.info.in_channels == 3 and loaded.info.context_slices == 1
    assert loaded.model.context_slices == 1


def test_a_2d_image_is_one_sentence_for_a_25d_model(tmp_path):
    folder = tmp_path / "session"
    session = Session.create(folder)
    image, truth = balls()
    image_id = session.add_image("plane", axes="YX", image=image[6], task="binary")
    labels = (truth[6] > 0).astype(np.uint8)
    session.save_slice(image_id, 0, labels=labels, reviewed=np.ones(labels.shape, bool))
    events = run_inline(request(folder, start_25d(tmp_path / "s.pt"), train={"steps": 1}))
    assert isinstance(events[-1], TrainerFailed)
    message = events[-1].message
    assert "2.5-D model learns each slice" in message and "Z-stack" in message
    assert "\n" not in message


def simulate_folders(tmp_path):
    import tifffile

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    image, truth = balls((8, 32, 32))
    tifffile.imwrite(images / "vol.tif", image, metadata={"axes": "ZYX"})
    tifffile.imwrite(labels / "vol.tif", (truth > 0).astype(np.uint8), metadata={"axes": "ZYX"})
    return images, labels


def simulate_argv(tmp_path, images, labels, *extra):
    argv = ["simulate", "--images", str(images), "--labels", str(labels), "--task", "binary"]
    argv += ["--rounds", "1", "--per-round", "2", "--steps-per-round", "2", "--eval-images", "2"]
    argv += ["--patch", "16", "--tile", "32", "--device", "cpu", "--threads", "1"]
    return [*argv, "--json", str(tmp_path / "sim.json"), *extra]


def test_simulate_with_a_25d_model_uses_every_slice_with_its_neighbours(tmp_path):
    import json

    from napari_unet.cli import main

    images, labels = simulate_folders(tmp_path)
    start = start_25d(tmp_path / "start.pt", radius=2)
    assert main(simulate_argv(tmp_path, images, labels, "--init", str(start))) == 0
    summary = json.loads((tmp_path / "sim.json").read_text())
    assert summary["config"]["n_images"] == 8  # one item per slice of the stack
    assert summary["config"]["model"]["in_channels"] == 5  # not adapted to one channel
    assert [r["corrected_images"] for r in summary["rounds"]] == [0, 2]
    (tmp_path / "sim.json").unlink()
    assert main(simulate_argv(tmp_path, images, labels, "--context-slices", "1")) == 0
    summary = json.loads((tmp_path / "sim.json").read_text())
    assert summary["config"]["model"]["in_channels"] == 3


def test_simulate_context_slices_on_2d_images_is_one_sentence(tmp_path, capsys):
    import tifffile

    from napari_unet.cli import main

    images, labels = simulate_folders(tmp_path)
    for folder in (images, labels):
        tifffile.imwrite(folder / "vol.tif", tifffile.imread(folder / "vol.tif")[3])
    assert main(simulate_argv(tmp_path, images, labels, "--context-slices", "1")) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no Z axis of 2 or more" in err[0]
    assert not (tmp_path / "sim.json").exists()


def test_a_25d_version_is_refreshed_with_each_slice_and_its_neighbours(tmp_path):
    """The hot swap's re-prediction (Repredictor) of a version the trainer published."""
    from napari_unet._widgets import volume_run as V

    image = balls()[0]
    path = start_25d(tmp_path / "v.pt", radius=1)
    assert V.checkpoint_context(str(path)) == 1
    assert V.checkpoint_context(str(tmp_path / "missing.pt")) == 0
    stacked = V.refresh_image(image, "ZYX", None, [0, 7], V.checkpoint_context(str(path)))
    assert stacked.shape == (2, 3, 64, 64)
    np.testing.assert_array_equal(stacked[0], image[[1, 0, 1]])
    np.testing.assert_array_equal(stacked[1], image[[6, 7, 8]])
    plain = V.refresh_image(image, "ZYX", None, [7], 0)
    np.testing.assert_array_equal(plain, image[[7]][:, None])
