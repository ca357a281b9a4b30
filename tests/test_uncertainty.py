"""core.inference.uncertainty: entropy, disagreement and the next tile to review (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.inference.uncertainty import disagreement, entropy, most_uncertain_tile


@pytest.mark.parametrize("k", [2, 3, 5])
def test_entropy_uniform_is_one_and_one_hot_is_zero(k):
    uniform = np.full((k, 8, 9), 1.0 / k, dtype=np.float32)
    h = entropy(uniform)
    assert h.shape == (8, 9) and h.dtype == np.float32
    np.testing.assert_allclose(h, 1.0, atol=1e-6)
    one_hot = np.zeros((k, 8, 9), dtype=np.float32)
    one_hot[1] = 1.0
    np.testing.assert_allclose(entropy(one_hot), 0.0, atol=1e-6)


def test_entropy_binary_sigmoid_and_ordering():
    p = np.array([[[0.5, 0.0, 1.0, 0.9, 0.7]]], dtype=np.float32)  # (1, 1, 5)
    h = entropy(p)[0]
    np.testing.assert_allclose(h[:3], [1.0, 0.0, 0.0], atol=1e-6)
    assert 0.0 < h[3] < h[4] < 1.0
    # the same probabilities as a two-class softmax give the same entropy
    np.testing.assert_allclose(entropy(np.concatenate([1 - p, p])), entropy(p), atol=1e-6)


def test_entropy_rejects_bad_input():
    with pytest.raises(ValueError):
        entropy(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError):
        entropy(np.zeros((2, 4, 4), dtype=np.uint8))


def test_disagreement_probabilities_and_labels():
    a = np.zeros((2, 4, 4), dtype=np.float32)
    a[0] = 1.0
    b = a.copy()
    b[:, 0, 0] = (0.0, 1.0)  # opposite at one pixel
    b[:, 1, 1] = (0.5, 0.5)  # half-way at another
    d = disagreement(a, b)
    assert d[0, 0] == pytest.approx(1.0) and d[1, 1] == pytest.approx(0.5)
    assert d.sum() == pytest.approx(1.5)
    labels = np.zeros((6, 6), dtype=np.uint16)
    labels[1:4, 1:4] = 1
    renumbered = np.where(labels > 0, 7, 0).astype(np.uint16)
    assert disagreement(labels, renumbered).sum() == 9  # semantic: the ids differ
    assert disagreement(labels, renumbered, instances=True).sum() == 0  # same object
    grown = labels.copy()
    grown[4, 1:4] = 1
    assert disagreement(labels, grown, instances=True)[4, 2] == 1.0
    with pytest.raises(ValueError):
        disagreement(labels, a[0])


def test_most_uncertain_tile_finds_the_planted_tile_and_skips_excluded(rng):
    uncertainty = rng.uniform(0.0, 0.1, size=(300, 260)).astype(np.float32)
    uncertainty[130:194, 65:129] = 0.9  # a 64x64 block on the half-tile grid (step 32)
    y0, x0, score = most_uncertain_tile(uncertainty, None, tile=64)
    assert (y0, x0) == (128, 64)
    assert 0.5 < score < 0.95
    # once reviewed, that block is skipped: the next best is elsewhere and scores low
    reviewed = np.zeros(uncertainty.shape, dtype=bool)
    reviewed[100:230, 30:170] = True
    y1, x1, score1 = most_uncertain_tile(uncertainty, reviewed, tile=64)
    window = reviewed[y1 : y1 + 64, x1 : x1 + 64]
    assert not window.all() and score1 < 0.2
    # a second planted block, mostly reviewed: only its unreviewed part counts
    uncertainty[:64, :64] = 0.6
    reviewed[:64, :40] = True
    y2, x2, score2 = most_uncertain_tile(uncertainty, reviewed, tile=64)
    assert y2 == 0 and x2 in (0, 32)
    assert 0.6 * 24 / 64 <= score2 < 0.6 * 24 / 64 + 0.06
    everything = np.ones(uncertainty.shape, dtype=bool)
    assert most_uncertain_tile(uncertainty, everything, tile=64) is None


def test_most_uncertain_tile_small_image_and_border():
    uncertainty = np.zeros((40, 300), dtype=np.float32)
    uncertainty[:, -10:] = 1.0
    y0, x0, score = most_uncertain_tile(uncertainty, tile=128)
    assert (y0, x0) == (0, 300 - 128)  # window flush with the right border, clipped to 40 rows
    assert score == pytest.approx(10 / 128)
    with pytest.raises(ValueError):
        most_uncertain_tile(uncertainty, np.zeros((3, 3), bool))
