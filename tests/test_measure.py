"""Per-object measurements (core.postprocess.measure): known areas, centroids, intensities."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_unet.core.errors import UserInputError
from napari_unet.core.io.marks import check_overwritable, written_by_predict
from napari_unet.core.postprocess.measure import (
    measure_objects,
    measurement_columns,
    write_measurements_csv,
)


def two_squares() -> np.ndarray:
    labels = np.zeros((20, 30), dtype=np.uint16)
    labels[2:6, 3:7] = 1  # 4x4 = 16 px, centroid (3.5, 4.5)
    labels[10:12, 20:30] = 2  # 2x10 = 20 px, centroid (10.5, 24.5)
    return labels


def test_2d_area_centroid_bbox_intensity():
    labels = two_squares()
    image = np.zeros(labels.shape, dtype=np.float32)
    image[2:6, 3:7] = 5.0
    image[2, 3] = 1.0
    image[10:12, 20:30] = 7.0
    table = measure_objects(labels, image)
    assert list(table) == measurement_columns("YX", 0)
    assert table["label"].tolist() == [1, 2]
    assert table["area"].tolist() == [16, 20]
    np.testing.assert_allclose(table["centroid_y"], [3.5, 10.5])
    np.testing.assert_allclose(table["centroid_x"], [4.5, 24.5])
    assert table["bbox_y_min"].tolist() == [2, 10] and table["bbox_x_max"].tolist() == [7, 30]
    np.testing.assert_allclose(table["mean_intensity"], [(15 * 5 + 1) / 16, 7.0])
    assert table["min_intensity"].tolist() == [1.0, 7.0]
    assert table["max_intensity"].tolist() == [5.0, 7.0]


def test_3d_volume_with_spacing():
    labels = np.zeros((6, 10, 10), dtype=np.int32)
    labels[1:4, 2:4, 5:10] = 3  # 3*2*5 = 30 voxels
    table = measure_objects(labels, spacing=(2.0, 0.5, 0.5))
    assert table["label"].tolist() == [3]
    assert table["area"].tolist() == [30]
    np.testing.assert_allclose(table["volume_physical"], [30 * 2.0 * 0.25])
    np.testing.assert_allclose(table["centroid_z"], [2.0])
    np.testing.assert_allclose(table["centroid_z_physical"], [4.0])
    np.testing.assert_allclose(table["centroid_x_physical"], [3.5])
    assert table["bbox_z_min"].tolist() == [1] and table["bbox_z_max"].tolist() == [4]
    assert "mean_intensity" not in table


def test_multichannel_intensities_channels_last():
    labels = two_squares()
    image = np.zeros((*labels.shape, 2), dtype=np.uint16)
    image[labels == 1] = (10, 100)
    image[labels == 2] = (20, 200)
    table = measure_objects(labels, image)
    assert table["mean_intensity_c0"].tolist() == [10.0, 20.0]
    assert table["mean_intensity_c1"].tolist() == [100.0, 200.0]
    assert table["max_intensity_c1"].tolist() == [100.0, 200.0]
    assert "mean_intensity" not in table


def test_semantic_labels_give_one_object_per_region_with_class():
    labels = np.zeros((20, 30), dtype=np.uint8)
    labels[0:3, 0:3] = 1
    labels[10:14, 10:14] = 1  # a second region of class 1
    labels[0:2, 20:25] = 2
    table = measure_objects(labels, output="semantic", class_names=["bg", "nucleus", "cyto"])
    assert len(table["label"]) == 3
    by_area = dict(zip(table["area"].tolist(), table["class_name"].tolist(), strict=True))
    assert by_area == {9: "nucleus", 16: "nucleus", 10: "cyto"}


def test_semantic_map_gives_the_majority_class_of_each_instance():
    labels = two_squares()
    semantic = np.zeros_like(labels)
    semantic[labels == 1] = 2
    semantic[2, 3] = 1  # one pixel of another class: the majority wins
    semantic[labels == 2] = 1
    table = measure_objects(labels, semantic=semantic)
    assert table["class_id"].tolist() == [2, 1]
    assert "class_name" not in table


def test_time_stack_is_measured_per_slice():
    labels = np.zeros((3, 10, 10), dtype=np.uint16)
    labels[0, 0:2, 0:2] = 1
    labels[2, 5:8, 5:8] = 1  # the same id in another time point: its own object
    labels[2, 0:1, 0:4] = 2
    table = measure_objects(labels, axes="TYX")
    assert table["slice"].tolist() == [0, 2, 2]
    assert table["label"].tolist() == [1, 1, 2]
    assert table["area"].tolist() == [4, 9, 4]
    assert "centroid_z" not in table


def test_empty_labels_give_empty_columns():
    labels = np.zeros((8, 8), dtype=np.uint8)
    table = measure_objects(labels, np.ones((8, 8, 3)), spacing=0.5)
    assert list(table) == measurement_columns("YX", 3, physical=True)
    assert all(len(column) == 0 for column in table.values())
    stack = measure_objects(np.zeros((2, 8, 8), np.uint8), axes="SYX")
    assert list(stack) == measurement_columns("YX", None, stack=True)


@pytest.mark.parametrize(
    ("image", "kwargs", "words"),
    [
        (np.zeros((20, 31)), {}, r"shape \(20, 31\)"),
        (None, {"spacing": (1.0,)}, "pixel size"),
        (None, {"axes": "ZX"}, "axes"),
        (None, {"semantic": np.zeros((3, 3))}, "class map"),
    ],
)
def test_bad_inputs_give_one_sentence(image, kwargs, words):
    with pytest.raises(UserInputError, match=words) as info:
        measure_objects(two_squares(), image, **kwargs)
    assert "\n" not in str(info.value)


def test_csv_is_marked_and_only_ours_is_overwritable(tmp_path):
    table = measure_objects(two_squares(), spacing=0.25)
    path = write_measurements_csv(tmp_path / "a_measurements.csv", table, source={"model": "m"})
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# napari-unet-loop measurements")
    rows = list(csv.DictReader(lines[1:]))
    assert [int(r["area"]) for r in rows] == [16, 20]
    assert float(rows[0]["area_physical"]) == pytest.approx(1.0)
    assert written_by_predict(path)
    check_overwritable(path)  # ours: may be replaced
    mine = tmp_path / "mine.csv"
    mine.write_text("label,area\n1,2\n")
    with pytest.raises(UserInputError, match="not a prediction"):
        check_overwritable(mine)
    assert mine.read_text() == "label,area\n1,2\n"
