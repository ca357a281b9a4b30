"""The merge rule of a new prediction around the user's work (``_widgets/logic/protect.py``)."""

from __future__ import annotations

import numpy as np

from napari_unet._widgets.logic.protect import (
    clip_objects,
    kept_mask,
    merge_slice,
    renumber,
)


def squares(shape, boxes):
    """Instance labels with object ``i + 1`` filling ``boxes[i]`` = (y0, y1, x0, x1)."""
    labels = np.zeros(shape, dtype=np.uint16)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        labels[y0:y1, x0:x1] = i + 1
    return labels


def ids_are_single_objects(labels):
    """Every non-zero id is one 8-connected piece."""
    from scipy import ndimage

    for i in np.unique(labels[labels > 0]):
        _, n = ndimage.label(labels == i, structure=np.ones((3, 3)))
        if n != 1:
            return False
    return True


def test_an_edit_keeps_the_whole_object_it_touched_and_nothing_else():
    snapshot = squares((40, 40), [(2, 10, 2, 10), (20, 30, 20, 30)])
    labels = snapshot.copy()
    labels[4, 4] = 0  # one pixel of object 1 erased
    kept = kept_mask(labels, snapshot, None, kind="instances")
    assert kept[2:10, 2:10].all() and kept.sum() == 64  # object 1, its erased pixel included
    assert not kept[20:30, 20:30].any()
    semantic = kept_mask(labels, snapshot, None, kind="semantic")
    assert semantic.sum() == 1  # semantic labels keep the edited pixel only


def test_an_erased_object_stays_erased_and_a_reviewed_object_is_kept_whole():
    snapshot = squares((40, 40), [(2, 10, 2, 10), (20, 30, 20, 30)])
    labels = snapshot.copy()
    labels[2:10, 2:6] = 0  # half of object 1 erased: its other half is the user's too
    reviewed = np.zeros((40, 40), bool)
    reviewed[25:35, 25:35] = True  # overlaps object 2: the whole object is kept
    kept = kept_mask(labels, snapshot, reviewed, kind="instances")
    assert kept[2:10, 2:10].all() and kept[20:30, 20:30].all() and kept[25:35, 25:35].all()


def test_merge_keeps_kept_pixels_exactly_and_ids_unique():
    snapshot = squares((40, 40), [(2, 10, 2, 10), (20, 30, 20, 30)])
    labels = snapshot.copy()
    labels[12:16, 2:10] = 7  # the user painted a new object 7
    kept = kept_mask(labels, snapshot, None, kind="instances")
    # the new prediction: object 1 (big, overlaps the new object 7), 2 elsewhere, 3 inside 7
    predicted = squares((40, 40), [(0, 18, 0, 12), (30, 38, 30, 38), (12, 15, 3, 6)])
    merged, replaced = merge_slice(labels, predicted, kept, kind="instances")
    np.testing.assert_array_equal(merged[kept], labels[kept])
    assert not (replaced & kept).any() and (replaced == ~kept).all()
    kept_ids = set(np.unique(labels[kept])) - {0}
    new_ids = set(np.unique(merged[replaced])) - {0}
    assert kept_ids == {7} and not kept_ids & new_ids  # nothing duplicated
    assert len(new_ids) == 2  # object 3 lay inside the kept object: dropped
    assert ids_are_single_objects(merged)
    assert merged[32, 32] != 0 and merged[25, 25] == 0  # the rest follows the new prediction


def test_a_clipped_object_keeps_its_largest_piece_or_is_dropped():
    fixed = np.zeros((20, 20), bool)
    fixed[:, 8:10] = True  # a kept wall cuts the object in two
    predicted = np.zeros((20, 20), np.uint16)
    predicted[2:6, 0:16] = 5  # 16 wide: 8 left, 2 in the wall, 6 right
    predicted[10:14, 8:11] = 9  # mostly inside the wall: less than half left
    out = clip_objects(predicted, fixed)
    assert (out[2:6, 0:8] == 5).all() and not out[2:6, 10:16].any()
    assert not (out == 9).any()


def test_renumber_fills_the_free_ids():
    predicted = np.array([[0, 10, 10], [30, 0, 20]], np.uint32)
    out = renumber(predicted, np.array([1, 3]))
    np.testing.assert_array_equal(out, [[0, 2, 2], [5, 0, 4]])


def test_semantic_merge_keeps_edited_and_reviewed_pixels():
    snapshot = np.ones((10, 10), np.uint8)
    labels = snapshot.copy()
    labels[0, 0] = 2
    reviewed = np.zeros((10, 10), bool)
    reviewed[5:, 5:] = True
    kept = kept_mask(labels, snapshot, reviewed, kind="semantic")
    predicted = np.full((10, 10), 3, np.uint8)
    merged, _ = merge_slice(labels, predicted, kept, kind="semantic")
    assert merged[0, 0] == 2 and (merged[5:, 5:] == 1).all()
    assert (merged[~kept] == 3).all()


def test_a_region_leaves_the_outside_and_objects_crossing_its_border_alone():
    labels = squares((40, 40), [(0, 8, 0, 30), (20, 26, 20, 26)])  # object 1 crosses x = 16
    region = (slice(0, 40), slice(0, 16))
    predicted = np.zeros((40, 16), np.uint16)
    predicted[10:14, 2:6] = 1
    merged, replaced = merge_slice(
        labels, predicted, np.zeros((40, 40), bool), kind="instances", region=region
    )
    assert not replaced[:, 16:].any() and not replaced[0:8, 0:16].any()
    np.testing.assert_array_equal(merged[:, 16:], labels[:, 16:])
    assert (merged[0:8, 0:30] == 1).all()  # never cut
    new = merged[10:14, 2:6]
    assert new.min() > 0 and new.max() not in (1, 2)
    assert ids_are_single_objects(merged)


def test_nothing_kept_replaces_everything():
    labels = squares((16, 16), [(0, 4, 0, 4)])
    predicted = squares((16, 16), [(8, 12, 8, 12)])
    merged, replaced = merge_slice(labels, predicted, np.zeros((16, 16), bool))
    assert replaced.all()
    np.testing.assert_array_equal(merged, predicted)


def test_a_volume_is_merged_in_3d_with_ids_taken_elsewhere():
    """(Z, Y, X) labels: an object touched in one slice is kept in every slice it spans, a
    predicted object is clipped to its largest 26-connected piece, and new ids avoid ``taken``."""
    from napari_unet._widgets.logic.protect import kept_mask, merge_slice

    labels = np.zeros((4, 8, 8), np.uint16)
    labels[0:3, 1:4, 1:4] = 5  # the user's object across three slices
    snapshot = labels.copy()
    labels[1, 2, 2] = 7  # an edit in slice 1 only
    predicted = np.zeros_like(labels)
    predicted[:, 2:6, 2:6] = 1  # overlaps object 5 in slices 0-2
    kept = kept_mask(labels, snapshot, None, kind="instances")
    assert kept[0, 1, 1] and kept[2, 3, 3]  # object 5 is kept in slices 0 and 2 as well
    merged, replaced = merge_slice(
        labels, predicted, kept, kind="instances", taken=np.array([1, 2, 9])
    )
    np.testing.assert_array_equal(merged[kept], labels[kept])
    new = set(np.unique(merged[replaced]).tolist()) - {0}
    assert len(new) == 1 and not new & {1, 2, 5, 7, 9}
    assert merged[3, 4, 4] == merged[0, 5, 5] != 0  # one id through Z
