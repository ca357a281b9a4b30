"""The operating point of binary and 2-class semantic models, re-tuned on the held-back tiles.

Membranes (ISBI 2012 tiles): the threshold with the lowest Rand error of the enclosed regions;
objects (synthetic nuclei): the highest class-1 IoU; and the stored setting reaches ``predict``
and the Segment dock.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint.format import CheckpointInfo, load_checkpoint
from napari_unet.core.evaluation.metrics import em_region_scores
from napari_unet.core.inference.prediction import PredictConfig
from napari_unet.core.io.images import read_image
from napari_unet.core.models import build_model
from napari_unet.core.postprocess import PostprocessConfig, labels_from_probabilities
from napari_unet.core.training.augment import AugmentConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import CheckpointEvent, TrainConfig, iter_train
from napari_unet.core.training.operating_point import describe_operating_point
from napari_unet.core.training.operating_point_semantic import (
    boundary_like,
    choose_semantic_operating_point,
    semantic_candidates,
)
from napari_unet.core.training.targets import TargetConfig

ISBI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "isbi2012"
SIDE = 128
needs_isbi = pytest.mark.skipif(not (ISBI / "labels" / "00.png").is_file(), reason="no ISBI data")


def _isbi_membranes(name: str = "00", side: int = SIDE) -> np.ndarray:
    """(side, side) int32, 1 = membrane, from an ISBI 2012 training label (0 = membrane)."""
    labels = read_image(ISBI / "labels" / f"{name}.png").image
    return (np.asarray(labels)[:side, :side] == 0).astype(np.int32)


def _gapped(membranes: np.ndarray, seed: int = 0) -> np.ndarray:
    """p(membrane): 0.9 on the membranes but 0.35 on every 6th 5x5 patch of them (gaps at 0.5),
    0.05 inside the cells."""
    p1 = np.where(membranes == 1, 0.9, 0.05).astype(np.float32)
    ys, xs = np.nonzero(membranes)
    rng = np.random.default_rng(seed)
    for i in rng.choice(ys.size, ys.size // 30, replace=False):
        y, x = ys[i], xs[i]
        patch = p1[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3]
        patch[patch > 0.5] = 0.35
    return p1


def _logits(p1: np.ndarray) -> np.ndarray:
    """(2, Y, X) logits whose softmax gives class 1 the probability ``p1``."""
    return np.stack([np.zeros_like(p1), np.log(p1 / (1 - p1))]).astype(np.float32)


class _Logits(torch.nn.Module):
    """A stand-in network whose input channels ARE the logits (padded, any input size)."""

    margin, size_multiple = 0, 1

    def __init__(self, channels: int = 2):
        super().__init__()
        self.in_channels = self.out_channels = channels

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch * 1.0

    def valid_input_shape(self, shape):
        return tuple(shape)

    def output_shape(self, shape):
        return tuple(shape)


def _choose(model, items, task="semantic", base=None):
    base = base or PostprocessConfig()
    config = PredictConfig(tile_shape=(SIDE, SIDE), device="cpu", precision="fp32")
    return choose_semantic_operating_point(
        model, items, task=task, base=base, predict_config=config, tile=64
    )


def test_two_class_semantic_labels_honour_the_threshold():
    p1 = np.array([[0.1, 0.35, 0.5, 0.55, 0.9]], np.float32)
    probabilities = np.stack([1 - p1, p1])
    argmax = labels_from_probabilities(probabilities, task="semantic")
    assert argmax.tolist() == [[0, 0, 0, 1, 1]]  # 0.5 stays the argmax (ties: class 0)
    low = labels_from_probabilities(
        probabilities, task="semantic", config=PostprocessConfig(threshold=0.3)
    )
    assert low.tolist() == [[0, 1, 1, 1, 1]]
    three = np.stack([np.full_like(p1, 0.2), 0.8 - p1 * 0.5, p1 * 0.5])
    assert (
        labels_from_probabilities(three, task="semantic", config=PostprocessConfig(threshold=0.3))
        == np.argmax(three, axis=0)
    ).all()  # more than 2 classes: the argmax whatever the threshold


@needs_isbi
def test_membranes_are_boundary_like_and_nuclei_are_not():
    from napari_unet.core.synthetic import synthetic_nuclei

    membranes = _isbi_membranes("10")
    assert boundary_like([membranes], [np.ones_like(membranes, bool)])
    _, nuclei = synthetic_nuclei((SIDE, SIDE), n_nuclei=10, seed=0)
    nuclei = (nuclei > 0).astype(np.int32)
    assert not boundary_like([nuclei], [np.ones_like(nuclei, bool)])
    sparse = np.zeros_like(membranes, bool)
    sparse[::4] = True  # scribbles: the regions are unknown, so no Rand error
    assert not boundary_like([membranes], [sparse])


@needs_isbi
def test_a_gapped_membrane_model_gets_the_threshold_that_closes_the_gaps():
    membranes = _isbi_membranes("00")
    p1 = _gapped(membranes)
    items = [TrainingItem(image=_logits(p1), labels=membranes, name="00")]
    point = _choose(_Logits(), items)
    assert point is not None and point.metric == "rand_error" and point.changed
    assert point.config.threshold < 0.35 < 0.5  # a threshold under the gaps' probability
    assert point.score < point.score_before
    # the scores are the EM protocol's on the tile (one region here: no pooling)
    truth = membranes == 1
    assert point.score_before == pytest.approx(em_region_scores(p1 >= 0.5, truth)["rand_error"])
    assert point.score == pytest.approx(
        em_region_scores(p1 >= point.config.threshold, truth)["rand_error"]
    )
    report = point.report()
    assert report["class1"] == "boundary" and report["settings"]["threshold"] < 0.35
    line = describe_operating_point(report)
    assert line.startswith("operating point chosen on 4 held-back tile(s) (membranes)")
    assert "Rand error" in line


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(1, Y, X) binary logits of synthetic nuclei, too large at 0.5 (a halo of p = 0.6)."""
    from scipy import ndimage

    from napari_unet.core.synthetic import synthetic_nuclei

    _, nuclei = synthetic_nuclei((SIDE, SIDE), n_nuclei=10, seed=seed)
    truth = (nuclei > 0).astype(np.int32)
    halo = ndimage.binary_dilation(truth, iterations=3) & (truth == 0)
    p = np.where(truth == 1, 0.95, np.where(halo, 0.6, 0.02)).astype(np.float32)
    return np.log(p / (1 - p))[None], truth


