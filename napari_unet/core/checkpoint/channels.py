"""A start model for images with another number of channels: adapt its first convolution.

Fine-tuning a one-channel built-in model (``fluo-nuclei``) on RGB images needs a network that
takes three channels. :func:`adapt_model_channels` rebuilds the same architecture with the new
channel count, copies every tensor that does not depend on it, and turns the input convolution's
kernels ``w`` (shape ``(O, 1, k, k)``) into ``w / C`` replicated over the ``C`` new channels: at
the start the network sees the channel mean, and a grey image stored as ``C`` equal channels gets
exactly the old response. The reverse (a ``C``-channel model on one-channel images) sums the
kernels over the channels, which is the old response to the grey image replicated ``C`` times.
Other changes (2 -> 3 channels) have no such reading and are refused.

:func:`adapt_channels` writes the adapted copy as a new checkpoint file (the start model's file is
never changed); :func:`plan_channels` decides, from the images, between nothing to do, dropping
the duplicated channels of greyscale images stored as RGB (:func:`collapse_grey`), and adapting.
:func:`napari_unet.core.checkpoint.start_fit.fit_start` applies that decision (and a wider head
for more classes) for ``train``, ``simulate`` and the Fine-tune trainer.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.errors import ChannelMismatchError

logger = logging.getLogger(__name__)

__all__ = [
    "adapt_channels",
    "adapt_model_channels",
    "can_adapt",
    "collapse_grey",
    "is_grey",
    "one_channel_if_grey",
    "plan_channels",
]


def can_adapt(old: int, new: int) -> bool:
    """Whether a model taking ``old`` channels can be adapted to ``new`` (1 -> C or C -> 1)."""
    return old != new and min(old, new) == 1


def is_grey(image: np.ndarray) -> bool:
    """True when ``image`` ``(C, *spatial)`` has more than one channel and all are equal."""
    image = np.asarray(image)
    return image.shape[0] > 1 and all(np.array_equal(image[0], c) for c in image[1:])


def one_channel_if_grey(image: np.ndarray, axes: str, model_channels: int) -> tuple[Any, str]:
    """``(image, axes)`` with the C axis dropped when a one-channel model is given a greyscale
    image stored with equal colour channels (logged); otherwise both as given."""
    if model_channels != 1 or "C" not in axes:
        return image, axes
    channel = axes.index("C")
    if not is_grey(np.moveaxis(np.asarray(image), channel, 0)):
        return image, axes
    logger.info(
        "greyscale image stored as %d equal channels: one channel used", image.shape[channel]
    )
    return np.take(image, 0, axis=channel), axes.replace("C", "")


def plan_channels(images: Sequence[np.ndarray], model_channels: int) -> str:
    """What fits ``images`` (each ``(C, *spatial)``) to a model taking ``model_channels``.

    Returns:
        ``"same"`` (nothing to do), ``"grey"`` (a one-channel model and every image with more
        channels is grey: keep one channel, :func:`collapse_grey`) or ``"adapt"`` (every image
        has the same other count: adapt the model, :func:`adapt_model_channels`).

    Raises:
        ChannelMismatchError: the images disagree on their channel count, or the model cannot be
            adapted to it (neither side has one channel).
    """
    counts = sorted({int(np.shape(image)[0]) for image in images})
    if counts == [model_channels] or not counts:
        return "same"
    if model_channels == 1 and all(is_grey(i) for i in images if np.shape(i)[0] > 1):
        return "grey"
    if len(counts) > 1:
        raise ChannelMismatchError(
            f"the images have different channel counts ({', '.join(map(str, counts))}); give "
            "images with the same channels (e.g. all RGB or all greyscale)."
        )
    if not can_adapt(model_channels, counts[0]):
        raise ChannelMismatchError(
            f"the model takes {model_channels} channels but the images have {counts[0]}; only a "
            "one-channel model can be adapted to colour images (or back): use matching images, "
            "or train a new model with --model unet."
        )
    return "adapt"


def collapse_grey(items: Sequence[Any]) -> list[Any]:
    """``items`` (frozen dataclasses with an ``image`` ``(C, *spatial)``) with one channel kept
    wherever all channels are equal (greyscale stored as RGB); others are returned as they are."""
    return [
        dataclasses.replace(item, image=np.ascontiguousarray(item.image[:1]))
        if is_grey(item.image)
        else item
        for item in items
    ]


def adapt_model_channels(model: Any, in_channels: int) -> Any:
    """A copy of ``model`` taking ``in_channels`` input channels, every learnt weight kept.

    Args:
        model: a :class:`~napari_unet.core.models.SegmentationNet` taking 1 or ``in_channels``
            channels (one of the two must be 1).
        in_channels: the channels of the images to fine-tune on.

    Returns:
        A new model (same architecture and settings) in the mode ``model`` was in.

    Raises:
        ChannelMismatchError: neither the old nor the new count is 1.
    """
    import torch

    from napari_unet.core.models import build_model

    old = int(model.in_channels)
    if not can_adapt(old, int(in_channels)):
        raise ChannelMismatchError(
            f"a model taking {old} channels cannot be adapted to {in_channels}; use images with "
            f"{old} channel(s) or train a new model with --model unet."
        )
    adapted = build_model(model.arch, **{**model.config, "in_channels": int(in_channels)})
    target = adapted.state_dict()
    state = {}
    for key, value in model.state_dict().items():
        want = target[key].shape
        if value.shape != want:
            value = _adapt_kernel(key, value, want, old)
        state[key] = value
    adapted.load_state_dict(state)
    adapted.train(model.training)
    with torch.no_grad():  # the rebuilt model's device and dtype follow the old one's
        return adapted.to(next(model.parameters()).device)


def _adapt_kernel(key: str, value: Any, want: Any, old: int) -> Any:
    """The input kernel ``value`` ``(O, old, ...)`` as ``want`` ``(O, new, ...)``: 1 -> C
    divides by C and replicates, C -> 1 sums."""
    new = int(want[1])
    if value.ndim < 2 or value.shape[1] != old or value.shape[2:] != want[2:]:
        raise ValueError(f"{key}: shape {tuple(value.shape)} cannot become {tuple(want)}")
    if old == 1:
        return (value / new).expand(-1, new, *value.shape[2:]).clone()
    return value.sum(dim=1, keepdim=True)


def adapt_channels(path: str | Path, in_channels: int, out: str | Path) -> Path:
    """Write to ``out`` a copy of checkpoint ``path`` taking ``in_channels`` input channels.

    Task, classes, normalisation, tiling, the post-processing operating point and the lineage
    (``new_model``, ``train_config``) are kept (per-channel mean/std values are replicated, or
    averaged for one channel); provenance records ``channels_adapted_from`` and
    ``start_in_channels``. ``path`` is never changed.

    Raises:
        ChannelMismatchError: the model cannot be adapted (:func:`adapt_model_channels`).
    """
    from napari_unet.core.checkpoint.format import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(path)
    model, info = loaded.model, loaded.info
    adapted = adapt_model_channels(model, in_channels)
    # what the model does (post-processing) and how it came to be (a new model, its training
    # settings: they choose a fine-tune's zoom range, core.training.fingerprint)
    lineage = ("postprocess", "operating_point", "new_model", "train_config")
    kept = {k: v for k, v in info.provenance.items() if k in lineage}
    logger.info(
        "%s takes %d channel(s): adapted to %d (first convolution %s; the file itself is kept)",
        Path(path).name,
        model.in_channels,
        in_channels,
        "divided and replicated" if model.in_channels == 1 else "summed",
    )
    return Path(
        save_checkpoint(
            out,
            adapted,
            task=info.task,
            class_names=info.class_names,
            normalization=_normalization(dict(info.normalization), int(in_channels)),
            tile_shape=info.tile_shape,
            overlap=info.overlap,
            provenance={
                **kept,
                "channels_adapted_from": str(path),
                "start_in_channels": int(model.in_channels),
            },
            name=f"{info.name or Path(path).stem} ({in_channels} channels)",
            description=info.description,
        )
    )


def _normalization(stored: dict[str, Any], channels: int) -> dict[str, Any]:
    """Stored normalisation with per-channel mean/std fitted to ``channels``."""
    for key in ("mean", "std"):
        values = list(stored.get(key) or ())
        if len(values) == 1:
            stored[key] = values * channels
        elif len(values) > 1 and channels == 1:
            stored[key] = [float(np.mean(values))]
    return stored
