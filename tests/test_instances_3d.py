"""3-D instances from volume probabilities (K, Z, Y, X): watershed in 3-D with the voxel size."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.errors import UserInputError
from napari_unet.core.postprocess import PostprocessConfig, labels_from_probabilities
from napari_unet.core.postprocess.volume import check_spacing, instances_3d, volume_labels

INSTANCES = PostprocessConfig(output="instances")


def distance_to(shape, centre, spacing):
    """Physical distance of every voxel of ``shape`` to ``centre`` (voxel coordinates)."""
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing)))


def three_class(shape, centres, radius, spacing, shell=1.5):
    """(3, Z, Y, X) background / interior / boundary probabilities of physical spheres."""
    distances = np.min([distance_to(shape, c, spacing) for c in centres], axis=0)
    inside = distances < radius
    interior = np.zeros(shape, bool)
    for centre in centres:
        interior |= distance_to(shape, centre, spacing) < radius - shell
    probabilities = np.zeros((3, *shape), np.float32)
    probabilities[0] = ~inside
    probabilities[1] = interior
    probabilities[2] = inside & ~interior
    return probabilities


def test_two_touching_spheres_get_two_ids_consistent_across_z():
    spacing = (2.0, 1.0, 1.0)
    centres = [(8, 16, 12), (8, 16, 26)]  # 14 apart, radius 8: they overlap
    probabilities = three_class((17, 32, 40), centres, 8.0, spacing)
    labels = instances_3d(probabilities, spacing=spacing, config=INSTANCES)
    assert labels.shape == (17, 32, 40) and labels.dtype == np.uint16
    assert labels.max() == 2
    for centre in centres:  # each sphere's interior carries one id through every slice
        core = distance_to(labels.shape, centre, spacing) < 5
        assert len(np.unique(labels[core])) == 1 and labels[core][0] > 0
    assert labels[8, 16, 12] != labels[8, 16, 26]
    # the 2-D path numbers each plane on its own: the same sphere gets many ids
    per_plane = labels_from_probabilities(probabilities, task="instances", config=INSTANCES)
    assert per_plane.max() > 2


def test_a_sphere_spanning_many_slices_is_one_object():
    spacing = (0.5, 1.0, 1.0)  # fine Z: the sphere spans 2 * 9 / 0.5 = 36 slices
    probabilities = three_class((40, 24, 24), [(20, 12, 12)], 9.0, spacing)
    labels = instances_3d(probabilities, spacing=spacing, config=INSTANCES)
    slices = np.flatnonzero(labels.any(axis=(1, 2)))
    assert len(slices) >= 30
    assert set(np.unique(labels)) == {0, 1}


def test_binary_distance_watershed_uses_the_voxel_size():
    """Physical spheres on an anisotropic grid: split in two by the physical distance map."""
    spacing = (3.0, 1.0, 1.0)
    shape = (12, 30, 48)
    centres = [(6, 15, 15), (6, 15, 32)]
    mask = np.min([distance_to(shape, c, spacing) for c in centres], axis=0) < 10
    probabilities = mask[None].astype(np.float32)
    split = instances_3d(
        probabilities,
        spacing=spacing,
        config=PostprocessConfig(output="instances", binary_instances="watershed", min_distance=5),
        task="binary",
    )
    assert split.max() == 2
    assert split[6, 15, 15] != split[6, 15, 32]
    connected = instances_3d(probabilities, spacing=spacing, config=INSTANCES, task="binary")
    assert connected.max() == 1


def test_min_size_counts_voxels_and_ids_are_sequential():
    spacing = (1.0, 1.0, 1.0)
    probabilities = three_class((20, 30, 30), [(10, 10, 10), (10, 22, 22)], 6.0, spacing)
    tiny = np.zeros((20, 30, 30), bool)
    tiny[2:4, 27:29, 1:3] = True  # 8 voxels of interior in a corner
    probabilities[1][tiny], probabilities[0][tiny] = 1.0, 0.0
    kept = instances_3d(probabilities, spacing=spacing, config=INSTANCES)
    assert kept.max() == 3
    config = PostprocessConfig(output="instances", min_size=20)
    pruned = instances_3d(probabilities, spacing=spacing, config=config)
    assert pruned.max() == 2 and not pruned[tiny].any()


@pytest.mark.parametrize("spacing", [None, (1.0, 1.0), (0.0, 1.0, 1.0), (-1, 1, 1), (1e6, 1, 1)])
def test_a_missing_or_absurd_voxel_size_is_one_sentence(spacing):
    with pytest.raises(UserInputError, match="voxel size") as info:
        check_spacing(spacing)
    assert "\n" not in str(info.value)


def test_volume_labels_per_t_and_semantic_min_size_in_3d():
    spacing = (1.0, 1.0, 1.0)
    one = three_class((10, 20, 20), [(5, 10, 10)], 5.0, spacing)
    movie = np.stack([one, one], axis=1)  # (3, T=2, Z, Y, X)
    labels = volume_labels(movie, task="instances", config=INSTANCES, spacing=spacing)
    assert labels.shape == (2, 10, 20, 20)
    assert set(np.unique(labels[0])) == {0, 1} and set(np.unique(labels[1])) == {0, 2}
    # a thin rod through 8 slices: 1 voxel per plane, 8 voxels in 3-D
    probabilities = np.zeros((2, 10, 12, 12), np.float32)
    probabilities[0] = 1.0
    probabilities[:, 1:9, 5, 5] = [[0.0], [1.0]]
    semantic = volume_labels(
        probabilities, task="semantic", config=PostprocessConfig(min_size=5), spacing=spacing
    )
    assert semantic.dtype == np.uint8 and semantic[1:9, 5, 5].all()  # kept: 8 voxels in 3-D
    gone = volume_labels(probabilities, task="semantic", config=PostprocessConfig(min_size=9))
    assert not gone.any()


def test_unseeded_foreground_follows_the_setting_in_3d():
    """``unseeded="drop"`` leaves foreground no interior seed reaches as background in 3-D too."""
    probabilities = np.zeros((3, 6, 24, 24), np.float32)
    probabilities[0] = 1.0
    probabilities[:, 1:5, 2:10, 2:10] = [[[[0.0]]], [[[1.0]]], [[[0.0]]]]  # a seeded object
    probabilities[:, 1:5, 14:20, 14:20] = [[[[0.0]]], [[[0.0]]], [[[1.0]]]]  # boundary only
    kept = instances_3d(probabilities, spacing=(1.0, 1.0, 1.0), config=INSTANCES)
    dropped = instances_3d(
        probabilities, spacing=(1.0, 1.0, 1.0), config=INSTANCES.replace(unseeded="drop")
    )
    assert len(np.unique(kept)) - 1 == 2
    assert len(np.unique(dropped)) - 1 == 1 and not dropped[:, 14:20, 14:20].any()
