"""The pieces of data-parallel training (torch ``DistributedDataParallel``) that a rank needs.

One training run is spread over ``world_size`` processes (ranks), each with its own copy of the
model; every step each rank draws its own patches (:func:`reseed_rank`: rank 0 keeps the seed of a
one-process run, the others draw from streams seeded by ``(seed, rank, step)``), the gradients are
averaged by DDP and every rank applies the same update, so the copies stay identical. Validation,
checkpoints and the operating-point tuning run on rank 0 only; what the other ranks must know of
them (the score, the stop decision, the clock) is broadcast from rank 0 (:meth:`RankGroup.share`).

The ranks find each other through the environment variables ``torchrun`` sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; :func:`rank_from_env`); gloo
is the backend on the CPU, NCCL on CUDA. The loop itself is
:mod:`napari_unet.core.training.distributed_loop`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from napari_unet.core.errors import DeviceError, UserInputError
from napari_unet.core.training.step import StepRunner

__all__ = [
    "DistributedStepRunner",
    "PeerLostError",
    "RankGroup",
    "RankInfo",
    "lost_peer",
    "rank_from_env",
    "rank_seed",
    "reseed_rank",
]

logger = logging.getLogger(__name__)


class PeerLostError(UserInputError):
    """Another rank stopped (failed, killed or interrupted), so this one cannot go on."""


@dataclasses.dataclass(frozen=True)
class RankInfo:
    """Where this process stands in a distributed run.

    Attributes:
        rank: 0 .. ``world_size - 1``; rank 0 validates and writes the checkpoints.
        world_size: number of processes training together (> 1).
        local_rank: index of this process on its machine (picks its GPU).
    """

    rank: int
    world_size: int
    local_rank: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(f"bad rank {self.rank} of {self.world_size} (local {self.local_rank})")


def rank_from_env(environ: Mapping[str, str] | None = None) -> RankInfo | None:
    """The :class:`RankInfo` of a process started by ``torchrun`` (or ``train --nproc``).

    Returns None outside a distributed launch, and for a world of one process (which trains
    exactly like a plain run).
    """
    environ = os.environ if environ is None else environ
    try:
        world_size = int(environ["WORLD_SIZE"])
        rank = int(environ["RANK"])
    except (KeyError, ValueError):
        return None
    if world_size <= 1:
        return None
    local_rank = int(environ.get("LOCAL_RANK", rank))
    return RankInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def rank_device(device: torch.device, info: RankInfo) -> torch.device:
    """``device`` for this rank: on CUDA, GPU ``local_rank`` (NCCL needs one GPU per process).

    Raises:
        DeviceError: more processes on this machine than GPUs.
    """
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if info.local_rank >= count:
        raise DeviceError(
            f"training process {info.rank} needs GPU {info.local_rank} but this machine has "
            f"{count}; start at most {count} process(es) per machine (--nproc, torchrun "
            "--nproc-per-node) or train with --device cpu."
        )
    return torch.device("cuda", info.local_rank)


class RankGroup:
    """The process group of one run: join, broadcast from rank 0, leave.

    Args:
        info: this process's rank.
        device: the training device of this rank (CUDA: NCCL, anything else: gloo).
    """

    def __init__(self, info: RankInfo, device: torch.device) -> None:
        self.info = info
        self.backend = "nccl" if device.type == "cuda" else "gloo"
        # NCCL collectives take tensors on the rank's GPU, gloo on the CPU
        self.device = device if self.backend == "nccl" else torch.device("cpu")

    @property
    def rank(self) -> int:
        return self.info.rank

    @property
    def world_size(self) -> int:
        return self.info.world_size

    def join(self) -> None:
        """Meet the other ranks (``env://``: ``MASTER_ADDR``, ``MASTER_PORT``); waits for all."""
        if self.backend == "nccl":
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            with translated_errors(self.info):
                dist.init_process_group(self.backend, rank=self.rank, world_size=self.world_size)
        logger.info(
            "training process %d of %d joined (%s)", self.rank, self.world_size, self.backend
        )

    def leave(self) -> None:
        """Destroy the process group (no collective: safe after a failure)."""
        if dist.is_initialized():
            dist.destroy_process_group()

    def share(self, values: Sequence[float]) -> list[float]:
        """``values`` as rank 0 has them, on every rank (float64: counts and clocks stay exact)."""
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        with translated_errors(self.info):
            dist.broadcast(tensor, src=0)
        return [float(v) for v in tensor.cpu()]


class translated_errors:  # noqa: N801 (used as a context manager, like contextlib's)
    """Turn a lost connection to another rank into one :class:`PeerLostError` sentence."""

    def __init__(self, info: RankInfo) -> None:
        self.info = info

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, _tb: Any) -> bool:
        if error is not None and lost_peer(error):
            logger.debug("collective failed on rank %d: %s", self.info.rank, error)
            raise PeerLostError(
                f"training process {self.info.rank} of {self.info.world_size} lost the other "
                "processes (one of them failed or was stopped); see its message, fix that and "
                "run again."
            ) from None
        return False


