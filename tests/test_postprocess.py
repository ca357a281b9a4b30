"""Post-processing on constructed probability maps: labels, ids, dtypes, blocks and stitching."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_unet.core.errors import UserInputError
from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.postprocess.labels import (
    instance_label_dtype,
    instance_labels,
    labels_from_probabilities,
    relabel_sequential_dtype,
    remove_small_objects_labels,
    semantic_labels,
)
from napari_unet.core.postprocess.ops import fill_holes_labels

INSTANCES = PostprocessConfig(output="instances")


def discs(shape, centers, radii):
    """(Y, X) float distance-to-nearest-centre map and the index of the nearest disc."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dist = np.stack([np.hypot(yy - cy, xx - cx) - r for (cy, cx), r in zip(centers, radii)])
    return dist.min(axis=0), dist.argmin(axis=0)


def three_class(shape, centers, radii, border=2, sigma=1.0):
    """Smooth 3-class probabilities (background, interior, boundary) of discs, float32."""
    dist, _ = discs(shape, centers, radii)
    inside = dist < 0
    # Interior per disc (not of the union), so touching discs keep separate interiors.
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    interior = np.zeros(shape, bool)
    for (cy, cx), r in zip(centers, radii):
        interior |= np.hypot(yy - cy, xx - cx) < r - border
    onehot = np.stack([~inside, interior, inside & ~interior]).astype(np.float32)
    smooth = np.stack([ndimage.gaussian_filter(c, sigma) for c in onehot])
    return (smooth / smooth.sum(axis=0, keepdims=True)).astype(np.float32)


def same_partition(a, b):
    """True when ``a`` and ``b`` label the same objects, up to a permutation of the ids."""
    if not np.array_equal(a == 0, b == 0):
        return False
    fg = a > 0
    pairs = np.unique(np.stack([a[fg].astype(np.int64), b[fg].astype(np.int64)]), axis=1)
    return pairs.shape[1] == np.unique(a[fg]).size == np.unique(b[fg]).size


def blob_field(seed=0, size=300, spacing=30):
    """Many small blobs on a jittered grid; some cells hold a pair of touching discs."""
    rng = np.random.default_rng(seed)
    centers, radii = [], []
    for cy in range(spacing // 2, size, spacing):
        for cx in range(spacing // 2, size, spacing):
            cy2, cx2 = cy + rng.integers(-3, 4), cx + rng.integers(-3, 4)
            if rng.random() < 0.3:
                centers += [(cy2, cx2 - 5), (cy2, cx2 + 5)]
                radii += [5.5, 5.5]
            else:
                centers.append((cy2, cx2))
                radii.append(float(rng.integers(3, 9)))
    return centers, radii


def test_two_touching_discs_are_split_into_two_instances():
    centers, radii = [(32, 22), (32, 42)], [11, 11]
    probabilities = three_class((64, 64), centers, radii)
    labels = labels_from_probabilities(probabilities, task="instances", config=INSTANCES)
    assert labels.dtype == np.uint16
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert labels[32, 22] != labels[32, 42]
    dist, nearest = discs((64, 64), centers, radii)
    # Every pixel well inside a disc belongs to that disc's instance.
    for k, (cy, cx) in enumerate(centers):
        assert np.all(labels[(dist < -1) & (nearest == k)] == labels[cy, cx])
    assert np.all(labels[dist > 1] == 0)


def test_binary_threshold_and_argmax_on_known_maps(rng):
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))[None]
    config = PostprocessConfig(threshold=0.3)
    labels = labels_from_probabilities(ramp, task="binary", config=config)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, (ramp[0] >= 0.3).astype(np.uint8))
    probabilities = rng.random((4, 2, 40, 50)).astype(np.float16)
    labels = semantic_labels(probabilities, task="semantic")
    assert labels.shape == (2, 40, 50) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.argmax(probabilities, axis=0))
    # An instance model's semantic output is its argmax class (0, 1, 2).
    three = three_class((64, 64), [(32, 32)], [12])
    np.testing.assert_array_equal(
        labels_from_probabilities(three, task="instances"), np.argmax(three, axis=0)
    )


