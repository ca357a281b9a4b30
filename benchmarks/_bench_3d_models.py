"""The models of ``bench_3d.py``: the 2-D, 3-D and 2.5-D nets built alike, and prediction."""

from __future__ import annotations

import numpy as np
import torch
from _bench_3d_parts import stack_normalized

from napari_unet.core.inference.normalization import NormalizationConfig
from napari_unet.core.inference.prediction import PredictConfig, predict
from napari_unet.core.models import build_model
from napari_unet.core.models.context25d import (
    context_channels,
    start_from_2d,
    zero_context_weights,
)


def _models(task_channels: int, voxel, depth: int, seed: int):
    """(2-D unet, 3-D unet3d_aniso) of about the same per-voxel cost at full resolution."""
    torch.manual_seed(seed)
    net2d = build_model("unet", out_channels=task_channels, depth=depth, base_channels=16)
    torch.manual_seed(seed)
    net3d = build_model(
        "unet3d_aniso", out_channels=task_channels, depth=depth, base_channels=8, voxel_size=voxel
    )
    return net2d, net3d


def _net25d(task_channels: int, depth: int, args, net2d=None):
    """The 2-D ``unet`` of :func:`_models` taking ``2r + 1`` slices as channels (2.5-D).

    ``--init-25d``: ``2d`` starts it as ``net2d`` (the 2-D arm's untrained weights, the
    neighbours' input weights zero), ``zero`` from its own seed with those weights zero (what
    ``train --context-slices`` does), ``random`` from its own seed as built.
    """
    torch.manual_seed(args.seed)
    net = build_model(
        "unet",
        in_channels=context_channels(1, args.context_slices),
        out_channels=task_channels,
        depth=depth,
        base_channels=16,
    )
    if args.init_25d == "2d" and net2d is not None:
        start_from_2d(net, net2d, args.context_slices)
    elif args.init_25d == "zero":
        zero_context_weights(net, args.context_slices)
    net.context_slices = args.context_slices  # as load_checkpoint sets it: predict stacks Z
    return net


def _predict(
    model,
    image: np.ndarray,
    task: str,
    device: str,
    *,
    joint: bool = False,
    tta: str = "none",
    z_flip: bool | None = None,
):
    """(K, Z, Y, X) probabilities; ``joint``: the stack normalised as a whole (a 2-D model's
    slices otherwise each on their own); ``tta`` and ``z_flip`` (None: the product's default)
    as ``PredictConfig``'s."""
    config = PredictConfig(device=device, probability_dtype="float32", tta=tta)
    config = config if z_flip is None else config.replace(z_flip=z_flip)
    extra = {"normalization": NormalizationConfig(mode="none")} if joint else {}
    image = stack_normalized(image) if joint else image
    with torch.inference_mode():
        return predict(model, image, "ZYX", task=task, config=config, **extra)
