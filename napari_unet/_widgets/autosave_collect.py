"""What an autosave tick saves: the changed slices of a watched labels layer (main thread, no Qt).

Moved out of :class:`~napari_unet._widgets.autosave.Autosave` (same behaviour): each candidate
slice's labels, reviewed mask and snapshot are fingerprinted (CRC-32) and compared with what was
last saved; only changed ones are copied for the save.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_unet._widgets import reviewed as rv
from napari_unet._widgets.autosave_jobs import Fingerprint, Updates, Watch, crc


def seen(layer: Any) -> tuple:
    """What identifies the layer's arrays: data, snapshot and the predicted slices."""
    tag = rv.plugin_meta(layer) or {}
    return id(layer.data), id(tag.get("snapshot")), tuple(tag.get("predicted") or ())


def fingerprint(layer: Any, s: int) -> Fingerprint:
    """CRC-32 of slice ``s``'s labels, reviewed mask and snapshot (None where absent)."""
    return (
        crc(rv.plane(np.asarray(layer.data), s)),
        crc(rv.reviewed_plane(layer, s)),
        crc(rv.snapshot_plane(layer, s)),
    )


def collect(watch: Watch) -> tuple[Updates, dict[int, Fingerprint]]:
    """Copies of the suspect slices of ``watch`` that changed since saved, and their prints."""
    layer = watch.layer
    n = rv.n_slices(tuple(layer.data.shape))
    now = seen(layer)
    if now != watch.seen:  # data replaced, or a prediction landed without an event
        if not watch.seen or now[0] != watch.seen[0]:
            watch.suspect |= set(range(n))
        watch.suspect |= {s for s in now[2] if 0 <= s < n}
        watch.seen = now
    updates: Updates = {}
    prints: dict[int, Fingerprint] = {}
    data = np.asarray(layer.data)
    for s in sorted(watch.suspect):
        new = fingerprint(layer, s)
        old = watch.saved.get(s)
        if new == old:
            continue
        labels = rv.plane(data, s)
        if old is None and new[1:] == (None, None) and not labels.any():
            continue  # never saved and still empty: nothing to keep
        old = old or (None, None, None)
        reviewed = rv.reviewed_plane(layer, s)
        snapshot = rv.snapshot_plane(layer, s)
        updates[s] = (
            labels.copy() if new[0] != old[0] else None,
            (reviewed.copy() if reviewed is not None else np.zeros(labels.shape, bool))
            if new[1] != old[1]
            else None,
            snapshot.copy() if new[2] != old[2] and snapshot is not None else None,
        )
        prints[s] = new
    watch.suspect.clear()
    return updates, prints