def test_min_size_removes_exactly_the_small_object():
    mask = np.zeros((64, 64), np.float32)
    mask[5:15, 5:15] = 1  # 100 px
    mask[40:44, 40:44] = 1  # 16 px
    mask[30:37, 5:12] = 1  # 49 px
    probabilities = mask[None]
    config = INSTANCES.replace(min_size=20)
    labels = labels_from_probabilities(probabilities, task="binary", config=config)
    assert labels.max() == 2 and np.all(labels[40:44, 40:44] == 0)
    expected = mask.astype(bool)
    expected[40:44, 40:44] = False
    np.testing.assert_array_equal(labels > 0, expected)
    semantic = labels_from_probabilities(
        probabilities, task="binary", config=config.replace(output="semantic", min_size=50)
    )
    assert semantic.sum() == 100 and semantic[10, 10] == 1
    # The labels-level helper, per id and per connected region of one class.
    ids = np.array([[1, 1, 0, 2], [1, 0, 0, 2], [3, 3, 3, 0]], np.uint16)
    np.testing.assert_array_equal(
        remove_small_objects_labels(ids, 3), np.where(ids == 2, 0, ids).astype(np.uint16)
    )
    classes = np.array([[1, 1, 0, 1], [1, 1, 0, 0], [0, 0, 0, 2]], np.uint8)
    out = remove_small_objects_labels(classes, 2, components=True)
    assert out[0, 3] == 0 and out[2, 3] == 0 and out[:2, :2].min() == 1 and classes[0, 3] == 1


def test_fill_holes_fills_a_ring():
    yy, xx = np.mgrid[:64, :64]
    radius = np.hypot(yy - 32, xx - 32)
    ring = ((radius > 6) & (radius < 14)).astype(np.float32)[None]
    for output in ("instances", "semantic"):
        config = PostprocessConfig(output=output, fill_holes=True)
        labels = labels_from_probabilities(ring, task="binary", config=config)
        np.testing.assert_array_equal(labels > 0, radius < 14)
        assert labels.max() == 1
    plain = labels_from_probabilities(ring, task="binary", config=INSTANCES)
    assert plain[32, 32] == 0
    # A gap between two different objects is not a hole of either.
    two = np.array([[1, 1, 1, 2, 2], [1, 0, 0, 0, 2], [1, 1, 1, 2, 2]], np.uint16)
    np.testing.assert_array_equal(fill_holes_labels(np.pad(two, 1)), np.pad(two, 1))


def test_roi_zeros_outside_and_broadcasts_over_a_stack():
    probabilities = np.ones((1, 2, 32, 32), np.float32)
    roi = np.zeros((32, 32), bool)
    roi[8:20, 4:30] = True
    for output in ("semantic", "instances"):
        labels = labels_from_probabilities(
            probabilities, task="binary", config=PostprocessConfig(output=output), roi=roi
        )
        assert labels.shape == (2, 32, 32)
        np.testing.assert_array_equal(labels > 0, np.broadcast_to(roi, (2, 32, 32)))
    with pytest.raises(UserInputError, match="region-of-interest"):
        labels_from_probabilities(probabilities, task="binary", roi=np.ones((5, 5), bool))


def test_stack_instance_ids_are_unique_across_slices():
    plane = three_class((48, 48), [(14, 14), (34, 34)], [8, 8])
    probabilities = np.stack([plane, plane, np.roll(plane, 5, axis=2)], axis=1)
    labels = instance_labels(probabilities, task="instances", config=INSTANCES)
    assert labels.shape == (3, 48, 48)
    per_slice = [set(np.unique(s)) - {0} for s in labels]
    assert [len(s) for s in per_slice] == [2, 2, 2]
    assert set.union(*per_slice) == set(range(1, 7))


def test_label_dtype_is_sized_to_the_object_count():
    assert instance_label_dtype(65535) == np.uint16
    assert instance_label_dtype(65536) == np.uint32
    relabelled = relabel_sequential_dtype(np.array([[0, 70000], [5, 5]], np.int64))
    assert relabelled.dtype == np.uint16
    np.testing.assert_array_equal(relabelled, [[0, 2], [1, 1]])
    # 90,000 isolated pixels: more objects than uint16 can number.
    dots = np.zeros((1, 600, 600), np.float32)
    dots[0, ::2, ::2] = 1
    labels = labels_from_probabilities(dots, task="binary", config=INSTANCES)
    assert labels.dtype == np.uint32 and labels.max() == 90000
    assert np.unique(labels[::2, ::2]).size == 90000


@pytest.mark.parametrize(
    "task, config",
    [
        ("instances", INSTANCES),
        ("binary", INSTANCES.replace(binary_instances="watershed", min_distance=3)),
        ("binary", INSTANCES),
    ],
)
def test_blockwise_equals_whole_image_up_to_permutation(task, config):
    centers, radii = blob_field()
    probabilities = three_class((300, 300), centers, radii)
    if task == "binary":
        probabilities = (1 - probabilities[:1]).astype(np.float32)
    whole = instance_labels(probabilities, task=task, config=config)
    blocks = instance_labels(
        probabilities, task=task, config=config.replace(block_shape=(64, 64), block_halo=32)
    )
    assert whole.max() >= 100
    assert same_partition(whole, blocks)
    np.testing.assert_array_equal(np.unique(blocks), np.arange(blocks.max() + 1))
    if task == "instances":
        # Each touching pair is split: as many instances as discs.
        assert whole.max() == len(centers)


