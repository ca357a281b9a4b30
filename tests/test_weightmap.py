"""The fast U-Net border weight map against the brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import watershed

from napari_unet.core.training.weightmap import (
    border_term,
    border_weight_map,
    brute_force_weight_map,
    class_balance_weights,
    cutoff_radius,
)

TOL = 1e-3
W0 = 10.0


def random_cells(seed: int, shape=(64, 64), n=8, radius=9.0, touching=True) -> np.ndarray:
    """Random cells grown from seeds; ``touching`` lets neighbouring cells share borders."""
    rng = np.random.default_rng(seed)
    markers = np.zeros(shape, np.int32)
    points = rng.integers(0, shape, size=(n, 2))
    markers[points[:, 0], points[:, 1]] = np.arange(1, n + 1)
    distance = ndimage.distance_transform_edt(markers == 0)
    labels = watershed(distance, markers, mask=distance < radius)
    if not touching:
        labels[ndimage.binary_dilation(labels > 0) & ~ndimage.binary_erosion(labels > 0)] = 0
        labels = watershed(distance, markers, mask=(distance < radius - 2))
    return labels


def check_within_tolerance(labels: np.ndarray, **kwargs) -> None:
    fast = border_weight_map(labels, cutoff_tol=TOL, w0=W0, **kwargs)
    reference = brute_force_weight_map(labels, w0=W0, **kwargs)
    assert fast.dtype == np.float32 and fast.shape == labels.shape
    # Absolute error below tol * w0 everywhere ...
    assert np.abs(fast - reference).max() <= TOL * W0 + 1e-5
    # ... and exact where the border term is >= tol * w0.
    options = {k: v for k, v in kwargs.items() if k != "class_weights"}
    term = brute_force_weight_map(labels, w0=W0, class_weights=None, **options) - 1.0
    strong = term >= TOL * W0 * 1.0001
    np.testing.assert_allclose(fast[strong], reference[strong], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_brute_force_on_touching_cells(seed):
    labels = random_cells(seed)
    assert len(np.unique(labels)) >= 4
    check_within_tolerance(labels)


def test_matches_brute_force_on_separate_cells_and_arbitrary_ids():
    labels = random_cells(5, n=6, touching=False)
    labels[labels > 0] = labels[labels > 0] * 1000 + 7  # non-contiguous ids
    check_within_tolerance(labels)
    check_within_tolerance(labels, sigma=2.0)


def test_border_term_is_large_in_the_gap_between_two_cells():
    labels = np.zeros((20, 30), np.int32)
    labels[5:15, 2:12] = 1
    labels[5:15, 14:24] = 2  # 2-pixel gap at columns 12, 13
    term = border_term(labels, w0=W0, sigma=5.0)
    # Gap pixel at column 12: d1 = 1, d2 = 2.
    assert term[10, 12] == pytest.approx(W0 * math.exp(-(3.0**2) / 50.0), rel=1e-6)
    assert term[10, 12] > term[10, 25] > 0
    assert term[10, 29] == 0  # d1 + d2 = 6 + 18 is beyond the cut-off radius
    assert (term[labels > 0] == 0).all()


def test_fewer_than_two_objects_give_no_border_term():
    assert (border_term(np.zeros((16, 16), np.int32)) == 0).all()
    one = np.zeros((16, 16), np.int32)
    one[4:8, 4:8] = 3
    assert (border_term(one) == 0).all()
    check_within_tolerance(one)
    check_within_tolerance(np.zeros((16, 16), np.int32))


def test_exact_with_zero_tolerance():
    labels = random_cells(7)
    fast = border_weight_map(labels, cutoff_tol=0.0)
    np.testing.assert_allclose(fast, brute_force_weight_map(labels), rtol=1e-5, atol=1e-6)


def test_cutoff_radius():
    radius = cutoff_radius(5.0, 1e-3)
    assert math.exp(-(radius**2) / 50.0) == pytest.approx(1e-3)
    assert cutoff_radius(5.0, 0.0) == math.inf
    with pytest.raises(ValueError):
        cutoff_radius(5.0, 1.5)


def test_class_weights_are_inverse_frequency_with_mean_one():
    classes = np.array([[0, 0, 0, 1], [0, 0, 0, 1], [-1, -1, 2, 2]])
    table = class_balance_weights(classes)
    counts = np.array([6, 2, 2])
    np.testing.assert_allclose(table, 10 / (3 * counts))
    annotated = classes >= 0
    assert table[classes[annotated]].mean() == pytest.approx(1.0)
    # The mask restricts the counted pixels.
    mask = np.zeros_like(classes, bool)
    mask[0] = True
    np.testing.assert_allclose(class_balance_weights(classes, mask, n_classes=3), [4 / 6, 2.0, 0.0])


def test_weight_map_mask_and_class_weight_options():
    labels = random_cells(3)
    mask = np.zeros(labels.shape, bool)
    mask[10:40, 5:50] = True
    weights = border_weight_map(labels, mask)
    assert (weights[~mask] == 0).all() and (weights[mask] > 0).all()
    plain = border_weight_map(labels, class_weights=None, w0=0.0)
    assert (plain == 1.0).all()
    fixed = border_weight_map(labels, class_weights=np.array([0.5, 2.0]), w0=0.0)
    np.testing.assert_allclose(fixed, np.where(labels > 0, 2.0, 0.5))
    balanced = border_weight_map(labels, w0=0.0)
    assert balanced.mean() == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError):
        border_weight_map(labels, class_weights=np.array([1.0]))
    with pytest.raises(ValueError):
        border_weight_map(labels.astype(float))
