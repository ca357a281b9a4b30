"""scripts/train_builtin.py: the calibration fold (``--holdout``) and the threshold it chooses."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from napari_unet.core.checkpoint.format import BUILTIN_DIR, load_checkpoint

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def train_builtin() -> ModuleType:
    if str(SCRIPTS) not in sys.path:  # the script imports builtin_cards and builtin_recipes
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location("train_builtin", SCRIPTS / "train_builtin.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_builtin"] = module
    spec.loader.exec_module(module)
    return module


def test_fold_leaves_out_the_last_training_files_and_never_sees_validation(
    train_builtin, shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fold.pt"
    argv = ["em-membranes", "--holdout", "5", "--steps", "2", "--data", str(shared_data)]
    assert train_builtin.main([*argv, "--out", str(out)]) == 0
    provenance = load_checkpoint(out).info.provenance
    held = provenance["holdout_files"]
    trained_on = provenance["fold"]["trained_on"]
    assert held == ["20.png", "21.png", "22.png", "23.png", "24.png"]
    assert trained_on == [f"{i:02d}.png" for i in range(20)]
    assert provenance["fold"]["steps"] == 2 and "card" not in provenance


def test_fold_refuses_the_package_folder_and_a_holdout_of_everything(
    train_builtin, shared_data: Path
) -> None:
    data = ["--data", str(shared_data), "--steps", "1"]
    with pytest.raises(SystemExit, match="outside the package"):
        train_builtin.main(["em-membranes", "--holdout", "5", *data])
    with pytest.raises(SystemExit, match="outside the package"):
        train_builtin.main(
            ["em-membranes", "--holdout", "5", *data, "--out", str(BUILTIN_DIR / "x.pt")]
        )
    with pytest.raises(SystemExit, match="between 1 and 24"):
        train_builtin.main(["em-membranes", "--holdout", "25", *data, "--out", "/tmp/unused.pt"])


def test_held_out_threshold_is_scored_on_the_given_files_only(
    train_builtin, shared_data: Path
) -> None:
    em = load_checkpoint(BUILTIN_DIR / "em-membranes.pt")
    chosen = train_builtin.tune_membrane_threshold(
        "em-membranes", em.model.float().eval(), shared_data, ["22.png"], held_out=True
    )
    table = chosen["training_split_scores"]
    best = min(table, key=lambda t: table[t]["pixel_error"] + table[t]["rand_error"])
    assert chosen["membrane_threshold"] == float(best) and chosen["held_out"] is True
    assert "22.png" in chosen["how"] and "calibration fold" in chosen["how"]
    assert all(
        0.0 <= v["pixel_error"] <= 1.0 and 0.0 <= v["rand_error"] <= 1.0 for v in table.values()
    )


def test_card_reproduce_command_names_the_fold_without_local_paths(train_builtin) -> None:
    from builtin_cards import generic_fold_command

    command = (
        "python scripts/train_builtin.py em-membranes --holdout 5 --minutes 110 --threads 2 "
        "--data /work/shared/data --out /tmp/em-fold.pt"
    )
    assert generic_fold_command(command) == (
        "python scripts/train_builtin.py em-membranes --holdout 5 --minutes 110 --threads 2 "
        "--out <fold>.pt"
    )


def test_held_out_instance_point_is_scored_on_the_given_files_only(
    train_builtin, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = {
        "threshold": (0.5,),
        "interior_threshold": (0.5, 0.9),
        "min_size": (0,),
        "seed_erosion": (0,),
    }
    monkeypatch.setattr(train_builtin, "INSTANCE_GRID", grid)
    nuclei = load_checkpoint(BUILTIN_DIR / "fluo-nuclei.pt")
    chosen = train_builtin.tune_instances(
        "fluo-nuclei", nuclei.model.float().eval(), shared_data, ["000.png"], held_out=True
    )
    top = chosen["training_split_ap50_top10"]
    assert len(top) == 2 and top[0]["ap50"] >= top[1]["ap50"]
    assert chosen["interior_threshold"] == top[0]["interior_threshold"]
    assert chosen["held_out"] is True and "000.png" in chosen["how"]
    assert "calibration fold" in chosen["how"] and 0.0 <= top[1]["ap50"] <= 1.0


def test_calibrate_with_refuses_another_models_fold_and_needs_tune(
    train_builtin, shared_data: Path, tmp_path: Path
) -> None:
    em_fold = tmp_path / "em-fold.pt"
    data = ["--data", str(shared_data)]
    assert (
        train_builtin.main(
            ["em-membranes", "--holdout", "5", "--steps", "1", *data, "--out", str(em_fold)]
        )
        == 0
    )
    with pytest.raises(SystemExit, match="not a calibration fold of fluo-nuclei"):
        train_builtin.load_fold(em_fold, "fluo-nuclei", [f"{i:03d}.png" for i in range(60)])
    with pytest.raises(SystemExit, match="add --tune"):
        train_builtin.main(["fluo-nuclei", "--card-only", "--calibrate-with", str(em_fold), *data])
    fold, held = train_builtin.load_fold(
        em_fold, "em-membranes", [f"{i:02d}.png" for i in range(25)]
    )
    assert (
        held == ["20.png", "21.png", "22.png", "23.png", "24.png"] and fold.info.task == "semantic"
    )

    # the shipped model's earlier threshold is undone, the fold's choice folded into the bias
    model = load_checkpoint(BUILTIN_DIR / "em-membranes.pt").model.float()
    bias = model.outc.bias.detach().clone()
    args = argparse.Namespace(calibrate_with=em_fold, data=shared_data)
    calibration = train_builtin.calibrate(
        "em-membranes",
        model,
        args,
        [f"{i:02d}.png" for i in range(25)],
        {"calibration": {"membrane_threshold": 0.55}},
    )
    t = calibration["membrane_threshold"]
    shift = np.log(0.55 / 0.45) - np.log(t / (1 - t))
    assert calibration["held_out"] and calibration["fold"]["steps"] == 1
    assert "20.png" in calibration["how"] and "00.png" not in calibration["how"]
    after = model.outc.bias.detach()
    assert float(after[1] - bias[1]) == pytest.approx(shift, abs=1e-5)
    assert float(after[0]) == pytest.approx(float(bias[0]))
