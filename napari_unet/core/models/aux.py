"""The optional auxiliary output of an instance model: a normalised distance map (issue 17).

A U-Net built with ``aux="distance"`` (``train --task instances --aux distance``) has a second
1x1 head on its last decoder features. It learns, for every foreground pixel, the distance to its
object's boundary divided by the largest such distance in the object (1 at the centre, near 0 at
the rim; StarDist/DCAN-style), next to the usual background/interior/boundary classes. The model
config (``model_config["aux"]`` in the checkpoint) says a model has it; older checkpoints have no
key and are built without it.

``model(x)`` returns the class logits only (export, uncertainty, GUI probabilities keep their
meaning); :func:`emitting_aux` makes it append the raw distance channel for the prediction that
feeds the distance-seeded watershed (:mod:`napari_unet.core.postprocess.blocks`), and training
calls ``forward_with_aux``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["AUX_CHOICES", "emitting_aux", "has_distance_aux"]

#: What ``UNetConfig.aux`` may be.
AUX_CHOICES = ("none", "distance")


def has_distance_aux(model: Any) -> bool:
    """Whether ``model`` (any module) has the distance head."""
    config = getattr(model, "config", None)
    return isinstance(config, dict) and config.get("aux") == "distance"


@contextlib.contextmanager
def emitting_aux(model: Any, enabled: bool = True) -> Iterator[bool]:
    """While active, ``model(x)`` returns ``K + 1`` channels (classes, then the distance logit)
    and ``model.out_channels`` says so; yields whether it does (False: no head or not enabled)."""
    if not (enabled and has_distance_aux(model)):
        yield False
        return
    old = model.emit_aux, model.out_channels
    model.emit_aux, model.out_channels = True, old[1] + 1
    try:
        yield True
    finally:
        model.emit_aux, model.out_channels = old
