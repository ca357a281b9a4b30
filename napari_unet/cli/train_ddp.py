"""``train --nproc N`` and ``torchrun ... -m napari_unet train``: data-parallel training.

``--nproc N`` (N > 1) starts N processes on this machine (spawned, like ``torchrun
--nproc-per-node N``) that each run ``train`` as one rank of a torch ``DistributedDataParallel``
run (:mod:`napari_unet.core.training.distributed_loop`); under ``torchrun`` the ranks come from its
environment variables and ``--nproc`` is not needed. Every rank reads the data and builds the
same model; rank 0 does everything a one-process ``train`` does (progress, history, checkpoints,
the printed result), the others train in step with it and write nothing. When one process fails,
the others are stopped and the command ends with that process's one-sentence message.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import socket
from multiprocessing.connection import wait
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds the other processes get to end by themselves after one failed or on Ctrl-C.
GRACE_S = 10.0


def _rank_info() -> Any:
    from napari_unet.core.training.distributed import rank_from_env

    return rank_from_env()


def rank() -> int:
    """This process's rank (0 outside a distributed run)."""
    info = _rank_info()
    return 0 if info is None else info.rank


def launch_or_join(args: argparse.Namespace) -> int | None:
    """Run ``--nproc N`` ranks and return the exit status, or None: train in this process.

    None for a plain run (``--nproc 1``, the default) and for a process that already is a rank
    (``torchrun``, or one that ``--nproc`` started): ranks other than 0 then log errors only.
    """
    info = _rank_info()
    nproc = getattr(args, "nproc", 1) or 1
    if info is None:
        return _launch(args, nproc) if nproc > 1 else None
    if info.rank > 0:
        logging.disable(logging.WARNING)  # rank 0 speaks for the run
    elif nproc > 1 and nproc != info.world_size:
        logger.warning(
            "--nproc %d is ignored under torchrun, which started %d processes.",
            nproc,
            info.world_size,
        )
    return None


def training_events(
    model_or_checkpoint: Any, items: list, config: Any, *, resume_from: Any = None
) -> Any:
    """The training generator: :func:`iter_train`, or this rank's part of a distributed run."""
    info = _rank_info()
    if info is None:
        from napari_unet.core.training.loop import iter_train

        return iter_train(model_or_checkpoint, items, config, resume_from=resume_from)
    from napari_unet.core.training.distributed_loop import iter_train_distributed

    return iter_train_distributed(model_or_checkpoint, items, config, info, resume_from=resume_from)


def follow(model_or_checkpoint: Any, items: list, config: Any, *, resume_from: Any = None) -> int:
    """Train as a rank other than 0: in step with rank 0, writing nothing; returns 0."""
    from napari_unet.core.generators import run_to_end

    events = training_events(model_or_checkpoint, items, config, resume_from=resume_from)
    run_to_end(events)
    return 0


def _free_port() -> int:
    """A TCP port free on this machine now (for the ranks to meet on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(args: argparse.Namespace, nproc: int) -> int:
    """Start ``nproc`` spawned ranks, wait for them, stop them all when one fails.

    Raises:
        UserInputError: a rank failed (its message, naming the process) or was killed.
        KeyboardInterrupt: Ctrl-C (rank 0 keeps its ``latest.pt``, as a one-process run).
    """
    from napari_unet.cli import verbosity

    context = multiprocessing.get_context("spawn")
    pipes = [context.Pipe(duplex=False) for _ in range(nproc)]  # no semaphore to leak on a kill
    port = _free_port()
    threads = args.threads or max(1, (os.cpu_count() or 1) // nproc)
    rank_args = argparse.Namespace(**{**vars(args), "nproc": 1, "threads": threads})
    processes = [
        context.Process(
            target=_rank_main,
            args=(rank_args, r, nproc, port, pipes[r][1], verbosity(args)),
            name=f"napari-unet-train-rank{r}",
        )
        for r in range(nproc)
    ]
    logger.info("starting %d training processes (%d torch threads each)", nproc, threads)
    for process in processes:
        process.start()
    try:
        failed = _wait_all(processes)
    except KeyboardInterrupt:
        _stop(processes)
        raise
    if failed is None:
        return 0
    _stop(processes)
    return _report(failed, processes, [reader for reader, _ in pipes], nproc)


def _wait_all(processes: list) -> Any:
    """Wait until every process ended, or one ended badly (returned)."""
    running = list(processes)
    while running:
        wait([p.sentinel for p in running])
        for process in [p for p in running if not p.is_alive()]:
            process.join()
            running.remove(process)
            if process.exitcode != 0:
                return process
    return None


def _stop(processes: list) -> None:
    """Let the processes end by themselves for :data:`GRACE_S`, then terminate the rest."""
    for process in processes:
        process.join(GRACE_S if process.is_alive() else 0)
        if process.is_alive():
            process.terminate()
            process.join(GRACE_S)


def _report(failed: Any, processes: list, readers: list, nproc: int) -> int:
    """Raise the one sentence for a failed run: the root cause, not a rank that lost a peer."""
    from napari_unet.core.errors import UserInputError

    sent = [reader.recv() for reader in readers if reader.poll()]  # (rank, message, lost_peer)
    causes = [m for m in sent if not m[2]]
    number = processes.index(failed)
    if not causes and failed.exitcode < 0:  # killed by a signal: it could say nothing
        raise UserInputError(
            f"training process {number} of {nproc} was killed (signal {-failed.exitcode}; often "
            f"out of memory) and all {nproc} processes were stopped; use a smaller --patch or "
            "--batch-size, or fewer --nproc."
        )
    if not causes and any(p.exitcode == 130 for p in processes):
        raise KeyboardInterrupt
    if causes or sent:
        rank_, message, _ = (causes or sent)[0]
        raise UserInputError(
            f"{message.rstrip('.')} (training process {rank_} of {nproc}; all {nproc} "
            "processes were stopped)."
        )
    raise UserInputError(
        f"training process {number} of {nproc} failed (exit status {failed.exitcode}; its "
        f"error is above) and all {nproc} processes were stopped."
    )


def _rank_main(
    args: argparse.Namespace, rank_: int, nproc: int, port: int, sender: Any, level: int
) -> None:
    # sender: this rank's end of a pipe; it sends at most one (rank, sentence, lost_peer)
    """A spawned rank: ``train`` with torchrun's environment; exits 0, 2 (error) or 130."""
    import sys

    from napari_unet.cli._progress import logging_for
    from napari_unet.core.errors import UserInputError, describe_os_error
    from napari_unet.core.training.distributed import PeerLostError

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank_),
        LOCAL_RANK=str(rank_),
        WORLD_SIZE=str(nproc),
        LOCAL_WORLD_SIZE=str(nproc),
    )
    status = 0
    with logging_for(level if rank_ == 0 else -1):
        try:
            status = int(args.run(args) or 0)
        except UserInputError as err:
            sender.send((rank_, " ".join(str(err).split()), isinstance(err, PeerLostError)))
            status = 2
        except OSError as err:
            sender.send((rank_, describe_os_error(err), False))
            status = 2
        except MemoryError:
            sender.send((rank_, "not enough memory; use a smaller --patch or --batch-size", False))
            status = 2
        except KeyboardInterrupt:
            status = 130
    sys.exit(status)
