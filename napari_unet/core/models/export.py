"""A network with its output activation built in, for tools that run a model as it is.

napari-unet-loop's nets return logits and :mod:`napari_unet.core.inference.prediction` applies the
activation (sigmoid for binary, softmax over channels for semantic and instances, none for
restoration). A bioimage.io consumer (bioimageio.core, deepImageJ, ilastik) runs the network alone,
so the exported model is a :class:`ProbabilityNet`: the same net, then the activation. Its state
dict is the net's with keys prefixed ``net.``.

Example:
    >>> config = {"depth": 2, "base_channels": 8, "out_channels": 3}
    >>> net = ProbabilityNet("unet", config, "instances")
    >>> net(torch.zeros(1, 1, 16, 16)).sum(dim=1).allclose(torch.ones(1, 16, 16))
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from napari_unet.core.config import check_task
from napari_unet.core.models.registry import build_model

__all__ = ["ProbabilityNet"]


class ProbabilityNet(nn.Module):
    """``activation(net(x))``: (B, C_in, H, W) float32 -> (B, K, H - 2m, W - 2m) float32.

    Args:
        arch: a registered architecture name (``"unet"``, ``"unetpp"``, ...).
        model_config: its settings, ``build_model(arch, **model_config)``.
        task: ``binary`` (sigmoid), ``semantic`` / ``instances`` (softmax over channels) or
            ``restoration`` (identity).
    """

    def __init__(self, arch: str, model_config: dict[str, Any], task: str) -> None:
        super().__init__()
        check_task(task)
        self.task = task
        self.net = build_model(arch, **model_config)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.net(image)
        if self.task == "binary":
            return torch.sigmoid(logits)
        if self.task in ("semantic", "instances"):
            return torch.softmax(logits, dim=1)
        return logits
