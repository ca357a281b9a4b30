"""Distributed prediction (``predict --dask``) on a real LocalCluster: 2 worker processes.

Semantic labels must equal the single-process path bit for bit; instance labels must give the
same objects up to renumbering, on a Z-stack split in Z and a 2-D mosaic split in Y and X.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")

from napari_unet.cli.predict import _Job
from napari_unet.cli.predict_dask import predict_dask
from napari_unet.cli.predict_zarr import predict_zarr
from napari_unet.core.checkpoint.format import load_checkpoint, resolve_checkpoint
from napari_unet.core.errors import UserInputError
from napari_unet.core.inference.prediction import PredictConfig
from napari_unet.core.io.zarr_io import ngff_attributes, open_zarr
from napari_unet.core.synthetic import synthetic_nuclei
from napari_unet.distributed import model_cache
from napari_unet.distributed.cluster import connect
from napari_unet.distributed.stitch import BlockFaces, face_pairs, global_luts


class _Bar:
    def update(self, *_):
        pass


@pytest.fixture(scope="module")
def distributed():
    return pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client(distributed):
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=40,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def loaded():
    return load_checkpoint(resolve_checkpoint("fluo-nuclei"))


def _volume(path: Path, shape, axes: str, seeds) -> Path:
    import zarr

    planes = [synthetic_nuclei(shape, seed=s, n_nuclei=12)[0] for s in seeds]
    data = np.stack(planes) if axes == "ZYX" else planes[0]
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.attrs.update(ngff_attributes(axes, path.name))
    group.create_array("0", data=data, chunks=(1, 32, 32)[-data.ndim :])
    return path


def _job(loaded, out: Path, *, labels: str, block, scheduler="unused", **post) -> _Job:
    args = argparse.Namespace(
        model="fluo-nuclei",
        out=out,
        axes=None,
        device="cpu",
        output="labels",
        slices=None,
        dask=scheduler,
        dask_block=block,
    )
    predict_config = PredictConfig(tile_shape=(64, 64), device="cpu", batch_size=2)
    post_config = loaded.info.postprocess_config(output=labels).replace(**post)
    return _Job(args, loaded, predict_config, post_config, None)


def _single(job: _Job, image: Path, stem="ref") -> np.ndarray:
    predict_zarr(job, image, stem, _Bar())
    return np.asarray(open_zarr(job.args.out / f"{stem}_labels.zarr").array[...])


def _distributed(job: _Job, image: Path, client, monkeypatch, stem="vol") -> np.ndarray:
    monkeypatch.setattr("napari_unet.cli.predict_dask._client", lambda _: client)
    predict_dask(job, image, stem, _Bar())
    return np.asarray(open_zarr(job.args.out / f"{stem}_labels.zarr").array[...])


def _same_objects(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to renumbering: a one-to-one map between the ids, plane by plane."""
    assert (a > 0).sum() == (b > 0).sum()
    for pa, pb in zip(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])):
        pairs = np.unique(np.stack([pa.ravel(), pb.ravel()]), axis=1)
        assert np.array_equal(pa > 0, pb > 0)
        assert len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


# ---- pure stitching, no cluster ---------------------------------------------------------


def test_face_pairs_links_the_same_object_and_not_touching_ones():
    outer = np.array([[[1, 1, 2, 2, 0, 3]]])  # block A's view of B's band (3: A halo-only)
    inner = np.array([[[5, 5, 6, 6, 0, 7]]])
    pairs = face_pairs(outer, 2, inner)
    assert sorted(map(tuple, pairs.tolist())) == [(1, 5), (2, 6)]


def test_global_luts_merges_across_faces_applies_min_size_and_numbers_sequentially():
    band = np.array([[[1, 1, 0, 2]]])
    a = BlockFaces(n_ids=2, counts=np.array([0, 30, 3]), outer={(0, 1): band})
    b = BlockFaces(
        n_ids=2, counts=np.array([0, 40, 2]), inner={(0, -1): np.array([[[1, 1, 0, 2]]])}
    )
    luts, n = global_luts({"a": a, "b": b}, [("a", (0, 1), "b")], min_size=6)
    # a1+b1 -> one object (70 px); a2+b2 -> 5 px < 6 -> removed
    assert n == 1
    assert luts["a"].tolist() == [0, 1, 0] and luts["b"].tolist() == [0, 1, 0]


