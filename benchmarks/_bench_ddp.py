"""``bench_train.py --ddp``: training steps/s with 1 process against 2 DDP processes, same run.

Every configuration runs in fresh spawned processes on the same machine, interleaved (1, 2, 1,
2, ...) so that load from elsewhere hits both alike; the figure is the median of the repeats:

- ``one``: :func:`iter_train` in one process with ``T`` torch threads (``T`` = CPU cores);
- ``one_thread``: the same with 1 thread (what one of the two DDP processes has);
- ``two``: :func:`iter_train_distributed` in 2 processes (gloo on the CPU) with ``T / 2``
  threads each, so both use the same cores. Each process trains on the same per-process batch,
  so a DDP step trains on twice the patches.

Steps/s and patches/s are timed between step events after the warm-up steps, on rank 0.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import statistics
import tempfile
import time
from typing import Any

#: Per mode: timed steps, warm-up steps, model depth/base, patch side, image side, repeats.
DDP_MODES: dict[str, dict[str, Any]] = {
    "full": dict(steps=12, warmup=2, depth=4, base=32, patch=256, side=1024, repeats=3),
    "quick": dict(steps=6, warmup=2, depth=3, base=16, patch=128, side=512, repeats=2),
    "smoke": dict(steps=2, warmup=1, depth=2, base=4, patch=32, side=128, repeats=1),
}
BATCH = 4


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank(mode: dict, rank: int, world: int, port: int, threads: int, sender: Any) -> None:
    """Train ``mode`` as ``rank`` of ``world`` (1: a plain run); rank 0 sends its timing."""
    from bench_train import build_model, make_data

    from napari_unet.core.training.config import StepEvent, TrainConfig
    from napari_unet.core.training.items import TrainingItem

    image, labels = make_data(mode["side"])
    item = TrainingItem(image=image, labels=(labels > 0).astype("uint8"), name="bench")
    steps, warmup = mode["steps"], mode["warmup"]
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as folder:
        config = TrainConfig(task="semantic", steps=steps + warmup, batch_size=BATCH,
                             patch_shape=(mode["patch"],) * 2, device="cpu", val_fraction=0.0,
                             val_every=10_000, num_threads=threads,
                             checkpoint_dir=folder)  # fmt: skip
        model = build_model(mode)
        if world == 1:
            from napari_unet.core.training.loop import iter_train

            events = iter_train(model, [item], config)
        else:
            from napari_unet.core.training.distributed import RankInfo
            from napari_unet.core.training.distributed_loop import iter_train_distributed

            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            events = iter_train_distributed(model, [item], config, RankInfo(rank, world))
        stamps = {e.step: time.perf_counter() for e in events if isinstance(e, StepEvent)}
    if rank == 0:
        seconds = stamps[steps + warmup] - stamps[warmup]
        sender.send(steps / seconds)


def time_world(mode: dict, world: int, threads: int) -> float:
    """Steps/s of rank 0 with ``world`` processes of ``threads`` threads each."""
    context = multiprocessing.get_context("spawn")
    reader, sender = context.Pipe(duplex=False)
    port = _free_port()
    ranks = [
        context.Process(target=_rank, args=(mode, r, world, port, threads, sender))
        for r in range(world)
    ]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join()
    if any(p.exitcode != 0 for p in ranks):
        raise RuntimeError(f"a benchmark process failed: {[p.exitcode for p in ranks]}")
    return float(reader.recv())


def run_ddp(mode_name: str) -> dict[str, Any]:
    """Steps/s and patches/s of 1 and 2 processes, interleaved repeats; a flat dict."""
    import torch
    from _bench_common import machine_info

    mode = DDP_MODES[mode_name]
    cores = max(1, os.cpu_count() or 1)
    one, one_thread, two = [], [], []
    for _ in range(mode["repeats"]):
        one.append(time_world(mode, 1, cores))
        one_thread.append(time_world(mode, 1, 1))
        two.append(time_world(mode, 2, max(1, cores // 2)))
    steps_1, steps_2 = statistics.median(one), statistics.median(two)
    steps_1t = statistics.median(one_thread)
    return {
        "steps_per_s_1proc_1thread": steps_1t,
        "steps_ratio_2_vs_1_1thread": steps_2 / steps_1t,
        "steps_per_s_1proc": steps_1,
        "steps_per_s_2proc": steps_2,
        "steps_ratio_2_vs_1": steps_2 / steps_1,
        "patches_per_s_1proc": steps_1 * BATCH,
        "patches_per_s_2proc": steps_2 * BATCH * 2,
        "patches_ratio_2_vs_1": 2 * steps_2 / steps_1,
        "samples_1proc": one,
        "samples_2proc": two,
        "samples_1proc_1thread": one_thread,
        "threads_1proc": cores,
        "threads_per_process_2proc": max(1, cores // 2),
        "batch_per_process": BATCH,
        "patch": mode["patch"],
        "model": f"unet depth {mode['depth']} base {mode['base']}",
        "timed_steps": mode["steps"],
        "mode": mode_name,
        **machine_info(torch.device("cpu")),
    }