#: Words of the errors gloo and NCCL raise (as a plain ``RuntimeError`` from inside DDP's
#: backward) when another rank went away.
LOST_PEER_WORDS = (
    "connection closed by peer",
    "connection reset by peer",
    "broken pipe",
    "nccl communicator was aborted",
    "socket timeout",
)


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` says that another rank went away (not a bug of this one)."""
    if isinstance(error, (dist.DistBackendError, dist.DistNetworkError, dist.DistStoreError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(word in text for word in LOST_PEER_WORDS)


class _Forward(torch.nn.Module):
    """What DDP wraps: the net's ``forward``, every deep-supervision head, or the class logits
    and the distance head's output (``aux``: ``forward_with_aux``)."""

    def __init__(self, net: torch.nn.Module, heads: bool, aux: bool = False) -> None:
        super().__init__()
        self.net = net
        self.heads = heads
        self.aux = aux

    def forward(self, image: torch.Tensor) -> Any:
        if self.aux:
            return self.net.forward_with_aux(image)
        return self.net.forward_heads(image) if self.heads else self.net(image)


class DistributedStepRunner(StepRunner):
    """A :class:`StepRunner` whose forward/backward goes through ``DistributedDataParallel``.

    The loss it returns is the mean over the ranks (so every rank sees the same value and a
    NaN on one rank skips the update on all of them, keeping the copies identical).
    """

    def __init__(self, runner: StepRunner, group: RankGroup) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.__dict__.update(vars(runner))
        net = runner.model
        device_ids = [runner.device.index] if runner.device.type == "cuda" else None
        with translated_errors(group.info):  # DDP broadcasts rank 0's weights to every rank
            self.model = DistributedDataParallel(
                _Forward(net, runner.heads, runner.aux),
                device_ids=device_ids,
                # UNet++ without deep supervision leaves the other heads out of the graph
                find_unused_parameters=hasattr(net, "forward_heads"),
            )
        self.heads = False  # _Forward returns the heads itself
        # a distance head: _Forward returns (logits, distance), which step() unpacks (self.aux)
        self.group = group

    def forward(self, image: torch.Tensor) -> Any:
        """What :class:`_Forward` returns, under the configured autocast (DDP has no
        ``forward_with_aux``: the wrapper calls it)."""
        aux, self.aux = self.aux, False
        try:
            return super().forward(image)
        finally:
            self.aux = aux

    def loss_value(self, loss: torch.Tensor) -> float:
        """The mean of ``loss`` over the ranks."""
        total = loss.detach().float().reshape(1).clone()
        with translated_errors(self.group.info):
            dist.all_reduce(total)
        return float(total.item()) / self.group.world_size


def rank_seed(seed: int, rank: int, step: int) -> int:
    """The seed of rank ``rank``'s random streams from step ``step`` on."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def reseed_rank(sampler: Any, generator: torch.Generator, seed: int, rank: int, step: int) -> None:
    """Give rank ``rank`` its own patch and augmentation streams (rank 0 keeps its own).

    Rank 0's streams are those of a one-process run (or of the ``latest.pt`` it resumes);
    the others are reseeded from ``(seed, rank, step)``, so they draw other patches than rank
    0 and than each other, reproducibly.
    """
    if rank == 0:
        return
    value = rank_seed(seed, rank, step)
    sampler.rng = np.random.default_rng(value)
    generator.manual_seed(value)
    torch.manual_seed(value)
