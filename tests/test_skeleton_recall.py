"""Skeleton Recall (issue 17, ISBI Rand error): the loss term, its ignore handling, 2-D/3-D/bf16
targets, and the rule that turns it on by default for membrane-like labels only (real ISBI 2012
membranes: on; real DSB 2018 nuclei, as instances or binary: off)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core.io.images import read_image
from napari_unet.core.training.config import LossConfig, TrainConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.losses import SegmentationLoss
from napari_unet.core.training.skeleton import (
    AUTO_SKELETON_RECALL,
    membrane_like,
    resolve_skeleton_recall,
    skeleton_recall_loss,
    tubed_skeleton,
)
from napari_unet.core.training.targets import IGNORE_INDEX, TargetConfig

ISBI_MAP = TargetConfig(label_map=((0, 1), (255, 0)))  # ISBI 2012: 0 = membrane -> class 1


def _membrane(side: int = 48, thickness: int = 7) -> np.ndarray:
    """(1, side, side) int64: a horizontal membrane ``thickness`` px thick across the tile."""
    classes = np.zeros((1, side, side), np.int64)
    top = side // 2 - thickness // 2
    classes[0, top : top + thickness] = 1
    return classes


def _logits(p1: np.ndarray) -> torch.Tensor:
    """(B, 2, Y, X) logits of the hard prediction ``p1`` (B, Y, X) in {0, 1} (+-8)."""
    z = torch.from_numpy(np.where(p1 > 0, 8.0, -8.0).astype(np.float32))
    return torch.stack([torch.zeros_like(z), z], dim=1)


def _gap_and_edge_predictions(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two predictions, each missing the same number of membrane pixels (same IoU, same CE):
    one cut through the whole membrane (a gap: 3 columns), one thinner at its outer edges."""
    rows = np.nonzero(classes[0].any(axis=1))[0]
    gap = classes.copy()
    gap[0, :, 20:23] = 0
    edge = classes.copy()
    missing = int(classes.sum() - gap.sum())
    edge[0, rows[0], : missing // 2] = 0
    edge[0, rows[-1], : missing - missing // 2] = 0
    assert gap.sum() == edge.sum()
    return gap, edge


def test_a_gap_in_a_membrane_scores_worse_than_an_equal_iou_prediction_without_one():
    classes = _membrane()
    gap, edge = _gap_and_edge_predictions(classes)
    target = torch.from_numpy(classes)
    plain = SegmentationLoss(LossConfig(ce=1.0, skeleton_recall=0.0), "semantic")
    with_term = SegmentationLoss(LossConfig(ce=1.0, skeleton_recall=1.0), "semantic")
    # the pixel losses cannot tell them apart: the same pixels are wrong, as confidently
    assert float(plain(_logits(gap), target)) == pytest.approx(float(plain(_logits(edge), target)))
    gap_loss = float(with_term(_logits(gap), target))
    edge_loss = float(with_term(_logits(edge), target))
    assert gap_loss > edge_loss + 0.05
    # the edge prediction keeps the whole tubed skeleton: its recall term is ~0
    skeleton = torch.from_numpy(tubed_skeleton(classes, (1,)))
    assert float(skeleton_recall_loss(_logits(edge), skeleton)) < 1e-3


def test_tubed_skeleton_is_the_centre_line_widened_inside_the_class():
    classes = _membrane(thickness=7)
    skeleton = tubed_skeleton(classes, (1,))[0]
    rows = np.nonzero(skeleton[:, 10:-10].any(axis=1))[0]  # away from the bar's ends
    assert rows.tolist() == [22, 23, 24, 25, 26]  # the centre row 24 +- 2 dilations, of 21-27
    assert set(np.unique(skeleton)) == {0, 1}
    assert not (skeleton.astype(bool) & (classes[0] == 0)).any()


def test_ignored_pixels_are_never_on_a_skeleton_and_get_no_gradient():
    classes = _membrane()
    classes[0, :, :10] = IGNORE_INDEX  # part of the membrane not annotated
    skeleton = tubed_skeleton(classes, (1,))
    assert not skeleton[0, :, :10].any() and skeleton[0, :, 10:].any()
    logits = torch.zeros(1, 2, *classes.shape[1:], requires_grad=True)
    loss = SegmentationLoss(LossConfig(ce=1.0, skeleton_recall=1.0), "semantic")
    loss(logits, torch.from_numpy(classes)).backward()
    assert float(logits.grad[..., :10].abs().max()) == 0.0
    # a gap under the ignored pixels changes nothing
    full = _membrane()
    gapped = full.copy()
    gapped[0, :, 2:5] = 0
    target = torch.from_numpy(classes)
    assert float(loss(_logits(full), target)) == pytest.approx(float(loss(_logits(gapped), target)))


def test_binary_3d_and_bf16_targets_and_logits():
    binary = SegmentationLoss(LossConfig(skeleton_recall=1.0), "binary")
    classes = np.zeros((2, 6, 24, 24), np.int64)  # (B, D, H, W): a membrane sheet in 3-D
    classes[:, :, 10:15] = 1
    target = torch.from_numpy(classes)
    assert tubed_skeleton(classes, (1,)).any()
    perfect = torch.from_numpy(np.where(classes > 0, 8.0, -8.0).astype(np.float32))[:, None]
    wrong = -perfect
    assert float(binary(wrong, target)) > float(binary(perfect, target))
    logits = torch.randn(1, 2, 32, 32).to(torch.bfloat16).requires_grad_(True)
    value = SegmentationLoss(LossConfig(skeleton_recall=1.0), "semantic")(
        logits, torch.from_numpy(_membrane(32))
    )
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None


def test_no_skeleton_pixel_gives_zero_with_a_gradient_path():
    logits = torch.randn(1, 2, 8, 8, requires_grad=True)
    value = skeleton_recall_loss(logits, torch.zeros(1, 8, 8, dtype=torch.int64))
    assert float(value) == 0.0
    value.backward()


def test_loss_config_refuses_a_negative_weight_and_round_trips_auto():
    with pytest.raises(ValueError, match="skeleton_recall"):
        LossConfig(skeleton_recall=-1.0)
    config = TrainConfig(loss=LossConfig(skeleton_recall=None))
    assert TrainConfig.from_dict(config.to_dict()).loss.skeleton_recall is None
    # auto (None) in a loss that was never resolved counts as off; off is the default
    assert LossConfig().skeleton_recall == 0.0
    off = SegmentationLoss(LossConfig(skeleton_recall=None), "semantic")
    classes = torch.from_numpy(_membrane(16))
    explicit = SegmentationLoss(LossConfig(skeleton_recall=0.0), "semantic")
    logits = torch.randn(1, 2, 16, 16)
    assert float(off(logits, classes)) == float(explicit(logits, classes))


def _items(folder, names):
    """Training items from real label files (the image is not read by the rule)."""
    items = []
    for name in names:
        labels = np.asarray(read_image(folder / "labels" / name).image)
        items.append(TrainingItem(np.zeros((1, *labels.shape), np.float32), labels, name=name))
    return items


def test_the_rule_turns_it_on_for_real_isbi_membranes(shared_data):
    items = _items(shared_data / "isbi2012", ["19.png", "04.png", "10.png"])
    assert membrane_like(items, ISBI_MAP, "semantic", 2)
    assert membrane_like(items, ISBI_MAP, "binary", 1)
    config = TrainConfig(task="semantic", targets=ISBI_MAP, loss=LossConfig(skeleton_recall=None))
    assert resolve_skeleton_recall(config, items, 2).loss.skeleton_recall == AUTO_SKELETON_RECALL
    # annotated only in a rectangle: the rule reads the annotated box
    sparse = [TrainingItem(i.image, i.labels, np.zeros(i.labels.shape, bool)) for i in items]
    for item in sparse:
        item.annotated_mask[100:300, 50:350] = True
    assert membrane_like(sparse, ISBI_MAP, "semantic", 2)
    # a volume (Z, Y, X) is read slice by slice
    stack = np.stack([item.labels for item in items])
    volume = TrainingItem(np.zeros((1, *stack.shape), np.float32), stack, name="zyx")
    assert membrane_like([volume], ISBI_MAP, "binary", 1)
    # an explicit weight is kept; 3 semantic classes are not tuned: off
    kept = config.replace(loss=LossConfig(skeleton_recall=0.0))
    assert resolve_skeleton_recall(kept, items, 2).loss.skeleton_recall == 0.0
    assert not membrane_like(items, ISBI_MAP, "semantic", 3)


def test_the_rule_cannot_fire_on_real_dsb_nuclei(shared_data):
    folder = shared_data / "dsb2018_fluo"
    names = sorted(p.name for p in (folder / "labels").iterdir())[:4]
    items = _items(folder, names)
    for task, channels in (("instances", 3), ("binary", 1)):
        config = TrainConfig(task=task, loss=LossConfig(skeleton_recall=None))
        assert not membrane_like(items, None, task, channels)
        assert resolve_skeleton_recall(config, items, channels).loss.skeleton_recall == 0.0
    as_semantic = TargetConfig(label_map=tuple((i, 1) for i in range(1, 256)))
    assert not membrane_like(items, as_semantic, "semantic", 2)


@pytest.mark.parametrize("asked, stored", [(None, AUTO_SKELETON_RECALL), ("default", 0.0)])
def test_a_training_run_stores_the_decided_weight(tmp_path, asked, stored):
    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.core.models import build_model
    from napari_unet.core.training.loop import train

    labels = np.zeros((64, 64), np.int32)  # a grid of 2-px membranes enclosing 16 cells
    for k in range(0, 64, 16):
        labels[k : k + 2] = 1
        labels[:, k : k + 2] = 1
    image = (labels[None] * 0.8 + 0.1).astype(np.float32)
    loss = LossConfig() if asked == "default" else LossConfig(skeleton_recall=asked)
    config = TrainConfig(
        task="semantic", steps=1, batch_size=1, patch_shape=(32, 32), val_fraction=0, loss=loss,
        checkpoint_dir=str(tmp_path), tune_postprocess=False,
    )  # fmt: skip
    model = build_model("unet", in_channels=1, out_channels=2, depth=2, base_channels=4)
    result = train(model, [TrainingItem(image, labels, name="grid")], config)
    provenance = load_checkpoint(result.best_path).info.provenance
    assert provenance["train_config"]["loss"]["skeleton_recall"] == stored


def test_train_flag_sets_the_weight_and_refuses_a_bad_value_in_one_sentence(capsys):
    import argparse

    from napari_unet.cli import build_parser
    from napari_unet.cli.train_setup import train_config

    parser = build_parser()
    base = ["train", "--images", "i", "--labels", "l", "--out", "m.pt"]
    weights = {}
    for flag in ([], ["--skeleton-recall", "auto"], ["--skeleton-recall", "off"],
                 ["--skeleton-recall", "0.5"]):  # fmt: skip
        weights[tuple(flag)] = parser.parse_args([*base, *flag]).skeleton_recall
    assert list(weights.values()) == [0.0, None, 0.0, 0.5]
    args = parser.parse_args([*base, "--skeleton-recall", "auto"])
    data = argparse.Namespace(batch_size=4, patch_shape=(256, 256), zoom=(0.9, 1.1), gap_share=None)
    config = train_config(args, None, "semantic", TargetConfig(), data, "run")
    assert config.loss.skeleton_recall is None
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--skeleton-recall", "-1"])
    assert "expected auto, off or a weight >= 0, got '-1'" in capsys.readouterr().err
