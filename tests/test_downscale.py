"""Issue 17: the scale chosen from the corrected objects. Objects far larger than the U-Net's
receptive field (whole cells of hundreds of pixels) make a 2-D instance U-Net see the images k
times smaller (``UNetConfig.downscale``), in ``train``, ``simulate`` and the Fine-tune trainer,
with the choice said in the data line; labels, loss, tiles and post-processing stay in the
image's own pixels."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skimage.io import imsave

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import (
    builtin_checkpoints,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from napari_unet.core.inference.prediction import PredictConfig, predict
from napari_unet.core.models import build_model
from napari_unet.core.training.downscale import choose_downscale, with_downscale
from napari_unet.core.training.fingerprint import fingerprint
from napari_unet.core.training.items import TrainingItem

RF, MULTIPLE = 200, 16  # the depth-4 U-Net at full resolution


def _net(k: int = 1, depth: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(
        "unet", depth=depth, base_channels=4, in_channels=1, out_channels=3, downscale=k
    ).eval()


def test_the_net_sees_the_image_k_times_smaller_and_answers_in_its_pixels():
    full, small = _net(1), _net(2)
    small.load_state_dict(full.state_dict())
    assert small.size_multiple == 2 * full.size_multiple == 8
    assert small.valid_input_shape((50, 60)) == (56, 64)
    image = torch.rand(1, 1, 48, 64)
    with torch.no_grad():
        out = small(image)
        expected = torch.nn.functional.interpolate(
            full(torch.nn.functional.avg_pool2d(image, 2)), size=(48, 64), mode="bilinear"
        )
    assert out.shape == (1, 3, 48, 64)
    torch.testing.assert_close(out, expected)
    assert "downscale" not in full.config and small.config["downscale"] == 2
    with pytest.raises(ValueError, match="downscale"):
        build_model("unet", downscale=9)


def test_a_checkpoint_keeps_the_factor_and_predicts_any_image_size(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _net(3), task="instances")
    loaded = load_checkpoint(path)
    assert loaded.model.config["downscale"] == 3 and loaded.model.size_multiple == 12
    image = np.random.default_rng(0).random((70, 101)).astype(np.float32)
    probabilities = predict(
        loaded.model, image, "YX", task="instances", config=PredictConfig(tile_shape=(48, 48))
    )
    assert probabilities.shape == (3, 70, 101) and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-3)


@pytest.mark.parametrize(
    ("diameter", "shape", "expected"),
    [
        (None, (512, 512), 1),  # no objects
        (23.0, (512, 512), 1),  # nuclei: about the size the recipe was made for (25 px)
        (37.0, (512, 512), 1),  # up to 1.5 x 25 px: left as it is
        (38.0, (512, 512), 2),  # 19 px seen
        (91.0, (1024, 1280), 4),  # 23 px seen
        (136.0, (1536, 1920), 5),  # 27 px seen
        (250.0, (1024, 1024), 8),  # whole fibroblasts: at most 8 (31 px seen)
        (250.0, (80, 80), 2),  # the shrunk image spans two 16-px periods: 80 < 3 x 32, >= 2 x 32
    ],
)
def test_the_factor_brings_the_median_object_nearest_25_px(diameter, shape, expected):
    assert choose_downscale(diameter, shape, MULTIPLE) == expected


def _discs(shape=(384, 384), radius=80, n=3, seed=0) -> list[TrainingItem]:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    items = []
    for i in range(n):
        labels = np.zeros(shape, np.int32)
        for k, (cy, cx) in enumerate([(100, 100), (100, 280), (280, 190)]):
            labels[(yy - cy - i * 3) ** 2 + (xx - cx) ** 2 <= radius**2] = k + 1
        image = (labels > 0).astype(np.float32)[None]
        image += np.random.default_rng(seed + i).normal(0, 0.1, image.shape).astype(np.float32)
        items.append(TrainingItem(image=image, labels=labels, name=f"d{i}"))
    return items


def test_the_fingerprint_chooses_the_factor_for_instances_and_says_so():
    items = _discs()  # 160-px discs against a 200-px field
    kwargs = {"size_multiple": MULTIPLE, "receptive_field": RF, "default_patch": (256, 256)}
    data = fingerprint(items, task="instances", can_downscale=True, **kwargs)
    assert data.downscale == 6 and data.receptive_field == 1200 and not data.scale_warning
    assert data.patch_shape == (384, 384)  # 1536 asked (256 seen), reduced to the images
    assert "the net sees the images 6x smaller" in data.describe()
    # semantic regions (e.g. a membrane network) are not objects of a size: a warning only
    semantic = fingerprint(items, task="semantic", can_downscale=True, **kwargs)
    assert semantic.downscale == 1 and "see the images 6x smaller (train --downscale 6" in (
        semantic.scale_warning
    )
    assert fingerprint(items, task="instances", **kwargs).downscale == 1  # the net cannot
    given = fingerprint(items, task="instances", can_downscale=True, downscale=1, **kwargs)
    assert given.downscale == 1 and given.patch_shape == (256, 256)


def _write(folder, radius=80) -> None:
    for kind in ("images", "labels"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for item in _discs(radius=radius):
        image = (item.image[0] * 1500 + 300).clip(0).astype(np.uint16)
        imsave(folder / "images" / f"{item.name}.png", image, check_contrast=False)
        imsave(folder / "labels" / f"{item.name}.png", item.labels.astype(np.uint16),
               check_contrast=False)  # fmt: skip


def _train(folder, out, *extra: str) -> list[str]:
    return ["train", "--images", str(folder / "images"), "--labels", str(folder / "labels"),
            "--task", "instances", "--steps", "2", "--device", "cpu", "--threads", "1",
            "--out", str(out), *extra]  # fmt: skip


def test_train_chooses_the_factor_and_a_fine_tune_copies_its_start(tmp_path, caplog):
    _write(tmp_path)
    caplog.set_level("INFO")
    new = tmp_path / "new.pt"
    assert main(_train(tmp_path, new, "--model", "unet")) == 0
    assert load_checkpoint(new).model.config["downscale"] == 6
    assert "the net sees the images 6x smaller" in caplog.text
    kept = tmp_path / "kept.pt"  # the user's factor wins
    assert main(_train(tmp_path, kept, "--model", "unet", "--downscale", "1")) == 0
    assert "downscale" not in load_checkpoint(kept).model.config
    builtin = builtin_checkpoints()["fluo-nuclei"]
    before = read_checkpoint_info(builtin).model_config
    tuned = tmp_path / "tuned.pt"  # the built-in start (20-px nuclei) sees whole cells halved
    assert main(_train(tmp_path, tuned)) == 0
    assert load_checkpoint(tuned).model.config["downscale"] == 6
    assert read_checkpoint_info(builtin).model_config == before, "the built-in is not changed"
    copy = tmp_path / "tuned.training" / "fluo-nuclei.downscale6.pt"
    assert read_checkpoint_info(copy).provenance["downscaled_from"] == str(builtin)


def test_train_refuses_a_factor_the_net_cannot_take(tmp_path, capsys):
    _write(tmp_path)
    out = tmp_path / "x.pt"
    assert main(_train(tmp_path, out, "--model", "unet_original", "--downscale", "2")) != 0
    assert "--downscale 2 needs a 2-D U-Net" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):  # argparse: "expected auto or an integer 1-8"
        main(_train(tmp_path, out, "--model", "unet", "--downscale", "x"))


def test_simulate_fine_tunes_the_built_in_at_the_chosen_scale(tmp_path, capsys):
    _write(tmp_path)
    out = tmp_path / "sim.json"
    argv = ["simulate", "--images", str(tmp_path / "images"), "--labels",
            str(tmp_path / "labels"), "--task", "instances", "--model", "fluo-nuclei",
            "--rounds", "1", "--per-round", "1", "--steps-per-round", "1", "--eval-images", "1",
            "--device", "cpu", "--threads", "1", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(out.read_text())["config"]["model"]["downscale"] == 6
    assert main([*argv, "--downscale", "2"]) == 0  # the user's factor wins
    assert json.loads(out.read_text())["config"]["model"]["downscale"] == 2
    refused = [*argv[:-2], "--json", str(tmp_path / "no.json"), "--downscale", "2"]
    refused[refused.index("fluo-nuclei")] = "unet_original"
    assert main(refused) != 0 and not (tmp_path / "no.json").exists()
    assert "--downscale 2 needs a 2-D U-Net" in capsys.readouterr().err


def test_the_fine_tune_trainer_copies_its_start_at_the_chosen_scale(tmp_path):
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.trainer.guard import data_settings
    from napari_unet.trainer.pool import TrainerPool

    start = save_checkpoint(tmp_path / "start.pt", _net(1, depth=4), task="instances")
    info = read_checkpoint_info(start)
    data, config = data_settings(_discs(), info, TrainConfig(task="instances"))
    assert data.downscale == 6 and config.patch_shape == (384, 384)
    pool = SimpleNamespace(info=info, start_path=start, run_dir=tmp_path / "run")
    TrainerPool._downscale(pool, data.downscale)
    assert read_checkpoint_info(pool.start_path).model_config["downscale"] == 6
    assert pool.info.model_config["downscale"] == 6
    assert "downscale" not in read_checkpoint_info(start).model_config
    assert with_downscale(pool.start_path, 6, tmp_path) == pool.start_path  # already so


def test_a_factor_set_before_is_kept_where_the_objects_ask_for_none(tmp_path):
    """A model the user made see the images 3x smaller (``--downscale 3``) keeps it when it is
    fine-tuned on objects that ask for no factor, and for semantic labels; large instance
    objects choose their own."""
    small = _discs(radius=15)  # 30-px discs: about the size the recipe was made for
    kwargs = {"size_multiple": MULTIPLE, "receptive_field": RF, "can_downscale": True}
    assert fingerprint(small, task="instances", **kwargs).downscale == 1
    assert fingerprint(small, task="instances", start_downscale=3, **kwargs).downscale == 3
    assert fingerprint(_discs(), task="semantic", start_downscale=3, **kwargs).downscale == 3
    assert fingerprint(_discs(), task="instances", start_downscale=2, **kwargs).downscale == 6
    start = save_checkpoint(tmp_path / "k3.pt", _net(3, depth=4), task="instances")
    _write(tmp_path, radius=15)
    tuned = tmp_path / "tuned.pt"
    assert main(_train(tmp_path, tuned, "--model", str(start))) == 0
    assert load_checkpoint(tuned).model.config["downscale"] == 3


def test_the_scale_warning_asks_for_no_factor_the_net_already_has():
    """80-px cells through a depth-2 net (field 44 px): the rule makes it see them 3x smaller,
    where they are still large for its field; the line says so instead of asking for 3x."""
    items = _discs(shape=(320, 320), radius=40, n=2)
    data = fingerprint(items, task="instances", size_multiple=4, receptive_field=44,
                       can_downscale=True)  # fmt: skip
    assert data.downscale == 3 and "even with the images seen 3x smaller" in data.scale_warning
    assert "--downscale 3" not in data.scale_warning
    full = fingerprint(items, task="instances", size_multiple=4, receptive_field=44)
    assert full.downscale == 1 and "let it see the images 3x smaller" in full.scale_warning
