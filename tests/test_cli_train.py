"""``napari-unet-loop train`` on tiny PNG folders."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.io import imsave

from napari_unet.cli import main
from napari_unet.core.checkpoint import load_checkpoint


def write_pairs(tmp_path, n: int = 3, label_value: int = 255):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    yy, xx = np.mgrid[:48, :48]
    for i in range(n):
        labels = (((yy - 20 - i) ** 2 + (xx - 24) ** 2) < 100).astype(np.uint8)
        image = (labels * 150 + rng.integers(0, 60, labels.shape)).astype(np.uint16) * 100
        imsave(tmp_path / "images" / f"img{i}.png", image, check_contrast=False)
        imsave(tmp_path / "labels" / f"img{i}.png", labels * label_value, check_contrast=False)


def test_cli_train_writes_a_loadable_checkpoint(tmp_path, capsys):
    write_pairs(tmp_path)
    out = tmp_path / "model.pt"
    status = main(
        [
            "train",
            "--images",
            str(tmp_path / "images"),
            "--labels",
            str(tmp_path / "labels"),
            "--task",
            "binary",
            "--model",
            "unet",
            "--steps",
            "3",
            "--patch",
            "32",
            "--batch-size",
            "2",
            "--val-fraction",
            "0.3",
            "--label-map",
            "0:0,255:1",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--log-every",
            "1",
        ]
    )
    assert status == 0
    loaded = load_checkpoint(out)
    assert loaded.info.task == "binary" and loaded.model.in_channels == 1
    assert loaded.info.provenance["data"]["n_images"] == 3
    printed = capsys.readouterr()
    assert "trained 3 steps" in printed.out and "validation" in printed.out
    assert (tmp_path / "model.training" / "latest.pt").is_file()

    # fine-tune the result for 2 more steps; the checkpoint's task is used
    tuned = tmp_path / "tuned.pt"
    status = main(
        [
            "train",
            "--images",
            str(tmp_path / "images"),
            "--labels",
            str(tmp_path / "labels"),
            "--model",
            str(out),
            "--steps",
            "2",
            "--patch",
            "32",
            "--batch-size",
            "2",
            "--label-map",
            "0:0,255:1",
            "--device",
            "cpu",
            "--out",
            str(tuned),
        ]
    )
    assert status == 0
    assert load_checkpoint(tuned).info.provenance["parent"] == str(out)


def test_cli_train_reports_bad_labels(tmp_path, capsys):
    write_pairs(tmp_path, n=1, label_value=1)
    (tmp_path / "labels" / "img0.png").rename(tmp_path / "labels" / "other.png")
    status = main(
        [
            "train",
            "--images",
            str(tmp_path / "images"),
            "--labels",
            str(tmp_path / "labels"),
            "--steps",
            "1",
            "--out",
            str(tmp_path / "m.pt"),
        ]
    )
    assert status == 2
    assert "same file stem" in capsys.readouterr().err


@pytest.mark.parametrize("value", [1, 255])
def test_cli_semantic_classes_come_from_the_labels(tmp_path, value):
    write_pairs(tmp_path, n=2, label_value=value)
    out = tmp_path / "m.pt"
    args = [
        "train",
        "--images",
        str(tmp_path / "images"),
        "--labels",
        str(tmp_path / "labels"),
        "--steps",
        "1",
        "--patch",
        "16",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    if value == 255:
        args += ["--label-map", "255:1"]
    assert main(args) == 0
    assert load_checkpoint(out).model.out_channels == 2


def test_issue15_point6_instance_like_labels_warn_without_task(tmp_path, caplog):
    """Labels with many ids per image train as classes only when asked; by default, a warning."""
    from napari_unet.core.io import write_tiff

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    labels = np.zeros((48, 48), np.uint8)
    for n in range(12):
        y, x = divmod(n, 4)
        labels[y * 12 + 2 : y * 12 + 8, x * 12 + 2 : x * 12 + 8] = n + 1
    write_tiff(tmp_path / "images" / "a.tif", (labels > 0).astype(np.uint16) * 200, axes="YX")
    write_tiff(tmp_path / "labels" / "a.tif", labels, axes="YX")
    argv = ["train", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
            "--steps", "1", "--patch", "16", "--batch-size", "1", "--device", "cpu",
            "--out", str(tmp_path / "m.pt")]  # fmt: skip
    with caplog.at_level("WARNING"):
        assert main(argv) == 0
    assert "--task instances" in caplog.text
    assert load_checkpoint(tmp_path / "m.pt").model.out_channels == 13


def test_issue15_point6_os_errors_name_the_folder_not_the_temp_file(tmp_path):
    import errno

    from napari_unet.core.errors import describe_os_error

    temp = tmp_path / ".best.pt.abc123.tmp"
    full = describe_os_error(OSError(errno.ENOSPC, "No space left", str(temp)), what="the model")
    assert full.startswith("cannot write the model: there is no space left on the disk of ")
    assert str(tmp_path) in full and ".tmp" not in full and "\n" not in full
    readonly = describe_os_error(OSError(errno.EROFS, "Read-only file system", str(tmp_path)))
    assert "read-only" in readonly and readonly.endswith(".")
