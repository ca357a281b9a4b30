"""Targets from annotations: instance boundaries, ignore, label maps, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_unet.core.config import Config
from napari_unet.core.errors import TrainingDataError, UserInputError
from napari_unet.core.training.targets import (
    IGNORE_INDEX,
    TargetConfig,
    Targets,
    apply_label_map,
    instances_to_classes,
    make_targets,
    parse_label_map,
)


def two_touching_squares() -> np.ndarray:
    labels = np.zeros((32, 40), np.uint16)
    labels[6:22, 4:20] = 1
    labels[6:22, 20:36] = 2
    return labels


@pytest.mark.parametrize("width", [1, 2, 3])
def test_instances_to_classes_separates_touching_squares(width):
    labels = two_touching_squares()
    classes = instances_to_classes(labels, boundary_width=width)
    assert classes.dtype == np.uint8
    assert set(np.unique(classes)) == {0, 1, 2}
    assert (classes[labels == 0] == 0).all()
    _, n_interiors = ndimage.label(classes == 1)
    assert n_interiors == 2
    # 2 * width boundary pixels between the interiors, width pixels at the outer edge.
    row = classes[14]
    assert (row[20 - width : 20 + width] == 2).all()
    assert row[20 - width - 1] == 1 and row[20 + width] == 1
    assert (row[4 : 4 + width] == 2).all() and row[4 + width] == 1


def test_instances_to_classes_ignores_the_image_edge_and_unknown_neighbours():
    labels = np.ones((10, 10), np.int32)
    assert (instances_to_classes(labels) == 1).all()
    labels = two_touching_squares()
    mask = np.ones(labels.shape, bool)
    mask[:, 20:] = False  # the second square is not vouched for
    classes = instances_to_classes(labels, boundary_width=1, annotated_mask=mask)
    assert classes[14, 19] == 1  # its neighbour is unknown, not a boundary
    assert classes[14, 4] == 2


def test_parse_and_apply_label_map():
    mapping = parse_label_map("0:1, 255:0")
    assert mapping == {0: 1, 255: 0}
    labels = np.array([[0, 255], [7, 0]], np.uint8)
    np.testing.assert_array_equal(apply_label_map(labels, mapping), [[1, 0], [7, 1]])
    assert apply_label_map(labels, {255: 1000}).max() == 1000  # widened dtype
    np.testing.assert_array_equal(apply_label_map(np.array([0, 1]), {0: 1, 1: 0}), [1, 0])
    for bad in ("0-1", "a:b", "", "1:2,1:3"):
        with pytest.raises(UserInputError, match="label map"):
            parse_label_map(bad)


def test_isbi_label_map_makes_membrane_class_one(shared_data):
    from skimage.io import imread

    raw = imread(shared_data / "isbi2012" / "labels" / "00.png")
    config = TargetConfig(task="binary", label_map=tuple(parse_label_map("0:1,255:0").items()))
    targets = make_targets(raw, config=config)
    np.testing.assert_array_equal(targets.classes, (raw == 0).astype(np.int64))
    assert 0.1 < targets.classes.mean() < 0.4  # membranes are ~22 % of the pixels


def test_isbi_label_map_on_synthetic_labels():
    raw = np.full((8, 8), 255, np.uint8)
    raw[3] = 0
    config = TargetConfig(task="semantic", label_map=((0, 1), (255, 0)))
    targets = make_targets(raw, config=config)
    assert (targets.classes[3] == 1).all() and (targets.classes[:3] == 0).all()
    assert Config.to_dict(config)["label_map"] == [[0, 1], [255, 0]]
    assert TargetConfig.from_dict(config.to_dict()) == config


def test_mask_and_ignore_value_give_ignore_index():
    labels = np.zeros((16, 16), np.int32)
    labels[4:12, 4:12] = 1
    labels[0, :] = 255
    mask = np.zeros_like(labels, bool)
    mask[:, :10] = True
    config = TargetConfig(task="binary", ignore_value=255)
    targets = make_targets(labels, mask, config=config)
    assert isinstance(targets, Targets)
    assert targets.classes.dtype == np.int64 and targets.weights.dtype == np.float32
    ignored = ~mask | (labels == 255)
    assert (targets.classes[ignored] == IGNORE_INDEX).all()
    assert (targets.classes[~ignored] >= 0).all()
    assert (targets.weights[ignored] == 0).all() and (targets.weights[~ignored] > 0).all()
    np.testing.assert_array_equal(targets.annotated, ~ignored)
    counts = targets.class_counts()
    assert counts.sum() == (~ignored).sum() and counts[1] == 8 * 6
    # Balanced class weights have mean 1 over the annotated pixels.
    assert targets.weights[~ignored].mean() == pytest.approx(1.0, rel=1e-5)


def test_labels_outside_the_mask_do_not_change_the_targets_inside():
    labels = two_touching_squares().astype(np.int32)
    mask = np.zeros(labels.shape, bool)
    mask[:, :18] = True
    config = TargetConfig(task="instances")
    first = make_targets(labels, mask, config=config)
    changed = labels.copy()
    changed[:, 18:] = np.arange(changed[:, 18:].size).reshape(changed[:, 18:].shape) % 5
    second = make_targets(changed, mask, config=config)
    np.testing.assert_array_equal(first.classes, second.classes)
    np.testing.assert_array_equal(first.weights, second.weights)


def test_instance_targets_have_three_classes_and_border_weights():
    labels = two_touching_squares()
    labels[24:30, 4:10] = 3
    targets = make_targets(labels, task="instances")
    assert set(np.unique(targets.classes)) == {0, 1, 2}
    plain = make_targets(labels, config=TargetConfig(task="instances", border_weights=False))
    extra = targets.weights - plain.weights
    assert extra[23, 6] > 1.0  # in the gap between squares 1 and 3
    assert (extra[labels > 0] == 0).all()
    unbalanced = make_targets(labels, config=TargetConfig(task="semantic", class_balance=False))
    assert (unbalanced.weights == 1.0).all()


def test_semantic_targets_keep_class_ids_and_float_integer_labels_are_accepted():
    labels = np.zeros((8, 8), np.float32)
    labels[2:4] = 2.0
    labels[5:] = 1.0
    targets = make_targets(labels, config=TargetConfig(task="semantic", n_classes=3))
    np.testing.assert_array_equal(targets.classes, labels.astype(np.int64))


@pytest.mark.parametrize(
    ("labels", "mask", "config", "match"),
    [
        (np.full((4, 4), 0.5), None, TargetConfig(), "non-integer"),
        (np.full((4, 4), np.nan), None, TargetConfig(), "non-integer"),
        (np.full((4, 4), -2), None, TargetConfig(), "negative"),
        (np.zeros((4, 4), int), np.ones((4, 5), bool), TargetConfig(), "shape"),
        (np.zeros((4, 4), int), np.zeros((4, 4), bool), TargetConfig(), "nothing is annotated"),
        (np.full((4, 4), 9), None, TargetConfig(ignore_value=9), "nothing is annotated"),
        (np.full((4, 4), 3), None, TargetConfig(n_classes=3), "class id 3"),
        (np.full((4, 4), "a"), None, TargetConfig(), "integer label image"),
    ],
)
def test_bad_input_gets_a_helpful_message(labels, mask, config, match):
    with pytest.raises(TrainingDataError, match=match):
        make_targets(labels, mask, config=config)


def test_restoration_and_bad_configs_are_refused():
    with pytest.raises(ValueError, match="restoration"):
        make_targets(np.zeros((4, 4), int), task="restoration")
    with pytest.raises(ValueError, match="disagrees"):
        make_targets(np.zeros((4, 4), int), task="binary", config=TargetConfig(task="semantic"))
    for bad in ({"task": "nope"}, {"boundary_width": 0}, {"sigma": 0}, {"n_classes": 1}):
        with pytest.raises(ValueError):
            TargetConfig(**bad)
    assert TargetConfig(task="instances").use_border_weights
    assert not TargetConfig(task="binary").use_border_weights
    assert TargetConfig(task="binary", border_weights=True).use_border_weights


def test_sqrt_class_balance_lies_between_plain_and_inverse_frequency_weights():
    labels = two_touching_squares()
    mask = np.ones(labels.shape, bool)
    config = TargetConfig(task="instances", border_weights=False)
    by_mode = {
        mode: make_targets(labels, mask, config=config.replace(class_balance=mode))
        for mode in (True, "sqrt", False)
    }
    classes = by_mode[True].classes
    per_class = {
        mode: np.array([t.weights[classes == c][0] for c in range(3)])
        for mode, t in by_mode.items()
    }
    np.testing.assert_allclose(per_class[False], 1.0)
    # the rarest class (boundary) gets the largest weight, less so with sqrt
    assert per_class[True][2] > per_class["sqrt"][2] > 1.0
    np.testing.assert_allclose(per_class["sqrt"], np.sqrt(per_class[True]) / np.mean(
        np.sqrt(per_class[True])[classes]), rtol=1e-5)  # fmt: skip
    for targets in by_mode.values():  # every mode keeps the mean weight at 1
        assert targets.weights.mean() == pytest.approx(1.0, rel=1e-5)


def test_instances_by_default_weigh_rare_objects_by_the_square_root_of_their_rarity():
    # 2 % of the pixels are nuclei, as in grey bright-field: full inverse-frequency weights
    # would make an interior pixel weigh ~50x a background pixel; the default weighs it ~7x
    labels = np.zeros((200, 200), np.int32)
    for k in range(8):  # 14 x 14 nuclei: 10 x 10 interiors (2 %) in 2-px boundaries
        y, x = 30 + 80 * (k // 4), 10 + 50 * (k % 4)
        labels[y : y + 14, x : x + 14] = k + 1
    config = TargetConfig(task="instances", border_weights=False)
    targets = {mode: make_targets(labels, config=config.replace(class_balance=mode))
               for mode in (None, True)}  # fmt: skip
    classes = targets[None].classes
    ratio = {
        mode: t.weights[classes == 1][0] / t.weights[classes == 0][0] for mode, t in targets.items()
    }
    assert ratio[True] > 40
    assert ratio[None] == pytest.approx(np.sqrt(ratio[True]), rel=1e-5)
    assert 4 < ratio[None] < 10


def test_class_balance_auto_resolves_per_task_and_bad_values_are_refused():
    from napari_unet.core.training.targets import AUTO_CLASS_BALANCE

    for task in ("binary", "semantic", "instances"):
        expected = AUTO_CLASS_BALANCE.get(task, True)
        assert TargetConfig(task=task).resolved_class_balance == expected
    assert TargetConfig(task="instances").resolved_class_balance == "sqrt"
    assert TargetConfig(task="semantic").resolved_class_balance is True
    assert TargetConfig(task="instances", class_balance=True).resolved_class_balance is True
    with pytest.raises(ValueError, match="class_balance"):
        TargetConfig(task="instances", class_balance="log")
