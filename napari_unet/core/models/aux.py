"""The optional auxiliary output of an instance model: a normalised distance map (issue 17).

A U-Net built with ``aux="distance"`` (``train --task instances --aux distance``) has a second
1x1 head on its last decoder features. It learns, for every foreground pixel, the distance to its
object's boundary divided by the largest such distance in the object (1 at the centre, near 0 at
the rim; StarDist/DCAN-style), next to the usual background/interior/boundary classes. The model
config (``model_config["aux"]`` in the checkpoint) says a model has it; older checkpoints have no
key and are built without it.

``model(x)`` returns the class logits only (export, uncertainty, GUI probabilities keep their
meaning). :func:`labelling_net` is the one place that decides which network feeds the labels:
for post-processing with distance seeds (``PostprocessConfig.seeds == "distance"``, the default
of a checkpoint with the head) it is :func:`with_distance`, a view of the model whose output
appends the raw distance channel (the distance-seeded watershed of
:mod:`napari_unet.core.postprocess.blocks` reads it); training calls ``forward_with_aux``.

The view shares the model's weights and never changes the model itself, so predictions that
run at the same time on one cached model (GUI workers, the versions panel, the trainer's
comparison) cannot change each other's output.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = [
    "AUX_CHOICES",
    "classes_only",
    "has_distance_aux",
    "labelling_net",
    "wants_distance",
    "with_distance",
]

#: What ``UNetConfig.aux`` may be.
AUX_CHOICES = ("none", "distance")


def has_distance_aux(model: Any) -> bool:
    """Whether ``model`` (any module) has the distance head."""
    config = getattr(model, "config", None)
    return isinstance(config, dict) and config.get("aux") == "distance"


def with_distance(model: Any, enabled: bool = True) -> Any:
    """``model`` itself, or (a distance head and ``enabled``) a view of it whose ``forward``
    returns ``K + 1`` channels (classes, then the distance logit) and whose ``out_channels``
    says so.

    The view is a shallow copy: it shares the parameters, buffers and submodules of ``model``
    (no weights are copied) and only its own ``emit_aux`` and ``out_channels`` differ; ``model``
    is not modified, so other threads predicting with it are not affected.
    """
    if not (enabled and has_distance_aux(model)):
        return model
    view = copy.copy(model)  # a new __dict__; the parameter and module dicts are shared
    view.emit_aux = True
    view.out_channels = int(model.out_channels) + 1
    return view


def wants_distance(postprocess: Any) -> bool:
    """Whether ``postprocess`` (a ``PostprocessConfig`` or None) makes instances seeded from a
    distance head."""
    return (
        postprocess is not None
        and getattr(postprocess, "output", None) == "instances"
        and getattr(postprocess, "seeds", None) == "distance"
    )


def labelling_net(model: Any, postprocess: Any) -> Any:
    """The network whose probabilities feed ``postprocess`` (None: no labels are made).

    With distance seeds and a distance head: :func:`with_distance` (the probabilities carry the
    distance channel last, ``K + 1``); otherwise ``model``. Every path that turns a checkpoint's
    probabilities into instances (``predict`` in memory, Zarr, ``--dask``; the GUI; the versions
    panel; ``simulate``) predicts with this network.
    """
    return with_distance(model, wants_distance(postprocess))


def classes_only(probabilities: Any, model: Any) -> Any:
    """The class channels of ``probabilities`` ``(K[+1], ...)``: the distance channel dropped
    (``model``: the checkpoint's model, not the view; its ``out_channels`` is ``K``)."""
    return probabilities[: int(model.out_channels)]
