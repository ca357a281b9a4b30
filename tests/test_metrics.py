"""Metrics against hand-computed values, scikit-image and brute-force references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from skimage.metrics import adapted_rand_error
from skimage.metrics import variation_of_information as skimage_vi

from napari_unet.core.evaluation import metrics as M


def own_adapted_rand_error(truth: np.ndarray, pred: np.ndarray) -> float:
    """Textbook foreground-restricted adapted Rand error by explicit pair counting."""
    keep = truth.ravel() != 0
    t, p = truth.ravel()[keep], pred.ravel()[keep]
    same_t = t[:, None] == t[None, :]
    same_p = p[:, None] == p[None, :]
    off_diagonal = ~np.eye(t.size, dtype=bool)
    both = np.count_nonzero(same_t & same_p & off_diagonal)
    n_t = np.count_nonzero(same_t & off_diagonal)
    n_p = np.count_nonzero(same_p & off_diagonal)
    return 1.0 - 2 * both / (n_t + n_p)


# ---------------------------------------------------------------- pixel metrics


def test_iou_and_dice_per_class_by_hand():
    truth = np.array([[0, 0, 1], [1, 1, 2], [2, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 2], [2, 2, 0]])
    # class 0: inter 1, union 3; class 1: inter 2, union 4; class 2: inter 3, union 5
    np.testing.assert_allclose(M.iou_per_class(pred, truth, 3), [1 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(M.dice_per_class(pred, truth, 3), [2 / 4, 4 / 6, 6 / 8])
    cm = M.confusion_matrix(pred, truth, 3)
    assert cm.sum() == 9 and cm[2, 0] == 1 and cm[0, 1] == 1


def test_per_class_ignore_and_absent_class():
    truth = np.array([0, 1, 255, 255])
    pred = np.array([0, 1, 1, 3])
    iou = M.iou_per_class(pred, truth, 4, ignore=255)
    np.testing.assert_allclose(iou[:2], [1.0, 1.0])
    assert np.isnan(iou[2]) and np.isnan(iou[3])
    with pytest.raises(ValueError, match="outside"):
        M.iou_per_class(pred, truth, 4)


def test_foreground_scores_and_pixel_errors():
    truth = np.zeros((4, 4), bool)
    truth[:2] = True  # 8 foreground pixels
    pred = np.zeros((4, 4), bool)
    pred[:1] = True
    pred[3, 0] = True  # tp 4, fp 1, fn 4
    assert M.iou(pred, truth) == pytest.approx(4 / 9)
    assert M.dice(pred, truth) == pytest.approx(8 / 13)
    assert M.pixel_error(pred, truth) == pytest.approx(1 - 8 / 13)
    assert M.pixel_error_fraction(pred, truth) == pytest.approx(5 / 16)
    empty = np.zeros((3, 3), bool)
    assert M.iou(empty, empty) == 1.0 and M.pixel_error(empty, empty) == 0.0


# ---------------------------------------------------------------- Rand error and VI


def test_rand_error_hand_checked():
    truth = np.array([1, 1, 2, 2])
    # one merged region: 4 of the 12 predicted same-region pairs are true pairs
    assert M.rand_error(np.array([1, 1, 1, 1]), truth) == pytest.approx(0.5)
    assert M.rand_error(np.array([7, 7, 3, 3]), truth) == pytest.approx(0.0)
    # true label 0 is not scored, whatever is predicted there
    assert M.rand_error(np.array([5, 6, 7, 7]), np.array([0, 0, 1, 1])) == pytest.approx(0.0)


def test_rand_error_matches_skimage_and_own_implementation(rng):
    for _ in range(10):
        truth = rng.integers(0, 6, (20, 20))
        pred = rng.integers(0, 9, (20, 20)) * 1000  # sparse ids: relabelled internally
        ours = M.rand_error(pred, truth)
        assert ours == pytest.approx(adapted_rand_error(truth, pred)[0], abs=1e-12)
        assert ours == pytest.approx(own_adapted_rand_error(truth, pred), abs=1e-12)
        _, precision, recall = M.rand_scores(pred, truth)
        assert (precision, recall) == pytest.approx(adapted_rand_error(truth, pred)[1:])


def test_variation_of_information_by_hand_and_vs_skimage(rng):
    truth = np.array([1, 1, 2, 2])
    split, merge = M.vi_split_merge(np.array([1, 1, 1, 1]), truth)
    assert (split, merge) == pytest.approx((0.0, 1.0))  # one bit lost by merging two halves
    assert M.variation_of_information(np.array([1, 2, 3, 4]), truth) == pytest.approx(1.0)
    truth = rng.integers(1, 5, (16, 16))
    pred = rng.integers(0, 4, (16, 16))
    expected = skimage_vi(truth, pred).sum()
    assert M.variation_of_information(pred, truth, ignore_labels=()) == pytest.approx(expected)


def test_em_region_scores():
    truth_membrane = np.zeros((20, 20), bool)
    truth_membrane[:, 9:11] = True  # two cells left and right
    perfect = M.em_region_scores(truth_membrane, truth_membrane)
    assert perfect["rand_error"] == pytest.approx(0.0)
    assert perfect["variation_of_information"] == pytest.approx(0.0, abs=1e-12)
    merged = M.em_region_scores(np.zeros((20, 20), bool), truth_membrane)
    cell = 180 * 179  # ordered same-cell pairs of one 20x9 cell; merged: 360 * 359
    assert merged["rand_error"] == pytest.approx(1 - 4 * cell / (2 * cell + 360 * 359))
    thick = truth_membrane.copy()
    thick[:, 8:12] = True  # a wider predicted membrane only costs a few split pixels
    assert 0 < M.em_region_scores(thick, truth_membrane)["rand_error"] < 0.2
    probability = np.where(truth_membrane, 0.8, 0.1)
    assert M.em_region_scores(probability, truth_membrane)["rand_error"] == pytest.approx(0.0)
    high = M.em_region_scores(probability, truth_membrane, threshold=0.9)
    assert high["rand_error"] == pytest.approx(merged["rand_error"])


# ---------------------------------------------------------------- instances


def squares(shape, boxes) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    for i, (y0, y1, x0, x1) in enumerate(boxes, start=1):
        labels[y0:y1, x0:x1] = i
    return labels


def test_matching_known_counts():
    truth = squares((20, 20), [(0, 4, 0, 4), (0, 4, 10, 14), (10, 14, 10, 14)])
    pred = np.zeros_like(truth)
    pred[0:4, 0:4] = 5  # IoU 1
    pred[0:4, 10:15] = 9  # IoU 16/20 = 0.8
    pred[15:18, 0:3] = 2  # false positive
    m = M.matching(pred, truth, 0.5)
    assert (m.tp, m.fp, m.fn, m.n_pred, m.n_true) == (2, 1, 1, 3, 3)
    assert m.accuracy == pytest.approx(2 / 4)
    assert m.f1 == pytest.approx(4 / 6)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3)
    assert m.mean_matched_iou == pytest.approx(0.9)
    assert sorted(map(tuple, m.pairs.tolist())) == [(5, 1), (9, 2)]
    ap = M.average_precision(pred, truth, thresholds=(0.5, 0.75, 0.85))
    assert ap == pytest.approx({0.5: 0.5, 0.75: 0.5, 0.85: 1 / 5})


def test_one_big_prediction_over_two_objects_counts_once():
    truth = squares((10, 10), [(0, 4, 0, 2), (0, 4, 2, 4)])  # two 4x2 objects side by side
    pred = squares((10, 10), [(0, 4, 0, 4)])  # one 4x4 object: IoU 0.5 with each
    m = M.matching(pred, truth, 0.5)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    assert m.mean_matched_iou == pytest.approx(0.5)
    assert M.matching(pred, truth, 0.51).tp == 0
    assert M.matching(pred, truth, 0.3).tp == 1


def test_empty_images():
    empty = np.zeros((5, 5), np.uint16)
    both = M.matching(empty, empty)
    assert both.accuracy == 1.0 and both.f1 == 1.0
    one = squares((5, 5), [(0, 2, 0, 2)])
    missed = M.matching(empty, one)
    assert (missed.tp, missed.fn, missed.accuracy, missed.recall) == (0, 1, 0.0, 0.0)


def brute_force_tp(pred: np.ndarray, truth: np.ndarray, thresh: float) -> int:
    """Maximum number of one-to-one pairs with IoU >= thresh (dense Hungarian)."""
    p_ids, t_ids = np.unique(pred[pred > 0]), np.unique(truth[truth > 0])
    ok = np.zeros((p_ids.size, t_ids.size))
    for (i, p), (j, t) in itertools.product(enumerate(p_ids), enumerate(t_ids)):
        inter = np.count_nonzero((pred == p) & (truth == t))
        union = np.count_nonzero((pred == p) | (truth == t))
        ok[i, j] = inter / union >= thresh
    rows, cols = linear_sum_assignment(-ok)
    return int(ok[rows, cols].sum())


@pytest.mark.parametrize("thresh", [0.1, 0.3, 0.5, 0.7])
def test_matching_equals_brute_force(rng, thresh):
    for _ in range(4):
        truth = rng.integers(0, 6, (12, 12))
        pred = rng.integers(0, 5, (12, 12)) * 7
        m = M.matching(pred, truth, thresh)
        assert m.tp == brute_force_tp(pred, truth, thresh)
        assert len(set(m.pairs[:, 0])) == m.tp == len(set(m.pairs[:, 1]))  # one-to-one
        assert np.all(m.pair_iou >= thresh)


def test_matching_many_instances():
    boxes = [(y, y + 6, x, x + 6) for y in range(0, 320, 8) for x in range(0, 320, 8)]
    truth = squares((320, 320), boxes)  # 1600 objects
    pred = np.roll(truth, 1, axis=1).astype(np.int64) * 1_000_003  # sparse ids, IoU 30/42
    m = M.matching(pred, truth, 0.5)
    assert m.n_true == 1600 and m.tp == 1600
    assert m.mean_matched_iou == pytest.approx(30 / 42)
    assert M.matching(pred, truth, 0.75).tp == 0


# ---------------------------------------------------------------- thresholds


def test_best_threshold_recovers_the_generating_threshold(rng):
    probabilities = rng.random((64, 64))
    truth = probabilities >= 0.3
    threshold, score = M.best_threshold(probabilities, truth)
    assert threshold == pytest.approx(0.3) and score == pytest.approx(1.0)
    threshold, error = M.best_threshold(
        [probabilities, probabilities], [truth, truth], metric="pixel_error"
    )
    assert threshold == pytest.approx(0.3) and error == pytest.approx(0.0)


def test_best_threshold_counts_match_direct_evaluation(rng):
    probabilities = rng.random((40, 40))
    truth = rng.random((40, 40)) < probabilities  # noisy: no perfect threshold
    candidates = np.linspace(0.05, 0.95, 19)
    threshold, score = M.best_threshold(probabilities, truth, candidates, metric="dice")
    direct = [M.dice(probabilities >= t, truth) for t in candidates]
    assert score == pytest.approx(max(direct))
    assert threshold == pytest.approx(candidates[int(np.argmax(direct))])
