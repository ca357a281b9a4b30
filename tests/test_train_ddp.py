"""Issue 19: data-parallel training (``train --nproc N``, ``torchrun``) on 2 CPU processes."""

from __future__ import annotations

import csv
import multiprocessing
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ddp_rank_helper import train_rank

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import load_checkpoint
from napari_unet.core.training.distributed import RankInfo, rank_from_env, reseed_rank

DSB = ["000.png", "002.png", "003.png"]  # 27, 12, 66 nuclei


def _free_port() -> int:
    from napari_unet.cli.train_ddp import _free_port

    return _free_port()


def _copy_dsb(shared_data: Path, folder: Path) -> None:
    for kind in ("images", "labels"):
        (folder / kind).mkdir(parents=True)
        for name in DSB:
            shutil.copy(shared_data / "dsb2018_fluo" / kind / name, folder / kind / name)


def _argv(folder: Path, out: str, *extra: str) -> list[str]:
    return ["train", "--images", str(folder / "images"), "--labels", str(folder / "labels"),
            "--task", "instances", "--model", "unet", "--patch", "48", "--batch-size", "2",
            "--device", "cpu", "--threads", "1", "--log-every", "1", "--out", str(folder / out),
            *extra]  # fmt: skip


def _losses(history: Path) -> np.ndarray:
    with history.open() as file:
        rows = [row for row in csv.DictReader(file) if row["train_loss"]]
    return np.array([float(row["train_loss"]) for row in rows])


def test_rank_from_env_reads_torchrun_variables():
    assert rank_from_env({}) is None
    assert rank_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None  # one process: a plain run
    info = rank_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert info == RankInfo(rank=1, world_size=2, local_rank=1)


def test_each_rank_draws_its_own_reproducible_patches():
    """Rank 0 keeps the one-process stream; rank 1's differs and is the same on every rerun."""
    from ddp_rank_helper import items

    from napari_unet.core.training.sampler import PatchSampler
    from napari_unet.core.training.state import targets_function
    from napari_unet.core.training.targets import TargetConfig

    def first_batch(rank: int) -> np.ndarray:
        targets = targets_function(TargetConfig(task="binary"), "binary", 1)
        sampler = PatchSampler(targets, items=items(), input_shape=(32, 32),
                               output_shape=(32, 32), task="binary", seed=0)  # fmt: skip
        reseed_rank(sampler, torch.Generator().manual_seed(0), 0, rank, step=0)
        return sampler.sample(4).image

    plain = PatchSampler(targets_function(TargetConfig(task="binary"), "binary", 1),
                         items=items(), input_shape=(32, 32), output_shape=(32, 32),
                         task="binary", seed=0).sample(4).image  # fmt: skip
    np.testing.assert_array_equal(first_batch(0), plain)
    assert not np.array_equal(first_batch(1), plain)
    np.testing.assert_array_equal(first_batch(1), first_batch(1))


