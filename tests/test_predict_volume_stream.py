"""A 3-D model on a volume streamed from disk: block by block in Z/Y/X, equal to in memory.

Probabilities of a block equal the crop of the whole volume's; semantic labels of a Zarr volume
equal the in-memory TIFF path's; 3-D instances keep one id per object across block faces; a
TIFF too large for memory is streamed; a failure leaves no output; ``--dask local`` gives the
same objects on 2 workers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("zarr")

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import save_checkpoint
from napari_unet.core.inference import normalization as normalization_module
from napari_unet.core.inference import volume_blocks
from napari_unet.core.inference.normalization import NormalizationConfig
from napari_unet.core.inference.prediction import PredictConfig, predict
from napari_unet.core.inference.predictor import inference_net, make_predictor
from napari_unet.core.inference.volume import volume_normalization_params
from napari_unet.core.inference.volume_blocks import lazy_volume_params, predict_volume_region
from napari_unet.core.io.images import read_image, write_tiff
from napari_unet.core.io.zarr_io import ngff_attributes, open_zarr
from napari_unet.core.models import build_model
from tests.test_cli_predict_3d import blobs, threshold_net

CONFIG = PredictConfig(tile_shape=(4, 16, 16), device="cpu", batch_size=3)


def _random_net(out_channels=2):
    torch.manual_seed(0)
    net = build_model("unet3d", depth=1, base_channels=2, padding="same", out_channels=out_channels)
    return net.eval()


def _noise(shape=(9, 40, 36)):
    rng = np.random.default_rng(1)
    return rng.integers(0, 2000, size=shape).astype(np.uint16)


def _zarr(path: Path, volume: np.ndarray) -> Path:
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.attrs.update(ngff_attributes("ZYX", path.name))
    group.create_array("0", data=volume, chunks=(1, 16, 16))
    return path


def _predict(tmp_path: Path, model: Path, image: Path, *extra: str) -> int:
    args = ["predict", str(image), "--model", str(model), "--out", str(tmp_path / "out")]
    return main([*args, "--device", "cpu", "--tile", "4,16,16", *extra])


def _same_objects(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to renumbering: a one-to-one map between the ids of the whole volume."""
    assert np.array_equal(a > 0, b > 0)
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def test_block_probabilities_are_the_crop_of_the_whole_volume():
    net, volume = _random_net(), _noise()
    whole = predict(net, volume, "ZYX", config=CONFIG)  # (K, Z, Y, X)
    params = volume_normalization_params(volume[None])
    predictor = make_predictor(
        inference_net(net, torch.device("cpu"), CONFIG),
        task="semantic",
        device=torch.device("cpu"),
        config=CONFIG,
    )

    def read(spans):
        return volume[None][(slice(None), *(slice(a, b) for a, b in spans))]

    for region in (
        ((0, 4), (0, 16), (0, 16)),
        ((3, 9), (10, 40), (7, 30)),
        ((8, 9), (39, 40), (0, 36)),
    ):
        part = predict_volume_region(
            predictor, net, read, params, volume_shape=volume.shape, region=region, config=CONFIG
        )
        crop = whole[(slice(None), *(slice(a, b) for a, b in region))]
        np.testing.assert_allclose(part, crop, rtol=0, atol=1e-6)


def test_lazy_normalisation_reads_the_subsample_the_core_measures(monkeypatch):
    volume = _noise((5, 512, 420))[None].astype(np.float32)  # above the core's sample budget
    assert volume.size > normalization_module.MAX_PERCENTILE_SAMPLES
    monkeypatch.setattr(volume_blocks, "WHOLE_VOLUME_VOXELS", 0)
    reads = []

    def plane(z, ys, xs):
        reads.append(volume[:, z, ys, xs].size)
        return volume[:, z, ys, xs]

    config = NormalizationConfig()
    found = lazy_volume_params(plane, volume.shape, config)
    expected = volume_normalization_params(volume, config)
    np.testing.assert_array_equal(found.offset, expected.offset)
    np.testing.assert_array_equal(found.scale, expected.scale)
    assert sum(reads) <= normalization_module.MAX_PERCENTILE_SAMPLES  # only the subsample


def test_zarr_volume_streams_semantic_labels_and_probabilities_equal_to_in_memory(tmp_path):
    model = save_checkpoint(tmp_path / "r.pt", _random_net(), task="semantic")
    volume = _noise()
    write_tiff(tmp_path / "vol.tif", volume, axes="ZYX")
    store = _zarr(tmp_path / "vol.zarr", volume)
    assert _predict(tmp_path / "mem", model, tmp_path / "vol.tif", "--output", "both") == 0
    extra = ("--output", "both", "--dask-block", "4,16,16")
    assert _predict(tmp_path / "zarr", model, store, *extra) == 0
    memory = read_image(tmp_path / "mem" / "out" / "vol_labels.tif").image
    streamed = np.asarray(open_zarr(tmp_path / "zarr" / "out" / "vol_labels.zarr").array[...])
    np.testing.assert_array_equal(streamed, memory)
    assert 0 < memory.sum() < memory.size  # both classes occur
    memory_p = read_image(tmp_path / "mem" / "out" / "vol_probabilities.tif").image
    streamed_p = open_zarr(tmp_path / "zarr" / "out" / "vol_probabilities.zarr").array[...]
    np.testing.assert_array_equal(np.asarray(streamed_p), memory_p)
    np.testing.assert_array_equal(open_zarr(store).array[...], volume)  # input untouched