def test_grid_follows_input_chunks_and_warns_when_chunks_dwarf_blocks(caplog):
    from napari_unet.distributed.grid import chunk_overhead, plan_grid

    grid = plan_grid(slices=range(0, 5), yx_shape=(5000, 3000), input_chunks=(300, 1000), halo=128)
    assert grid.y_edges[1] % 300 == 0 and grid.x_edges[1] % 1000 == 0  # whole chunks per block
    assert grid.z_edges[-1] == 5 and grid.x_edges[-1] == 3000
    small = plan_grid(
        slices=range(2),
        yx_shape=(4096, 4096),
        input_chunks=(4096, 4096),
        halo=128,
        block=(1, 64, 64),
    )
    assert chunk_overhead(small, (4096, 4096)) > 100
    assert "smaller than the post-processing halo" in caplog.text


def test_marker_folder_refuses_a_rerun_with_other_settings(tmp_path):
    from napari_unet.distributed.bookkeeping import BlockBook

    book = BlockBook(tmp_path / "vol.dask-blocks")
    assert book.start({"grid": [1, 2], "model": "a"}) == 0
    book.save_predicted("z0-y0-x0", None)
    assert book.start({"grid": [1, 2], "model": "a"}) == 1
    with pytest.raises(UserInputError, match="other settings \\(model\\)"):
        book.start({"grid": [1, 2], "model": "b"})


def test_block_probabilities_equal_the_crop_of_the_whole_slice(loaded):
    """The block tiler reproduces the single-process tiling bit for bit (no cluster)."""
    import torch

    from napari_unet.core.device import get_device
    from napari_unet.core.inference.normalization import normalization_params
    from napari_unet.core.inference.prediction import predict
    from napari_unet.core.models.fuse import fuse_for_inference
    from napari_unet.distributed.block_predict import predict_region

    image = synthetic_nuclei((100, 124), seed=3, n_nuclei=10)[0]
    config = PredictConfig(tile_shape=(64, 64), device="cpu", batch_size=3)
    normalization = loaded.info.normalization_config()
    whole = predict(
        loaded.model, image, "YX", task="instances", normalization=normalization, config=config
    )
    net = fuse_for_inference(loaded.model).to(memory_format=torch.channels_last)
    params = normalization_params(image[None], normalization)
    for (y0, y1), (x0, x1) in [((0, 50), (0, 62)), ((50, 100), (62, 124)), ((13, 71), (5, 99))]:
        part = predict_region(
            net,
            loaded.model,
            lambda ys, xs: image[None, ys[0] : ys[1], xs[0] : xs[1]],
            params,
            yx_shape=image.shape,
            region=((y0, y1), (x0, x1)),
            task="instances",
            config=config,
            device=get_device("cpu"),
        )
        assert np.array_equal(part, whole[:, y0:y1, x0:x1])


# ---- on the cluster ---------------------------------------------------------------------


def test_semantic_labels_identical_z_split_and_model_loaded_once(
    client, loaded, tmp_path, monkeypatch
):
    image = _volume(tmp_path / "vol.zarr", (80, 96), "ZYX", seeds=range(3))
    job = _job(
        loaded, tmp_path / "out", labels="semantic", block=(2, 40, 48), block_halo=16, min_size=12
    )
    reference = _single(job, image)
    result = _distributed(job, image, client, monkeypatch)
    assert result.dtype == reference.dtype
    assert np.array_equal(result, reference)
    assert not (tmp_path / "out" / "vol.dask-blocks").exists()  # complete: markers removed
    loads = client.run(model_cache.load_count)
    assert all(count <= 1 for count in loads.values()), loads  # 12 blocks, one load per worker
    # the pyramid is built once level 0 is complete, the same as the slice-by-slice path's
    if _has_ome_zarr():
        import zarr

        single = zarr.open_group(str(tmp_path / "out" / "ref_labels.zarr"), mode="r")
        many = zarr.open_group(str(tmp_path / "out" / "vol_labels.zarr"), mode="r")
        assert sorted(many.array_keys()) == ["0", "1", "2"]
        for level in ("1", "2"):
            assert np.array_equal(many[level][...], single[level][...])
        factor = 4
        assert np.array_equal(many["2"][...], result[:, ::factor, ::factor])
        [ours], [theirs] = many.attrs["multiscales"], single.attrs["multiscales"]
        assert ours["datasets"] == theirs["datasets"] and ours["axes"] == theirs["axes"]


