"""The one cache of loaded models of a viewer (no Qt): predict, re-predict, compare, guidance.

A model is found again by its source (checkpoint path), the device its weights were loaded to
(the widgets' workers load to ``"cpu"``; prediction runs an inference copy on the chosen device,
so one loaded model serves every device) and the file's modification time, so a checkpoint
rewritten in place (a newer ``latest.pt``) is loaded afresh.
Jobs get the cached models on the main thread when they start and hand back what they loaded
when they return (:meth:`ModelCache.put`); at most :attr:`ModelCache.capacity` models are kept
(the least recently used goes first), as many as a comparison plus the active model need.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

Key = tuple[str, str, float]


def model_key(source: str, device: str = "cpu") -> Key:
    """``(source, device, mtime)``: mtime -1 when the file cannot be read (never matches)."""
    try:
        mtime = os.path.getmtime(source)
    except OSError:
        mtime = -1.0
    return str(source), str(device or "cpu"), mtime


class ModelCache:
    """Loaded models (``LoadedModel``) by :func:`model_key`.

    Args:
        capacity: how many models stay loaded.
    """

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = int(capacity)
        self._models: OrderedDict[Key, Any] = OrderedDict()

    def get(self, source: str, device: str = "cpu") -> Any:
        """The loaded model of ``source`` on ``device`` as the file is now, or None."""
        key = model_key(source, device)
        if key[2] < 0:
            return None
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
        return model

    def get_many(self, sources: tuple[str, ...] | list[str], device: str = "cpu") -> dict:
        """``{source: loaded model}`` for those of ``sources`` in the cache."""
        found = {s: self.get(s, device) for s in sources}
        return {s: m for s, m in found.items() if m is not None}

    def put(self, source: str, device: str, model: Any) -> None:
        """Keep ``model`` (loaded from ``source`` for ``device``); forget stale versions of it."""
        if model is None:
            return
        key = model_key(source, device)
        for old in [k for k in self._models if k[:2] == key[:2] and k != key]:
            del self._models[old]
        self._models[key] = model
        self._models.move_to_end(key)
        while len(self._models) > self.capacity:
            self._models.popitem(last=False)

    def put_many(self, models: dict, device: str = "cpu") -> None:
        """Keep every ``{source: loaded model}``."""
        for source, model in models.items():
            self.put(source, device, model)

    def clear(self) -> None:
        """Forget every model (their memory is freed once no job holds them)."""
        self._models.clear()

    def __len__(self) -> int:
        return len(self._models)


__all__ = ["ModelCache", "model_key"]
