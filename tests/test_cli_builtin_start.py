"""``train`` and ``simulate`` start from a built-in model given by name, as ``predict`` does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import (
    builtin_checkpoints,
    load_checkpoint,
    read_checkpoint_info,
)
from napari_unet.core.synthetic import synthetic_nuclei

BUILTIN = "fluo-nuclei"


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    if BUILTIN not in builtin_checkpoints():
        pytest.skip(f"the built-in model {BUILTIN} is not installed")
    tifffile = pytest.importorskip("tifffile")
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for i in range(4):
        image, truth = synthetic_nuclei((64, 64), n_nuclei=6, seed=i)
        tifffile.imwrite(images / f"img{i}.tif", image)
        tifffile.imwrite(labels / f"img{i}.tif", truth.astype(np.uint16))
    return images, labels


def test_train_fine_tunes_a_builtin_model_by_name(folders, tmp_path: Path) -> None:
    images, labels = folders
    out = tmp_path / "tuned.pt"
    argv = ["train", "--images", str(images), "--labels", str(labels), "--model", BUILTIN]
    argv += ["--steps", "2", "--patch", "32", "--batch-size", "2", "--val-fraction", "0"]
    argv += ["--device", "cpu", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    tuned = load_checkpoint(out)
    builtin = read_checkpoint_info(builtin_checkpoints()[BUILTIN])
    assert tuned.info.task == builtin.task == "instances"  # the task comes from the built-in
    assert tuned.model.arch == builtin.arch and tuned.model.config == builtin.model_config
    assert str(builtin_checkpoints()[BUILTIN]) in json.dumps(tuned.info.provenance)


@pytest.mark.parametrize("flag", ["--model", "--init"])
def test_simulate_starts_from_a_builtin_model_by_name(folders, tmp_path: Path, flag) -> None:
    images, labels = folders
    out = tmp_path / "sim.json"
    argv = ["simulate", "--images", str(images), "--labels", str(labels), "--task", "instances"]
    argv += [flag, BUILTIN, "--rounds", "1", "--per-round", "1", "--steps-per-round", "1"]
    argv += ["--eval-images", "2", "--patch", "32", "--tile", "64", "--device", "cpu"]
    argv += ["--threads", "1", "--json", str(out)]
    assert main(argv) == 0
    summary = json.loads(out.read_text(encoding="utf-8"))
    builtin = read_checkpoint_info(builtin_checkpoints()[BUILTIN])
    assert summary["config"]["model"] == {"arch": builtin.arch, **builtin.model_config}
    # round 0 scores the built-in itself: far above an untrained net on these nuclei
    assert summary["rounds"][0]["metrics"]["ap50"] > 0.3