def _has_ome_zarr() -> bool:
    from napari_unet.core.io.ome_pyramid import ome_zarr_available

    return ome_zarr_available()


def test_instances_same_objects_on_a_mosaic_split_in_y_and_x(client, loaded, tmp_path, monkeypatch):
    image = _volume(tmp_path / "mosaic.zarr", (112, 136), "YX", seeds=[7])
    job = _job(loaded, tmp_path / "out", labels="instances", block=(1, 40, 48), block_halo=32)
    reference = _single(job, image)
    result = _distributed(job, image, client, monkeypatch)
    assert reference.max() > 5
    _same_objects(result, reference)


def test_instances_same_objects_on_a_z_stack(client, loaded, tmp_path, monkeypatch):
    image = _volume(tmp_path / "vol.zarr", (64, 72), "ZYX", seeds=range(3))
    job = _job(loaded, tmp_path / "out", labels="instances", block=(2, 64, 40), block_halo=32)
    reference = _single(job, image)
    result = _distributed(job, image, client, monkeypatch)
    _same_objects(result, reference)
    # ids are unique across the whole stack (not restarted per slice or per block)
    ids = [set(np.unique(p)) - {0} for p in result]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])


def test_rerun_skips_finished_blocks(client, loaded, tmp_path, monkeypatch):
    from napari_unet.distributed import engine

    image = _volume(tmp_path / "vol.zarr", (64, 64), "ZYX", seeds=range(2))
    job = _job(loaded, tmp_path / "out", labels="semantic", block=(1, 32, 64))
    real = engine.run_graph
    calls = []

    def interrupted(client_, run, book, **kwargs):
        # the first run finishes one block, then "crashes"
        from napari_unet.distributed.tasks import predict_block, slice_params

        block = next(run.grid.blocks())
        predict_block(run, block, slice_params(run, *block.z), None)
        calls.append(block)
        raise KeyboardInterrupt

    monkeypatch.setattr("napari_unet.distributed.engine.run_graph", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _distributed(job, image, client, monkeypatch)
    from napari_unet.distributed.store import open_output

    out = open_output(tmp_path / "out" / "vol_labels.zarr")
    out[0, :4, :4] = 9  # a finished block's pixels: a rerun must leave them alone
    monkeypatch.setattr("napari_unet.distributed.engine.run_graph", real)
    line_holder = []
    monkeypatch.setattr("napari_unet.cli.predict_dask._client", lambda _: client)
    line_holder.append(predict_dask(job, image, "vol", _Bar()))
    assert "1 resumed" in line_holder[0]
    result = np.asarray(open_zarr(tmp_path / "out" / "vol_labels.zarr").array[...])
    assert (result[0, :4, :4] == 9).all()
    reference = _single(job, image)
    assert np.array_equal(result[:, 32:], reference[:, 32:])
    assert np.array_equal(result[1], reference[1])


def test_a_killed_worker_is_retried_and_the_output_is_complete(
    client, loaded, tmp_path, monkeypatch
):
    image = _volume(tmp_path / "vol.zarr", (64, 96), "ZYX", seeds=range(4))
    job = _job(loaded, tmp_path / "out", labels="semantic", block=(1, 64, 48))
    reference = _single(job, image)
    pids = client.run(os.getpid)  # worker address -> process id
    markers = tmp_path / "out" / "vol.dask-blocks" / "predicted"
    killed = []

    def killer():
        # once a block is done, kill a worker while it is running a prediction task
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if markers.is_dir() and any(markers.iterdir()):
                busy = [
                    address
                    for address, keys in client.processing().items()
                    if any("predict-" in str(key) for key in keys)
                ]
                if busy:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=killer)
    thread.start()
    result = _distributed(job, image, client, monkeypatch)
    thread.join()
    assert killed, "no worker was running a block after the first one finished"
    assert np.array_equal(result, reference)  # the lost block ran again on a worker
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker


def test_unreachable_scheduler_is_one_sentence_and_quick(distributed):
    tic = time.monotonic()
    with pytest.raises(
        UserInputError, match=r"cannot reach the dask scheduler at tcp://127\.0\.0\.1:9"
    ):
        connect("tcp://127.0.0.1:9", timeout=1)
    assert time.monotonic() - tic < 15


