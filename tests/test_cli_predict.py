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


def write_images(folder: Path, rng: np.random.Generator) -> dict[str, Path]:
    """Two images, a 2-slice stack and a broken TIFF in ``folder``, by stem."""
    folder.mkdir()
    grey = rng.integers(0, 65535, (64, 80), dtype=np.uint16)
    grey[20:40, 20:50] = 60000  # a bright object so the labels are not all one value
    write_tiff(folder / "cells.tif", grey)
    png = rng.integers(0, 255, (48, 64), dtype=np.uint8)
    Image.fromarray(png).save(folder / "nuclei.png")
    write_tiff(folder / "stack.tif", rng.random((2, 40, 48)).astype(np.float32), axes="ZYX")
    (folder / "broken.tif").write_bytes(b"II*\x00" + bytes(10))  # a TIFF header, then nothing
    return {p.stem: p for p in folder.iterdir()}


@pytest.fixture
def images(tmp_path: Path, rng: np.random.Generator) -> dict[str, Path]:
    return write_images(tmp_path / "in", rng)


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
