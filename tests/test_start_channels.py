"""A start model for images with another channel count (issue 17, best start for a new modality):
a one-channel model fine-tuned on RGB gets an adapted first convolution (and back), greyscale
stored as RGB keeps one channel, in ``train``, ``simulate``, ``predict`` and the Fine-tune trainer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue

import numpy as np
import pytest
import torch
from skimage.io import imsave
from trainer_kill_helper import discs, request, start_model

from napari_unet.cli import main
from napari_unet.core.checkpoint.builtin import resolve_checkpoint
from napari_unet.core.checkpoint.channels import (
    adapt_channels,
    adapt_model_channels,
    collapse_grey,
    one_channel_if_grey,
    plan_channels,
)
from napari_unet.core.checkpoint.format import load_checkpoint, save_checkpoint
from napari_unet.core.errors import ChannelMismatchError
from napari_unet.core.models import build_model
from napari_unet.core.synthetic import synthetic_nuclei
from napari_unet.core.training.items import TrainingItem
from napari_unet.session import Session
from napari_unet.trainer.events import PoolChanged, TrainerFinished, VersionPublished
from napari_unet.trainer.process import run_trainer


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def tiny(in_channels: int, out_channels: int = 3):
    torch.manual_seed(0)
    return build_model(
        "unet", depth=2, base_channels=4, in_channels=in_channels, out_channels=out_channels
    ).eval()


def test_one_to_three_channels_sees_the_channel_mean_and_keeps_every_other_weight() -> None:
    model = tiny(1)
    rgb = adapt_model_channels(model, 3).eval()
    assert rgb.in_channels == 3 and rgb.config["in_channels"] == 3
    old, new = model.state_dict(), rgb.state_dict()
    changed = [k for k in old if old[k].shape != new[k].shape]
    assert len(changed) == 1 and new[changed[0]].shape[1] == 3
    assert all(torch.equal(old[k], new[k]) for k in old if k not in changed)
    grey = torch.rand(1, 1, 32, 32)
    colour = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rgb(grey.expand(-1, 3, -1, -1)), model(grey))
        torch.testing.assert_close(rgb(colour), model(colour.mean(dim=1, keepdim=True)))


def test_three_to_one_channel_sums_and_other_counts_are_refused() -> None:
    model = tiny(3)
    grey = adapt_model_channels(model, 1).eval()
    image = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grey(image), model(image.expand(-1, 3, -1, -1)))
    with pytest.raises(ChannelMismatchError, match="cannot be adapted"):
        adapt_model_channels(tiny(2), 3)


def test_adapted_checkpoint_keeps_task_names_operating_point_and_the_start_file(tmp_path) -> None:
    post = {"threshold": 0.7, "interior_threshold": 0.4, "min_size": 20, "seed_erosion": 0}
    start = save_checkpoint(
        tmp_path / "start.pt", tiny(1), task="instances", provenance={"postprocess": post}
    )
    before = digest(start)
    out = adapt_channels(start, 3, tmp_path / "rgb.pt")
    assert digest(start) == before, "the start model's file is never changed"
    loaded = load_checkpoint(out)
    assert loaded.info.in_channels == 3 and loaded.info.model_config["in_channels"] == 3
    assert loaded.info.task == "instances" and loaded.info.out_channels == 3
    assert loaded.info.provenance["postprocess"] == post
    assert loaded.info.provenance["start_in_channels"] == 1
    assert loaded.info.provenance["channels_adapted_from"] == str(start)


def test_plan_channels_tells_grey_from_colour_and_refuses_mixed_counts() -> None:
    rgb = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    grey_rgb = np.repeat(rgb[:1], 3, axis=0)
    assert plan_channels([rgb[:1]], 1) == "same"
    assert plan_channels([grey_rgb, rgb[:1]], 1) == "grey"
    assert plan_channels([rgb, rgb], 1) == "adapt"
    assert plan_channels([rgb[:1]], 3) == "adapt"
    with pytest.raises(ChannelMismatchError, match="different channel counts"):
        plan_channels([rgb, rgb[:2]], 1)
    with pytest.raises(ChannelMismatchError, match="only a one-channel model"):
        plan_channels([rgb[:2]], 3)
    item = TrainingItem(image=grey_rgb, labels=np.zeros((8, 8), np.int32), name="a")
    (kept,) = collapse_grey([item])
    assert kept.image.shape == (1, 8, 8) and np.array_equal(kept.image[0], grey_rgb[0])
    image, axes = one_channel_if_grey(np.moveaxis(grey_rgb, 0, -1), "YXC", 1)
    assert axes == "YX" and image.shape == (8, 8)
    assert one_channel_if_grey(np.moveaxis(rgb, 0, -1), "YXC", 1)[1] == "YXC"


def write_rgb_pairs(folder, *, grey: bool, n: int = 3, size: int = 64):
    """RGB PNGs of nuclei (dark on a bright stain when not ``grey``) and their instance labels."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i in range(n):
        image, truth = synthetic_nuclei((size, size), n_nuclei=5, seed=i)
        scaled = (255 * (image - image.min()) / (np.ptp(image) + 1e-6)).astype(np.uint8)
        rgb = np.stack([scaled] * 3, axis=-1)
        if not grey:
            rgb = np.stack([255 - scaled, 200 - scaled // 2, 255 - scaled // 3], axis=-1)
        imsave(folder / "images" / f"t{i}.png", rgb.astype(np.uint8), check_contrast=False)
        imsave(folder / "labels" / f"t{i}.png", truth.astype(np.uint16), check_contrast=False)
    return folder / "images", folder / "labels"


def train_argv(images, labels, model, out) -> list[str]:
    return [
        "train", "--images", str(images), "--labels", str(labels), "--model", model,
        "--task", "instances", "--steps", "2", "--patch", "64", "--batch-size", "2",
        "--val-fraction", "0", "--device", "cpu", "--threads", "1", "--out", str(out),
    ]  # fmt: skip


@pytest.mark.parametrize(("grey", "channels"), [(False, 3), (True, 1)])
def test_train_fluo_nuclei_on_rgb_then_predict_the_rgb_images(
    tmp_path, caplog, grey, channels
) -> None:
    """Colour images adapt the built-in's first layer; greyscale stored as RGB keeps one
    channel; either way ``predict`` with the fine-tuned model takes the same RGB files."""
    caplog.set_level(logging.INFO)
    images, labels = write_rgb_pairs(tmp_path / "data", grey=grey)
    builtin = resolve_checkpoint("fluo-nuclei")
    before = digest(builtin)
    out = tmp_path / "model.pt"
    assert main(train_argv(images, labels, "fluo-nuclei", out)) == 0
    assert digest(builtin) == before
    loaded = load_checkpoint(out)
    assert loaded.info.in_channels == channels and loaded.model.in_channels == channels
    assert loaded.info.model_config["in_channels"] == channels
    assert loaded.info.task == "instances"
    said = "one channel is used" if grey else "its first layer is adapted"
    assert said in caplog.text
    assert main(["predict", str(images), "--model", str(out), "--labels", "instances",
                 "--out", str(tmp_path / "pred"), "--device", "cpu"]) == 0  # fmt: skip
    written = sorted((tmp_path / "pred").glob("*_labels.tif"))
    assert len(written) == 3


def test_train_instances_without_model_starts_from_the_builtin(tmp_path, caplog) -> None:
    """``train --task instances`` with no ``--model`` fine-tunes fluo-nuclei (said in one line),
    adapted to RGB; ``--model unet`` still trains a new model."""
    caplog.set_level(logging.INFO)
    images, labels = write_rgb_pairs(tmp_path / "data", grey=False, n=2)
    argv = train_argv(images, labels, "unet", tmp_path / "m.pt")
    del argv[argv.index("--model") : argv.index("--model") + 2]
    assert main(argv) == 0
    assert "no --model: fine-tuning the built-in fluo-nuclei" in caplog.text
    tuned = load_checkpoint(tmp_path / "m.pt")
    builtin = load_checkpoint(resolve_checkpoint("fluo-nuclei"))
    assert tuned.info.in_channels == 3 and tuned.info.task == "instances"
    assert tuned.info.model_config["base_channels"] == builtin.info.model_config["base_channels"]
    caplog.clear()
    assert main(train_argv(images, labels, "unet", tmp_path / "new.pt")) == 0
    assert "no --model" not in caplog.text and "first layer is adapted" not in caplog.text
    assert load_checkpoint(tmp_path / "new.pt").info.in_channels == 3


def test_train_refuses_a_two_channel_model_on_rgb_in_one_sentence(tmp_path, capsys) -> None:
    images, labels = write_rgb_pairs(tmp_path / "data", grey=False, n=2)
    start = save_checkpoint(tmp_path / "two.pt", tiny(2), task="instances")
    assert main(train_argv(images, labels, str(start), tmp_path / "m.pt")) == 2
    err = capsys.readouterr().err
    assert "takes 2 channels but the images have 3" in err and "Traceback" not in err
    assert not (tmp_path / "m.pt").exists()


def test_simulate_from_a_one_channel_checkpoint_on_rgb(tmp_path) -> None:
    images, labels = write_rgb_pairs(tmp_path / "data", grey=False, n=4)
    start = save_checkpoint(tmp_path / "start.pt", tiny(1), task="instances")
    out = tmp_path / "sim.json"
    argv = ["simulate", "--images", str(images), "--labels", str(labels), "--init", str(start)]
    argv += ["--task", "instances", "--rounds", "1", "--per-round", "2", "--eval-images", "2"]
    argv += ["--steps-per-round", "2", "--patch", "32", "--tile", "64", "--device", "cpu"]
    argv += ["--threads", "1", "--json", str(out)]
    assert main(argv) == 0
    rounds = json.loads(out.read_text(encoding="utf-8"))["rounds"]
    assert [r["steps"] for r in rounds] == [0, 2]


def test_trainer_fine_tunes_a_one_channel_model_on_an_rgb_session(tmp_path) -> None:
    folder = tmp_path / "session"
    image, labels = discs(0)
    rgb = np.stack([image, image // 2, 65535 - image], axis=-1)
    session = Session.create(folder)
    image_id = session.add_image("rgb", axes="YXC", image=rgb, task="binary")
    session.save_slice(image_id, 0, labels=labels, reviewed=np.ones(labels.shape, bool))
    start = start_model(tmp_path / "start.pt")
    before = digest(start)
    events = queue.Queue()
    run_trainer(request(folder, start, train={"steps": 3, "val_fraction": 0.0}).to_dict(),
                events, queue.Queue())  # fmt: skip
    got = [events.get_nowait() for _ in range(events.qsize())]
    assert isinstance(got[-1], TrainerFinished), got[-1]
    (published,) = [e for e in got if isinstance(e, VersionPublished)]
    loaded = load_checkpoint(Session.open(folder).version_path(published.version_id))
    assert loaded.info.in_channels == 3 and loaded.model.in_channels == 3
    pools = [e for e in got if isinstance(e, PoolChanged)]
    assert pools and "first layer is adapted" in pools[0].fingerprint
    assert digest(start) == before