def test_two_ranks_train_in_step_on_different_patches(tmp_path):
    """Both ranks run every step, draw other patches, and end with identical weights."""
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    ranks = [context.Process(target=train_rank, args=(r, 2, port, str(tmp_path))) for r in (0, 1)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(240)
    assert [p.exitcode for p in ranks] == [0, 0]
    zero, one = (np.load(tmp_path / f"rank{r}.npz") for r in (0, 1))
    assert int(zero["steps"]) == int(one["steps"]) == 4
    np.testing.assert_array_equal(zero["losses"], one["losses"])  # the mean over the ranks
    assert not np.array_equal(zero["first_batch"], one["first_batch"])
    weights = [k for k in zero.files if k not in ("steps", "losses", "first_batch")]
    for name in weights:
        np.testing.assert_array_equal(zero[name], one[name], err_msg=name)
    # only rank 0 wrote checkpoints, in the one-process format
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.pt", "latest.pt"]
    assert load_checkpoint(tmp_path / "run" / "best.pt").info.task == "binary"


def test_cli_nproc_2_on_real_nuclei_learns_like_one_process(shared_data, tmp_path, capfd):
    """3 DSB 2018 images, 16 steps: the 2-process loss falls like the 1-process one, and its
    checkpoint loads and predicts in a plain process."""
    _copy_dsb(shared_data, tmp_path)
    steps = ["--steps", "16", "--val-every", "8"]
    assert main(_argv(tmp_path, "one.pt", *steps)) == 0
    assert main(_argv(tmp_path, "two.pt", *steps, "--nproc", "2")) == 0
    printed = capfd.readouterr()
    assert printed.out.count("trained 16 steps") == 2, printed
    assert "Traceback" not in printed.err
    one, two = _losses(tmp_path / "one.history.csv"), _losses(tmp_path / "two.history.csv")
    assert len(one) == len(two) == 16
    for curve in (one, two):  # the same shape: falling from the first steps to the last
        assert curve[-5:].mean() < curve[:5].mean(), curve
    loaded = load_checkpoint(tmp_path / "two.pt", map_location="cpu")
    assert loaded.info.task == "instances" and loaded.training_state is None
    assert sorted(loaded.info.provenance) == sorted(
        load_checkpoint(tmp_path / "one.pt").info.provenance
    )
    assert main(["predict", str(tmp_path / "images" / DSB[0]), "--model",
                 str(tmp_path / "two.pt"), "--out", str(tmp_path / "pred"),
                 "--device", "cpu"]) == 0  # fmt: skip
    assert (tmp_path / "pred" / "000_labels.tif").is_file()


def test_cli_nproc_1_is_a_plain_run(shared_data, tmp_path):
    """``--nproc 1`` trains exactly as without the flag (bit-identical weights)."""
    _copy_dsb(shared_data, tmp_path)
    few = ["--steps", "2", "--patch", "32", "--val-fraction", "0"]
    assert main(_argv(tmp_path, "plain.pt", *few)) == 0
    assert main(_argv(tmp_path, "nproc1.pt", *few, "--nproc", "1")) == 0
    plain = load_checkpoint(tmp_path / "plain.pt").model.state_dict()
    nproc1 = load_checkpoint(tmp_path / "nproc1.pt").model.state_dict()
    for name, tensor in plain.items():
        assert torch.equal(tensor, nproc1[name]), name


def test_cli_a_killed_process_stops_all_with_one_sentence(shared_data, tmp_path):
    """SIGKILL one rank mid-run: the others stop, and the command ends with one line."""
    psutil = pytest.importorskip("psutil")
    _copy_dsb(shared_data, tmp_path)
    argv = _argv(tmp_path, "m.pt", "--steps", "100000", "--val-every", "100000", "--nproc", "2")
    command = subprocess.Popen(
        [sys.executable, "-m", "napari_unet", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    history = tmp_path / "m.history.csv"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (history.exists() and len(_losses(history)) > 1):
        time.sleep(0.5)
    ranks = [p for p in psutil.Process(command.pid).children()
             if "resource_tracker" not in " ".join(p.cmdline())]  # fmt: skip
    assert len(ranks) == 2, ranks
    max(ranks, key=lambda p: p.create_time()).kill()
    _, err = command.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert command.returncode == 2, err
    assert len(lines) == 1 and "was killed" in lines[0] and "all 2 processes" in lines[0], err
    assert "Traceback" not in err
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in ranks)


def test_more_cuda_processes_than_gpus_is_one_sentence(monkeypatch):
    from napari_unet.core.errors import DeviceError
    from napari_unet.core.training.distributed import rank_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert rank_device(torch.device("cpu"), RankInfo(1, 2, 1)) == torch.device("cpu")
    assert rank_device(torch.device("cuda"), RankInfo(0, 2, 0)) == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match="needs GPU 1 but this machine has 1"):
        rank_device(torch.device("cuda"), RankInfo(1, 2, 1))


def test_cli_minutes_budget_is_decided_by_rank_0(shared_data, tmp_path):
    """``--minutes`` with 2 processes: rank 0's clock ends the run on both, at the same step."""
    _copy_dsb(shared_data, tmp_path)
    argv = _argv(tmp_path, "m.pt", "--minutes", "0.1", "--val-every", "5", "--nproc", "2")
    done = subprocess.run(
        [sys.executable, "-m", "napari_unet", *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "steps (time); model (" in done.stdout, done.stdout
    steps = int(done.stdout.split("trained ")[1].split()[0])
    assert steps == len(_losses(tmp_path / "m.history.csv")) and steps >= 1
    latest = load_checkpoint(tmp_path / "m.training" / "latest.pt")
    assert latest.info.provenance["steps"] == latest.training_state["step"] == steps