def test_read_only_output_refused_and_finished_blocks_kept(loaded, tmp_path, monkeypatch):
    image = _volume(tmp_path / "vol.zarr", (32, 32), "ZYX", seeds=[0])
    out = tmp_path / "out"
    out.mkdir()
    (out / "vol_labels.zarr").mkdir()
    (out / "vol_labels.zarr" / "keep.txt").write_text("finished")
    monkeypatch.setattr("napari_unet.cli.predict_dask._client", lambda _: None)
    monkeypatch.setattr(os, "access", lambda *_: False)
    job = _job(loaded, out, labels="semantic", block=None)
    with pytest.raises(UserInputError, match="read-only"):
        predict_dask(job, image, "vol", _Bar())
    assert (out / "vol_labels.zarr" / "keep.txt").read_text() == "finished"


def test_cli_local_cluster_and_missing_distributed(tmp_path, monkeypatch, capsys):
    from napari_unet.cli import main

    image = _volume(tmp_path / "vol.zarr", (32, 48), "ZYX", seeds=[1])
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)
    status = main(
        [
            "predict",
            str(image),
            "--model",
            "fluo-nuclei",
            "--out",
            str(tmp_path / "o"),
            "--dask",
            "local:1",
            "--device",
            "cpu",
        ]
    )
    assert status == 1
    assert "pip install 'napari-unet-loop[dask]'" in capsys.readouterr().err


def test_big_slices_are_measured_on_the_strided_subsample(tmp_path, monkeypatch):
    """A large 2-D mosaic is never read whole for normalisation, and gives the same values."""
    import zarr

    from napari_unet.core.inference.normalization import NormalizationConfig, normalization_params
    from napari_unet.core.io.axes import StackLayout
    from napari_unet.distributed import tasks

    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, 300.0, (1500, 1300)).astype(np.uint16)
    zarr.create_array(str(tmp_path / "big.zarr"), data=image, chunks=(256, 256))
    run = argparse.Namespace(
        input_path=str(tmp_path / "big.zarr"),
        layout=StackLayout(axes="YX", shape=image.shape),
        normalization=NormalizationConfig(),
    )
    monkeypatch.setattr(tasks, "WHOLE_SLICE_PIXELS", 1000)
    reads = []
    real = tasks._window_reader
    monkeypatch.setattr(
        tasks, "_window_reader", lambda *a, **k: reads.append(k.get("step")) or real(*a, **k)
    )
    (measured,) = tasks.slice_params(run, 0, 1)
    expected = normalization_params(image[None], NormalizationConfig())
    assert np.array_equal(measured.offset, expected.offset)
    assert np.array_equal(measured.scale, expected.scale)
    assert reads == [2]  # 1.95 Mpx > 2**20 samples: every 2nd pixel in Y and X, as the core does


def test_core_never_imports_dask_distributed():
    import subprocess
    import sys

    code = (
        "import sys, napari_unet.core.inference.prediction, napari_unet.core.postprocess.labels, "
        "napari_unet.core.io.zarr_io, napari_unet.cli.predict; "
        "print('distributed' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_labels_in_image_on_dask_match_the_single_process_path(
    client, loaded, tmp_path, monkeypatch
):
    if not _has_ome_zarr():
        pytest.skip("ome-zarr is not installed (labels inside an image need it)")
    import zarr

    image = _volume(tmp_path / "vol.zarr", (64, 64), "ZYX", seeds=range(2))
    job = _job(loaded, tmp_path / "out", labels="semantic", block=(1, 32, 64))
    reference = _single(job, image)
    job.args.labels_in_image = True
    monkeypatch.setattr("napari_unet.cli.predict_dask._client", lambda _: client)
    predict_dask(job, image, "vol", _Bar())
    assert not (tmp_path / "out" / "vol_labels.zarr").exists()
    [name] = zarr.open_group(str(image / "labels"), mode="r").attrs["labels"]
    inside = zarr.open_group(str(image / "labels" / name), mode="r")
    assert np.array_equal(inside["0"][...], reference)
    assert np.array_equal(inside["1"][...], reference[:, ::2, ::2])
    assert inside.attrs["image-label"]["source"] == {"image": "../../"}