def test_objects_larger_than_the_halo_are_stitched_into_one():
    big = three_class((200, 200), [(100, 100)], [60])
    config = INSTANCES.replace(block_shape=(64, 64), block_halo=8)
    labels = instance_labels(big, task="instances", config=config)
    assert labels.max() == 1
    assert same_partition(labels, instance_labels(big, task="instances", config=INSTANCES))
    bar = np.zeros((1, 100, 300), np.float32)
    bar[0, 40:60, 5:295] = 1
    bar[0, 70:72, :] = 1
    labels = instance_labels(bar, task="binary", config=config)
    assert labels.max() == 2 and labels[50, 10] != labels[71, 10]


def test_em_membrane_grid_gives_one_instance_per_cell():
    membrane = np.zeros((128, 128), np.float32)
    for k in range(0, 128, 16):
        membrane[k : k + 2] = 1
        membrane[:, k : k + 2] = 1
    membrane = ndimage.gaussian_filter(membrane, 0.7)
    membrane /= membrane.max()
    probabilities = np.stack([1 - membrane, membrane])
    config = INSTANCES.replace(foreground_class=0)
    labels = labels_from_probabilities(probabilities, task="semantic", config=config)
    assert labels.max() == 64 and np.all(labels > 0)  # no background: cells tile the plane
    cells = [
        labels[k + 4 : k + 14, j + 4 : j + 14] for k in range(0, 128, 16) for j in range(0, 128, 16)
    ]
    assert all(np.unique(c).size == 1 for c in cells)
    assert len({int(c[0, 0]) for c in cells}) == 64
    blocks = labels_from_probabilities(
        probabilities, task="semantic", config=config.replace(block_shape=(40, 40), block_halo=24)
    )
    assert same_partition(labels, blocks)


def test_semantic_model_instances_without_foreground_class():
    classes = np.zeros((40, 40), int)
    classes[5:15, 5:15] = 1
    classes[20:30, 20:30] = 2
    probabilities = np.eye(3, dtype=np.float32)[classes].transpose(2, 0, 1)
    labels = labels_from_probabilities(probabilities, task="semantic", config=INSTANCES)
    assert labels.max() == 2 and labels[10, 10] != labels[25, 25]
    with pytest.raises(UserInputError, match="foreground_class"):
        labels_from_probabilities(
            probabilities, task="semantic", config=INSTANCES.replace(foreground_class=5)
        )


def test_inputs_are_not_modified_and_restoration_raises():
    probabilities = three_class((32, 32), [(16, 16)], [8])
    before = probabilities.copy()
    labels_from_probabilities(probabilities, task="instances", config=INSTANCES)
    np.testing.assert_array_equal(probabilities, before)
    with pytest.raises(ValueError, match="restoration"):
        labels_from_probabilities(probabilities, task="restoration")
    with pytest.raises(ValueError, match="3 channels"):
        labels_from_probabilities(probabilities[:2], task="instances")


def test_config_validates_and_round_trips():
    config = PostprocessConfig(output="instances", foreground_class=0, block_shape=(128, 256))
    assert config.foreground_class == (0,)
    assert PostprocessConfig.from_dict(config.to_dict()) == config
    for bad in ({"output": "blobs"}, {"threshold": 1.5}, {"min_size": -1}, {"block_shape": (0, 4)}):
        with pytest.raises(ValueError):
            PostprocessConfig(**bad)


@pytest.mark.parametrize("output", ["semantic", "instances"])
def test_issue15_point5_time_and_depth_stacks_are_done_plane_by_plane(output) -> None:
    """(K, T, Z, Y, X) from a TZYX image raised 'got (K,T,Z,Y,X)'; planes as in (K, S, Y, X)."""
    planes = [
        three_class((40, 48), [(12, 12), (28, 30)], [7, 8]),
        three_class((40, 48), [(20, 20)], [9]),
        three_class((40, 48), [(10, 35), (30, 10), (30, 35)], [6, 6, 6]),
    ]
    flat = np.stack([planes[i % 3] for i in range(6)], axis=1)  # (K, 6, Y, X)
    config = PostprocessConfig(output=output, min_size=5)
    expected = labels_from_probabilities(flat, task="instances", config=config)
    roi = np.ones((40, 48), bool)
    roi[:, :4] = False
    for stack in ((2, 3), (1, 2, 3)):
        probabilities = flat.reshape((3, *stack, 40, 48))
        labels = labels_from_probabilities(probabilities, task="instances", config=config, roi=roi)
        assert labels.shape == (*stack, 40, 48)
        flat_labels = labels.reshape(expected.shape)
        assert not flat_labels[..., :4].any()
        masked = expected.copy()
        masked[..., :4] = 0
        if output == "semantic":
            np.testing.assert_array_equal(flat_labels, masked)
        else:  # ids unique across the whole stack, one partition per plane
            assert flat_labels.max() == len(np.unique(flat_labels)) - 1
            for index in range(6):
                assert same_partition(flat_labels[index], masked[index])
