"""Which class weights a run trains with (``core.training.balance``): a new instance model the
square roots of the inverse-frequency weights, a fine-tune its start model's weighting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_unet.core.checkpoint.format import builtin_checkpoints, read_checkpoint_info
from napari_unet.core.checkpoint.new_model import NewModelConfig, new_checkpoint
from napari_unet.core.training.balance import start_class_balance, with_start_balance
from napari_unet.core.training.config import TrainConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.targets import TargetConfig


def _write_nuclei(folder) -> None:
    from skimage.io import imsave

    for kind in ("images", "labels"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for index in range(2):
        labels = np.zeros((64, 64), np.uint16)
        labels[8:22, 8:22], labels[36:52, 30:46] = 1, 2
        image = np.where(labels > 0, 1200, 300).astype(np.uint16) + index
        imsave(folder / "images" / f"n{index}.png", image, check_contrast=False)
        imsave(folder / "labels" / f"n{index}.png", labels, check_contrast=False)


def _train(tmp_path, model: str, out: str) -> str:
    from napari_unet.cli import main

    argv = ["train", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
            "--task", "instances", "--model", model, "--steps", "2", "--patch", "64",
            "--device", "cpu", "--threads", "1", "--out", str(tmp_path / out)]  # fmt: skip
    assert main(argv) == 0
    settings = read_checkpoint_info(tmp_path / out).provenance["train_config"]
    return settings["targets"]["class_balance"]


def test_a_new_model_a_built_in_and_an_older_model_read_their_weighting(tmp_path):
    scratch = read_checkpoint_info(
        new_checkpoint(NewModelConfig(task="instances"), tmp_path / "a.pt")
    )
    assert start_class_balance(None) is None and start_class_balance(scratch) is None
    builtin = read_checkpoint_info(builtin_checkpoints()["fluo-nuclei"])
    assert start_class_balance(builtin) is True, "the built-ins were trained with the full weights"
    targets = TargetConfig(task="instances")
    assert with_start_balance(targets, None).class_balance == "sqrt"
    assert with_start_balance(targets, scratch).class_balance == "sqrt"
    assert with_start_balance(targets, builtin).class_balance is True
    given = targets.replace(class_balance=False)
    assert with_start_balance(given, builtin).class_balance is False, "a value given wins"
    semantic = TargetConfig(task="semantic")
    assert with_start_balance(semantic, None).class_balance is True


def test_train_records_the_weighting_and_a_fine_tune_keeps_it(tmp_path, caplog):
    _write_nuclei(tmp_path)
    caplog.set_level("INFO")
    assert _train(tmp_path, "unet", "new.pt") == "sqrt"
    assert "class weights: square root of inverse frequency (a new model)" in caplog.text
    assert _train(tmp_path, str(tmp_path / "new.pt"), "again.pt") == "sqrt"
    assert _train(tmp_path, "fluo-nuclei", "tuned.pt") is True
    assert "class weights: inverse frequency (as the start model was trained)" in caplog.text


@pytest.mark.parametrize("model, expected", [("unet", "sqrt"), ("fluo-nuclei", True)])
def test_simulate_and_the_dock_apply_the_same_rule(tmp_path, model, expected):
    from napari_unet.cli import main
    from napari_unet.trainer.guard import data_settings

    _write_nuclei(tmp_path)
    result = tmp_path / "sim.json"
    assert main(["simulate", "--images", str(tmp_path / "images"), "--labels",
                 str(tmp_path / "labels"), "--task", "instances", "--model", model,
                 "--rounds", "1", "--per-round", "1", "--steps-per-round", "1",
                 "--eval-images", "1", "--patch", "64", "--device", "cpu", "--threads", "1",
                 "--json", str(result)]) == 0  # fmt: skip
    simulated = json.loads(result.read_text())["config"]["simulate"]
    assert simulated["train"]["targets"]["class_balance"] == expected
    start = (
        new_checkpoint(NewModelConfig(task="instances"), tmp_path / "dock.pt")
        if model == "unet"
        else builtin_checkpoints()[model]
    )
    labels = np.zeros((64, 64), np.int32)
    labels[8:22, 8:22] = 1
    item = TrainingItem(image=labels.astype(np.float32)[None], labels=labels,
                        annotated_mask=np.ones(labels.shape, bool), name="a")  # fmt: skip
    _, config = data_settings([item], read_checkpoint_info(start), TrainConfig(task="instances"))
    assert config.targets.class_balance == expected
