"""Edit tracking: changed pixels, touched objects, the annotated mask and slice status."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.session.tracking import (
    annotated_mask,
    changed_mask,
    edit_stats,
    slice_status,
    summarize,
    touched_ids,
)


@pytest.fixture
def snapshot() -> np.ndarray:
    """64x64 instance labels: object 1 at [10:20, 10:20], object 2 at [40:50, 40:50]."""
    labels = np.zeros((64, 64), dtype=np.uint16)
    labels[10:20, 10:20] = 1
    labels[40:50, 40:50] = 2
    return labels


def test_no_edit_is_a_prediction(snapshot) -> None:
    labels = snapshot.copy()
    assert not changed_mask(labels, snapshot).any()
    assert touched_ids(labels, snapshot).size == 0
    assert not annotated_mask(labels, snapshot, None).any()
    assert edit_stats(labels, snapshot) == (0, 0)
    assert slice_status(labels, snapshot, None) == "predicted"


def test_painting_a_new_object_annotates_only_it(snapshot) -> None:
    labels = snapshot.copy()
    labels[25:30, 25:35] = 3
    assert touched_ids(labels, snapshot).tolist() == [3]
    mask = annotated_mask(labels, snapshot, None)
    np.testing.assert_array_equal(mask, labels == 3)
    assert edit_stats(labels, snapshot) == (50, 1)
    assert slice_status(labels, snapshot, None) == "edited"


def test_erasing_an_object_annotates_its_old_extent(snapshot) -> None:
    labels = snapshot.copy()
    labels[labels == 2] = 0
    assert touched_ids(labels, snapshot).tolist() == [2]  # 0 is never an object
    np.testing.assert_array_equal(annotated_mask(labels, snapshot, None), snapshot == 2)


def test_partly_erasing_an_object_annotates_all_of_it(snapshot) -> None:
    labels = snapshot.copy()
    labels[10:12, 10:20] = 0
    mask = annotated_mask(labels, snapshot, None)
    np.testing.assert_array_equal(mask, snapshot == 1)
    assert edit_stats(labels, snapshot) == (20, 1)


def test_extending_an_object_annotates_old_and_new_extent_only(snapshot) -> None:
    labels = snapshot.copy()
    labels[20:25, 10:20] = 1
    mask = annotated_mask(labels, snapshot, None)
    np.testing.assert_array_equal(mask, (labels == 1) | (snapshot == 1))
    assert not mask[snapshot == 2].any()
    assert mask.sum() == 150


def test_painting_one_object_into_another_touches_both(snapshot) -> None:
    labels = snapshot.copy()
    labels[15:20, 10:20] = 2  # part of object 1 becomes object 2
    assert touched_ids(labels, snapshot).tolist() == [1, 2]
    mask = annotated_mask(labels, snapshot, None)
    np.testing.assert_array_equal(mask, (snapshot > 0) | (labels > 0))


def test_reviewed_regions_are_annotated(snapshot) -> None:
    reviewed = np.zeros_like(snapshot, dtype=bool)
    reviewed[:, :8] = True
    mask = annotated_mask(snapshot.copy(), snapshot, reviewed)
    np.testing.assert_array_equal(mask, reviewed)
    assert slice_status(snapshot, snapshot, reviewed) == "edited"  # partly reviewed
    assert slice_status(snapshot, snapshot, np.ones_like(reviewed)) == "reviewed"


def test_status_without_prediction() -> None:
    empty = np.zeros((8, 8), dtype=np.uint8)
    assert slice_status(None, None, None) == "unlabelled"
    assert slice_status(empty, None, None) == "unlabelled"
    painted = empty.copy()
    painted[2:4, 2:4] = 1
    assert slice_status(painted, None, None) == "edited"
    np.testing.assert_array_equal(annotated_mask(painted, None, None), painted == 1)
    assert slice_status(None, None, np.ones((8, 8), bool)) == "reviewed"


def test_semantic_edits_annotate_touched_components_not_the_class() -> None:
    snapshot = np.zeros((64, 64), dtype=np.uint8)
    snapshot[5:15, 5:15] = 1  # component A of class 1
    snapshot[40:50, 40:50] = 1  # component B of class 1, far away
    snapshot[5:15, 40:50] = 2  # a class-2 component
    labels = snapshot.copy()
    labels[15:18, 5:15] = 1  # extend A
    mask = annotated_mask(labels, snapshot, None, kind="semantic")
    component_a = np.zeros_like(mask)
    component_a[5:18, 5:15] = True
    np.testing.assert_array_equal(mask, component_a)
    assert edit_stats(labels, snapshot, kind="semantic") == (30, 1)  # the grown A
    # with kind="instances" the whole class 1 (A and B) would count as one object
    assert annotated_mask(labels, snapshot, None, kind="instances")[45, 45]


def test_semantic_erase_and_background_paint() -> None:
    snapshot = np.zeros((32, 32), dtype=np.uint8)
    snapshot[4:10, 4:10] = 1
    snapshot[20:30, 20:30] = 1
    labels = snapshot.copy()
    labels[4:6, 4:10] = 0  # erase part of the first blob: its old component is annotated
    mask = annotated_mask(labels, snapshot, None, kind="semantic")
    np.testing.assert_array_equal(mask, snapshot.astype(bool) & (np.arange(32)[:, None] < 15))
    assert not mask[25, 25]


def test_summary_counts_match_functions(snapshot) -> None:
    labels = snapshot.copy()
    labels[25:30, 25:35] = 3
    reviewed = np.zeros_like(snapshot, dtype=bool)
    reviewed[60:, :] = True
    summary = summarize(labels, snapshot, reviewed)
    assert summary.status == "edited"
    assert (summary.pixels_changed, summary.objects_touched) == edit_stats(labels, snapshot)
    assert summary.reviewed_pixels == reviewed.sum()
    assert summary.annotated_pixels == annotated_mask(labels, snapshot, reviewed).sum()


def test_shapes_and_kind_are_checked(snapshot) -> None:
    with pytest.raises(ValueError, match="shape"):
        changed_mask(snapshot, snapshot[:10])
    with pytest.raises(ValueError, match="kind"):
        annotated_mask(snapshot + 1, snapshot, None, kind="panoptic")
