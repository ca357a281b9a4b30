"""Session images being stored in a worker, which a flush waits for.

The session panel stores the image of a labels stack added to an open session in a background
job (a volume's copy takes a second) and links the layer when the job reports back. Until then
the layer is not autosaved, so a flush (the window closing, a session switch) right after the
layer was added would save nothing of it, and closing would then drop its labels.
:class:`PendingStores` lets the flush wait (bounded) for those stores and link the layers itself.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["PendingStores"]


@dataclasses.dataclass(eq=False)
class _Store:
    labels: Any
    session: Any
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    image_id: str | None = None


class PendingStores:
    """The stores running in workers, by labels layer.

    Args:
        wait_s: how long a flush waits for one store.
    """

    def __init__(self, wait_s: float = 60.0) -> None:
        self.wait_s = wait_s
        self._stores: list[_Store] = []

    def add(self, labels: Any, session: Any) -> Callable[..., str]:
        """Record a store of ``labels`` into ``session``; the function the worker runs as
        ``run(store_image, *args)`` (it returns the image id and marks the store done)."""
        store = _Store(labels, session)
        self._stores.append(store)

        def run(store_image: Callable[..., str], *args: Any) -> str:
            try:
                store.image_id = store_image(*args)
                return store.image_id
            finally:
                store.done.set()

        return run

    def forget(self, labels: Any) -> bool:
        """The store of ``labels`` reported back (main thread); True."""
        self._stores = [s for s in self._stores if s.labels is not labels]
        return True

    def finished(self, session: Any) -> list[tuple[Any, str]]:
        """Wait for every store into ``session``; ``(labels, image id)`` of those that stored
        their image (forgotten here; failed or timed-out ones are dropped or kept)."""
        out = []
        for store in [s for s in self._stores if s.session is session]:
            if not store.done.wait(self.wait_s):
                continue
            self.forget(store.labels)
            if store.image_id is not None:
                out.append((store.labels, store.image_id))
        return out
