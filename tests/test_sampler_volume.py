"""Where the annotated pixel lands in a training window: anywhere in a volume's, the middle of an
image's (the sparse-slice bug: a 3-D net trained on a few annotated slices saw them at one depth
only and predicted garbage on half the slices of a stack)."""

from __future__ import annotations

import numpy as np

from napari_unet.core.training.items import TrainingItem, window_starts
from napari_unet.core.training.sampler import PatchSampler
from napari_unet.core.training.targets import IGNORE_INDEX


def _targets(labels, mask):
    classes = np.where(mask, (labels > 0).astype(np.int64), IGNORE_INDEX)
    return classes, mask.astype(np.float32)


def test_an_annotated_slice_lands_at_every_depth_of_the_3d_window():
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 48, 48)) > 0.7).astype(np.uint8)
    mask = np.zeros(labels.shape, bool)
    mask[20] = True  # one annotated slice, far from the volume's ends
    item = TrainingItem(rng.random((1, *labels.shape), dtype=np.float32), labels, mask, "v")
    sampler = PatchSampler(
        _targets, input_shape=(8, 16, 16), output_shape=(8, 16, 16), items=[item], seed=1
    )
    depths = []
    for _ in range(40):
        batch = sampler.sample(4)
        for weights in batch.weights:
            planes = np.flatnonzero(weights.reshape(8, -1).any(axis=1))
            assert planes.size == 1  # the one annotated slice, always inside the window
            depths.append(int(planes[0]))
    assert set(depths) == set(range(8))  # every depth, so every pooling phase, is supervised


def test_an_image_window_keeps_the_annotated_pixel_in_its_middle():
    rng = np.random.default_rng(0)
    starts = {tuple(window_starts((50, 60), (16, 16), (128, 128), rng)) for _ in range(20)}
    assert starts == {(42, 52)}


def test_a_volume_window_stays_inside_the_volume_and_holds_the_voxel():
    rng = np.random.default_rng(0)
    for _ in range(200):
        centre = (int(rng.integers(10)), int(rng.integers(30)), int(rng.integers(30)))
        starts = window_starts(centre, (4, 16, 16), (10, 30, 30), rng)
        for c, s, n, size in zip(centre, starts, (4, 16, 16), (10, 30, 30)):
            assert 0 <= s <= size - n and s <= c < s + n
