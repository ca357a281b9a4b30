"""One model per worker process: loaded on the first block, reused by every later block.

A module-level cache lives as long as the worker process, so a worker loads each checkpoint once
(key: checkpoint path, its modification time and size, the device), whatever the number of
blocks it runs; a restarted worker (after a crash) loads it again. At most
:data:`MAX_MODELS` models are kept (least recently used goes first).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

MAX_MODELS = 2

_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple, CachedModel] = OrderedDict()
_LOADS: list[tuple[str, str]] = []


@dataclass(frozen=True, eq=False)
class CachedModel:
    """A loaded checkpoint and its inference network on ``device``."""

    loaded: Any  # core.checkpoint.format.LoadedModel
    net: Any  # fused inference copy on ``device``
    device: Any  # torch.device


def _key(checkpoint: str, device: str, channels_last: bool) -> tuple:
    stat = os.stat(checkpoint)
    return (os.path.realpath(checkpoint), stat.st_mtime_ns, stat.st_size, device, channels_last)


def get_model(checkpoint: str, device: str = "auto", *, channels_last: bool = True) -> CachedModel:
    """The cached model for ``checkpoint`` on ``device`` (loaded on first use in this process)."""
    import torch

    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.core.device import get_device
    from napari_unet.core.models.fuse import fuse_for_inference

    key = _key(checkpoint, device, channels_last)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
            return cached
        torch_device = get_device(device)
        loaded = load_checkpoint(checkpoint)
        net = fuse_for_inference(loaded.model).to(torch_device)
        if channels_last:  # 5-D weights of a 3-D net take the 3-D format
            volumetric = getattr(loaded.model, "spatial_dims", 2) == 3
            net.to(memory_format=torch.channels_last_3d if volumetric else torch.channels_last)
        cached = CachedModel(loaded=loaded, net=net, device=torch_device)
        _CACHE[key] = cached
        _LOADS.append((checkpoint, str(torch_device)))
        while len(_CACHE) > MAX_MODELS:
            _CACHE.popitem(last=False)
        logger.info("worker %d loaded %s on %s", os.getpid(), checkpoint, torch_device)
        return cached


def load_count() -> int:
    """How many times this process loaded a model (tests: once per worker)."""
    return len(_LOADS)


def clear() -> None:
    """Forget every cached model."""
    with _LOCK:
        _CACHE.clear()
