"""OME-Zarr outputs written with ome-zarr-py (issue 19): pyramids and the input's pixel sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

zarr = pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")

from ome_zarr.format import FormatV04  # noqa: E402
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Label, Multiscales, Reader  # noqa: E402
from ome_zarr.writer import write_multiscale  # noqa: E402

from napari_unet._reader import read_layers  # noqa: E402
from napari_unet.cli import main  # noqa: E402
from napari_unet.core.checkpoint.format import save_checkpoint  # noqa: E402
from napari_unet.core.io.ome_pyramid import downsample, n_levels  # noqa: E402
from napari_unet.core.io.zarr_io import open_zarr  # noqa: E402
from napari_unet.core.models import build_model  # noqa: E402

SCALE = [2.0, 0.5, 0.5]
AXES = [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]


@pytest.fixture
def volume(rng: np.random.Generator) -> np.ndarray:
    image = rng.integers(0, 60, (3, 48, 64), dtype=np.uint8)
    for z in range(3):
        image[z, 10 + 5 * z : 25 + 5 * z, 12:30] = 220
        image[z, 30:40, 40:55] = 200
    return image


def _ome_input(path: Path, image: np.ndarray) -> Path:
    """An OME-Zarr image (two levels, micrometre pixel sizes) written by ome-zarr-py itself."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    half = [SCALE[0], SCALE[1] * 2, SCALE[2] * 2]
    write_multiscale(
        [image, image[:, ::2, ::2]],
        group,
        axes=AXES,
        fmt=FormatV04(),
        coordinate_transformations=[
            [{"type": "scale", "scale": SCALE}, {"type": "translation", "translation": [0, 5, 7]}],
            [{"type": "scale", "scale": half}, {"type": "translation", "translation": [0, 5, 7]}],
        ],
    )
    return path


def _checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, out_channels=3)
    return save_checkpoint(folder / "m.pt", model, task="instances", tile_shape=(32, 32), overlap=8)


def _predict(*argv: str) -> int:
    return main(["predict", *argv, "--device", "cpu"])


def _nodes(path: Path) -> list:
    return list(Reader(parse_url(str(path)))())


def test_downsampling_is_nearest_for_labels_and_a_block_mean_for_probabilities() -> None:
    labels = np.arange(5 * 7, dtype=np.uint16).reshape(5, 7)
    np.testing.assert_array_equal(downsample(labels, 1, labels=True), labels[::2, ::2])
    values = np.arange(4 * 6, dtype=np.float32).reshape(1, 4, 6)
    mean = downsample(values, 1, labels=False)
    assert mean.shape == (1, 2, 3) and mean[0, 0, 0] == pytest.approx((0 + 1 + 6 + 7) / 4)
    assert mean.dtype == np.float32
    assert n_levels((48, 64)) == 2 and n_levels((8, 8)) == 1 and n_levels((4096, 4096)) == 8


