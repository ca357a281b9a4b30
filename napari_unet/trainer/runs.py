"""The trainer's run folders ``runs/<run id>/`` of a session, each locked while its run lives
(the OS frees the lock when the process dies), so that opening the session reclaims finished
runs but never a running one or the one being resumed.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

__all__ = ["RUNS_FOLDER", "hold_resume_run", "new_run_dir"]

logger = logging.getLogger(__name__)

RUNS_FOLDER = "runs"


def new_run_dir(root: Path, locks: list[int]) -> Path:
    """Create and lock ``root/runs/<time>-<random>``; its lock is appended to ``locks``."""
    from napari_unet.session.store import hold_run_lock, write_error

    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    folder = root / RUNS_FOLDER / run_id
    try:
        folder.mkdir(parents=True, exist_ok=True)
        locks.append(hold_run_lock(folder))
    except OSError as err:
        raise write_error(root, err) from None
    return folder


def hold_resume_run(
    session: str | os.PathLike, resume_from: str | os.PathLike | None, locks: list[int]
) -> None:
    """Keep the run folder we resume from (inside this session's ``runs/``) from reclaim."""
    from napari_unet.session.store import hold_run_lock

    if resume_from is None:
        return
    folder = Path(resume_from).expanduser().absolute().parent
    runs = Path(session).expanduser().absolute() / RUNS_FOLDER
    if folder.parent == runs and folder.is_dir():
        try:
            locks.append(hold_run_lock(folder))
        except OSError as err:
            logger.debug("cannot lock %s: %s", folder, err)