def test_binary_objects_are_tuned_by_iou_and_ties_keep_the_model_setting():
    logits, truth = _blobs()
    items = [TrainingItem(image=logits, labels=truth, name="n")]
    point = _choose(_Logits(1), items, task="binary")
    assert point is not None and point.metric == "iou" and point.changed
    assert 0.6 < point.config.threshold < 0.95 and point.score == pytest.approx(1.0)
    assert point.report()["class1"] == "foreground"
    assert "(foreground)" in describe_operating_point(point.report())
    clean = np.where(truth == 1, 4.0, -4.0).astype(np.float32)[None]
    base = PostprocessConfig(threshold=0.6)
    kept = _choose(_Logits(1), [TrainingItem(clean, truth, name="n")], task="binary", base=base)
    assert kept is not None and not kept.changed and kept.config == base
    configs = semantic_candidates(base)
    assert configs[0] == base and len(configs) == len(set(configs)) == 7 * 2


def test_nothing_to_tune_without_class_one():
    truth = np.zeros((SIDE, SIDE), np.int32)
    items = [TrainingItem(image=_logits(np.full((SIDE, SIDE), 0.1, np.float32)), labels=truth)]
    assert _choose(_Logits(), items) is None


def _membrane_items() -> list[TrainingItem]:
    """ISBI crops with their labels as stored (0 = membrane, 255 = cell; ``ISBI_MAP`` maps them)."""
    items = []
    for name in ("00", "10"):
        image = read_image(ISBI / "images" / f"{name}.png").image[:96, :96].astype(np.float32)
        image = (image - image.mean()) / (image.std() + 1e-6)
        raw = np.asarray(read_image(ISBI / "labels" / f"{name}.png").image)[:96, :96]
        items.append(TrainingItem(image[None], raw.astype(np.int32), name=name))
    return items


ISBI_MAP = TargetConfig(task="semantic", label_map=((0, 1), (255, 0)))


