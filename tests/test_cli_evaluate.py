"""evaluate_pair / evaluate_folders and the ``napari-unet-loop evaluate`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from skimage import io as skio

from napari_unet.cli import main
from napari_unet.core.errors import UserInputError
from napari_unet.core.evaluation.score import evaluate_folders, evaluate_pair, pair_files
from napari_unet.core.io.images import read_image


def membrane_pair():
    """ISBI-style truth (0 = membrane, 255 = interior) and a prediction (1 = membrane)."""
    truth = np.full((16, 16), 255, np.uint8)
    truth[:, 7:9] = 0
    pred = np.zeros((16, 16), np.uint8)
    pred[:, 7:9] = 1
    pred[0, 0] = 1  # one false positive membrane pixel
    return pred, truth


def test_evaluate_pair_binary_with_label_map():
    pred, truth = membrane_pair()
    scores = evaluate_pair(pred, truth, task="binary", label_map={0: 1, 255: 0})
    # membrane: tp 32, fp 1, fn 0
    assert scores["iou"] == pytest.approx(32 / 33)
    assert scores["dice"] == pytest.approx(64 / 65)
    assert scores["pixel_error"] == pytest.approx(1 - 64 / 65)
    assert scores["pixel_error_fraction"] == pytest.approx(1 / 256)
    # ISBI's own pixel error: the interior is positive (tp 223, fp 0, fn 1)
    assert scores["pixel_error_background"] == pytest.approx(1 - 446 / 447)
    assert 0 < scores["rand_error"] < 0.05  # one split-off pixel
    assert scores["variation_of_information"] > 0
    unmapped = evaluate_pair(pred, truth, task="binary")  # interior taken as foreground
    assert unmapped["iou"] == pytest.approx(0.0, abs=0.01)


def test_evaluate_pair_semantic_per_class_and_ignore():
    truth = np.array([[0, 1, 2, 2], [0, 1, 2, 9]])
    pred = np.array([[0, 1, 2, 0], [0, 2, 2, 1]])
    scores = evaluate_pair(pred, truth, task="semantic", label_map={9: -1})
    # class 0: inter 2 union 3; class 1: inter 1 union 2; class 2: inter 2 union 4 (9 not scored)
    assert scores["iou_class_0"] == pytest.approx(2 / 3)
    assert scores["iou_class_1"] == pytest.approx(1 / 2)
    assert scores["iou_class_2"] == pytest.approx(2 / 4)
    assert scores["mean_iou"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 4) / 3)
    assert scores["pixel_error_fraction"] == pytest.approx(2 / 7)


def test_evaluate_pair_instances():
    truth = np.zeros((20, 20), np.uint16)
    truth[0:4, 0:4], truth[0:4, 10:14], truth[10:14, 10:14] = 1, 2, 3
    pred = np.zeros((1, 20, 20), np.int32)  # a singleton axis is squeezed
    pred[0, 0:4, 0:4], pred[0, 0:4, 10:15], pred[0, 15:18, 0:3] = 4, 8, 6
    scores = evaluate_pair(pred, truth, task="instances")
    assert scores["ap50"] == pytest.approx(0.5) and scores["ap75"] == pytest.approx(0.5)
    assert scores["f1_50"] == pytest.approx(2 / 3)
    assert scores["precision_50"] == pytest.approx(2 / 3)
    assert scores["recall_50"] == pytest.approx(2 / 3)
    assert scores["matched_iou"] == pytest.approx(0.9)
    assert scores["iou"] == pytest.approx(32 / (16 * 3 + 4 + 9))
    assert (scores["n_true"], scores["n_pred"]) == (3, 3)
    assert 0 <= scores["ap_50_95"] <= 0.5


@pytest.mark.parametrize(
    ("pred", "truth", "task", "message"),
    [
        (np.zeros((4, 4), int), np.zeros((5, 4), int), "binary", "shape"),
        (np.full((4, 4), 0.3), np.zeros((4, 4), int), "binary", "probabilities"),
        (np.zeros((4, 4), int), np.zeros((4, 4), int), "restoration", "cannot evaluate"),
    ],
)
def test_evaluate_pair_refuses_bad_input(pred, truth, task, message):
    with pytest.raises(UserInputError, match=message):
        evaluate_pair(pred, truth, task=task)


def write_folders(tmp_path):
    """Two pairs (a: perfect, b: half), one prediction without truth, one truth without pred."""
    pred_dir, truth_dir = tmp_path / "pred", tmp_path / "truth"
    pred_dir.mkdir()
    truth_dir.mkdir()
    truth = np.zeros((8, 8), np.uint8)
    truth[:4] = 1
    half = np.zeros((8, 8), np.uint8)
    half[:2] = 1
    tifffile.imwrite(pred_dir / "a_labels.tif", truth)
    tifffile.imwrite(pred_dir / "b_labels.tif", half)
    tifffile.imwrite(pred_dir / "c_labels.tif", truth)
    tifffile.imwrite(pred_dir / "notes.tif", truth)  # not a prediction: ignored
    tifffile.imwrite(truth_dir / "a.tif", truth)
    skio.imsave(truth_dir / "b.png", truth * 255, check_contrast=False)
    tifffile.imwrite(truth_dir / "d.tiff", truth)
    return pred_dir, truth_dir


def test_pair_files_reports_missing(tmp_path):
    pred_dir, truth_dir = write_folders(tmp_path)
    pairs, lonely_pred, lonely_truth = pair_files(pred_dir, truth_dir)
    assert [(s, p.name, t.name) for s, p, t in pairs] == [
        ("a", "a_labels.tif", "a.tif"),
        ("b", "b_labels.tif", "b.png"),
    ]
    assert lonely_pred == ["c_labels.tif"] and lonely_truth == ["d.tiff"]


def test_evaluate_folders_structure_and_means(tmp_path):
    pred_dir, truth_dir = write_folders(tmp_path)
    result = evaluate_folders(pred_dir, truth_dir, task="binary")
    assert list(result) == ["per_image", "mean", "unpaired"]
    assert [row["name"] for row in result["per_image"]] == ["a", "b"]
    a, b = result["per_image"]
    assert a["iou"] == 1.0 and b["iou"] == pytest.approx(0.5)
    assert result["mean"]["iou"] == pytest.approx(0.75)
    assert result["mean"]["pixel_error"] == pytest.approx((0 + 1 / 3) / 2)
    assert set(result["mean"]) == set(a) - {"name"}
    assert result["unpaired"] == {"predictions": ["c_labels.tif"], "truth": ["d.tiff"]}
    json.dumps(result, allow_nan=False)  # strictly JSON


def test_evaluate_folders_without_any_pair(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "t").mkdir()
    tifffile.imwrite(tmp_path / "p" / "x_labels.tif", np.zeros((4, 4), np.uint8))
    tifffile.imwrite(tmp_path / "t" / "y.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserInputError, match="no prediction"):
        evaluate_folders(tmp_path / "p", tmp_path / "t", task="binary")


def test_duplicate_truth_stems_are_refused(tmp_path):
    pred_dir, truth_dir = write_folders(tmp_path)
    tifffile.imwrite(truth_dir / "a.tiff", np.zeros((8, 8), np.uint8))
    with pytest.raises(UserInputError, match="two ground-truth files"):
        evaluate_folders(pred_dir, truth_dir, task="binary")


def test_cli_writes_json_and_prints_table(tmp_path, capsys):
    pred_dir, truth_dir = write_folders(tmp_path)
    out = tmp_path / "out" / "scores.json"
    argv = ["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir), "--task", "binary"]
    assert main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mean" in printed and "0.7500" in printed and "c_labels.tif" in printed
    data = json.loads(out.read_text())
    assert set(data) >= {"per_image", "mean"}
    assert data["mean"]["iou"] == pytest.approx(0.75)
    assert len(data["per_image"]) == 2


def test_cli_label_map_and_errors(tmp_path, capsys):
    pred_dir, truth_dir = write_folders(tmp_path)
    argv = ["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir), "--task", "binary"]
    assert main([*argv, "--label-map", "0:1,1:0,255:0"]) == 0
    assert "0.0000" in capsys.readouterr().out  # a: prediction is now the exact complement
    assert main([*argv, "--label-map", "zero:one"]) == 2
    assert "label map" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(tmp_path / "none"),
                "--truth",
                str(truth_dir),
                "--task",
                "instances",
            ]
        )
        == 2
    )


def test_isbi_labels_against_a_shifted_copy(shared_data, tmp_path):
    """Real EM labels: a prediction shifted by one pixel scores high but not perfect."""
    pred_dir, truth_dir = tmp_path / "pred", shared_data / "isbi2012" / "labels"
    pred_dir.mkdir()
    truth = read_image(truth_dir / "00.png").image
    membrane = (truth == 0).astype(np.uint8)
    tifffile.imwrite(pred_dir / "00_labels.tif", np.roll(membrane, 1, axis=1))
    result = evaluate_folders(pred_dir, truth_dir, task="binary", label_map={0: 1, 255: 0})
    assert result["unpaired"]["truth"] and len(result["per_image"]) == 1
    scores = result["mean"]
    assert 0.4 < scores["iou"] < 0.95
    assert 0.0 < scores["rand_error"] < 0.5
    assert scores["pixel_error"] == pytest.approx(1 - scores["dice"])
    # interior is ~4x more common than membrane, so the same pixels cost it far less
    assert 0 < scores["pixel_error_background"] < scores["pixel_error"] / 2
