"""OME-Zarr / Zarr: lazy reading, slice-by-slice prediction into Zarr outputs, cluster shares."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

zarr = pytest.importorskip("zarr")

from napari_unet._reader import get_reader, read_layers  # noqa: E402
from napari_unet._widgets.predict_job import Plan, job_image  # noqa: E402
from napari_unet.cli import main  # noqa: E402
from napari_unet.core.checkpoint.format import save_checkpoint  # noqa: E402
from napari_unet.core.errors import ImageReadError, UserInputError  # noqa: E402
from napari_unet.core.io.axes import StackLayout, to_stack  # noqa: E402
from napari_unet.core.io.images import read_image, write_tiff  # noqa: E402
from napari_unet.core.io.lazy import iter_slices, read_slice, slice_axes, stack_slices  # noqa: E402
from napari_unet.core.io.zarr_io import create_output, is_zarr, ngff_attributes, open_zarr  # noqa: E402
from napari_unet.core.models import build_model  # noqa: E402


def write_ome_zarr(path: Path, image: np.ndarray, axes: str, chunks: tuple) -> Path:
    group = zarr.open_group(store=str(path), mode="w", zarr_format=2)
    group.attrs.update(ngff_attributes(axes, path.name))
    array = group.create_array("0", shape=image.shape, chunks=chunks, dtype=image.dtype)
    array[...] = image
    return path


@pytest.fixture
def volume(rng: np.random.Generator) -> np.ndarray:
    image = rng.integers(0, 60, (3, 48, 64), dtype=np.uint8)
    for z in range(3):  # bright blobs, so instance labels are not empty
        image[z, 10 + 5 * z : 25 + 5 * z, 12:30] = 220
        image[z, 30:40, 40:55] = 200
    return image


def test_open_zarr_reads_axes_lazily_and_slices_match_to_stack(tmp_path, rng) -> None:
    image = rng.integers(0, 1000, (2, 3, 4, 20, 24), dtype=np.uint16)
    path = write_ome_zarr(tmp_path / "img.ome.zarr", image, "TCZYX", (1, 1, 1, 8, 8))
    assert is_zarr(path) and not is_zarr(tmp_path)
    lazy = open_zarr(path)
    assert lazy.axes == "TCZYX" and lazy.shape == image.shape and lazy.levels == 1
    layout = StackLayout(axes="TCZYX", shape=image.shape)
    stack, _ = to_stack(image, "TCZYX")
    assert slice_axes("TCZYX") == "CYX"
    for index, plane in iter_slices(lazy.array, layout):
        np.testing.assert_array_equal(plane, stack[index])
    picked = stack_slices(lazy.array, "TCZYX", [5, 0])
    np.testing.assert_array_equal(picked, stack[[5, 0]])
    assert read_image(path).axes == "TCZYX"  # read whole, for the session and trainer
    np.testing.assert_array_equal(read_image(path).image, image)


def test_plain_zarr_array_has_no_axes_and_bad_stores_fail_clearly(tmp_path) -> None:
    plain = zarr.open_array(store=str(tmp_path / "plain.zarr"), mode="w", shape=(2, 16, 16))
    plain[...] = 1.0
    assert open_zarr(tmp_path / "plain.zarr").axes is None
    with pytest.raises(ImageReadError, match="does not exist"):
        open_zarr(tmp_path / "missing.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ImageReadError, match="not a Zarr folder"):
        open_zarr(tmp_path / "folder")
    damaged = tmp_path / "damaged.zarr"
    damaged.mkdir()
    (damaged / ".zgroup").write_text("{not json")
    with pytest.raises(ImageReadError, match="damaged"):
        open_zarr(damaged)
    empty = zarr.open_group(store=str(tmp_path / "empty.zarr"), mode="w", zarr_format=2)
    assert empty is not None
    with pytest.raises(ImageReadError, match="no image array"):
        open_zarr(tmp_path / "empty.zarr")


def test_a_damaged_chunk_is_a_clear_error(tmp_path, volume) -> None:
    path = write_ome_zarr(tmp_path / "v.ome.zarr", volume, "ZYX", (1, 48, 64))
    (path / "0" / "1.0.0").write_bytes(b"garbage")
    lazy = open_zarr(path)
    layout = StackLayout(axes="ZYX", shape=lazy.shape)
    np.testing.assert_array_equal(read_slice(lazy.array, layout, 0), volume[0])
    with pytest.raises(ImageReadError, match="slice 1"):
        read_slice(lazy.array, layout, 1)


def test_create_output_reopens_the_same_shape_and_refuses_another(tmp_path) -> None:
    out = create_output(tmp_path / "o.zarr", shape=(4, 32, 40), axes="ZYX", dtype=np.uint32)
    out[1] = 7
    again = create_output(tmp_path / "o.zarr", shape=(4, 32, 40), axes="ZYX", dtype=np.uint32)
    assert int(np.asarray(again[1]).max()) == 7 and int(np.asarray(again[0]).max()) == 0
    assert open_zarr(tmp_path / "o.zarr").axes == "ZYX"
    with pytest.raises(UserInputError, match="remove it or choose another --out"):
        create_output(tmp_path / "o.zarr", shape=(5, 32, 40), axes="ZYX", dtype=np.uint32)


def _checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, out_channels=3)
    return save_checkpoint(folder / "m.pt", model, task="instances", tile_shape=(32, 32), overlap=8)


def _predict(*argv: str) -> int:
    return main(["predict", *argv, "--device", "cpu"])


def test_predict_zarr_matches_the_tiff_path_slice_by_slice(tmp_path, volume, capsys) -> None:
    model = _checkpoint(tmp_path)
    zarr_in = write_ome_zarr(tmp_path / "vol.ome.zarr", volume, "ZYX", (1, 32, 32))
    write_tiff(tmp_path / "tif" / "vol.tif", volume, axes="ZYX")
    args = ["--model", str(model), "--output", "both", "--labels", "semantic"]
    assert _predict(str(zarr_in), "--out", str(tmp_path / "a"), *args) == 0
    assert _predict(str(tmp_path / "tif" / "vol.tif"), "--out", str(tmp_path / "b"), *args) == 0
    assert "vol_labels.zarr, vol_probabilities.zarr" in capsys.readouterr().out
    labels = open_zarr(tmp_path / "a" / "vol_labels.zarr")
    assert labels.axes == "ZYX" and labels.dtype == np.uint8
    np.testing.assert_array_equal(
        np.asarray(labels.array[...]), read_image(tmp_path / "b" / "vol_labels.tif").image
    )
    probabilities = open_zarr(tmp_path / "a" / "vol_probabilities.zarr")
    assert probabilities.axes == "CZYX" and probabilities.dtype == np.float16
    np.testing.assert_allclose(
        np.asarray(probabilities.array[...], dtype=np.float32),
        read_image(tmp_path / "b" / "vol_probabilities.tif").image.astype(np.float32),
        atol=1e-3,
    )


def test_cluster_shares_fill_one_output_like_a_single_run(tmp_path, volume) -> None:
    model = _checkpoint(tmp_path)
    source = write_ome_zarr(tmp_path / "vol.ome.zarr", volume, "ZYX", (1, 48, 64))
    common = ["--model", str(model), "--labels", "instances"]
    assert _predict(str(source), "--out", str(tmp_path / "whole"), *common) == 0
    shares = tmp_path / "shares"
    assert _predict(str(source), "--out", str(shares), "--slices", "2:", *common) == 0
    partial = np.asarray(open_zarr(shares / "vol_labels.zarr").array[...])
    assert partial[:2].max() == 0 and partial[2].max() > 0  # only its share is written
    assert _predict(str(source), "--out", str(shares), "--slices", ":2", *common) == 0
    whole = np.asarray(open_zarr(tmp_path / "whole" / "vol_labels.zarr").array[...])
    np.testing.assert_array_equal(np.asarray(open_zarr(shares / "vol_labels.zarr").array), whole)
    for z in range(3):  # instance ids are numbered from 1 in each slice
        ids = set(np.unique(whole[z]).tolist()) - {0}
        assert ids == set(range(1, int(whole[z].max()) + 1)) and ids


def test_predict_zarr_bad_requests_fail_with_one_line(tmp_path, volume, capsys) -> None:
    model = _checkpoint(tmp_path)
    source = write_ome_zarr(tmp_path / "vol.ome.zarr", volume, "ZYX", (1, 48, 64))
    out = tmp_path / "out"
    assert _predict(str(source), "--out", str(out), "--model", str(model), "--slices", "5:9") == 1
    assert "selects no slice of the 3" in capsys.readouterr().err
    write_tiff(tmp_path / "one.tif", volume[0])
    status = _predict(
        str(tmp_path / "one.tif"), "--out", str(out), "--model", str(model), "--slices", "0"
    )
    assert status == 1 and "--slices applies to Zarr inputs only" in capsys.readouterr().err
    create_output(out / "vol_labels.zarr", shape=(9, 9), axes="YX", dtype=np.uint32)
    assert _predict(str(source), "--out", str(out), "--model", str(model)) == 1
    assert "remove it or choose another --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _predict(str(source), "--out", str(out), "--model", str(model), "--slices", "a:b")


def test_folder_input_picks_up_zarr_images(tmp_path, volume, capsys) -> None:
    model = _checkpoint(tmp_path)
    folder = tmp_path / "in"
    write_ome_zarr(folder / "vol.ome.zarr", volume, "ZYX", (1, 48, 64))
    write_tiff(folder / "plane.tif", volume[0])
    assert _predict(str(folder), "--out", str(tmp_path / "out"), "--model", str(model)) == 0
    printed = capsys.readouterr().out
    assert "plane_labels.tif" in printed and "vol_labels.zarr" in printed


def test_reader_opens_zarr_lazily_and_the_dock_reads_only_planned_slices(tmp_path, volume):
    path = write_ome_zarr(tmp_path / "vol.ome.zarr", volume, "ZYX", (1, 48, 64))
    reader = get_reader(str(path))
    assert reader is not None and get_reader(str(tmp_path)) is None
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image" and kwargs["name"] == "vol"
    assert kwargs["metadata"]["napari_unet"]["axes"] == "ZYX"
    assert not isinstance(data, np.ndarray)  # a lazy (dask) array
    layer = SimpleNamespace(data=data)
    layout = StackLayout(axes="ZYX", shape=volume.shape)
    picked = job_image(layer, "ZYX", Plan(layout=layout, todo=[2], skipped=[], region=None))
    assert isinstance(picked, np.ndarray) and picked.shape == (1, 1, 48, 64)
    np.testing.assert_array_equal(picked[0, 0], volume[2])


def test_a_session_references_a_zarr_volume_and_trains_from_its_annotated_slices(
    tmp_path, volume
) -> None:
    from napari_unet.session import Session
    from napari_unet.session.errors import SessionError

    path = write_ome_zarr(tmp_path / "vol.ome.zarr", volume, "ZYX", (1, 48, 64))
    session = Session.create(tmp_path / "s")
    image_id = session.add_image("vol", axes="ZYX", source=path, task="instances")
    assert session.add_image("vol", axes="ZYX", source=path) == image_id  # no duplicate
    entry = session.image(image_id)
    assert entry.source == path and entry.copy is None and entry.shape == volume.shape
    assert not any((tmp_path / "s" / "images").glob("*"))  # referenced, never copied
    labels = np.zeros((48, 64), np.uint16)
    labels[10:25, 12:30] = 1
    session.save_slice(image_id, 2, labels=labels)

    reopened = Session.open(tmp_path / "s", readonly=True)
    assert not isinstance(reopened.load_image(image_id), np.ndarray)  # lazy: nothing loaded
    [item] = reopened.training_items()
    assert (item.image_id, item.slice_index) == (image_id, 2)
    np.testing.assert_array_equal(item.image, volume[2][None])
    np.testing.assert_array_equal(item.labels, labels)

    with pytest.raises(SessionError, match="not a Zarr folder"):
        (tmp_path / "empty.zarr").mkdir()
        session.add_image("empty", axes="ZYX", source=tmp_path / "empty.zarr")
    moved = tmp_path / "moved.ome.zarr"
    path.rename(moved)
    with pytest.raises(SessionError, match="put the file back"):
        Session.open(tmp_path / "s", readonly=True).load_image(image_id)


def test_predicted_zarr_labels_open_as_labels_beside_their_volume(
    tmp_path, volume, monkeypatch
) -> None:
    import napari_unet._reader as reader_module

    model = _checkpoint(tmp_path)
    source = write_ome_zarr(tmp_path / "vol.ome.zarr", volume, "ZYX", (1, 48, 64))
    args = ["--model", str(model), "--labels", "instances", "--out", str(tmp_path)]
    assert _predict(str(source), *args) == 0  # writes vol_labels.zarr beside the volume
    written = np.asarray(open_zarr(tmp_path / "vol_labels.zarr").array[...])
    assert written.max() > 0

    [image, labels] = read_layers(str(source))
    assert (image[2], labels[2]) == ("image", "labels")
    assert (
        labels[1]["name"] == "vol_labels" and labels[1]["metadata"]["napari_unet"]["axes"] == "ZYX"
    )
    assert isinstance(labels[0], np.ndarray)  # in memory: it can be corrected
    np.testing.assert_array_equal(labels[0], written)
    [alone] = read_layers(str(tmp_path / "vol_labels.zarr"))  # dropped on its own
    assert alone[2] == "labels"
    both = read_layers([str(source), str(tmp_path / "vol_labels.zarr")])
    assert [kind for _, _, kind in both] == ["image", "labels"]  # not twice

    monkeypatch.setattr(reader_module, "ZARR_LABELS_IN_MEMORY", 0)
    [lazy] = read_layers(str(tmp_path / "vol_labels.zarr"))
    assert not isinstance(lazy[0], np.ndarray)  # too big for memory: lazy, view only
    np.testing.assert_array_equal(np.asarray(lazy[0]), written)

    floats = tmp_path / "p_labels.zarr"
    zarr.open_array(store=str(floats), mode="w", shape=(4, 4), dtype="f4")[...] = 0.5
    with pytest.raises(ImageReadError, match="cannot open as labels"):
        read_layers(str(floats))


def _tree_digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_issue15_point1_a_zarr_store_the_user_made_is_never_reopened(
    tmp_path, volume, capsys
) -> None:
    model = _checkpoint(tmp_path)
    source = write_ome_zarr(tmp_path / "vol.ome.zarr", volume, "ZYX", (1, 48, 64))
    out = tmp_path / "out"
    # the user's own annotation, with the very shape and dtype an output would have
    mine = write_ome_zarr(
        out / "vol_labels.zarr", np.ones((3, 48, 64), np.uint32), "ZYX", (1, 48, 64)
    )
    before = _tree_digest(mine)
    with pytest.raises(UserInputError, match="exists and is not a prediction"):
        create_output(mine, shape=(3, 48, 64), axes="ZYX", dtype=np.uint32)
    common = ["--model", str(model), "--labels", "instances", "--output", "both"]
    assert _predict(str(source), "--out", str(out), *common) == 1
    err = capsys.readouterr().err
    assert "vol_labels.zarr exists and is not a prediction (your annotation?)" in err
    assert _tree_digest(mine) == before
    assert not (out / "vol_probabilities.zarr").exists()  # the input was skipped as a whole
    # an earlier run's outputs are ours: reopened and overwritten as before
    assert _predict(str(source), "--out", str(tmp_path / "o2"), *common) == 0
    assert _predict(str(source), "--out", str(tmp_path / "o2"), *common) == 0
    capsys.readouterr()
