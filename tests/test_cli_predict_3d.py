"""``napari-unet predict`` with a 3-D checkpoint on a ZYX TIFF, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import save_checkpoint
from napari_unet.core.io.images import read_image, write_tiff
from napari_unet.core.models import build_model


def threshold_net():
    """A depth-1 unet3d that passes the normalised voxel through: class 1 where it is > 0.5.

    Every weight is zero except one path: the first block copies the input channel, the
    decoder reads that copy from the skip connection, the 1x1x1 output gives class 1 the logit
    ``20 * (x - 0.5)`` and class 0 the logit 0. BatchNorm keeps its initial (identity) statistics.
    """
    net = build_model("unet3d", depth=1, base_channels=2, padding="same", out_channels=2)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.zero_()
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.weight.fill_(1.0)
        for conv in (net.inc[0], net.inc[3], net.ups[0].conv[0], net.ups[0].conv[3]):
            conv.weight[0, 0, 1, 1, 1] = 1.0  # channel 0 of the skip comes first in the concat
        net.outc.weight[1, 0] = 20.0
        net.outc.bias[1] = -10.0
    return net.eval()


def blobs(shape=(9, 40, 36)):
    """Two separate bright balls spanning several slices, and their mask."""
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    mask = np.zeros(shape, bool)
    for centre in ((4, 12, 10), (4, 28, 26)):
        mask |= sum((g - c) ** 2 for g, c in zip(grids, centre)) < 16
    image = np.where(mask, 1000, 10).astype(np.uint16)
    return image, mask


def run(tmp_path: Path, model: Path, image: Path, *extra: str) -> int:
    out = tmp_path / "out"
    args = ["predict", str(image), "--model", str(model), "--out", str(out), "--device", "cpu"]
    return main([*args, *extra])


def test_3d_checkpoint_predicts_a_zyx_tiff(tmp_path, capsys):
    torch.manual_seed(0)
    net = build_model("unet3d", depth=1, base_channels=2, padding="same", out_channels=2)
    model = save_checkpoint(tmp_path / "v.pt", net, task="semantic", tile_shape=(8, 32, 32))
    image, _ = blobs()
    path = tmp_path / "vol.tif"
    write_tiff(path, image, axes="ZYX")
    assert run(tmp_path, model, path, "--output", "both") == 0
    labels = read_image(tmp_path / "out" / "vol_labels.tif")
    assert labels.image.shape == (9, 40, 36) and labels.image.dtype == np.uint8
    probabilities = read_image(tmp_path / "out" / "vol_probabilities.tif")
    assert probabilities.image.shape == (2, 9, 40, 36)
    assert probabilities.image.dtype == np.float16
    assert probabilities.axes == "CZYX"
    sums = probabilities.image.astype(np.float32).sum(axis=0)
    np.testing.assert_allclose(sums, 1.0, atol=5e-3)
    assert "ok " in capsys.readouterr().out


def test_identity_like_3d_model_gives_the_expected_labels_and_3d_instances(tmp_path):
    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    image, mask = blobs()
    path = tmp_path / "vol.tif"
    write_tiff(path, image, axes="ZYX")
    assert run(tmp_path, model, path, "--tile", "4,16,16") == 0
    labels = read_image(tmp_path / "out" / "vol_labels.tif").image
    np.testing.assert_array_equal(labels, mask.astype(np.uint8))
    assert run(tmp_path / "i", model, path, "--labels", "instances") == 0
    instances = read_image(tmp_path / "i" / "out" / "vol_labels.tif").image
    assert instances.max() == 2  # two balls, one id each through all their slices
    assert len(np.unique(instances[mask])) == 2
    for z in range(9):
        assert set(np.unique(instances[z][mask[z]])) <= {1, 2}


@pytest.mark.parametrize(
    ("shape", "axes", "match"),
    [((40, 36), "YX", "needs a volume"), ((1, 40, 36), "ZYX", "needs a volume")],
)
def test_a_3d_model_on_a_2d_image_fails_in_one_line(tmp_path, capsys, shape, axes, match):
    """A one-slice TIFF reads as YX: either way the message asks for a volume."""
    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    path = tmp_path / "flat.tif"
    write_tiff(path, np.ones(shape, np.uint16), axes=axes)
    assert run(tmp_path, model, path) == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and match in failed[0]
    assert not (tmp_path / "out" / "flat_labels.tif").exists()


def test_a_3d_model_streams_a_zarr_store_and_leaves_it_as_it_was(tmp_path, capsys):
    """Zarr volumes are predicted block by block in 3-D (tests/test_predict_volume_stream.py)."""
    zarr = pytest.importorskip("zarr")
    store = tmp_path / "vol.zarr"
    image, mask = blobs()
    array = zarr.open_array(store=str(store), mode="w", shape=image.shape, dtype="uint16")
    array[:] = image
    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    assert run(tmp_path, model, store, "--axes", "ZYX") == 0
    assert "streamed in 3-D" in capsys.readouterr().out
    labels = zarr.open_group(str(tmp_path / "out" / "vol_labels.zarr"), mode="r")["0"][:]
    np.testing.assert_array_equal(labels, mask.astype(np.uint8))
    assert (zarr.open_array(store=str(store), mode="r")[:] == image).all()


def test_pixel_size_is_the_voxel_size_of_3d_instances(tmp_path, capsys):
    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    image, _ = blobs()
    path = tmp_path / "vol.tif"
    write_tiff(path, image, axes="ZYX")
    assert run(tmp_path / "ok", model, path, "--labels", "instances", "--pixel-size", "2,1,1") == 0
    bad = ("--labels", "instances", "--pixel-size", "5000,1,1")
    assert run(tmp_path / "bad", model, path, *bad) == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "voxel size" in failed[0]