def test_predict_writes_pyramids_with_the_inputs_pixel_sizes(tmp_path, volume) -> None:
    model = _checkpoint(tmp_path)
    source = _ome_input(tmp_path / "vol.ome.zarr", volume)
    out = tmp_path / "out"
    assert open_zarr(source).physical.scale == dict(zip("ZYX", SCALE, strict=True))
    assert _predict(str(source), "--model", str(model), "--out", str(out), "--output", "both") == 0

    # read back with ome-zarr-py's own reader: a labels image with two levels
    [node] = _nodes(out / "vol_labels.zarr")
    assert any(isinstance(spec, Label) for spec in node.specs)
    assert [tuple(level.shape) for level in node.data] == [(3, 48, 64), (3, 24, 32)]
    transforms = node.metadata["coordinateTransformations"]
    assert transforms[0][0]["scale"] == SCALE and transforms[1][0]["scale"] == [2.0, 1.0, 1.0]
    assert transforms[0][1]["translation"] == [0, 5, 7]
    assert [a.get("unit") for a in node.metadata["axes"]] == ["micrometer"] * 3
    level0, level1 = (np.asarray(level) for level in node.data)
    np.testing.assert_array_equal(level1, level0[:, ::2, ::2])  # nearest: ids kept
    assert level0.max() > 0

    [probabilities] = _nodes(out / "vol_probabilities.zarr")
    assert any(isinstance(spec, Multiscales) for spec in probabilities.specs)
    full, half = (np.asarray(level, dtype=np.float32) for level in probabilities.data)
    assert half.shape == (3, 3, 24, 32)
    expected = full.reshape(3, 3, 24, 2, 32, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(half, expected, atol=2e-3)  # float16 storage
    assert probabilities.metadata["coordinateTransformations"][0][0]["scale"] == [1.0, *SCALE]


def test_cluster_shares_fill_every_level_like_one_run(tmp_path, volume) -> None:
    model = _checkpoint(tmp_path)
    source = _ome_input(tmp_path / "vol.ome.zarr", volume)
    common = ["--model", str(model), "--labels", "semantic"]
    assert _predict(str(source), *common, "--out", str(tmp_path / "one")) == 0
    for share in ("0:2", "2:"):
        shared_out = str(tmp_path / "shared")
        assert _predict(str(source), *common, "--out", shared_out, "--slices", share) == 0
    one = zarr.open_group(str(tmp_path / "one" / "vol_labels.zarr"), mode="r")
    shared = zarr.open_group(str(tmp_path / "shared" / "vol_labels.zarr"), mode="r")
    for level in ("0", "1"):
        np.testing.assert_array_equal(shared[level][...], one[level][...])


def test_the_plugin_reader_opens_pyramid_outputs_with_their_image(tmp_path, volume) -> None:
    model = _checkpoint(tmp_path)
    source = _ome_input(tmp_path / "vol.ome.zarr", volume)
    assert _predict(str(source), "--model", str(model), "--out", str(tmp_path)) == 0
    [image, labels] = read_layers(str(source))
    assert (image[2], labels[2]) == ("image", "labels")
    assert labels[1]["metadata"]["napari_unet"]["image_layer"] == "vol"
    assert isinstance(labels[0], np.ndarray) and labels[0].shape == volume.shape  # level 0
    np.testing.assert_array_equal(np.asarray(image[0]), volume)


def test_without_ome_zarr_outputs_keep_one_level_and_say_what_to_install(
    tmp_path, volume, monkeypatch, caplog
) -> None:
    import napari_unet.core.io.ome_pyramid as pyramid

    monkeypatch.setattr(pyramid, "ome_zarr_available", lambda: False)
    monkeypatch.setattr(pyramid, "_warned", False)
    model = _checkpoint(tmp_path)
    source = _ome_input(tmp_path / "vol.ome.zarr", volume)
    with caplog.at_level("WARNING", logger=pyramid.__name__):
        assert _predict(str(source), "--model", str(model), "--out", str(tmp_path / "o")) == 0
    assert "napari-unet-loop[ome-zarr]" in caplog.text
    written = zarr.open_group(str(tmp_path / "o" / "vol_labels.zarr"), mode="r")
    assert sorted(written.array_keys()) == ["0"]
    assert open_zarr(tmp_path / "o" / "vol_labels.zarr").levels == 1


def _digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_labels_in_image_go_to_its_labels_group_and_open_with_it(tmp_path, volume) -> None:
    model = _checkpoint(tmp_path)
    source = _ome_input(tmp_path / "vol.ome.zarr", volume)
    before = _digest(source)
    argv = [str(source), "--model", str(model), "--out", str(tmp_path / "out"), "--output", "both"]
    assert _predict(*argv, "--labels-in-image") == 0
    target = source / "labels" / "m"
    assert not (tmp_path / "out" / "vol_labels.zarr").exists()
    assert (tmp_path / "out" / "vol_probabilities.zarr").exists()  # not labels: still in --out
    after = _digest(source)
    assert {k: v for k, v in after.items() if not k.startswith("labels")} == before  # untouched
    labels_group = zarr.open_group(str(source / "labels"), mode="r")
    assert labels_group.attrs["labels"] == ["m"]
    image_label = zarr.open_group(str(target), mode="r").attrs["image-label"]
    assert image_label["source"] == {"image": "../../"}

    # ome-zarr-py finds them from the image, as napari-ome-zarr does
    nodes = _nodes(source)
    [label] = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    assert label.metadata["coordinateTransformations"][0][0]["scale"] == SCALE
    written = np.asarray(label.data[0])
    assert written.shape == volume.shape and written.max() > 0

    # the plugin's reader opens them with the image, tagged as its prediction
    [image, labels] = read_layers(str(source))
    assert (image[2], labels[2]) == ("image", "labels")
    assert labels[1]["name"] == "vol m_labels"
    assert labels[1]["metadata"]["napari_unet"]["image_layer"] == "vol"
    np.testing.assert_array_equal(labels[0], written)
    [alone] = read_layers(str(target))  # dropped on its own
    assert alone[2] == "labels" and alone[1]["metadata"]["napari_unet"]["image_layer"] == "vol"

    assert _predict(*argv, "--labels-in-image") == 0  # a rerun reopens its own labels
    assert zarr.open_group(str(source / "labels"), mode="r").attrs["labels"] == ["m"]


def test_labels_in_image_never_touch_the_users_labels(tmp_path, volume, capsys) -> None:
    model = _checkpoint(tmp_path)
    source = _ome_input(tmp_path / "vol.ome.zarr", volume)
    mine = zarr.open_group(str(source / "labels" / "m"), mode="w", zarr_format=2)
    mine.create_array("0", shape=volume.shape, dtype=np.uint8)[...] = 7
    before = _digest(source)
    argv = [str(source), "--model", str(model), "--out", str(tmp_path / "out")]
    assert _predict(*argv, "--labels-in-image") != 0
    assert "did not predict (yours?)" in capsys.readouterr().err
    assert _digest(source) == before


def test_labels_in_image_of_a_plain_array_go_beside_it(tmp_path, volume) -> None:
    model = _checkpoint(tmp_path)
    plain = tmp_path / "plain.zarr"
    zarr.open_array(str(plain), mode="w", shape=volume.shape, dtype=volume.dtype)[...] = volume
    argv = [str(plain), "--model", str(model), "--out", str(tmp_path / "out"), "--axes", "ZYX"]
    assert _predict(*argv, "--labels-in-image") == 0
    assert (tmp_path / "out" / "plain_labels.zarr").exists()
    assert not (plain / "labels").exists()


def test_a_failed_run_leaves_the_image_as_it_was(tmp_path, volume, monkeypatch) -> None:
    import napari_unet.cli.predict_zarr as predict_zarr

    def broken(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predict_zarr, "_fill", broken)
    model = _checkpoint(tmp_path)
    source = _ome_input(tmp_path / "vol.ome.zarr", volume)
    before = _digest(source)
    argv = [str(source), "--model", str(model), "--out", str(tmp_path / "out")]
    assert _predict(*argv, "--labels-in-image") != 0
    assert _digest(source) == before and not (source / "labels").exists()
