"""2.5-D flat copies by default (issue 20): each annotated slice is also trained on with itself as
its own neighbours in ``train``, ``simulate`` and the Fine-tune dock; the copies are not counted
and never sit on the other side of the validation split from their original."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_context25d import context_args, two_slices_annotated
from test_train_3d import balls, write_volume
from test_trainer_context import session_with_slices, simulate_argv, simulate_folders

from napari_unet.cli import build_parser
from napari_unet.core.errors import TrainingDataError
from napari_unet.core.inference.normalization import NormalizationConfig
from napari_unet.core.training.context import FLAT_SUFFIX, context_items, is_flat_copy
from napari_unet.core.training.split import split_validation

RAW = NormalizationConfig(mode="none")


def volume_items(depth=6, size=64, slices=(1, 3, 4), **kwargs):
    """2.5-D items (radius 1) of a (1, depth, size, size) noise volume annotated on ``slices``."""
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(1, depth, size, size)).astype(np.float32)
    labels = (rng.random((depth, size, size)) > 0.5).astype(np.uint8)
    mask = np.zeros((depth, size, size), bool)
    mask[list(slices)] = True
    return volume, context_items(volume, labels, mask, 1, normalization=RAW, name="v", **kwargs)


def test_context_items_give_each_slice_and_its_flat_copy_by_default():
    volume, items = volume_items()
    assert [item.name for item in items] == [
        "v[1]", "v[1]/flat", "v[3]", "v[3]/flat", "v[4]", "v[4]/flat"
    ]  # fmt: skip
    flat = items[1]
    for channel in range(3):
        np.testing.assert_array_equal(flat.image[channel], volume[0, 1])  # the centre, thrice
    assert flat.labels is items[0].labels and flat.annotated_mask is items[0].annotated_mask
    _, old = volume_items(flat_copies=False)
    assert [item.name for item in old] == ["v[1]", "v[3]", "v[4]"]


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.6])
def test_a_validation_tile_never_has_its_flat_copy_in_training(fraction):
    _, items = volume_items()
    for seed in range(5):
        train, val = split_validation(items, fraction, tile=16, seed=seed)
        assert val and not any(is_flat_copy(item) for item in val)
        by_name = {item.name: item for item in train}
        for held in val:
            for name in (held.name, held.name + FLAT_SUFFIX):
                assert not (by_name[name].mask & held.mask).any(), (seed, name)
        original, copy = by_name["v[3]"], by_name["v[3]" + FLAT_SUFFIX]
        np.testing.assert_array_equal(original.mask, copy.mask)  # same side, tile by tile


def test_counts_and_preflight_see_each_slice_once(tmp_path):
    from napari_unet.core.training.fingerprint import fingerprint
    from napari_unet.core.training.preflight import preflight
    from napari_unet.trainer.data import summarize

    _, items = volume_items(slices=(1, 3))
    counts = summarize(items, [], "binary")
    assert counts["n_slices"] == 2 and counts["annotated_pixels"] == 2 * 64 * 64
    print_ = fingerprint(items, task="binary", size_multiple=16, receptive_field=44)
    assert print_.n_images == 2 and print_.annotated_pixels == 2 * 64 * 64
    volume = np.random.default_rng(1).normal(size=(1, 4, 16, 16)).astype(np.float32)
    labels = np.zeros((4, 16, 16), np.uint8)
    mask = np.zeros((4, 16, 16), bool)
    mask[2, :4, :15] = True  # 60 annotated pixels: too few, copies or not
    labels[2, :2] = 1
    few = context_items(volume, labels, mask, 1, normalization=RAW, name="f")
    assert len(few) == 2
    with pytest.raises(TrainingDataError, match="only 60 pixel"):
        preflight(few, task="binary")


def test_train_context_slices_makes_flat_copies_unless_told_not_to(tmp_path):
    from napari_unet.cli import main
    from napari_unet.cli.train_context import prepare
    from napari_unet.core.checkpoint.format import read_checkpoint_info

    image, labels = balls()
    write_volume(tmp_path, image, labels, two_slices_annotated())
    argv = context_args(tmp_path, "--context-slices", "1")
    items = prepare(build_parser().parse_args(argv), None, RAW)
    assert [item.name for item in items] == ["vol[2]", "vol[2]/flat", "vol[5]", "vol[5]/flat"]
    old = prepare(build_parser().parse_args([*argv, "--no-flat-copies"]), None, RAW)
    assert [item.name for item in old] == ["vol[2]", "vol[5]"]
    assert main(argv) == 0
    data = read_checkpoint_info(tmp_path / "model.pt").provenance["data"]
    assert data["n_images"] == 2 and data["annotated_pixels"] == 2 * 32 * 32


def test_train_and_simulate_help_say_why_flat_copies_are_on(capsys):
    for command in ("train", "simulate"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--no-flat-copies" in text and "on by default because" in text


def test_simulate_adds_flat_copies_after_the_held_back_split(tmp_path, monkeypatch):
    import napari_unet.core.simulation.guard as guard
    import napari_unet.core.training.loop as loop
    from napari_unet.cli.simulate_context import context_items_for
    from napari_unet.core.simulation.config import SimulateConfig
    from napari_unet.core.training.config import TrainConfig

    images, labels = simulate_folders(tmp_path)
    args = build_parser().parse_args(
        simulate_argv(tmp_path, images, labels, "--context-slices", "1")
    )
    items, radius = context_items_for(args, None, RAW)
    assert radius == 1 and not any(is_flat_copy(item) for item in items)  # images of the run
    seen = {}

    def fake_iter_train(model, train, config, *, val_items=None, parent=None):
        seen["train"], seen["val"] = list(train), list(val_items or [])
        yield from ()
        return type("R", (), {"best_metrics": {"score": 0.0}, "best_path": None})()

    monkeypatch.setattr(loop, "iter_train", fake_iter_train)
    from napari_unet.core.simulation.versions import HeldBackScore, Verdict

    one = HeldBackScore(1.0, "score")
    monkeypatch.setattr(guard, "held_back", lambda *a: one)  # the parent wins
    monkeypatch.setattr(guard, "judge_child", lambda m, p, *a: Verdict(p, one, one, message="="))
    model = torch.nn.Conv2d(3, 1, 1)
    model.context_slices = 1
    config = SimulateConfig(task="binary", train=TrainConfig(val_fraction=0.3, val_tile=16))
    assert config.flat_copies
    list(guard.guarded_trainer(config, str(tmp_path), start_trained=True)(model, items[:4], 1))
    names = [item.name for item in seen["train"]]
    assert len(names) == 8 and sum(name.endswith(FLAT_SUFFIX) for name in names) == 4
    assert seen["val"] and not any(is_flat_copy(item) for item in seen["val"])
    by_name = {item.name: item for item in seen["train"]}
    for held in seen["val"]:
        assert not (by_name[held.name + FLAT_SUFFIX].mask & held.mask).any()
    off = build_parser().parse_args(
        simulate_argv(tmp_path, images, labels, "--context-slices", "1", "--no-flat-copies")
    )
    assert off.flat_copies is False
    plain = SimulateConfig(task="binary", flat_copies=False)
    list(guard.guarded_trainer(plain, str(tmp_path), start_trained=False)(model, items[:4], 1))
    assert [item.name for item in seen["train"]] == [item.name for item in items[:4]]


def test_the_fine_tune_docks_25d_items_have_flat_copies(tmp_path):
    from napari_unet.trainer.context import context_slice_items

    session, image_id, image, _ = session_with_slices(tmp_path / "s", slices=(0, 6))
    items = context_slice_items(session, session.training_items(), 1, RAW)
    first = f"{image_id}/{0:05d}"
    assert [item.name for item in items][:2] == [first, first + FLAT_SUFFIX]
    assert len(items) == 4
    np.testing.assert_array_equal(items[1].image, image[[0, 0, 0]])  # slice 0 thrice
    old = context_slice_items(session, session.training_items(), 1, RAW, flat_copies=False)
    assert len(old) == 2


@pytest.mark.parametrize("fraction", [0.0, 0.3])
def test_a_pinned_validation_tile_is_not_trained_on_through_its_flat_copy(tmp_path, fraction):
    from napari_unet.trainer.context import context_slice_items
    from napari_unet.trainer.data import ValidationPlan

    session, image_id, _, _ = session_with_slices(tmp_path / "s", slices=(0, 6))
    items = context_slice_items(session, session.training_items(), 1, RAW)
    pin = {"image_id": image_id, "slice_index": 0, "rect": [0, 0, 32, 32]}
    plan = ValidationPlan(fraction=fraction, tile=16, seed=0, pins=[pin])
    train, val = plan.split(items)
    assert not any(is_flat_copy(item) for item in val)
    first = f"{image_id}/{0:05d}"
    by_name = {item.name: item for item in train}
    for name in (first, first + FLAT_SUFFIX):
        assert not by_name[name].mask[:32, :32].any(), name
    held = np.zeros((64, 64), bool)
    for item in val:
        if item.name.startswith(first):
            held |= item.mask
    assert held[:32, :32].all()
