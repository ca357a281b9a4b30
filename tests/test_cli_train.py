"""``napari-unet-loop train`` on tiny PNG folders."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.io import imsave

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import load_checkpoint


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


def _train_argv(tmp_path, *extra: str) -> list[str]:
    return ["train", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
            "--steps", "1", "--patch", "16", "--batch-size", "1", "--device", "cpu",
            "--out", str(tmp_path / "m.pt"), *extra]  # fmt: skip


def test_issue16_point4_fragmented_many_ids_stay_semantic_with_a_warning(tmp_path, caplog):
    """Many ids per image that are not one object each (classes in pieces): semantic + warning."""
    from napari_unet.core.io.images import write_tiff

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    labels = np.zeros((48, 48), np.uint8)
    for n in range(12):  # every id in two separate pieces
        y, x = divmod(n, 4)
        labels[y * 12 + 2 : y * 12 + 4, x * 12 + 2 : x * 12 + 8] = n + 1
        labels[y * 12 + 6 : y * 12 + 8, x * 12 + 2 : x * 12 + 8] = n + 1
    write_tiff(tmp_path / "images" / "a.tif", (labels > 0).astype(np.uint16) * 200, axes="YX")
    write_tiff(tmp_path / "labels" / "a.tif", labels, axes="YX")
    with caplog.at_level("WARNING"):
        assert main(_train_argv(tmp_path)) == 0
    assert "--task instances" in caplog.text and "look like instance masks" not in caplog.text
    assert load_checkpoint(tmp_path / "m.pt").model.out_channels == 13


def test_issue16_point4_instance_masks_without_task_train_instances(tmp_path, caplog):
    """One blob per id (a synthetic instance mask): an instance model, said in one line."""
    from napari_unet.core.io.images import write_tiff

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    labels = np.zeros((48, 48), np.uint8)
    for n in range(12):
        y, x = divmod(n, 4)
        labels[y * 12 + 2 : y * 12 + 8, x * 12 + 2 : x * 12 + 8] = n + 1
    write_tiff(tmp_path / "images" / "a.tif", (labels > 0).astype(np.uint16) * 200, axes="YX")
    write_tiff(tmp_path / "labels" / "a.tif", labels, axes="YX")
    with caplog.at_level("WARNING"):
        assert main(_train_argv(tmp_path)) == 0
    said = [r.getMessage() for r in caplog.records if "instance masks" in r.getMessage()]
    assert said == [
        "the labels look like instance masks (12 objects in a.tif): fine-tuning the built-in "
        "fluo-nuclei, as --task instances does; pass --task semantic if the values are classes, "
        "or --model unet for a new model."
    ]
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.info.task == "instances" and loaded.model.out_channels == 3
    # issue 17: the task is told before the model is chosen, so no --task starts where
    # --task instances starts (the built-in), not from scratch
    with_task = tmp_path / "with_task.pt"
    argv = _train_argv(tmp_path, "--task", "instances")
    argv[argv.index("--out") + 1] = str(with_task)
    assert main(argv) == 0
    assert loaded.info.model_config == load_checkpoint(with_task).info.model_config
    parents = {load_checkpoint(p).info.provenance["parent"] for p in (tmp_path / "m.pt", with_task)}
    assert len(parents) == 1 and parents.pop().endswith("fluo-nuclei.pt")
    # a new model asked for by name: told from the labels after it, as before
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main(_train_argv(tmp_path, "--model", "unet")) == 0
    said = [r.getMessage() for r in caplog.records if "instance masks" in r.getMessage()]
    assert said == [
        "the labels look like instance masks (12 objects in a.tif): training an instance model; "
        "pass --task semantic if the values are classes."
    ]
    # --task semantic still trains the values as classes, without a word about instances
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main(_train_argv(tmp_path, "--task", "semantic")) == 0
    assert "look like instance masks" not in caplog.text
    assert load_checkpoint(tmp_path / "m.pt").model.out_channels == 13


def _copy_dsb(shared_data, tmp_path, names):
    import shutil

    for kind in ("images", "labels"):
        (tmp_path / kind).mkdir()
        for name in names:
            shutil.copy(shared_data / "dsb2018_fluo" / kind / name, tmp_path / kind / name)


def test_issue16_point4_real_dsb2018_instance_labels_train_an_instance_model(
    shared_data, tmp_path, caplog
):
    """The DSB 2018 nuclei labels (1..N per image) without --task: an instance model."""
    _copy_dsb(shared_data, tmp_path, ["000.png", "002.png", "003.png"])  # 27, 12, 66 nuclei
    with caplog.at_level("WARNING"):
        assert main(_train_argv(tmp_path, "--patch", "32")) == 0
    said = [r.getMessage() for r in caplog.records if "instance masks" in r.getMessage()]
    assert said == [
        "the labels look like instance masks (27 objects in 000.png): fine-tuning the built-in "
        "fluo-nuclei, as --task instances does; pass --task semantic if the values are classes, "
        "or --model unet for a new model."
    ], caplog.text
    assert load_checkpoint(tmp_path / "m.pt").info.task == "instances"


def test_issue16_point4_three_class_labels_stay_semantic(tmp_path, caplog):
    """A 3-class semantic label set (0, 1, 2 in several pieces per image) stays semantic."""
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    yy, xx = np.mgrid[:48, :48]
    for i in range(3):
        labels = np.zeros((48, 48), np.uint8)
        for cy, cx in ((10, 10), (10, 36), (36, 12), (38, 38)):
            labels[(yy - cy - i) ** 2 + (xx - cx) ** 2 < 30] = 1 + (cx > 24)
        image = (labels * 90 + rng.integers(0, 40, labels.shape)).astype(np.uint8)
        imsave(tmp_path / "images" / f"img{i}.png", image, check_contrast=False)
        imsave(tmp_path / "labels" / f"img{i}.png", labels, check_contrast=False)
    with caplog.at_level("WARNING"):
        assert main(_train_argv(tmp_path)) == 0
    assert "instance" not in caplog.text
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.info.task == "semantic" and loaded.model.out_channels == 3


def test_issue16_point4_the_same_ids_in_every_image_are_classes():
    """Ids with one meaning in all images (an atlas: the same 12 ids everywhere) are classes."""
    from napari_unet.cli.train import instance_evidence
    from napari_unet.core.training.items import TrainingItem

    labels = np.zeros((48, 48), np.uint8)
    for n in range(12):
        y, x = divmod(n, 4)
        labels[y * 12 + 2 : y * 12 + 8, x * 12 + 2 : x * 12 + 8] = n + 1
    image = np.zeros((1, 48, 48), np.float32)
    atlas = [TrainingItem(image=image, labels=labels, name=f"a{i}") for i in range(2)]
    assert instance_evidence(atlas) is None
    assert instance_evidence(atlas[:1]) == (12, "a0")  # one image: nothing says otherwise


def test_issue15_point6_os_errors_name_the_folder_not_the_temp_file(tmp_path):
    import errno

    from napari_unet.core.errors import describe_os_error

    temp = tmp_path / ".best.pt.abc123.tmp"
    full = describe_os_error(OSError(errno.ENOSPC, "No space left", str(temp)), what="the model")
    assert full.startswith("cannot write the model: there is no space left on the disk of ")
    assert str(tmp_path) in full and ".tmp" not in full and "\n" not in full
    readonly = describe_os_error(OSError(errno.EROFS, "Read-only file system", str(tmp_path)))
    assert "read-only" in readonly and readonly.endswith(".")