@needs_isbi
def test_training_a_membrane_model_stores_and_reports_its_threshold(tmp_path):
    """Raw ISBI labels through the run's label map (as ``train --label-map 0:1,255:0``)."""
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=8, in_channels=1, out_channels=2)
    config = TrainConfig(task="semantic", steps=4, batch_size=2, patch_shape=(32, 32),
                         val_fraction=0.3, val_tile=32, val_every=2, device="cpu",
                         augment=AugmentConfig(strength=0.0), targets=ISBI_MAP,
                         checkpoint_dir=str(tmp_path / "r"))  # fmt: skip
    events = iter_train(model, _membrane_items(), config)
    seen = []
    while True:
        try:
            seen.append(next(events))
        except StopIteration as done:
            result = done.value
            break
    info = load_checkpoint(result.best_path).info
    report = info.provenance["operating_point"]
    assert result.operating_point == report and report["class1"] == "boundary"
    assert report["n_tiles"] >= 1 and report["n_candidates"] == 4  # 0.2-0.5, own min size
    if report["rand_error"] < report["rand_error_before"]:  # stored and announced again
        assert info.provenance["postprocess"] == report["settings"]
        assert info.postprocess_config().threshold == report["settings"]["threshold"]
        assert isinstance(seen[-1], CheckpointEvent) and seen[-1].kind == "best"
    else:
        assert "postprocess" not in info.provenance


def _semantic_info(postprocess: dict) -> CheckpointInfo:
    return CheckpointInfo(arch="unet", model_config={}, task="semantic", in_channels=1,
                          out_channels=2, provenance={"postprocess": postprocess})  # fmt: skip


def test_predict_uses_the_stored_threshold_unless_the_user_sets_one():
    info = _semantic_info({"threshold": 0.3, "min_size": 0})
    p1 = np.array([[0.1, 0.35, 0.6]], np.float32)
    probabilities = np.stack([1 - p1, p1])
    stored = info.postprocess_config()  # what `predict` builds with no --threshold
    assert labels_from_probabilities(probabilities, task="semantic", config=stored).tolist() == [
        [0, 1, 1]
    ]
    flag = info.postprocess_config(threshold=0.5)  # --threshold 0.5
    assert labels_from_probabilities(probabilities, task="semantic", config=flag).tolist() == [
        [0, 0, 1]
    ]


def test_segment_form_presets_the_models_membrane_threshold(qtbot):
    from napari_unet._widgets.predict_form import PredictForm

    form = PredictForm()
    qtbot.addWidget(form)
    info = _semantic_info({"threshold": 0.3})
    form.set_model_defaults(
        task="semantic", tile_shape=None, overlap=None, postprocess=info.postprocess_config()
    )
    choice = form.postprocess_settings()
    assert choice.threshold == pytest.approx(0.3)
    config = choice.apply(info)  # what the Segment dock predicts with
    p1 = np.array([[0.1, 0.35, 0.6]], np.float32)
    labels = labels_from_probabilities(np.stack([1 - p1, p1]), task="semantic", config=config)
    assert config.threshold == pytest.approx(0.3) and labels.tolist() == [[0, 1, 1]]


def test_predict_cli_applies_a_stored_membrane_threshold(tmp_path):
    """``predict --labels semantic`` of a 2-class model with a tuned threshold in its checkpoint."""
    from napari_unet.cli import main
    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.io.images import write_tiff

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=2)
    last_conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():  # p(membrane) = sigmoid(-0.4) = 0.40 everywhere
        last_conv.weight.zero_()
        last_conv.bias.copy_(torch.tensor([0.0, -0.4]))
    image = tmp_path / "em.tif"
    write_tiff(image, np.random.default_rng(0).random((64, 64)).astype(np.float32))
    for name, provenance in (("plain", {}), ("tuned", {"postprocess": {"threshold": 0.3}})):
        checkpoint = save_checkpoint(tmp_path / f"{name}.pt", model, task="semantic",
                                     tile_shape=(64, 64), provenance=provenance)  # fmt: skip
        out = tmp_path / name
        assert main(["predict", str(image), "--model", str(checkpoint), "--out", str(out)]) == 0
        labels = read_image(out / "em_labels.tif").image
        assert (labels == (1 if name == "tuned" else 0)).all()


def test_membrane_candidates_never_thin_the_membranes():
    """Tiles under-count the merges a gap causes: a membrane threshold may only go down."""
    base = PostprocessConfig(threshold=0.5, min_size=5)
    configs = semantic_candidates(base, boundary=True)
    assert configs[0] == base and len(configs) == 4
    assert {c.threshold for c in configs} == {0.2, 0.3, 0.4, 0.5}
    assert {c.min_size for c in configs} == {5}
