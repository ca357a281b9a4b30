"""``predict`` never loses what the user made (issue 15): annotation and unmarked outputs are never
overwritten, a full disk or a read-only folder is one sentence and leaves nothing half-written,
time and depth stacks are predicted per plane, bad flags exit 2 with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import save_checkpoint
from napari_unet.core.io.images import read_image, write_tiff
from napari_unet.core.models import build_model
from tests.test_cli_predict import make_checkpoint, write_images


@pytest.fixture
def images(tmp_path: Path, rng: np.random.Generator) -> dict[str, Path]:
    return write_images(tmp_path / "in", rng)


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_issue15_point1_predict_never_overwrites_the_users_annotation(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture
) -> None:
    """The issue's reproduction: cells.png + the user's cells_labels.tif, --out the same folder."""
    from napari_unet.core.io.images import write_labels

    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "cells.png").write_bytes((shared_data / "dsb2018_fluo/images/000.png").read_bytes())
    annotation = np.zeros((256, 256), np.uint16)
    annotation[10:40, 20:60] = 1
    annotation[100:130, 100:150] = 2
    write_labels(folder / "cells_labels.tif", annotation)  # no prediction mark: the user's own
    before = {p.name: _digest(p) for p in folder.iterdir()}
    argv = ["predict", str(folder), "--model", "fluo-nuclei", "--out", str(folder)]
    status = main([*argv, "--device", "cpu"])
    captured = capsys.readouterr()
    assert status != 0
    assert {p.name: _digest(p) for p in folder.iterdir()} == before  # byte-identical, nothing new
    failed = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "cells.png" in failed[0], captured.err
    assert "cells_labels.tif exists and is not a prediction" in failed[0]
    assert "left as it is" in failed[0] and "--out" in failed[0]
    assert "Traceback" not in captured.err
    assert "0 ok, 1 failed" in captured.out  # the annotation was not taken for an image


def test_issue15_point1_only_marked_outputs_are_overwritten_and_the_rest_goes_on(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture
) -> None:
    from napari_unet.core.io.images import write_labels

    model = make_checkpoint(tmp_path, "binary", 1)
    images, out = tmp_path / "images", tmp_path / "out"
    for stem in ("a", "b", "c"):
        write_tiff(images / f"{stem}.tif", rng.integers(0, 255, (40, 48), dtype=np.uint8))
    common = ["--model", str(model), "--out", str(out), "--device", "cpu", "--output", "both"]
    assert main(["predict", str(images), *common]) == 0  # a first run: marked outputs
    capsys.readouterr()
    write_labels(out / "a_labels.tif", np.ones((40, 48), np.uint8))  # the user's correction
    write_tiff(out / "b_probabilities.tif", np.ones((40, 48), np.float32))  # the user's file
    users = {name: _digest(out / name) for name in ("a_labels.tif", "b_probabilities.tif")}
    earlier = (out / "c_labels.tif").stat().st_ino  # an earlier output: overwritten as before
    assert main(["predict", str(images), *common]) == 1
    captured = capsys.readouterr()
    assert {name: _digest(out / name) for name in users} == users
    assert "2 ok" not in captured.out and "1 ok, 2 failed" in captured.out
    failed = sorted(line for line in captured.err.splitlines() if line.startswith("FAILED"))
    assert len(failed) == 2
    assert "a.tif" in failed[0] and "a_labels.tif exists and is not a prediction" in failed[0]
    assert (
        "b.tif" in failed[1] and "b_probabilities.tif exists and is not a prediction" in failed[1]
    )
    assert (out / "c_labels.tif").stat().st_ino != earlier  # replaced by this run's prediction
    assert (out / "c_probabilities.tif").exists()


def test_issue15_point1_labels_beside_their_image_are_never_predicted(
    tmp_path: Path, rng: np.random.Generator, caplog: pytest.LogCaptureFixture, capsys
) -> None:
    from napari_unet.core.io.images import write_labels

    model = make_checkpoint(tmp_path, "binary", 1)
    folder, out = tmp_path / "in", tmp_path / "out"
    write_tiff(folder / "cells.tif", rng.integers(0, 255, (40, 48), dtype=np.uint8))
    write_labels(folder / "cells_labels.tif", np.ones((40, 48), np.uint8))  # unmarked
    write_tiff(folder / "cells_probabilities.tif", rng.random((1, 40, 48)).astype(np.float16))
    write_tiff(folder / "other_labels.tif", rng.integers(0, 255, (40, 48), dtype=np.uint8))
    before = {p.name: _digest(p) for p in folder.iterdir()}
    with caplog.at_level("INFO", logger="napari_unet.cli.predict"):
        status = main(["predict", str(folder), "--model", str(model), "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "2 ok, 0 failed" in captured.out  # cells.tif and other_labels.tif (no 'other' image)
    assert sorted(p.name for p in out.iterdir()) == ["cells_labels.tif", "other_labels_labels.tif"]
    assert {p.name: _digest(p) for p in folder.iterdir()} == before
    assert any("cells_labels.tif" in r.getMessage() for r in caplog.records)


def _no_traceback_nor_temp_names(err: str) -> None:
    assert "Traceback" not in err and ".tmp" not in err and "Errno" not in err, err


def test_issue15_point6_predict_on_a_full_disk_says_so_and_leaves_nothing(
    tmp_path: Path, images: dict[str, Path], tiny_disk: Path, capsys: pytest.CaptureFixture
) -> None:
    model = make_checkpoint(tmp_path, "binary", 1)
    before = sorted(p.name for p in tiny_disk.iterdir())
    argv = ["predict", str(images["cells"]), str(images["nuclei"]), "--model", str(model)]
    status = main([*argv, "--out", str(tiny_disk), "--output", "both", "--device", "cpu"])
    captured = capsys.readouterr()
    assert status == 1
    failed = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2, captured.err
    for line in failed:
        assert f"cannot write {tiny_disk}/" in line and "_labels.tif" in line
        assert "no space left on the device" in line and "--out" in line
    _no_traceback_nor_temp_names(captured.err)
    assert sorted(p.name for p in tiny_disk.iterdir()) == before  # no temp, no half file


def test_issue15_point6_predict_zarr_on_a_full_disk_removes_what_it_started(
    tmp_path: Path, tiny_disk: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("zarr")
    from napari_unet.core.io.zarr_io import create_output

    model = make_checkpoint(tmp_path, "binary", 1)
    source = create_output(tmp_path / "vol.zarr", shape=(2, 40, 48), axes="ZYX", dtype=np.uint8)
    source[...] = 7
    before = sorted(p.name for p in tiny_disk.iterdir())
    argv = ["predict", str(tmp_path / "vol.zarr"), "--model", str(model), "--device", "cpu"]
    assert main([*argv, "--out", str(tiny_disk), "--output", "both"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {tiny_disk}/vol_labels.zarr: no space left on the device" in err
    _no_traceback_nor_temp_names(err)
    assert sorted(p.name for p in tiny_disk.iterdir()) == before


@pytest.mark.parametrize("below", ["", "results"])
def test_issue15_point6_predict_into_a_read_only_folder_says_so(
    tmp_path: Path,
    images: dict[str, Path],
    readonly_dir: Path,
    below: str,
    capsys: pytest.CaptureFixture,
) -> None:
    model = make_checkpoint(tmp_path, "binary", 1)
    out = readonly_dir / below if below else readonly_dir
    argv = ["predict", str(images["cells"]), "--model", str(model), "--device", "cpu"]
    status = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert status != 0
    assert f"cannot write {out}: the folder is read-only or not writable" in err
    assert "choose another --out" in err and len(err.strip().splitlines()) == 1
    _no_traceback_nor_temp_names(err)
    assert sorted(p.name for p in readonly_dir.iterdir()) == ["mine.txt"]
    assert (readonly_dir / "mine.txt").read_text() == "the user's file\n"


@pytest.mark.parametrize("axes", ["TZYX", "TZCYX"])
def test_issue15_point5_predict_time_and_depth_stacks(
    tmp_path: Path, rng: np.random.Generator, axes: str, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(0)
    channels = 2 if "C" in axes else 1
    model = build_model("unet", depth=2, base_channels=4, in_channels=channels, out_channels=3)
    checkpoint = save_checkpoint(tmp_path / "m.pt", model, task="instances", tile_shape=(64, 64))
    sizes = {"T": 2, "Z": 3, "C": channels, "Y": 40, "X": 48}
    image = rng.integers(0, 60, tuple(sizes[a] for a in axes), dtype=np.uint8)
    image[..., 10:25, 12:30] = 220
    path = tmp_path / "movie.tif"
    write_tiff(path, image)  # no axes stored: --axes says them
    out = tmp_path / "out"
    for labels in ("instances", "semantic"):
        argv = ["predict", str(path), "--model", str(checkpoint), "--out", str(out / labels)]
        status = main([*argv, "--axes", axes, "--labels", labels, "--output", "both"])
        captured = capsys.readouterr()
        assert status == 0, captured.err
        written = read_image(out / labels / "movie_labels.tif")
        assert written.image.shape == (2, 3, 40, 48) and written.axes == "TZYX"
        assert np.issubdtype(written.image.dtype, np.integer)
        probabilities = read_image(out / labels / "movie_probabilities.tif")
        assert probabilities.image.shape == (3, 2, 3, 40, 48)


def test_issue15_point7_bad_flags_exit_2_with_one_line(
    tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    for bad in (
        ["--tile", "0"],
        ["--tile", "-5"],
        ["--tile", "abc"],
        ["--overlap", "-1"],
        ["--batch-size", "0"],
    ):
        with pytest.raises(SystemExit) as info:
            main(["predict", "x.tif", "--model", "m.pt", "--out", str(tmp_path), *bad])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and bad[0] in err and "Traceback" not in err
    model = make_checkpoint(tmp_path, "binary", 1)
    argv = ["predict", str(images["cells"]), "--model", str(model), "--out", str(tmp_path / "o")]
    assert main([*argv, "--tile", "32", "--overlap", "32"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overlap 32 must be smaller than the tile side" in err
