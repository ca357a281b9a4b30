"""``predict --measure`` on a volume streamed block by block by a 3-D model (issue 20): objects
that span blocks are one row, and the table equals the in-memory table of the same volume."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zarr")

from napari_unet.core.checkpoint.format import save_checkpoint
from napari_unet.core.io.images import write_tiff
from tests.test_cli_predict_3d import threshold_net
from tests.test_predict_volume_stream import _predict, _zarr


def balls(shape=(12, 40, 36)):
    """Four balls of different sizes and brightness; two cross the 4x16x16 block faces."""
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    image = np.full(shape, 10, np.uint16)
    for centre, radius, value in (
        ((4, 16, 16), 4, 1000), ((8, 30, 8), 3, 700), ((2, 5, 28), 2, 900), ((9, 33, 28), 3, 800)
    ):  # fmt: skip
        inside = sum((g - c) ** 2 for g, c in zip(grids, centre)) < radius**2
        image[inside] = value + np.flatnonzero(inside) % 50  # varied intensities
    return image


def read_csv(path):
    import pandas

    return pandas.read_csv(path, comment="#")


def test_streamed_measurements_equal_the_in_memory_table(tmp_path):
    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    image = balls()
    write_tiff(tmp_path / "vol.tif", image, axes="ZYX")
    store = _zarr(tmp_path / "vol.zarr", image)
    extra = ("--labels", "instances", "--measure", "--pixel-size", "2,0.5,0.5")
    assert _predict(tmp_path / "mem", model, tmp_path / "vol.tif", *extra) == 0
    assert _predict(tmp_path / "zarr", model, store, *extra, "--dask-block", "4,16,16") == 0
    memory = read_csv(tmp_path / "mem" / "out" / "vol_measurements.csv")
    streamed = read_csv(tmp_path / "zarr" / "out" / "vol_measurements.csv")
    assert len(memory) == 4 and list(streamed.columns) == list(memory.columns)
    assert "volume_physical" in streamed.columns and "mean_intensity" in streamed.columns
    # ids differ (numbered per block order): compare the objects by their bounding boxes
    key = ["bbox_z_min", "bbox_y_min", "bbox_x_min"]
    memory = memory.sort_values(key).drop(columns="label").reset_index(drop=True)
    streamed = streamed.sort_values(key).drop(columns="label").reset_index(drop=True)
    np.testing.assert_allclose(streamed.to_numpy(float), memory.to_numpy(float), rtol=1e-9)
    np.testing.assert_allclose(streamed["volume_physical"], streamed["area"] * 2 * 0.5 * 0.5)


def test_streamed_measure_of_semantic_labels_is_one_sentence(tmp_path, capsys):
    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    store = _zarr(tmp_path / "vol.zarr", balls())
    assert _predict(tmp_path, model, store, "--measure", "--dask-block", "4,16,16") == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "--labels instances" in failed[0]
    assert not (tmp_path / "out").exists()


def test_dask_streamed_measurements_equal_the_local_ones(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    store = _zarr(tmp_path / "vol.zarr", balls())
    extra = ("--labels", "instances", "--measure", "--dask-block", "4,16,16")
    assert _predict(tmp_path / "one", model, store, *extra) == 0
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
        silence_logs=40,
    )  # fmt: skip
    client = distributed.Client(cluster)
    try:
        monkeypatch.setattr("napari_unet.cli.predict_dask._client", lambda _: client)
        assert _predict(tmp_path / "dask", model, store, *extra, "--dask", "local:1") == 0
    finally:
        client.close()
        cluster.close()
    one = read_csv(tmp_path / "one" / "out" / "vol_measurements.csv")
    spread = read_csv(tmp_path / "dask" / "out" / "vol_measurements.csv")
    assert len(one) == 4
    np.testing.assert_allclose(spread.to_numpy(float), one.to_numpy(float))
