"""2.5-D prediction streamed from disk (issue 20): a Zarr stack, or a TIFF stack too large for
memory, is predicted slice by slice with each slice's neighbours, equal to in memory."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

pytest.importorskip("zarr")

import zarr

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import save_checkpoint
from napari_unet.core.io.zarr_io import ngff_attributes
from napari_unet.core.models import build_model


def stack(shape=(6, 32, 32)) -> np.ndarray:
    """(Z, Y, X) uint16 noise plus a ramp in Z: every slice differs from its neighbours."""
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 1000, size=shape)
    return (noise + 300 * np.arange(shape[0])[:, None, None]).astype(np.uint16)


def context_model(tmp_path, radius=1):
    torch.manual_seed(0)
    net = build_model("unet", depth=1, base_channels=2, in_channels=2 * radius + 1, out_channels=1)
    provenance = {"context_slices": radius}
    return save_checkpoint(tmp_path / "m.pt", net, task="binary", provenance=provenance)


def write_zarr(path, volume):
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.attrs.update(ngff_attributes("ZYX", path.name))
    group.create_array("0", data=volume, chunks=(1, 16, 16))
    return path


def run_predict(image, model, out, *extra) -> int:
    args = ["predict", str(image), "--model", str(model), "--out", str(out), "--device", "cpu"]
    return main([*args, "--tile", "32", "--output", "both", *extra])


def zarr_output(path):
    return np.asarray(zarr.open_group(str(path), mode="r")["0"][:])


def in_memory(tmp_path, model, volume):
    tifffile.imwrite(tmp_path / "vol.tif", volume, metadata={"axes": "ZYX"})
    assert run_predict(tmp_path / "vol.tif", model, tmp_path / "memory") == 0
    memory = tmp_path / "memory"
    return (
        tifffile.imread(memory / "vol_probabilities.tif"),
        tifffile.imread(memory / "vol_labels.tif"),
    )


def test_a_zarr_stack_is_predicted_with_neighbours_as_in_memory(tmp_path):
    volume, model = stack(), context_model(tmp_path)
    probabilities, labels = in_memory(tmp_path, model, volume)
    store = write_zarr(tmp_path / "vol.zarr", volume)
    assert run_predict(store, model, tmp_path / "streamed") == 0
    streamed = tmp_path / "streamed"
    np.testing.assert_array_equal(zarr_output(streamed / "vol_probabilities.zarr"), probabilities)
    np.testing.assert_array_equal(zarr_output(streamed / "vol_labels.zarr"), labels)
    assert (np.asarray(zarr.open_group(str(store), mode="r")["0"][:]) == volume).all()


def test_a_tiff_stack_too_large_for_memory_is_streamed_with_neighbours(tmp_path, monkeypatch):
    volume, model = stack(), context_model(tmp_path, radius=2)
    probabilities, labels = in_memory(tmp_path, model, volume)
    monkeypatch.setattr("napari_unet.cli.volume_checks.available_memory", lambda: 10_000)
    assert run_predict(tmp_path / "vol.tif", model, tmp_path / "streamed") == 0
    streamed = tmp_path / "streamed"
    assert not (streamed / "vol_labels.tif").exists()
    np.testing.assert_array_equal(zarr_output(streamed / "vol_probabilities.zarr"), probabilities)
    np.testing.assert_array_equal(zarr_output(streamed / "vol_labels.zarr"), labels)


def test_a_25d_model_with_dask_fails_in_one_line(tmp_path, capsys):
    store = write_zarr(tmp_path / "vol.zarr", stack())
    model = context_model(tmp_path)
    assert run_predict(store, model, tmp_path / "out", "--dask", "local:1") == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "2.5-D model" in failed[0] and "drop --dask" in failed[0]
    assert not (tmp_path / "out").exists()
