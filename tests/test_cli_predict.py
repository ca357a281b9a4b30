"""The ``predict`` and ``models`` subcommands, run in-process on tiny checkpoints and images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import save_checkpoint
from napari_unet.core.io.images import read_image, write_tiff
from napari_unet.core.models import build_model


def make_checkpoint(folder: Path, task: str, out_channels: int, name: str = "model.pt") -> Path:
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, out_channels=out_channels)
    return save_checkpoint(folder / name, model, task=task, tile_shape=(64, 64), overlap=8)


@pytest.fixture
def images(tmp_path: Path, rng: np.random.Generator) -> dict[str, Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    grey = rng.integers(0, 65535, (64, 80), dtype=np.uint16)
    grey[20:40, 20:50] = 60000  # a bright object so the labels are not all one value
    write_tiff(folder / "cells.tif", grey)
    png = rng.integers(0, 255, (48, 64), dtype=np.uint8)
    Image.fromarray(png).save(folder / "nuclei.png")
    write_tiff(folder / "stack.tif", rng.random((2, 40, 48)).astype(np.float32), axes="ZYX")
    (folder / "broken.tif").write_bytes(b"II*\x00" + bytes(10))  # a TIFF header, then nothing
    return {p.stem: p for p in folder.iterdir()}


def test_predict_writes_outputs_and_reports_the_failing_file(
    tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    model = make_checkpoint(tmp_path, "instances", 3)
    out = tmp_path / "out"
    files = [images[k] for k in ("cells", "broken", "nuclei", "stack")]
    status = main(
        [
            "predict",
            *map(str, files),
            "--model",
            str(model),
            "--out",
            str(out),
            "--output",
            "both",
            "--device",
            "cpu",
        ]
    )
    captured = capsys.readouterr()
    assert status == 1
    failed = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "broken.tif" in failed[0] and "damaged" in failed[0]
    assert "3 ok, 1 failed" in captured.out
    for stem, spatial in (("cells", (64, 80)), ("nuclei", (48, 64)), ("stack", (2, 40, 48))):
        labels = read_image(out / f"{stem}_labels.tif")
        assert labels.image.shape == spatial
        assert labels.image.dtype in (np.uint16, np.uint32)  # instance ids
        probabilities = read_image(out / f"{stem}_probabilities.tif")
        assert probabilities.image.dtype == np.float16
        assert probabilities.image.shape == (3, *spatial)
        assert probabilities.axes == "C" + ("ZYX" if len(spatial) == 3 else "YX")
        np.testing.assert_allclose(probabilities.image.astype(np.float32).sum(0), 1.0, atol=5e-3)
        assert f"ok {images[stem]}" in captured.out
    assert not (out / "broken_labels.tif").exists()


def test_binary_probabilities_only_and_roi(
    tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    model = make_checkpoint(tmp_path, "binary", 1)
    roi = np.zeros((64, 80), np.uint8)
    roi[:, :40] = 1
    write_tiff(tmp_path / "roi.tif", roi)
    out = tmp_path / "out"
    args = ["predict", str(images["cells"]), "--model", str(model), "--out", str(out)]
    assert main([*args, "--output", "probabilities", "--tile", "32,48", "--overlap", "4"]) == 0
    assert not (out / "cells_labels.tif").exists()
    probabilities = read_image(out / "cells_probabilities.tif").image
    assert probabilities.dtype == np.float16 and probabilities.squeeze().shape == (64, 80)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    tta_out = tmp_path / "tta"
    tta_args = [*args[:-1], str(tta_out), "--output", "probabilities", "--tile", "32,48"]
    assert main([*tta_args, "--overlap", "4", "--tta", "dihedral"]) == 0  # non-square tiles
    averaged = read_image(tta_out / "cells_probabilities.tif").image
    assert averaged.shape == probabilities.shape and np.isfinite(averaged).all()
    assert np.abs(averaged.astype(np.float32) - probabilities).max() > 1e-3  # it did augment

    assert main([*args, "--roi", str(tmp_path / "roi.tif"), "--threshold", "0.0"]) == 0
    labels = read_image(out / "cells_labels.tif").image
    assert labels.dtype == np.uint8  # semantic labels of a binary model
    assert (labels[:, 40:] == 0).all() and (labels[:, :40] == 1).all()  # p >= 0 everywhere
    capsys.readouterr()


def test_ambiguous_axes_fail_unless_given(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture
) -> None:
    model = make_checkpoint(tmp_path, "semantic", 2)
    path = tmp_path / "three.tif"
    write_tiff(path, rng.random((3, 32, 32)).astype(np.float32))  # no axes stored
    out = tmp_path / "out"
    assert main(["predict", str(path), "--model", str(model), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "three.tif" in err and "ambiguous" in err and "--axes" in err
    assert (
        main(["predict", str(path), "--model", str(model), "--out", str(out), "--axes", "zyx"]) == 0
    )
    labels = read_image(out / "three_labels.tif")
    assert labels.image.shape == (3, 32, 32) and labels.axes == "ZYX"
    assert labels.image.dtype == np.uint8 and set(np.unique(labels.image)) <= {0, 1}


def test_channel_mismatch_is_one_clear_line(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture
) -> None:
    model = make_checkpoint(tmp_path, "binary", 1)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    assert (
        main(
            [
                "predict",
                str(tmp_path / "rgb.png"),
                "--model",
                str(model),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "rgb.png" in failed[0] and "channel" in failed[0]


def test_restoration_model_writes_restored(
    tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    model = make_checkpoint(tmp_path, "restoration", 1)
    out = tmp_path / "out"
    assert main(["predict", str(images["nuclei"]), "--model", str(model), "--out", str(out)]) == 0
    restored = read_image(out / "nuclei_restored.tif")
    assert restored.image.shape == (48, 64) and restored.image.dtype == np.float32
    assert not (out / "nuclei_labels.tif").exists()
    capsys.readouterr()


def test_folder_input_and_duplicate_names(
    tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    model = make_checkpoint(tmp_path, "binary", 1)
    other = tmp_path / "other"
    other.mkdir()
    write_tiff(other / "cells.tif", np.zeros((32, 32), np.uint8))
    folder = images["cells"].parent
    status = main(
        [
            "predict",
            str(folder),
            str(other / "cells.tif"),
            "--model",
            str(model),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert "3 ok, 2 failed" in captured.out  # broken.tif and the second cells.tif
    assert "would overwrite" in captured.err


def test_unknown_model_lists_builtins_and_exits_2(
    tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    status = main(
        [
            "predict",
            str(images["cells"]),
            "--model",
            "no-such-model",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "built-in models" in err and "--model" in err
    assert not (tmp_path / "out").exists()


def test_bad_option_values_are_rejected(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for bad in (
        ["--tile", "0"],
        ["--tile", "a,b"],
        ["--threshold", "2"],
        ["--overlap", "-1"],
        ["--tta", "rotate"],
    ):
        with pytest.raises(SystemExit) as info:
            main(["predict", "x.tif", "--model", "m.pt", "--out", str(tmp_path), *bad])
        assert info.value.code == 2
    capsys.readouterr()


def test_models_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    names = {c["name"] for c in cards if c["kind"] == "architecture"}
    assert {"unet", "unet_original", "unet11", "unet16", "unetpp"} <= names
    unet = next(c for c in cards if c["name"] == "unet")
    assert unet["card"]["default_config"]["depth"] >= 1 and unet["card"]["parameters"] > 1000
    assert all(set(c) == {"name", "kind", "card"} for c in cards)
    assert main(["models"]) == 0
    assert "unet_original" in capsys.readouterr().out


def test_models_lists_builtin_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from napari_unet.core.checkpoint import builtin as checkpoint

    torch.manual_seed(0)
    save_checkpoint(
        tmp_path / "nuclei.pt",
        build_model("unet", depth=2, base_channels=4, out_channels=1),
        task="binary",
        provenance={"card": {"title": "Nuclei", "license": "CC0"}},
        description="demo nuclei model",
    )
    monkeypatch.setattr(checkpoint, "BUILTIN_DIR", tmp_path)
    assert main(["models", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    builtin = next(c for c in cards if c["kind"] == "builtin")
    assert builtin["name"] == "nuclei"
    assert builtin["card"]["task"] == "binary" and builtin["card"]["title"] == "Nuclei"
    assert builtin["card"]["format_version"] == 1
    assert main(["models"]) == 0
    assert "demo nuclei model" in capsys.readouterr().out


def test_no_subcommand_prints_help(capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "predict" in out and "models" in out


def test_issue16_predict_draws_a_tqdm_bar_on_a_terminal(
    tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    """On a terminal each file gets a tqdm bar on stderr; stdout keeps one line per file."""
    from napari_unet.cli import _progress

    monkeypatch.setattr(_progress, "on_terminal", lambda: True)
    model = make_checkpoint(tmp_path, "semantic", 2)
    files = [str(images["cells"]), str(images["nuclei"])]
    argv = ["predict", *files, "--model", str(model), "--out", str(tmp_path / "out")]
    assert main([*argv, "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "cells.tif (1/2)" in captured.err and "nuclei.png (2/2)" in captured.err
    assert "cells.tif (1/2)   0%|" in captured.err, captured.err  # tqdm's bar
    assert "2 ok, 0 failed" in captured.out and "%|" not in captured.out


def test_issue16_predict_logs_progress_lines_off_a_terminal(
    tmp_path: Path, images: dict[str, Path], caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    """In a log file (no TTY): no bar, but a progress line every LINE_INTERVAL_S seconds."""
    from napari_unet.cli import _progress

    monkeypatch.setattr(_progress, "on_terminal", lambda: False)
    monkeypatch.setattr(_progress, "LINE_INTERVAL_S", 0.0)
    model = make_checkpoint(tmp_path, "semantic", 2)
    argv = ["predict", str(images["cells"]), "--model", str(model), "--out", str(tmp_path / "o")]
    with caplog.at_level("INFO", logger="napari_unet.progress"):
        assert main([*argv, "--device", "cpu"]) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "napari_unet.progress"]
    assert lines and all(line.startswith("predicting cells.tif: ") for line in lines), lines
    assert lines[-1].startswith("predicting cells.tif: 100%")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_exits_2(
    tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    model = make_checkpoint(tmp_path, "binary", 1)
    status = main(
        [
            "predict",
            str(images["cells"]),
            "--model",
            str(model),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cuda",
        ]
    )
    assert status == 2
    assert "cuda" in capsys.readouterr().err.lower()


def test_model_postprocessing_defaults_apply_and_flags_override(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    """A checkpoint's stored post-processing is used unless a flag says otherwise."""
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, out_channels=1)
    last_conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():  # confident foreground everywhere: one image-sized object
        last_conv.bias.fill_(5.0)
    huge = 64 * 80 + 1
    checkpoint = save_checkpoint(
        tmp_path / "tuned.pt",
        model,
        task="binary",
        tile_shape=(64, 64),
        overlap=8,
        provenance={"postprocess": {"min_size": huge, "threshold": 0.01}},
    )
    image = str(images["cells"])
    assert main(["predict", image, "--model", str(checkpoint), "--out", str(tmp_path / "a")]) == 0
    stored = read_image(tmp_path / "a" / "cells_labels.tif").image
    assert stored.max() == 0, "the model's min_size (larger than the image) removes everything"
    args = ["--min-size", "0", "--threshold", "0.0001"]
    out = str(tmp_path / "b")
    assert main(["predict", image, "--model", str(checkpoint), "--out", out, *args]) == 0
    assert read_image(tmp_path / "b" / "cells_labels.tif").image.max() == 1


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
