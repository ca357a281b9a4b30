"""The border weights' gap rule (``core.training.gaps``): off where the background is the gaps."""

from __future__ import annotations

import numpy as np

from napari_unet.core.synthetic import synthetic_nuclei
from napari_unet.core.training.fingerprint import fingerprint
from napari_unet.core.training.gaps import GAP_SHARE_MAX, gap_share, with_gap_rule
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.targets import TargetConfig, make_targets


def _tissue(side: int = 96, cell: int = 16, membrane: int = 3) -> np.ndarray:
    """Cells tiling the plane on a grid, separated by ``membrane``-px background lines (EM of
    tissue: every background pixel lies between two cells)."""
    labels = np.zeros((side, side), np.int32)
    n = 0
    for y in range(0, side, cell):
        for x in range(0, side, cell):
            n += 1
            labels[y + membrane : y + cell, x + membrane : x + cell] = n
    return labels


def _item(labels: np.ndarray, mask: np.ndarray | None = None) -> TrainingItem:
    image = labels.astype(np.float32)[None]
    mask = np.ones(labels.shape, bool) if mask is None else mask
    return TrainingItem(image=image, labels=labels, annotated_mask=mask, name="a")


def test_nuclei_keep_the_border_weights_tissue_turns_them_off():
    _, nuclei = synthetic_nuclei((128, 128), n_nuclei=12, seed=0)
    sparse = gap_share([_item(nuclei.astype(np.int32))])
    tiled = gap_share([_item(_tissue())])
    assert sparse is not None and sparse < 0.2 < GAP_SHARE_MAX < 0.9 < tiled
    auto = TargetConfig(task="instances")
    assert with_gap_rule(auto, sparse) is auto
    assert with_gap_rule(auto, tiled).border_weights is False
    # an explicit setting wins; no share (not instance labels, no background) changes nothing
    forced = auto.replace(border_weights=True)
    assert with_gap_rule(forced, tiled) is forced
    assert with_gap_rule(auto, None) is auto


def test_the_share_counts_annotated_background_only():
    labels = np.pad(_tissue(), ((0, 0), (0, 40)))  # the tissue, then 40 px of empty background
    mask = np.zeros(labels.shape, bool)
    mask[:, -30:] = True  # only background 10 px or more from any cell is annotated
    assert gap_share([_item(labels, mask)]) == 0.0
    assert gap_share([_item(labels)]) < gap_share([_item(_tissue())])
    assert gap_share([_item(np.ones((32, 32), np.int32))]) is None  # no background at all
    # a value marking unannotated pixels is neither object nor background
    ignored = np.where(labels == 0, 255, labels)
    assert gap_share([_item(ignored)], ignore_value=255) is None


def test_the_fingerprint_reports_it_and_the_targets_lose_the_term():
    item = _item(_tissue())
    data = fingerprint([item], task="instances", size_multiple=16, receptive_field=100)
    assert data.gap_share > GAP_SHARE_MAX and "border weights off" in data.describe()
    assert "border weights off" not in fingerprint(
        [_item(synthetic_nuclei((128, 128), n_nuclei=12, seed=0)[1].astype(np.int32))],
        task="instances", size_multiple=16, receptive_field=100,
    ).describe()  # fmt: skip
    semantic = fingerprint([item], task="semantic", size_multiple=16, receptive_field=100)
    assert semantic.gap_share is None
    config = with_gap_rule(TargetConfig(task="instances"), data.gap_share)
    with_term = make_targets(item.labels, item.mask, config=TargetConfig(task="instances"))
    without = make_targets(item.labels, item.mask, config=config)
    gaps = item.labels == 0
    assert with_term.weights[gaps].mean() > 2 * without.weights[gaps].mean()
    np.testing.assert_array_equal(with_term.classes, without.classes)


def _write_tissue(folder) -> None:
    from skimage.io import imsave

    for kind in ("images", "labels"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for index in range(2):
        labels = _tissue(side=64)
        image = np.where(labels > 0, 1200, 300).astype(np.uint16) + index
        imsave(folder / "images" / f"t{index}.png", image, check_contrast=False)
        imsave(folder / "labels" / f"t{index}.png", labels.astype(np.uint16), check_contrast=False)


def test_train_simulate_and_the_dock_turn_the_term_off_on_tissue(tmp_path, caplog):
    """Every entry point: ``train`` stores ``border_weights`` False in the run's settings and
    says so in the data line; ``simulate`` and the Fine-tune trainer's settings carry it."""
    import json

    from napari_unet.cli import main
    from napari_unet.core.checkpoint.format import read_checkpoint_info, save_checkpoint
    from napari_unet.core.models import build_model
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.trainer.guard import data_settings

    _write_tissue(tmp_path)
    caplog.set_level("INFO")
    out = tmp_path / "m.pt"
    argv = ["train", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
            "--task", "instances", "--model", "unet", "--steps", "2", "--patch", "64",
            "--device", "cpu", "--threads", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    settings = read_checkpoint_info(out).provenance["train_config"]
    assert settings["targets"]["border_weights"] is False
    assert "border weights off" in caplog.text
    result = tmp_path / "sim.json"
    assert main(["simulate", "--images", str(tmp_path / "images"), "--labels",
                 str(tmp_path / "labels"), "--task", "instances", "--model", "unet",
                 "--rounds", "1", "--per-round", "1", "--steps-per-round", "1",
                 "--eval-images", "1", "--patch", "64", "--device", "cpu", "--threads", "1",
                 "--json", str(result)]) == 0  # fmt: skip
    simulated = json.loads(result.read_text())["config"]["simulate"]
    assert simulated["train"]["targets"]["border_weights"] is False
    net = build_model("unet", depth=2, out_channels=3)
    start = save_checkpoint(tmp_path / "start.pt", net, task="instances")
    items = [_item(_tissue(side=64))]
    data, config = data_settings(items, read_checkpoint_info(start), TrainConfig(task="instances"))
    assert config.targets.border_weights is False and "border weights off" in data.describe()
