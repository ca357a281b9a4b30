"""The pieces of a save of :class:`~napari_unet._widgets.autosave.Autosave` (no Qt).

A :class:`Watch` is a labels layer linked to a session image and the fingerprints of what of it
was saved; a :class:`SaveJob` is one save (copies of the changed slices per watch) and its outcome.
A threaded save runs :func:`save_in_worker`; whoever claims the job first (the worker, or a
flush on the main thread when the pool has not started it yet) saves it, so none is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_unet.session.errors import SessionError

logger = logging.getLogger(__name__)

Fingerprint = tuple[int, int | None, int | None]
Updates = dict[int, tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]]


def crc(array: np.ndarray | None) -> int | None:
    if array is None:
        return None
    array = np.ascontiguousarray(array)
    return zlib.crc32(array.view(np.uint8).reshape(-1), zlib.crc32(array.dtype.str.encode()))


@dataclass(eq=False)
class Watch:
    """A labels layer linked to a session image, and what of it was saved."""

    layer: Any
    image_id: str
    suspect: set[int] = field(default_factory=set)
    saved: dict[int, Fingerprint] = field(default_factory=dict)
    seen: tuple = ()
    step: tuple = ()


@dataclass(eq=False)
class SaveJob:
    """One save: ``{watch: (updates, fingerprints)}`` plus its outcome."""

    batch: dict[Watch, tuple[Updates, dict[int, Fingerprint]]]
    nbytes: int
    session: Any = None
    error: BaseException | None = None
    seconds: float = 0.0
    handled: bool = False
    threaded: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    _claim: threading.Lock = field(default_factory=threading.Lock)

    def claim(self) -> bool:
        """True for the first caller only: it runs the save (the worker or a flush)."""
        return self._claim.acquire(blocking=False)


def run_save(job: SaveJob, session: Any) -> None:
    """Save ``job`` into ``session``; a session or disk error is kept in ``job.error``."""
    start = time.perf_counter()
    try:
        for watch, (updates, _) in job.batch.items():
            session.save_slices(watch.image_id, updates)
    except (SessionError, OSError) as err:
        job.error = err
    job.seconds = time.perf_counter() - start


def save_in_worker(job: SaveJob) -> SaveJob:
    """Run ``job`` in a worker unless a flush claimed it; every error is kept in the job."""
    if job.claim():
        try:
            run_save(job, job.session)
        except Exception as err:  # never lose the outcome: the slices stay dirty
            logger.exception("autosave failed")
            job.error = err
        finally:
            job.done.set()
    return job


def slices_or_none(value: Any) -> set[int] | None:
    if value is None:
        return None
    return {int(s) for s in value}