def test_3d_instances_keep_one_id_per_object_across_blocks(tmp_path):
    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    image, mask = blobs()
    write_tiff(tmp_path / "vol.tif", image, axes="ZYX")
    store = _zarr(tmp_path / "vol.zarr", image)
    assert _predict(tmp_path / "mem", model, tmp_path / "vol.tif", "--labels", "instances") == 0
    extra = ("--labels", "instances", "--dask-block", "4,16,16")  # the balls cross block faces
    assert _predict(tmp_path / "zarr", model, store, *extra) == 0
    memory = read_image(tmp_path / "mem" / "out" / "vol_labels.tif").image
    streamed = np.asarray(open_zarr(tmp_path / "zarr" / "out" / "vol_labels.zarr").array[...])
    assert streamed.max() == 2 and len(np.unique(streamed[mask])) == 2
    _same_objects(streamed, memory)


def test_a_tiff_too_large_for_memory_is_streamed_not_refused(tmp_path, monkeypatch, capsys):
    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    image, mask = blobs()
    write_tiff(tmp_path / "vol.tif", image, axes="ZYX")
    monkeypatch.setattr("napari_unet.cli.volume_checks.available_memory", lambda: 10_000)
    assert _predict(tmp_path, model, tmp_path / "vol.tif", "--dask-block", "4,16,16") == 0
    labels = np.asarray(open_zarr(tmp_path / "out" / "vol_labels.zarr").array[...])
    np.testing.assert_array_equal(labels, mask.astype(np.uint8))
    assert "streamed in 3-D" in capsys.readouterr().out


def test_a_failing_block_leaves_no_output_and_one_sentence(tmp_path, monkeypatch, capsys):
    from napari_unet.core.errors import UserInputError
    from napari_unet.distributed import volume_run

    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    store = _zarr(tmp_path / "vol.zarr", blobs()[0])
    real, calls = volume_run.predict_volume_block, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # before any block is finished: nothing to resume
            raise UserInputError("the disk is full; free some space and run again.")
        return real(*args, **kwargs)

    monkeypatch.setattr(volume_run, "predict_volume_block", failing)
    assert _predict(tmp_path, model, store, "--dask-block", "4,16,16") == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "disk is full" in failed[0]
    assert not (tmp_path / "out" / "vol_labels.zarr").exists()
    assert not (tmp_path / "out" / "vol.dask-blocks").exists()


def test_dask_local_cluster_gives_the_same_objects_as_one_process(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    image, _ = blobs()
    store = _zarr(tmp_path / "vol.zarr", image)
    extra = ("--labels", "instances", "--dask-block", "4,16,16")
    assert _predict(tmp_path / "one", model, store, *extra) == 0
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=40,
    )  # fmt: skip
    client = distributed.Client(cluster)
    try:
        monkeypatch.setattr("napari_unet.cli.predict_dask._client", lambda _: client)
        assert _predict(tmp_path / "dask", model, store, *extra, "--dask", "local:2") == 0
    finally:
        client.close()
        cluster.close()
    one = np.asarray(open_zarr(tmp_path / "one" / "out" / "vol_labels.zarr").array[...])
    spread = np.asarray(open_zarr(tmp_path / "dask" / "out" / "vol_labels.zarr").array[...])
    assert one.max() == 2
    _same_objects(spread, one)


def test_a_tzyx_zarr_streams_each_volume_as_in_memory(tmp_path):
    import zarr

    model = save_checkpoint(tmp_path / "r.pt", _random_net(), task="semantic")
    volume = _noise((2, 5, 24, 20))
    write_tiff(tmp_path / "vol.tif", volume, axes="TZYX")
    group = zarr.open_group(str(tmp_path / "vol.zarr"), mode="w", zarr_format=2)
    group.attrs.update(ngff_attributes("TZYX", "vol.zarr"))
    group.create_array("0", data=volume, chunks=(1, 1, 16, 16))
    assert _predict(tmp_path / "mem", model, tmp_path / "vol.tif", "--axes", "TZYX") == 0
    extra = ("--dask-block", "3,16,16")
    assert _predict(tmp_path / "zarr", model, tmp_path / "vol.zarr", *extra) == 0
    memory = read_image(tmp_path / "mem" / "out" / "vol_labels.tif").image
    streamed = np.asarray(open_zarr(tmp_path / "zarr" / "out" / "vol_labels.zarr").array[...])
    assert streamed.shape == (2, 5, 24, 20)
    np.testing.assert_array_equal(streamed, memory)
