"""Issue 15, beyond the matrix: training never starts when its output cannot be written, a
disk that fills during training removes only that run's files, labels above 65535 are named
with a fix, ``predict`` keeps the user's annotation and a huge float64 image gives the same
objects; the simulated unwritable disk says what the mounted one says."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.core.io.images import write_tiff
from tests.bad_input_files import _build_user_files, _hashes
from tests.test_bad_inputs import _expand, _train, check_one_sentence


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The user's files (built once per module)."""
    return _build_user_files(tmp_path_factory.mktemp("user-files"))


# -- point 6: training never starts when its output cannot be written --------------------------
def _train_argv(user: SimpleNamespace, out: Path) -> list[str]:
    return _expand(_train("train_ok")(user, out), user, out)


def test_issue15_point6_readonly_out_fails_before_training(
    user: SimpleNamespace, readonly_dir: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    """The output check runs before the (possibly hours-long) training, not after it."""
    import napari_unet.core.training.loop as train

    def no_training(*args, **kwargs):
        raise AssertionError("training started although --out cannot be written")

    monkeypatch.setattr(train, "iter_train", no_training)
    assert main(_train_argv(user, readonly_dir)) == 2
    check_one_sentence(capsys.readouterr().err, "read-only")
    assert sorted(p.name for p in readonly_dir.iterdir()) == ["mine.txt"]


def test_issue15_point6_full_disk_fails_before_training(
    user: SimpleNamespace, tiny_disk: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    import napari_unet.core.training.loop as train

    before = sorted(p.name for p in tiny_disk.iterdir())
    monkeypatch.setattr(train, "iter_train", lambda *a, **k: pytest.fail("training started"))
    assert main(_train_argv(user, tiny_disk)) == 2
    check_one_sentence(capsys.readouterr().err, "space")
    assert sorted(p.name for p in tiny_disk.iterdir()) == before


def test_issue15_point6_disk_full_during_training_removes_only_this_runs_files(
    user: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    """A write that fails mid-run: one sentence, and the run's own folder is removed again."""
    import errno

    import napari_unet.core.training.loop as train

    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    real = train.iter_train

    def failing(*args, **kwargs):
        events = real(*args, **kwargs)
        yield next(events)
        raise OSError(errno.ENOSPC, "No space left on device", str(out / ".best.pt.x1y2z3.tmp"))

    monkeypatch.setattr(train, "iter_train", failing)
    assert main(_train_argv(user, out)) == 2
    check_one_sentence(capsys.readouterr().err, "space")
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_issue15_point6_existing_training_folder_is_kept(
    user: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    """A failure never removes a ``.training`` folder an earlier run left (it may be resumed)."""
    import napari_unet.core.training.loop as train

    out = tmp_path / "out"
    earlier = out / "model.training"
    earlier.mkdir(parents=True)
    (earlier / "latest.pt").write_bytes(b"an earlier run's state")

    def failing(*args, **kwargs):
        raise OSError(28, "No space left on device")
        yield  # pragma: no cover

    monkeypatch.setattr(train, "iter_train", failing)
    assert main(_train_argv(user, out)) == 2
    assert (earlier / "latest.pt").read_bytes() == b"an earlier run's state"


def test_issue15_point6_label_70000_names_the_values_and_a_fix(
    user: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = [
        "train",
        "--images",
        str(user.train_70000 / "images"),
        "--labels",
        str(user.train_70000 / "labels"),
        "--steps",
        "1",
        "--out",
        str(tmp_path / "m.pt"),
    ]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip()
    assert "3 distinct values" in line and "7, 70000" in line, line
    assert "--label-map 7:1,70000:2" in line, line
    assert not (tmp_path / "m.training").exists()


def test_issue15_point6_label_map_makes_70000_trainable(
    user: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from napari_unet.core.checkpoint.format import load_checkpoint

    argv = _expand(
        _train("train_70000", "--label-map", "7:1,70000:2")(user, tmp_path), user, tmp_path
    )
    assert main(argv) == 0, capsys.readouterr().err
    assert load_checkpoint(tmp_path / "model.pt").model.out_channels == 3


# -- point 1 and point 4 (predict side, dl-predict) ---------------------------------------------
def test_issue15_point1_predict_keeps_the_users_annotation(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from napari_unet.core.io.images import read_image, write_labels

    folder = tmp_path / "d"
    folder.mkdir()
    shutil.copy(shared_data / "dsb2018_fluo" / "images" / "000.png", folder / "cells.png")
    truth = read_image(shared_data / "dsb2018_fluo" / "labels" / "000.png").image
    write_labels(folder / "cells_labels.tif", truth)
    before = _hashes(folder)
    status = main(["predict", str(folder), "--model", "fluo-nuclei", "--out", str(folder)])
    err = capsys.readouterr().err
    assert _hashes(folder)["cells_labels.tif"] == before["cells_labels.tif"]
    assert before.items() <= _hashes(folder).items()
    if status:
        check_one_sentence(err)


def test_issue15_point4_huge_float64_gives_the_same_objects(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from napari_unet.core.io.images import read_image

    image = read_image(shared_data / "dsb2018_fluo" / "images" / "000.png").image[:128, :128]
    write_tiff(tmp_path / "plain.tif", image, axes="YX")
    write_tiff(tmp_path / "huge.tif", image.astype(np.float64) * 1e300, axes="YX")
    out = tmp_path / "out"
    argv = [
        "predict",
        str(tmp_path / "plain.tif"),
        str(tmp_path / "huge.tif"),
        "--model",
        "fluo-nuclei",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    plain = tifffile.imread(out / "plain_labels.tif")
    huge = tifffile.imread(out / "huge_labels.tif")
    assert plain.max() > 0 and huge.max() == plain.max()


# -- the fallback of conftest's disk fixtures where mounting is not permitted ----------------
@pytest.mark.parametrize(
    ("fixture", "message"), [("readonly_dir", "read-only"), ("tiny_disk", "space")]
)
def test_simulated_unwritable_disk_gives_the_same_sentence(
    user: SimpleNamespace,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    fixture: str,
    message: str,
) -> None:
    monkeypatch.setenv("NAPARI_UNET_TEST_NO_MOUNT", "1")
    out = request.getfixturevalue(fixture)
    before = _hashes(out)
    assert main(_train_argv(user, out)) == 2
    check_one_sentence(capsys.readouterr().err, message)
    assert ("disk", "monkeypatched") in request.node.user_properties
    assert _hashes(out) == before and sorted(p.name for p in out.iterdir()) == sorted(before)
