"""Where the model is unsure: entropy, disagreement between versions, the next tile to review.

Pure numpy (no torch, napari or Qt), so the GUI's "Show uncertainty" and "Next region to review",
a script or a benchmark all share it. Every map is (Y, X) float32 in [0, 1]: 0 = certain (or the
two versions agree), 1 = as unsure as possible.

Example:
    >>> probabilities = np.full((3, 4, 4), 1 / 3, dtype=np.float32)
    >>> float(entropy(probabilities).min())
    1.0
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

_EPS = 1e-12


def _check_probabilities(probabilities: np.ndarray, what: str = "probabilities") -> np.ndarray:
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 3 or probabilities.shape[0] < 1:
        raise ValueError(f"{what} must be a (K, Y, X) array, got shape {probabilities.shape}")
    if not np.issubdtype(probabilities.dtype, np.floating):
        raise ValueError(f"{what} must be floating point, got {probabilities.dtype}")
    return probabilities


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Normalised Shannon entropy of per-pixel class probabilities.

    Args:
        probabilities: (K, Y, X) float. K >= 2: a distribution over K classes (softmax output;
            entropy divided by ``log K``). K == 1: a binary model's foreground probability p
            (sigmoid output), read as the distribution (1 - p, p).

    Returns:
        (Y, X) float32 in [0, 1]: 1 for a uniform distribution, 0 for a one-hot one.

    Raises:
        ValueError: not a (K, Y, X) floating-point array.
    """
    probabilities = _check_probabilities(probabilities)
    p = np.clip(probabilities.astype(np.float64, copy=False), 0.0, 1.0)
    if p.shape[0] == 1:
        p = np.concatenate([1.0 - p, p])
    total = p.sum(axis=0, keepdims=True)
    p = p / np.maximum(total, _EPS)
    h = -(p * np.log(np.maximum(p, _EPS))).sum(axis=0)
    h /= np.log(p.shape[0])
    return np.clip(h, 0.0, 1.0).astype(np.float32)


def _boundaries(labels: np.ndarray) -> np.ndarray:
    """(Y, X) bool: pixels whose 4-neighbour has another label (object edges, both sides)."""
    edge = np.zeros(labels.shape, dtype=bool)
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge


def disagreement(first: np.ndarray, second: np.ndarray, *, instances: bool = False) -> np.ndarray:
    """How much two predictions of the same slice differ, per pixel.

    Args:
        first, second: both (K, Y, X) float probabilities — the result is the total variation
            distance ``0.5 * sum_k |p_k - q_k|`` (K == 1: ``|p - q|``) — or both (Y, X) integer
            labels — the result is 1 where they differ.
        instances: for labels: instance ids are arbitrary, so compare the foreground and the
            object boundaries instead of the ids.

    Returns:
        (Y, X) float32 in [0, 1].

    Raises:
        ValueError: shapes differ, or one is labels and the other probabilities.
    """
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape:
        raise ValueError(f"cannot compare shapes {first.shape} and {second.shape}")
    floats = [np.issubdtype(a.dtype, np.floating) for a in (first, second)]
    if floats[0] != floats[1]:
        raise ValueError("compare probabilities with probabilities, or labels with labels")
    if floats[0]:
        first = _check_probabilities(first, "first").astype(np.float64, copy=False)
        second = _check_probabilities(second, "second").astype(np.float64, copy=False)
        distance = np.abs(first - second).sum(axis=0)
        if first.shape[0] > 1:
            distance *= 0.5
        return np.clip(distance, 0.0, 1.0).astype(np.float32)
    if first.ndim != 2:
        raise ValueError(f"labels must be (Y, X), got shape {first.shape}")
    if not instances:
        return (first != second).astype(np.float32)
    differ = (first > 0) != (second > 0)
    differ |= _boundaries(first) != _boundaries(second)
    return differ.astype(np.float32)


def _starts(size: int, tile: int) -> np.ndarray:
    """Tile origins along one axis: half-tile steps, the last one flush with the border."""
    if size <= tile:
        return np.zeros(1, dtype=int)
    step = max(tile // 2, 1)
    starts = list(range(0, size - tile + 1, step))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return np.asarray(starts, dtype=int)


def most_uncertain_tile(
    uncertainty: np.ndarray, excluded_mask: np.ndarray | None = None, tile: int = 128
) -> tuple[int, int, float] | None:
    """The ``tile`` x ``tile`` window with the most uncertainty outside ``excluded_mask``.

    Windows lie on a half-tile grid (the last row/column flush with the border; a side shorter
    than ``tile`` gives one window of that side). A window's score is the mean uncertainty over
    its pixels with excluded pixels counting as 0, so a half-reviewed window scores at most half;
    windows entirely excluded are never chosen. Ties go to the first window (row-major).

    Args:
        uncertainty: (Y, X) float in [0, 1] (e.g. :func:`entropy`).
        excluded_mask: (Y, X) bool, True where the user already reviewed; None for nothing.
        tile: window side in pixels (>= 1).

    Returns:
        ``(y0, x0, score)`` of the window's top-left corner and its score, or None when every
        pixel is excluded.

    Raises:
        ValueError: not 2-D, shapes differ, or ``tile < 1``.
    """
    uncertainty = np.asarray(uncertainty)
    if uncertainty.ndim != 2:
        raise ValueError(f"uncertainty must be (Y, X), got shape {uncertainty.shape}")
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    free = np.ones(uncertainty.shape, dtype=bool)
    if excluded_mask is not None:
        excluded_mask = np.asarray(excluded_mask, dtype=bool)
        if excluded_mask.shape != uncertainty.shape:
            raise ValueError(
                f"excluded_mask has shape {excluded_mask.shape}, uncertainty {uncertainty.shape}"
            )
        free = ~excluded_mask
    if not free.any():
        return None
    values = np.where(free, np.nan_to_num(uncertainty.astype(np.float64), nan=0.0), 0.0)
    height, width = values.shape
    th, tw = min(tile, height), min(tile, width)
    # summed-area tables: any window sum in O(1)
    table = np.zeros((height + 1, width + 1))
    table[1:, 1:] = values.cumsum(0).cumsum(1)
    counts = np.zeros((height + 1, width + 1))
    counts[1:, 1:] = free.cumsum(0).cumsum(1)
    ys, xs = _starts(height, th)[:, None], _starts(width, tw)[None, :]

    def window(t: np.ndarray) -> np.ndarray:
        return t[ys + th, xs + tw] - t[ys, xs + tw] - t[ys + th, xs] + t[ys, xs]

    scores = window(table) / float(th * tw)
    scores[window(counts) < 0.5] = -np.inf
    row, col = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(ys[row, 0]), int(xs[0, col]), float(scores[row, col])
