"""Resume of a 3-D model's streamed prediction (issue 20): a run interrupted after some blocks
keeps them; the same command run again predicts only the rest, with the uninterrupted result."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zarr")

from napari_unet.core.checkpoint.format import save_checkpoint
from napari_unet.core.errors import UserInputError
from napari_unet.core.io.zarr_io import open_zarr
from napari_unet.distributed import volume_run
from tests.test_cli_predict_3d import blobs, threshold_net
from tests.test_predict_volume_stream import _noise, _predict, _random_net, _same_objects, _zarr

BLOCK = ("--dask-block", "4,16,16")  # 3 x 3 x 3 = 27 blocks
REAL = volume_run.predict_volume_block


def counting(monkeypatch, fail_at=None):
    """Count the blocks predicted (``predict_volume_block`` calls); fail at call ``fail_at``."""
    real, calls = REAL, []

    def wrapped(*args, **kwargs):
        calls.append(args[1].key)
        if len(calls) == fail_at:
            raise UserInputError("the disk is full; free some space and run again.")
        return real(*args, **kwargs)

    monkeypatch.setattr(volume_run, "predict_volume_block", wrapped)
    return calls


def read(path):
    return np.asarray(open_zarr(path).array[...])


@pytest.mark.parametrize("labels", ["instances", "semantic"])
def test_an_interrupted_run_resumes_and_equals_an_uninterrupted_one(
    tmp_path, monkeypatch, capsys, labels
):
    if labels == "instances":
        model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
        image = blobs()[0]
    else:
        model = save_checkpoint(tmp_path / "r.pt", _random_net(), task="semantic")
        image = _noise()
    store = _zarr(tmp_path / "vol.zarr", image)
    extra = ("--labels", labels, "--output", "both", *BLOCK)
    assert _predict(tmp_path / "clean", model, store, *extra) == 0
    out = tmp_path / "cut" / "out"

    calls = counting(monkeypatch, fail_at=11)
    assert _predict(tmp_path / "cut", model, store, *extra) == 1
    assert "disk is full" in capsys.readouterr().err
    assert (out / "vol.dask-blocks" / "plan.json").is_file()
    assert len(list((out / "vol.dask-blocks" / "predicted").glob("*.npz"))) == 10

    calls = counting(monkeypatch)
    assert _predict(tmp_path / "cut", model, store, *extra) == 0
    assert len(calls) == 27 - 10  # only the blocks the first run did not finish
    assert "10 resumed" in capsys.readouterr().out
    assert not (out / "vol.dask-blocks").exists()
    clean = tmp_path / "clean" / "out"
    if labels == "instances":
        _same_objects(read(out / "vol_labels.zarr"), read(clean / "vol_labels.zarr"))
        assert read(out / "vol_labels.zarr").max() == 2
    else:
        np.testing.assert_array_equal(
            read(out / "vol_labels.zarr"), read(clean / "vol_labels.zarr")
        )
    np.testing.assert_array_equal(
        read(out / "vol_probabilities.zarr"), read(clean / "vol_probabilities.zarr")
    )
    calls.clear()
    assert _predict(tmp_path / "cut", model, store, *extra) == 0
    assert not calls and "already complete" in capsys.readouterr().out


def test_resuming_with_other_settings_is_one_sentence(tmp_path, monkeypatch, capsys):
    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    store = _zarr(tmp_path / "vol.zarr", blobs()[0])
    counting(monkeypatch, fail_at=5)
    assert _predict(tmp_path, model, store, "--labels", "instances", *BLOCK) == 1
    capsys.readouterr()
    counting(monkeypatch)
    assert _predict(tmp_path, model, store, "--labels", "semantic", *BLOCK) == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "unfinished run with other settings" in failed[0]
    assert (tmp_path / "out" / "vol.dask-blocks" / "plan.json").is_file()  # kept for a resume


def test_a_dask_run_resumes_the_blocks_a_local_run_finished(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    model = save_checkpoint(tmp_path / "t.pt", threshold_net(), task="semantic")
    image = blobs()[0]
    store = _zarr(tmp_path / "vol.zarr", image)
    extra = ("--labels", "instances", *BLOCK)
    assert _predict(tmp_path / "clean", model, store, *extra) == 0
    counting(monkeypatch, fail_at=20)
    assert _predict(tmp_path / "cut", model, store, *extra) == 1
    calls = counting(monkeypatch)
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
        silence_logs=40,
    )  # fmt: skip
    client = distributed.Client(cluster)
    try:
        monkeypatch.setattr("napari_unet.cli.predict_dask._client", lambda _: client)
        assert _predict(tmp_path / "cut", model, store, *extra, "--dask", "local:1") == 0
    finally:
        client.close()
        cluster.close()
    assert len(calls) == 27 - 19
    out, clean = tmp_path / "cut" / "out", tmp_path / "clean" / "out"
    _same_objects(read(out / "vol_labels.zarr"), read(clean / "vol_labels.zarr"))
