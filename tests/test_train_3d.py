"""``train`` with 3-D models on volumes annotated on a few slices, and what a user can get wrong."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main, volume_checks
from napari_unet.core.checkpoint.format import load_checkpoint
from napari_unet.core.io.voxel import read_voxel_size

SHAPE = (8, 32, 32)


def balls(shape=SHAPE):
    """Two separate bright ellipsoids (elongated in Z) and their instance labels."""
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    labels = np.zeros(shape, np.uint8)
    for value, centre in enumerate(((3, 10, 10), (4, 22, 22)), start=1):
        inside = sum(((g - c) / s) ** 2 for g, c, s in zip(grids, centre, (2, 1, 1))) < 30
        labels[inside] = value
    rng = np.random.default_rng(0)
    image = (np.where(labels > 0, 800, 100) + rng.integers(0, 60, shape)).astype(np.uint16)
    return image, labels


def sparse_mask(shape=SHAPE, planes=(("z", 3), ("y", 10), ("x", 22))):
    """Annotated voxels: whole planes in the given orientations."""
    mask = np.zeros(shape, np.uint8)
    for axis, index in planes:
        mask[(slice(None),) * "zyx".index(axis) + (index,)] = 1
    return mask


def write_volume(tmp_path, image=None, labels=None, mask=None, *, imagej_spacing=None, name="vol"):
    """Write the image/labels(/masks) folders; ImageJ calibration when ``imagej_spacing``."""
    if image is None:
        image, labels = balls()
    for folder in ("images", "labels", "masks"):
        (tmp_path / folder).mkdir(exist_ok=True)
    if imagej_spacing is None:
        tifffile.imwrite(tmp_path / "images" / f"{name}.tif", image)
    else:
        z, y, x = imagej_spacing
        tifffile.imwrite(
            tmp_path / "images" / f"{name}.tif",
            image,
            imagej=True,
            resolution=(1 / x, 1 / y),
            metadata={"spacing": z, "unit": "um", "axes": "ZYX"},
        )
    tifffile.imwrite(tmp_path / "labels" / f"{name}.tif", labels)
    if mask is not None:
        tifffile.imwrite(tmp_path / "masks" / f"{name}.tif", mask)


def train_args(tmp_path, *extra, model="unet3d_aniso", masks=True):
    args = [
        "train",
        "--images",
        str(tmp_path / "images"),
        "--labels",
        str(tmp_path / "labels"),
        "--model",
        model,
        "--steps",
        "2",
        "--patch",
        "16",
        "--patch-depth",
        "4",
        "--batch-size",
        "2",
        "--val-fraction",
        "0",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "model.pt"),
    ]
    if masks:
        args += ["--masks", str(tmp_path / "masks")]
    return [*args, *extra]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and "Traceback" not in "\n".join(err)
    return err[-1]


def test_unet3d_aniso_trains_from_slices_in_three_orientations_with_metadata_voxel(
    tmp_path, capsys
):
    image, labels = balls()
    write_volume(tmp_path, image, labels, sparse_mask(), imagej_spacing=(2.0, 0.5, 0.5))
    assert main(train_args(tmp_path, "--task", "binary")) == 0
    loaded = load_checkpoint(tmp_path / "model.pt")
    assert loaded.info.arch == "unet3d_aniso" and loaded.model.spatial_dims == 3
    assert tuple(loaded.model.config["voxel_size"]) == pytest.approx((2.0, 0.5, 0.5))
    assert tuple(loaded.model.config["pool_schedule"][0]) == (1, 2, 2)  # Z is coarse: pooled later
    assert len(loaded.info.tile_shape) == 3
    annotated = int(sparse_mask().astype(bool).sum())
    assert loaded.info.provenance["data"]["annotated_pixels"] == annotated
    out = tmp_path / "pred"
    args = ["predict", str(tmp_path / "images" / "vol.tif"), "--model", str(tmp_path / "model.pt")]
    assert main([*args, "--out", str(out), "--device", "cpu"]) == 0
    assert tifffile.imread(out / "vol_labels.tif").shape == SHAPE
    finetune = train_args(
        tmp_path, "--out", str(tmp_path / "tuned.pt"), model=str(tmp_path / "model.pt")
    )
    assert main(finetune) == 0  # a 3-D checkpoint fine-tunes on volumes too
    assert load_checkpoint(tmp_path / "tuned.pt").info.provenance["parent"] == str(
        tmp_path / "model.pt"
    )


def test_voxel_size_flag_overrides_the_metadata_and_unet3d_trains_instances(tmp_path):
    write_volume(tmp_path, mask=sparse_mask(), imagej_spacing=(2.0, 0.5, 0.5))
    args = train_args(tmp_path, "--task", "instances", "--voxel-size", "1,1,1")
    assert main(args) == 0
    assert main(train_args(tmp_path, "--task", "instances", "--voxel-size", "4,1,1")) == 0
    model = load_checkpoint(tmp_path / "model.pt").model
    assert tuple(model.config["voxel_size"]) == (4.0, 1.0, 1.0)
    assert main(train_args(tmp_path, "--task", "instances", model="unet3d")) == 0
    assert load_checkpoint(tmp_path / "model.pt").info.arch == "unet3d"


def test_ignore_value_marks_the_unannotated_voxels(tmp_path):
    image, labels = balls()
    labels = labels.copy()
    keep = sparse_mask(planes=(("z", 3), ("x", 10))).astype(bool)
    labels[~keep] = 255
    write_volume(tmp_path, image, labels)
    args = train_args(
        tmp_path, "--task", "semantic", "--ignore-value", "255", "--voxel-size", "2,1,1"
    )
    assert main([a for a in args if a not in ("--masks", str(tmp_path / "masks"))]) == 0
    provenance = load_checkpoint(tmp_path / "model.pt").info.provenance
    assert provenance["data"]["annotated_pixels"] == int(keep.sum())


def test_read_voxel_size_from_ome_and_imagej(tmp_path):
    image = np.zeros((4, 8, 8), np.uint8)
    ome = tmp_path / "ome.ome.tif"
    tifffile.imwrite(
        ome,
        image,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeZ": 50.0,
            "PhysicalSizeZUnit": "nm",
            "PhysicalSizeY": 4.0,
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeX": 4.0,
            "PhysicalSizeXUnit": "nm",
        },
    )
    assert read_voxel_size(ome) == pytest.approx((0.05, 0.004, 0.004))
    write_volume(tmp_path, image, image, imagej_spacing=(1.75, 0.8, 0.8))
    assert read_voxel_size(tmp_path / "images" / "vol.tif") == pytest.approx((1.75, 0.8, 0.8))
    tifffile.imwrite(tmp_path / "plain.tif", image)
    assert read_voxel_size(tmp_path / "plain.tif") is None


# -- bad input: one sentence, nothing written -------------------------------------------------
def assert_refused(tmp_path, capsys, args, *words):
    files = sorted(p for p in tmp_path.rglob("*"))
    assert main(args) != 0
    line = error_line(capsys)
    for word in words:
        assert word in line, line
    assert not (tmp_path / "model.pt").exists()
    assert sorted(p for p in tmp_path.rglob("*")) == files  # nothing written, nothing lost
    return line


def test_a_2d_image_given_to_a_3d_model(tmp_path, capsys):
    image, labels = balls()
    write_volume(tmp_path, image[3], labels[3])
    args = train_args(tmp_path, "--task", "binary", "--voxel-size", "2,1,1", masks=False)
    assert_refused(tmp_path, capsys, args, "3-D model", "no Z axis", "2-D model")


def test_a_z_axis_of_one_slice(tmp_path, capsys):
    image, labels = balls()
    write_volume(tmp_path, image[3:4], labels[3:4])
    args = train_args(tmp_path, "--task", "binary", "--axes", "ZYX", "--voxel-size", "2,1,1")
    assert_refused(tmp_path, capsys, [a for a in args if "masks" not in a], "only 1 slice")


def test_a_missing_voxel_size_for_the_anisotropic_model(tmp_path, capsys):
    write_volume(tmp_path, mask=sparse_mask())
    assert_refused(tmp_path, capsys, train_args(tmp_path, "--task", "binary"), "--voxel-size")


@pytest.mark.parametrize(
    ("value", "words"),
    [("0,4,4", ("positive",)), ("5000,1,1", ("same unit",)), ("nan,1,1", ("positive",))],
)
def test_an_absurd_voxel_size(tmp_path, capsys, value, words):
    write_volume(tmp_path, mask=sparse_mask())
    args = train_args(tmp_path, "--task", "binary", "--voxel-size", value)
    assert_refused(tmp_path, capsys, args, *words)


def test_a_voxel_size_that_is_not_three_numbers_is_a_usage_error(tmp_path, capsys):
    write_volume(tmp_path, mask=sparse_mask())
    with pytest.raises(SystemExit) as exit_info:
        main(train_args(tmp_path, "--voxel-size", "4,4"))
    assert exit_info.value.code == 2
    assert "three numbers" in capsys.readouterr().err


def test_an_absurd_voxel_size_in_the_metadata(tmp_path, capsys):
    image, labels = balls()
    write_volume(tmp_path, image, labels, sparse_mask(), imagej_spacing=(1000.0, 0.5, 0.5))
    assert_refused(tmp_path, capsys, train_args(tmp_path, "--task", "binary"), "same unit")


@pytest.mark.parametrize("axis", ["z", "y", "x"])
def test_annotation_in_one_slice_only(tmp_path, capsys, axis):
    write_volume(tmp_path, mask=sparse_mask(planes=((axis, 5),)))
    args = train_args(tmp_path, "--task", "binary", "--voxel-size", "2,1,1")
    line = assert_refused(tmp_path, capsys, args, "one slice", "2-D model")
    assert f"single {axis.upper()} plane" in line


def test_a_volume_larger_than_memory_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    write_volume(tmp_path, mask=sparse_mask())
    monkeypatch.setattr(volume_checks, "available_memory", lambda: 10_000)
    args = train_args(tmp_path, "--task", "binary", "--voxel-size", "2,1,1")
    assert_refused(tmp_path, capsys, args, "GiB", "crop")


def test_a_2d_model_trains_on_the_same_volume_slice_by_slice(tmp_path, caplog):
    write_volume(tmp_path, mask=sparse_mask())
    args = train_args(tmp_path, "--task", "binary", "--voxel-size", "2,1,1", model="unet")
    args = [a for a in args if a not in ("--patch-depth", "4")]
    assert main(args) == 0
    assert "3-D models only" in caplog.text
    assert load_checkpoint(tmp_path / "model.pt").model.spatial_dims == 2


def test_predict_a_2d_image_with_a_3d_model_and_a_volume_with_a_2d_model(tmp_path, capsys):
    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    net3d = build_model("unet3d", depth=1, base_channels=2, padding="same", out_channels=2)
    model3d = save_checkpoint(tmp_path / "m3.pt", net3d, task="semantic")
    net2d = build_model("unet", depth=1, base_channels=2, out_channels=2)
    model2d = save_checkpoint(tmp_path / "m2.pt", net2d, task="semantic")
    image, _ = balls()
    tifffile.imwrite(tmp_path / "plane.tif", image[3])
    tifffile.imwrite(tmp_path / "vol.tif", image)
    out = tmp_path / "out"
    args = ["--out", str(out), "--device", "cpu"]
    assert main(["predict", str(tmp_path / "plane.tif"), "--model", str(model3d), *args]) != 0
    line = error_line(capsys)
    assert "3-D model" in line and "no Z axis" in line
    assert not (out / "plane_labels.tif").exists()
    assert main(["predict", str(tmp_path / "vol.tif"), "--model", str(model2d), *args]) == 0
    assert tifffile.imread(out / "vol_labels.tif").shape == SHAPE  # slice by slice


def test_predict_takes_the_3d_watershed_voxel_size_from_the_metadata(tmp_path, monkeypatch):
    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model
    from napari_unet.core.postprocess import volume

    net = build_model("unet3d", depth=1, base_channels=2, padding="same", out_channels=3)
    model = save_checkpoint(tmp_path / "m.pt", net, task="instances")
    image, labels = balls()
    write_volume(tmp_path, image, labels, imagej_spacing=(2.0, 0.5, 0.5))
    seen = []
    original = volume.volume_labels

    def spy(probabilities, **kwargs):
        seen.append(kwargs["spacing"])
        return original(probabilities, **kwargs)

    monkeypatch.setattr(volume, "volume_labels", spy)
    args = ["predict", str(tmp_path / "images" / "vol.tif"), "--model", str(model)]
    assert main([*args, "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert seen and tuple(seen[0]) == pytest.approx((2.0, 0.5, 0.5))
    assert main([*args, "--out", str(tmp_path / "o2"), "--device", "cpu", "--pixel-size", "1"]) == 0
    assert tuple(seen[1]) == (1.0, 1.0, 1.0)  # --pixel-size wins


def test_restoration_with_a_3d_model_is_refused(tmp_path, capsys):
    write_volume(tmp_path, mask=sparse_mask())
    args = train_args(tmp_path, "--task", "restoration", "--voxel-size", "2,1,1")
    assert_refused(tmp_path, capsys, args, "restoration", "--model unet")
