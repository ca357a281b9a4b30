"""Whether the U-Net border weights emphasise gaps or only weigh the background (issue 17).

The U-Net paper's border term ``w0 · exp(−(d1 + d2)² / 2σ²)`` (``core.training.weightmap``)
makes the thin background between two touching cells count up to ``w0`` times more, so the net
learns to keep them apart. That is an emphasis while such gaps are a small part of the
background: 0.2-5.5 % of it (term above 1) in the shared nuclei sets. Where objects tile the
image and the background *is* the gaps between them (EM of tissue: cells separated by
membranes, 80 % of the background), the term weighs the whole background ~4 times instead, and
a net trained for minutes predicts thick membranes: on ISBI 2012 scored as cell instances
(K = 3, 10 CPU-minutes, session 20) turning it off raised AP@0.5 and foreground IoU and halved
the Rand error (docs/learning_ablation.md).

:func:`gap_share` measures that share on the corrected data (instance labels), the fingerprint
reports it, and :func:`with_gap_rule` turns the term off when it exceeds :data:`GAP_SHARE_MAX`
unless the targets set it explicitly. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["GAP_SHARE_MAX", "gap_note", "gap_share", "gaps_dominate", "with_gap_rule"]

#: Above this share of the annotated background lying in gaps between two objects, the border
#: term is a background weight, not an emphasis: it is turned off.
GAP_SHARE_MAX = 0.5
#: A background pixel is "in a gap" where the border term exceeds this (d1 + d2 < 10.7 px at the
#: paper's w0 = 10, sigma = 5).
GAP_TERM = 1.0
#: Images scanned (enough to tell; the border term costs a distance transform per object).
MAX_SCANNED = 8


def gap_share(
    items: Sequence[Any], *, ignore_value: int | None = None, w0: float = 10.0, sigma: float = 5.0
) -> float | None:
    """The share of annotated background pixels whose border term exceeds :data:`GAP_TERM`.

    Args:
        items: training items with instance ``labels`` (Y, X) and annotated ``mask`` (Y, X);
            volumes are skipped (at most :data:`MAX_SCANNED` items scanned); an image with
            fewer than two objects counts its background, none of it in gaps.
        ignore_value: a label value that marks unannotated pixels.

    Returns:
        A share in [0, 1], or None when no scanned image has annotated background.
    """
    from napari_unet.core.training.weightmap import border_term

    background = in_gaps = 0
    for item in list(items)[:MAX_SCANNED]:
        labels = np.asarray(item.labels)
        if labels.ndim != 2:
            continue
        mask = np.asarray(item.mask, bool)
        if ignore_value is not None:
            mask = mask & (labels != ignore_value)
            labels = np.where(labels == ignore_value, 0, labels)
        empty = mask & (labels == 0)
        if not empty.any():
            continue
        term = border_term(labels.astype(np.int64), w0=w0, sigma=sigma)
        background += int(np.count_nonzero(empty))
        in_gaps += int(np.count_nonzero(term[empty] > GAP_TERM))
    return in_gaps / background if background else None


def gaps_dominate(share: float | None) -> bool:
    """Whether more than :data:`GAP_SHARE_MAX` of the background lies in gaps (objects tile
    the image); False when unknown (None)."""
    return share is not None and share > GAP_SHARE_MAX


def gap_note(share: float | None) -> str:
    """The data line's note when the border term is off (else "")."""
    if not gaps_dominate(share):
        return ""
    return (
        f"border weights off: {share:.0%} of the background lies between two objects, where "
        "they would only weigh the background"
    )


def with_gap_rule(targets: Any, share: float | None) -> Any:
    """``targets`` (a ``TargetConfig``) with the border term off when the gaps dominate the
    background (``share``, the fingerprint's ``gap_share``: None for other than instance labels,
    above :data:`GAP_SHARE_MAX`) and ``border_weights`` is left to auto (None)."""
    if targets.border_weights is not None or not gaps_dominate(share):
        return targets
    return targets.replace(border_weights=False)
