"""Unseeded foreground (object | drop) and the operating point re-tuned on the held-back tiles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_unet.cli import build_parser
from napari_unet.core.checkpoint.format import CheckpointInfo, load_checkpoint
from napari_unet.core.models import build_model
from napari_unet.core.postprocess import PostprocessConfig, labels_from_probabilities
from napari_unet.core.postprocess.labels import postprocess_with_defaults
from napari_unet.core.training.augment import AugmentConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import CheckpointEvent, TrainConfig, iter_train
from napari_unet.core.training.operating_point import (
    THRESHOLDS,
    _pick,
    candidate_configs,
    choose_operating_point,
    describe_operating_point,
)
from napari_unet.core.training.operating_point_scoring import HeldScore

SIDE = 128


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(3, Y, X) instance logits (background, interior, boundary) and the true instance labels.

    Six discs with an interior core and a boundary rim (true objects) and four 8x8 squares of
    pure boundary, foreground that no interior seed reaches (spurious fragments, 64 px: above
    the 20 px minimum-size candidate).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    logits = np.zeros((3, SIDE, SIDE), np.float32)
    logits[0] = 6.0
    truth = np.zeros((SIDE, SIDE), np.int32)
    centres = [(20, 20), (20, 64), (20, 105), (64, 20), (64, 64), (105, 105)]
    for index, (cy, cx) in enumerate(centres, start=1):
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2 + rng.uniform(0, 2)
        disc, core = r2 <= 10**2, r2 <= 7**2
        truth[disc] = index
        logits[0][disc] = 0.0
        logits[2][disc & ~core] = 6.0
        logits[1][core] = 6.0
    for y, x in [(100, 20), (100, 40), (85, 64), (45, 100)]:
        logits[0, y : y + 8, x : x + 8] = 0.0
        logits[2, y : y + 8, x : x + 8] = 6.0
    return logits, truth


def _probabilities(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), dim=0).numpy()


def test_unseeded_drop_leaves_fragments_as_background():
    logits, truth = _scene()
    probabilities = _probabilities(logits)
    kept = labels_from_probabilities(
        probabilities, task="instances", config=PostprocessConfig(output="instances")
    )
    dropped = labels_from_probabilities(
        probabilities,
        task="instances",
        config=PostprocessConfig(output="instances", unseeded="drop"),
    )
    assert len(np.unique(kept[kept > 0])) == 10  # 6 discs + 4 fragments (today's default)
    assert len(np.unique(dropped[dropped > 0])) == 6
    assert not dropped[100:108, 20:28].any()
    assert (dropped > 0).sum() == (truth > 0).sum()


def _info(provenance: dict) -> CheckpointInfo:
    return CheckpointInfo(arch="unet", model_config={}, task="instances", in_channels=1,
                          out_channels=3, provenance=provenance)  # fmt: skip


def test_unseeded_is_checked_and_old_checkpoints_keep_objects():
    with pytest.raises(ValueError, match="unseeded must be one of object, drop"):
        PostprocessConfig(unseeded="merge")
    # a checkpoint written before the key existed: today's behaviour
    assert postprocess_with_defaults({"threshold": 0.6}).unseeded == "object"
    info = _info({"postprocess": {"min_size": 5}})
    assert info.postprocess_config().unseeded == "object"
    tuned = _info({"postprocess": {"unseeded": "drop"}})
    assert tuned.postprocess_config().unseeded == "drop"
    assert tuned.postprocess_config(unseeded=None).unseeded == "drop"  # flag left alone
    assert tuned.postprocess_config(unseeded="object").unseeded == "object"


def test_predict_flag():
    args = build_parser().parse_args(
        ["predict", "x.tif", "--model", "m.pt", "--out", "o", "--unseeded", "drop"]
    )
    assert args.unseeded == "drop"
    assert (
        build_parser().parse_args(["predict", "x.tif", "--model", "m.pt", "--out", "o"]).unseeded
        is None
    )


class _Logits(torch.nn.Module):
    """A stand-in network whose 3 input channels ARE the logits (padded, any input size)."""

    in_channels, out_channels, margin, size_multiple = 3, 3, 0, 1

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch * 1.0

    def valid_input_shape(self, shape):
        return tuple(shape)

    def output_shape(self, shape):
        return tuple(shape)


def _val_items(scene) -> list[TrainingItem]:
    logits, truth = scene
    held = np.zeros((SIDE, SIDE), bool)
    held[:, :] = True  # one item, everything held back (4 validation tiles of 64 px)
    return [TrainingItem(image=logits, labels=truth, annotated_mask=held, name="a")]


def test_operating_point_picks_drop_when_unseeded_fragments_exist():
    from napari_unet.core.inference.prediction import PredictConfig

    base = PostprocessConfig(output="instances")
    point = choose_operating_point(
        _Logits(),
        _val_items(_scene()),
        base=base,
        predict_config=PredictConfig(tile_shape=(SIDE, SIDE), device="cpu", precision="fp32"),
        tile=64,
    )
    assert point is not None and point.changed
    assert point.config.unseeded == "drop"
    assert point.ap50 == pytest.approx(1.0)
    assert point.ap50_before == pytest.approx(6 / 10)  # 6 TP, 4 FP
    assert point.n_tiles == 4 and point.n_true == 6
    report = point.report()
    assert report["settings"]["unseeded"] == "drop"
    assert "on 4 held-back tile(s)" in describe_operating_point(report)
    assert "unseeded drop" in describe_operating_point(report)


def _clean_scene():
    """The scene without fragments: every candidate that keeps the discs scores AP@0.5 1.0."""
    logits, truth = _scene()
    logits[2][logits[1] == 0] = np.where(truth[logits[1] == 0] > 0, 6.0, 0.0)
    logits[0][truth == 0] = 6.0
    return logits, truth


def _predict_config():
    from napari_unet.core.inference.prediction import PredictConfig

    return PredictConfig(tile_shape=(SIDE, SIDE), device="cpu", precision="fp32")


def _choose(scene, base):
    return choose_operating_point(
        _Logits(), _val_items(scene), base=base, predict_config=_predict_config(), tile=64
    )


def test_a_tie_goes_to_the_setting_that_leaves_out_doubtful_foreground():
    base = PostprocessConfig(output="instances", interior_threshold=0.5)
    point = _choose(_clean_scene(), base)
    assert point is not None and point.changed
    assert point.ap50 == point.ap50_best == point.ap50_before == pytest.approx(1.0)
    # highest threshold, unseeded dropped, largest minimum size (a tenth of the median disc,
    # ~300 px); the seeds stay the model's own (they trade splits against merges)
    assert point.config.threshold == max(THRESHOLDS)
    assert point.config.unseeded == "drop"
    assert 25 <= point.config.min_size <= 40
    assert point.config.interior_threshold == base.interior_threshold
    configs = candidate_configs(base)
    assert configs[0] == base and len(configs) == len(set(configs)) == 2 * 5 * 3 * 2


def test_the_models_own_setting_wins_a_full_tie():
    own = PostprocessConfig(
        output="instances", threshold=0.9, interior_threshold=0.7, min_size=100, unseeded="drop"
    )
    point = _choose(_clean_scene(), own)  # holes filled on top: a tie fills (no hole here)
    assert point is not None and point.config == own.replace(fill_holes=True)
    kept = _choose(_clean_scene(), own.replace(fill_holes=True))
    assert kept is not None and not kept.changed and kept.config == own.replace(fill_holes=True)


def _holed_scene(true_hole: bool):
    """The clean scene with a 3x3 hole of background logits in the centre of disc (64, 64):
    a miss of the model (the true disc is whole) or a real hole (the truth has it too)."""
    logits, truth = _clean_scene()
    logits[:, 63:66, 63:66] = np.array([6.0, 0.0, 0.0], np.float32)[:, None, None]
    if true_hole:
        truth[63:66, 63:66] = 0
    return logits, truth


@pytest.mark.parametrize("true_hole", [False, True])
def test_holes_are_filled_unless_the_held_back_tiles_have_them(true_hole):
    point = _choose(_holed_scene(true_hole), PostprocessConfig(output="instances"))
    assert point is not None and point.config.fill_holes is not true_hole
    assert point.ap50 == pytest.approx(1.0) and point.foreground_iou == pytest.approx(1.0)
    assert ("holes filled" in point.describe()) is not true_hole
    assert point.report()["settings"]["fill_holes"] is not true_hole  # stored in the version


def _scored(*rows):
    """``(setting, HeldScore)`` pairs from ``(threshold, unseeded, AP@0.5[, foreground IoU])``
    rows (100 matches or misses; IoU 0.9 unless given)."""
    scored = []
    for threshold, unseeded, ap, *iou in rows:
        tp = round(100 * ap)
        union = 1000
        overlap = round(union * (iou[0] if iou else 0.9))
        score = HeldScore(tp, 100 - tp, 0, overlap, union)
        scored.append((PostprocessConfig(output="instances", threshold=threshold,
                                         unseeded=unseeded), score))  # fmt: skip
    return scored


def test_the_pick_stays_within_one_object_of_the_best_and_above_the_own_setting():
    # 25 true objects: one object is 0.04 of AP@0.5
    scored = _scored((0.5, "object", 0.5), (0.6, "object", 0.8), (0.8, "object", 0.77),
                     (0.9, "object", 0.7), (0.9, "drop", 0.75))  # fmt: skip
    chosen = _pick(scored, 25)
    assert (chosen.threshold, chosen.unseeded) == (0.8, "object")  # 0.77 >= 0.8 - 0.04
    assert _pick(scored, 100).threshold == 0.6  # 100 objects: only the best is near enough
    # 3 objects: one is 0.33 of AP@0.5, but no setting gives up more than MAX_TOLERANCE
    few = _scored((0.5, "object", 0.5), (0.6, "object", 0.8), (0.9, "drop", 0.7))
    assert _pick(few, 3).threshold == 0.6
    # never below what the model's own setting scores
    own_best = _scored((0.5, "object", 0.8), (0.9, "drop", 0.78))
    assert _pick(own_best, 10).threshold == 0.5


def test_where_objects_tile_the_image_a_tie_never_thins_every_object():
    """EM cells (``tiled``): a higher threshold that ties on AP@0.5 but costs held-back
    foreground IoU thins every cell and is not taken; nuclei keep the plain rule (there it
    removes specks on unseen images)."""
    # 60 objects: threshold 0.6 is within one object of the best, but 0.02 lower on IoU
    rows = ((0.5, "object", 0.65, 0.90), (0.6, "object", 0.69, 0.88), (0.5, "drop", 0.70, 0.899))
    assert _pick(_scored(*rows), 60).threshold == 0.6  # nuclei: the most doubt left out
    chosen = _pick(_scored(*rows), 60, tiled=True)
    assert (chosen.threshold, chosen.unseeded) == (0.5, "drop")
    # removing specks and rims costs less than the tolerance: still taken when tiled
    specks = _scored((0.5, "object", 0.70, 0.85), (0.9, "object", 0.70, 0.845))
    assert _pick(specks, 60, tiled=True).threshold == 0.9


def test_the_guard_follows_the_gap_share_of_the_held_back_tiles(monkeypatch):
    import napari_unet.core.training.operating_point as op

    seen = []
    original = op._pick
    monkeypatch.setattr(op, "_pick", lambda *a, **k: seen.append(k["tiled"]) or original(*a, **k))
    nuclei = _choose(_clean_scene(), PostprocessConfig(output="instances"))  # discs
    tissue = _val_items(_clean_scene())
    grid = np.zeros((SIDE, SIDE), np.int64)
    for n, (y, x) in enumerate((y, x) for y in range(0, SIDE, 16) for x in range(0, SIDE, 16)):
        grid[y + 3 : y + 16, x + 3 : x + 16] = n + 1  # cells tiling the plane, 3-px gaps
    tissue = [dataclasses.replace(item, labels=grid) for item in tissue]
    base = PostprocessConfig(output="instances")
    cells = op.choose_operating_point(
        _Logits(), tissue, base=base, predict_config=_predict_config(), tile=64
    )
    assert seen == [False, True]
    # the report says which rule chose the setting
    assert "foreground IoU" not in nuclei.report()["rule"]
    assert cells.tiled and "foreground IoU within 0.01" in cells.report()["rule"]


def _nuclei_items(n: int = 2) -> list[TrainingItem]:
    from napari_unet.core.synthetic import synthetic_nuclei

    items = []
    for seed in range(n):
        image, labels = synthetic_nuclei((96, 96), n_nuclei=8, seed=seed)
        image = image.astype(np.float32)
        image = (image - image.mean()) / (image.std() + 1e-6)
        items.append(
            TrainingItem(image=image[None], labels=labels.astype(np.int32), name=f"i{seed}")
        )
    return items


@pytest.mark.parametrize("tune", [True, False])
def test_training_stores_the_chosen_operating_point(tmp_path, tune):
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=8, in_channels=1, out_channels=3)
    config = TrainConfig(task="instances", steps=4, batch_size=2, patch_shape=(32, 32),
                         val_fraction=0.3, val_tile=32, val_every=2, device="cpu",
                         augment=AugmentConfig(strength=0.0), tune_postprocess=tune,
                         checkpoint_dir=str(tmp_path / "run"))  # fmt: skip
    events = iter_train(model, _nuclei_items(), config)
    seen = []
    while True:
        try:
            seen.append(next(events))
        except StopIteration as done:
            result = done.value
            break
    provenance = load_checkpoint(result.best_path).info.provenance
    if not tune:
        assert result.operating_point is None and "operating_point" not in provenance
        return
    assert result.operating_point == provenance["operating_point"]
    report = provenance["operating_point"]
    assert report["n_tiles"] >= 1 and report["n_candidates"] >= 2 * 5 * 3 * 2
    assert report["ap50"] >= report["ap50_before"] and report["ap50_best"] >= report["ap50"]
    assert 0.0 < report["foreground_iou"] <= 1.0  # reported, not used to choose
    own = PostprocessConfig(output="instances")
    if any(getattr(own, key) != value for key, value in report["settings"].items()):
        assert provenance["postprocess"] == report["settings"]  # stored, and announced again
        assert isinstance(seen[-1], CheckpointEvent) and seen[-1].kind == "best"
    else:
        assert "postprocess" not in provenance


def test_a_stop_publishes_without_retuning(tmp_path):
    """A Stop ends training now (as it skips the final validation): no tuning after it."""
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=8, in_channels=1, out_channels=3)
    config = TrainConfig(task="instances", steps=100, batch_size=2, patch_shape=(32, 32),
                         val_fraction=0.3, val_tile=32, val_every=2, device="cpu",
                         augment=AugmentConfig(strength=0.0),
                         checkpoint_dir=str(tmp_path / "r"))  # fmt: skip
    calls = iter(range(100))
    events = iter_train(model, _nuclei_items(), config, stop=lambda: next(calls) >= 3)
    while True:
        try:
            next(events)
        except StopIteration as done:
            result = done.value
            break
    assert result.reason == "stopped" and result.operating_point is None
    assert "operating_point" not in load_checkpoint(result.best_path).info.provenance


def test_segment_form_presets_and_returns_the_models_unseeded_choice(qtbot):
    from napari_unet._widgets.predict_form import PredictForm

    form = PredictForm()
    qtbot.addWidget(form)
    assert form.postprocess_settings().unseeded == "object"
    tuned = _info({"postprocess": {"unseeded": "drop", "min_size": 20}})
    form.set_model_defaults(
        task="instances", tile_shape=None, overlap=None, postprocess=tuned.postprocess_config()
    )
    choice = form.postprocess_settings()
    assert choice.unseeded == "drop" and choice.min_size == 20
    assert choice.apply(tuned).unseeded == "drop"  # what the Segment dock then predicts with
    assert choice.replace(unseeded="object").apply(tuned).unseeded == "object"


def test_objects_cut_by_a_held_back_edge_but_not_by_the_image_border():
    from napari_unet.core.training.operating_point import data_min_sizes
    from napari_unet.core.training.operating_point_scoring import cut_objects, uncut_areas

    truth = np.zeros((40, 40), np.int64)
    truth[15:21, 15:21] = 1  # inside: 36 px
    truth[15:20, 0:4] = 2  # on the left edge, inside the image (context was predicted there)
    truth[0:4, 20:30] = 3  # on the top edge, the image border: 40 px
    mask = np.ones((40, 40), bool)
    core = (slice(0, 40), slice(10, 50))  # no context above/below: image border; left/right: inside
    probabilities = np.zeros((3, 40, 82), np.float32)
    cut = cut_objects(truth, mask, core, probabilities.shape[1:])
    assert np.array_equal(cut, truth == 2)
    pieces = [(probabilities, truth, mask, core, (slice(0, 40), slice(10, 50)))]
    assert sorted(uncut_areas(pieces).tolist()) == [36, 40]
    assert data_min_sizes(pieces) == (0, 4, 20)  # a tenth of the median uncut area (38 px)
    assert data_min_sizes([]) == (0, 20)
