"""Which slices a refresh with a new model version re-predicts (no Qt).

Protection is at the level of the user's work (:mod:`.protect`): every slice that holds a
prediction is refreshed, and the writer keeps the pixels and objects the user edited and the
reviewed regions. Only a slice with every pixel reviewed (in the labels layer's ``reviewed``
mask, :func:`napari_unet._widgets.layers.fully_reviewed`, or the session's status
``"reviewed"``) is left out. The slice on screen comes first (one run of its own), then the
others in one run; a huge slice refreshes only its visible region, so only the slice on screen
is refreshed then.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)

#: Session statuses that leave a whole slice out of a refresh (every pixel reviewed).
PROTECTED_STATUSES = ("reviewed",)


def session_protected(session: Any, image_id: str | None) -> set[int]:
    """Slices the session knows as wholly reviewed (empty without a session link)."""
    if session is None or not image_id:
        return set()
    try:
        statuses = session.statuses(image_id)
    except Exception as err:  # an image removed from the session: rely on the layer alone
        logger.debug("no session statuses for %s: %s", image_id, err)
        return set()
    return {s for s, status in enumerate(statuses) if status in PROTECTED_STATUSES}


def refresh_runs(
    current: int, predicted: Iterable[int], protected: set[int], *, huge: bool = False
) -> list[tuple[int, ...]]:
    """The slices to re-predict, as worker runs: ``[(current,), (others...)]``.

    Args:
        current: the slice on screen.
        predicted: slices that hold a prediction.
        protected: slices never to replace.
        huge: the slices are too big to refresh whole (only ``current`` is refreshed).
    """
    keep = {current, *predicted} - set(protected)
    first = [(current,)] if current in keep else []
    if huge:
        return first
    rest = tuple(s for s in sorted(keep) if s != current)
    return first + ([rest] if rest else [])


__all__ = ["PROTECTED_STATUSES", "refresh_runs", "session_protected"]
