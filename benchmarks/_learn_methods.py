"""The baselines of ``bench_learn.py``: the plain loop, the random forest and their helpers.

Nothing here imports the project's training code: the plain loop and the forest are what a user
would write in an afternoon, kept deliberately independent of the recipe they are compared with.
Our recipe itself lives in :mod:`_learn_recipe` (it calls the CLI's own functions).

Shapes: ``image`` is a normalised (C, Y, X) float32 array; ``labels`` (Y, X) int instance ids
(ISBI: 0 = membrane, 255 = cell, see :func:`classes_from_labels`); ``probabilities`` (3, Y, X)
float32 over background / interior / boundary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi
from torch import nn

logger = logging.getLogger(__name__)

#: Cross-entropy class weights of the plain loop: background, interior, boundary.
PLAIN_CLASS_WEIGHTS = (1.0, 1.0, 3.0)
#: The plain loop's settings (the issue's "40-line plain loop").
PLAIN = {"base": 16, "depth": 4, "lr": 1e-3, "batch": 4, "patch": 256}
#: ilastik's default scales.
RF_SIGMAS = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
#: Pixels per class drawn to train the forest (class-balanced, pooled over the K images).
RF_PIXELS_PER_CLASS = 20_000


# ------------------------------------------------------------------------------- data helpers
def normalize_plain(image: np.ndarray) -> np.ndarray:
    """Per-channel 1-99.8 percentile scaling of a (C, Y, X) image to ~[0, 1], float32."""
    image = image.astype(np.float32)
    low = np.percentile(image, 1.0, axis=(1, 2), keepdims=True)
    high = np.percentile(image, 99.8, axis=(1, 2), keepdims=True)
    return (image - low) / np.maximum(high - low, 1e-6)


def classes_from_labels(labels: np.ndarray, membranes: bool) -> np.ndarray:
    """(Y, X) int64 classes 0 background, 1 interior, 2 boundary.

    Instance sets: the boundary is the inner one-pixel rim of every object
    (``skimage.segmentation.find_boundaries(mode="inner")``). ISBI (``membranes``): the label is
    0 = membrane -> boundary, 255 = cell -> interior; there is no background.
    """
    if membranes:
        return np.where(labels == 0, 2, 1).astype(np.int64)
    from skimage.segmentation import find_boundaries

    classes = (labels > 0).astype(np.int64)
    classes[find_boundaries(labels, mode="inner") & (labels > 0)] = 2
    return classes


def instances_from_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """The plain post-processing: foreground = p(interior) + p(boundary) > 0.5, holes filled;
    watershed of 1 - p(interior) from the connected interior markers (p(interior) > 0.5).

    Returns:
        (Y, X) int32 instance ids, 0 = background.
    """
    from skimage.segmentation import watershed

    foreground = ndi.binary_fill_holes(probabilities[1] + probabilities[2] > 0.5)
    markers, _ = ndi.label((probabilities[1] > 0.5) & foreground)
    return watershed(1.0 - probabilities[1], markers, mask=foreground).astype(np.int32)


def membranes_from_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """ISBI: (Y, X) uint8, 1 = membrane (p(interior) < 0.5), 0 = cell."""
    return (probabilities[1] < 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------- plain U-Net
def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


class PlainUNet(nn.Module):
    """A padded U-Net: ``depth`` poolings, ``base`` channels doubling per level, 3 outputs."""

    def __init__(self, in_channels: int, *, base: int = 16, depth: int = 4, n_classes: int = 3):
        super().__init__()
        widths = [base * 2**level for level in range(depth + 1)]
        self.downs = nn.ModuleList(
            [_double_conv(in_channels, widths[0])]
            + [_double_conv(widths[i - 1], widths[i]) for i in range(1, depth + 1)]
        )
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2) for i in range(depth, 0, -1)
        )
        self.merges = nn.ModuleList(
            _double_conv(2 * widths[i - 1], widths[i - 1]) for i in range(depth, 0, -1)
        )
        self.head = nn.Conv2d(widths[0], n_classes, 1)
        self.multiple = 2**depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) with H, W multiples of 2**depth -> logits (B, 3, H, W)."""
        skips = []
        for level, block in enumerate(self.downs):
            x = block(x if level == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.ups, self.merges, reversed(skips[:-1])):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def predict_plain(model: PlainUNet, image: np.ndarray) -> np.ndarray:
    """Softmax probabilities (3, Y, X) of a whole (C, Y, X) image, mirror-padded to the multiple."""
    m = model.multiple
    pads = [(0, 0)] + [(0, (-side) % m) for side in image.shape[1:]]
    padded = np.pad(image, pads, mode="reflect")
    model.eval()
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.ascontiguousarray(padded))[None])
    y, x = image.shape[1:]
    return torch.softmax(logits, dim=1)[0, :, :y, :x].numpy()


def _random_patch(rng, image, classes, side):
    """One (C, side, side) image patch and its classes, mirror-padded where the image is small."""
    pad_y, pad_x = max(0, side - image.shape[1]), max(0, side - image.shape[2])
    if pad_y or pad_x:
        image = np.pad(image, [(0, 0), (0, pad_y), (0, pad_x)], mode="reflect")
        classes = np.pad(classes, [(0, pad_y), (0, pad_x)], mode="reflect")
    y0 = rng.integers(0, image.shape[1] - side + 1)
    x0 = rng.integers(0, image.shape[2] - side + 1)
    patch, target = (
        image[:, y0 : y0 + side, x0 : x0 + side],
        classes[y0 : y0 + side, x0 : x0 + side],
    )
    k = int(rng.integers(4))
    patch, target = np.rot90(patch, k, axes=(1, 2)), np.rot90(target, k)
    if rng.random() < 0.5:
        patch, target = patch[:, :, ::-1], target[:, ::-1]
    return np.ascontiguousarray(patch), np.ascontiguousarray(target)


