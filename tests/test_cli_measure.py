"""``napari-unet-loop predict --measure``: the per-object CSV beside the labels (TIFF and Zarr)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import save_checkpoint
from napari_unet.core.io.images import read_image
from napari_unet.core.models import build_model


def read_rows(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# napari-unet-loop measurements")
    return list(csv.DictReader(lines[1:]))


def test_measure_on_dsb2018_fluo_044_counts_every_object(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = shared_data / "dsb2018_fluo/images/044.png"
    out = tmp_path / "out"
    argv = ["predict", str(image), "--model", "fluo-nuclei", "--out", str(out), "--measure"]
    assert main([*argv, "--pixel-size", "0.5"]) == 0
    labels = read_image(out / "044_labels.tif").image
    rows = read_rows(out / "044_measurements.csv")
    ids = np.unique(labels[labels > 0])
    assert len(ids) > 10 and len(rows) == len(ids)
    assert sorted(int(r["label"]) for r in rows) == ids.tolist()
    areas = {int(r["label"]): int(r["area"]) for r in rows}
    assert sum(areas.values()) == int(np.count_nonzero(labels))
    first = ids[0]
    assert areas[first] == int(np.count_nonzero(labels == first))
    assert float(rows[0]["area_physical"]) == pytest.approx(0.25 * int(rows[0]["area"]))
    assert "044_measurements.csv" in capsys.readouterr().out
    assert main(argv) == 0  # a rerun replaces its own CSV
    assert "area_physical" not in read_rows(out / "044_measurements.csv")[0]


def test_a_csv_of_the_user_is_never_overwritten(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = shared_data / "dsb2018_fluo/images/044.png"
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "044_measurements.csv"
    mine.write_text("my,own\n1,2\n")
    argv = ["predict", str(image), "--model", "fluo-nuclei", "--out", str(out), "--measure"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "044_measurements.csv exists and is not a prediction" in err
    assert len(err.strip().splitlines()) == 1
    assert mine.read_text() == "my,own\n1,2\n"
    assert not (out / "044_labels.tif").exists()  # refused before predicting


def test_measure_needs_labels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = tmp_path / "x.tif"
    image.write_bytes(b"")
    argv = ["predict", str(image), "--model", "fluo-nuclei", "--out", str(tmp_path / "o")]
    assert main([*argv, "--measure", "--output", "probabilities"]) == 2
    assert "--measure needs labels" in capsys.readouterr().err


def test_measure_zarr_streams_slice_by_slice(tmp_path: Path, rng: np.random.Generator) -> None:
    zarr = pytest.importorskip("zarr")
    from napari_unet.core.io.zarr_io import ngff_attributes

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=2, out_channels=1)
    checkpoint = save_checkpoint(tmp_path / "m.pt", model, task="binary", tile_shape=(32, 32))
    volume = rng.random((3, 2, 40, 48)).astype(np.float32)  # Z, C, Y, X
    path = tmp_path / "vol.ome.zarr"
    group = zarr.open_group(store=str(path), mode="w", zarr_format=2)
    group.attrs.update(ngff_attributes("ZCYX", path.name))
    group.create_array("0", shape=volume.shape, chunks=(1, 2, 40, 48), dtype="f4")[...] = volume
    out = tmp_path / "out"
    argv = ["predict", str(path), "--model", str(checkpoint), "--out", str(out), "--measure"]
    assert main([*argv, "--labels", "instances", "--threshold", "0.5"]) == 0
    labels = np.asarray(zarr.open_group(str(out / "vol_labels.zarr"), mode="r")["0"])
    rows = read_rows(out / "vol_measurements.csv")
    for z in range(3):
        in_slice = [r for r in rows if int(r["slice"]) == z]
        assert len(in_slice) == len(np.unique(labels[z][labels[z] > 0]))
        for row in in_slice[:3]:
            mask = labels[z] == int(row["label"])
            assert int(row["area"]) == int(mask.sum())
            mean = float(volume[z, 1][mask].mean())
            assert float(row["mean_intensity_c1"]) == pytest.approx(mean, rel=1e-4)
    assert rows, "a random net on random data still finds some objects"


def test_semantic_classes_and_a_volume_with_voxel_size(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    from napari_unet.core.io.images import write_tiff

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, out_channels=3)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.bias[:] = torch.tensor([-100.0, 0.0, 0.0])  # no background: classes 1 and 2 only
    checkpoint = save_checkpoint(
        tmp_path / "m.pt",
        model,
        task="semantic",
        class_names=["background", "nucleus", "membrane"],
        tile_shape=(32, 32),
    )
    path = tmp_path / "vol.tif"
    write_tiff(path, rng.random((3, 40, 48)).astype(np.float32), axes="ZYX")
    out = tmp_path / "out"
    argv = ["predict", str(path), "--model", str(checkpoint), "--out", str(out), "--measure"]
    assert main([*argv, "--labels", "semantic", "--pixel-size", "2,0.5,0.5"]) == 0
    labels = read_image(out / "vol_labels.tif").image
    rows = read_rows(out / "vol_measurements.csv")
    assert rows and {r["class_name"] for r in rows} <= {"nucleus", "membrane"}
    for row in rows:
        assert float(row["volume_physical"]) == pytest.approx(0.5 * int(row["area"]), rel=1e-4)
    by_class = {c: sum(int(r["area"]) for r in rows if int(r["class_id"]) == c) for c in (1, 2)}
    assert by_class == {c: int(np.count_nonzero(labels == c)) for c in (1, 2)}
    # instances of a multi-class model: each object gets the majority class under it
    argv[-1:] = ["--measure", "--labels", "instances", "--out", str(tmp_path / "inst")]
    assert main(argv) == 0
    rows = read_rows(tmp_path / "inst/vol_measurements.csv")
    assert rows and {r["class_name"] for r in rows} <= {"nucleus", "membrane"}
