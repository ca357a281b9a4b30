"""Writer process for ``test_session_crash.py``: saves deterministic content until killed.

Usage: ``python session_crash_writer.py SESSION_FOLDER FIRST_ITERATION``. Iteration ``i`` saves
slice 0 (labels filled with ``i``, reviewed all/half by parity, a snapshot filled with ``i``
every third iteration), then slice 1 (labels ``i``), then every fifth iteration registers a model
version ``it<i>`` whose file holds ``CHECKPOINT_BYTES``; it prints ``i`` once all is done.
"""

from __future__ import annotations

import sys

import numpy as np

from napari_unet.core.atomic import atomic_write_bytes
from napari_unet.session import Session

SHAPE = (96, 96)
CHECKPOINT_BYTES = b"checkpoint" * 4000


def reviewed_for(iteration: int) -> np.ndarray:
    """All reviewed on odd iterations, the top half on even ones."""
    reviewed = np.zeros(SHAPE, dtype=bool)
    reviewed[: SHAPE[0] if iteration % 2 else SHAPE[0] // 2] = True
    return reviewed


def check_checkpoint(path) -> None:
    if path.read_bytes() != CHECKPOINT_BYTES:
        raise ValueError(f"{path} is truncated")


def main(folder: str, first: int) -> None:
    session = Session.open(folder)
    image_id = session.images()[0].id
    print("ready", flush=True)
    iteration = first
    while True:
        labels = np.full(SHAPE, iteration, dtype=np.uint32)
        snapshot = labels if iteration % 3 == 0 else None
        session.save_slice(
            image_id,
            0,
            labels=labels,
            reviewed=reviewed_for(iteration),
            snapshot=snapshot,
            model_version=f"it{iteration}",
        )
        session.save_slice(image_id, 1, labels=labels)
        if iteration % 5 == 0:
            path = session.new_version_path()
            atomic_write_bytes(path, CHECKPOINT_BYTES)
            session.add_version(path, name=f"it{iteration}", validate=check_checkpoint)
        print(iteration, flush=True)
        iteration += 1


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