def train_plain(
    images: Sequence[np.ndarray],
    classes: Sequence[np.ndarray],
    *,
    budget_s: float,
    snapshots: Sequence[float],
    seed: int,
    clock: Callable[[], float] = time.process_time,
) -> tuple[PlainUNet, list[dict[str, Any]]]:
    """The plain loop: Adam 1e-3, rot90/flip, weighted cross entropy, for ``budget_s`` of ``clock``.

    Args:
        images: normalised (C, Y, X) float32 training images.
        classes: (Y, X) int64 classes per image (see :func:`classes_from_labels`).
        budget_s: seconds of ``clock`` (process CPU time by default).
        snapshots: fractions of the budget at which to copy the weights (1.0 = the end).

    Returns:
        The trained net and ``[{"fraction", "steps", "cpu_s", "state"}]`` per snapshot.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = PlainUNet(images[0].shape[0], base=PLAIN["base"], depth=PLAIN["depth"])
    optimizer = torch.optim.Adam(model.parameters(), lr=PLAIN["lr"])
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(PLAIN_CLASS_WEIGHTS))
    side = PLAIN["patch"]
    pending, taken, steps = sorted(snapshots), [], 0
    start = clock()
    model.train()
    while pending:
        spent = clock() - start
        while pending and (spent >= pending[0] * budget_s):
            taken.append(_snapshot(model, pending.pop(0), steps, spent))
        if not pending:
            break
        picks = rng.integers(len(images), size=PLAIN["batch"])
        batch = [_random_patch(rng, images[i], classes[i], side) for i in picks]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))
        t = torch.from_numpy(np.stack([b[1] for b in batch]))
        optimizer.zero_grad()
        loss = loss_fn(model(x), t)
        loss.backward()
        optimizer.step()
        steps += 1
    return model, taken


def _snapshot(model: nn.Module, fraction: float, steps: int, spent: float) -> dict[str, Any]:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"fraction": fraction, "steps": steps, "cpu_s": round(spent, 2), "state": state}


# ------------------------------------------------------------------------------- random forest
def rf_features(image: np.ndarray) -> np.ndarray:
    """ilastik's default filter bank per channel at :data:`RF_SIGMAS`: (Y, X, F) float32.

    Per sigma: Gaussian smoothing, Laplacian of Gaussian, Gaussian gradient magnitude, difference
    of Gaussians (sigma, 0.66 sigma), the 2 structure-tensor eigenvalues (ilastik's inner scale
    sigma, outer scale sigma / 2) and the 2 Hessian-of-Gaussian eigenvalues: 8 per sigma.
    """
    from skimage.feature import (
        hessian_matrix,
        hessian_matrix_eigvals,
        structure_tensor,
        structure_tensor_eigenvalues,
    )

    features = []
    for channel in image.astype(np.float32):
        for sigma in RF_SIGMAS:
            smooth = ndi.gaussian_filter(channel, sigma)
            features += [
                smooth,
                ndi.gaussian_laplace(channel, sigma),
                ndi.gaussian_gradient_magnitude(channel, sigma),
                smooth - ndi.gaussian_filter(channel, 0.66 * sigma),
            ]
            tensor = structure_tensor(smooth, sigma=sigma / 2, order="rc")
            features += list(structure_tensor_eigenvalues(tensor))
            hessian = hessian_matrix(
                channel, sigma=sigma, order="rc", use_gaussian_derivatives=False
            )
            features += list(hessian_matrix_eigvals(hessian))
    return np.stack(features, axis=-1).astype(np.float32)


def train_forest(images: Sequence[np.ndarray], classes: Sequence[np.ndarray], *, seed: int):
    """A 100-tree scikit-learn forest on class-balanced pixels of the training images.

    Per image and class at most ``RF_PIXELS_PER_CLASS / len(images)`` pixels are drawn, so the
    features of all pixels of all images never sit in memory together.
    """
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    per_image = max(1, RF_PIXELS_PER_CLASS // len(images))
    rows, targets = [], []
    for image, target in zip(images, classes):
        feats = rf_features(image).reshape(-1, rf_features_count(image))
        flat = target.reshape(-1)
        for value in np.unique(flat):
            where = np.flatnonzero(flat == value)
            pick = rng.choice(where, size=min(per_image, where.size), replace=False)
            rows.append(feats[pick])
            targets.append(flat[pick])
    forest = RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed)
    forest.fit(np.concatenate(rows), np.concatenate(targets))
    return forest


def rf_features_count(image: np.ndarray) -> int:
    """Features per pixel of :func:`rf_features` for an image with ``image.shape[0]`` channels."""
    return image.shape[0] * len(RF_SIGMAS) * 8


def predict_forest(forest, image: np.ndarray) -> np.ndarray:
    """(3, Y, X) float32 class probabilities of the forest (absent classes get 0)."""
    feats = rf_features(image)
    proba = forest.predict_proba(feats.reshape(-1, feats.shape[-1]))
    out = np.zeros((3, *image.shape[1:]), dtype=np.float32)
    for column, value in enumerate(forest.classes_):
        out[int(value)] = proba[:, column].reshape(image.shape[1:])
    return out
