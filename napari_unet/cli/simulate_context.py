"""``simulate`` with a 2.5-D model: each slice of the Z-stacks is an image of the experiment.

A 2.5-D start model (``--init`` of a ``train --context-slices R`` checkpoint) or a new model
with ``--context-slices R`` takes each slice with its ``R`` neighbours as channels. The folders
then hold Z-stacks and their labels; every slice becomes one fully labelled item whose image is
the slice with its neighbours (mirrored at the stack's ends,
:func:`~napari_unet.core.training.context.context_items`), so rounds correct, train on and score
slices exactly as ``train --context-slices`` and ``predict`` see them. The flat copies of
``train --context-slices`` (on unless ``--no-flat-copies``) are not images of the experiment:
each round's trainer adds them after its held-back split (``SimulateConfig.flat_copies``).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_arguments", "context_items_for"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--context-slices R`` (as for ``train``)."""
    from napari_unet.cli import train_context

    train_context.add_arguments(parser)


def context_items_for(
    args: argparse.Namespace, info: Any, normalization: Any
) -> tuple[list | None, int]:
    """``(items, R)``: the 2.5-D items of the folders' Z-stacks, or ``(None, 0)`` for a 2-D run.

    Raises:
        UserInputError: ``--context-slices`` against the checkpoint's, a 3-D start model, an
            image without a Z axis of 2+ slices (as ``train --context-slices``).
    """
    from napari_unet.cli import train_context

    model = args.init or args.model
    ns = argparse.Namespace(
        **{**vars(args), "masks": None, "axes": None, "model": model, "flat_copies": False}
    )
    radius = train_context.context_radius(ns, info)
    if not radius:
        return None, 0
    return train_context.prepare(ns, info, normalization), radius
