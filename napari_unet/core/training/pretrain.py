"""Self-supervised pre-training on images alone: masked-block reconstruction through the U-Net.

Before the segmentation training, a new U-Net can learn from the user's unlabelled pixels (the
training images and any extra images without labels): square blocks of each patch are hidden
(set to the patch's channel mean) and the same network, with a temporary regression head of
``in_channels`` outputs in place of its segmentation head, reconstructs them (mean squared error
on the hidden pixels only). Afterwards every weight but the head (the encoder, the decoder and
their BatchNorm statistics) is copied into the model; its segmentation head keeps its fresh
initialisation and is trained as usual by :func:`~napari_unet.core.training.loop.iter_train`.

``iter_pretrain`` yields a :class:`PretrainEvent` after every step and returns a
:class:`PretrainResult`, like the training loop; ``stop`` (an Event or a callable) cancels it
between steps (the weights learned so far are still transferred). The budget is ``seconds`` of
the clock (:data:`time` ``.perf_counter``) and/or ``steps``. Deterministic for a seed on the CPU.

Shapes: every image is a normalised (C, Y, X) float32 array, C = the model's ``in_channels``.

Example:
    >>> result = pretrain(model, [item.image for item in items],
    ...                   PretrainConfig(seconds=30.0, seed=0))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_unet.core.config import Config
from napari_unet.core.errors import ChannelMismatchError, UserInputError

logger = logging.getLogger(__name__)

#: Module name prefix of the segmentation head that pre-training replaces (U-shaped nets).
HEAD = "outc"


@dataclasses.dataclass(frozen=True)
class PretrainConfig(Config):
    """Settings of the pretext task.

    Attributes:
        seconds: clock budget (None: ``steps`` only).
        steps: step budget (None: ``seconds`` only); at least one of the two is set.
        patch: side of the square patches (clipped to the smallest image, rounded down to the
            model's size multiple).
        batch_size: patches per step.
        lr: Adam learning rate.
        mask_ratio: share of the blocks hidden in each patch.
        block: side in pixels of a hidden block.
        seed: seeds the head, the patches, the masks and the flips.
        bf16_cpu: bf16 autocast on the CPU (None: where the CPU has native bf16 and it is timed
            faster, as training).
    """

    seconds: float | None = None
    steps: int | None = None
    patch: int = 256
    batch_size: int = 4
    lr: float = 1e-3
    mask_ratio: float = 0.3
    block: int = 8
    seed: int = 0
    bf16_cpu: bool | None = None

    def __post_init__(self) -> None:
        if self.seconds is None and self.steps is None:
            raise ValueError("PretrainConfig needs a budget: seconds or steps")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.block < 1 or self.patch < 1 or self.batch_size < 1:
            raise ValueError("block, patch and batch_size must be >= 1")


@dataclasses.dataclass(frozen=True)
class PretrainEvent:
    """One pretext step done: ``step`` counts from 1; ``loss`` is this batch's masked MSE."""

    step: int
    loss: float
    elapsed_s: float


@dataclasses.dataclass(frozen=True)
class PretrainResult:
    """What pre-training did: steps, first and last loss, clock seconds, and why it ended
    (``steps``, ``time`` or ``stopped``)."""

    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    reason: str


def check_images(images: Sequence[np.ndarray], in_channels: int, multiple: int) -> None:
    """Refuse images the pretext task cannot use, in one sentence.

    Raises:
        UserInputError: no images, an image not (C, Y, X), or smaller than ``multiple``.
        ChannelMismatchError: an image with another number of channels than the model.
    """
    if not images:
        raise UserInputError(
            "pre-training found no images; give training images or an --unlabelled folder."
        )
    for index, image in enumerate(images):
        if image.ndim != 3:
            raise UserInputError(
                f"pre-training takes 2-D images (channels, Y, X); image {index} has shape "
                f"{tuple(image.shape)}: leave --pretrain-fraction out for volumes."
            )
        if image.shape[0] != in_channels:
            raise ChannelMismatchError(
                f"image {index} for pre-training has {image.shape[0]} channel(s) but the model "
                f"takes {in_channels}; give unlabelled images with the training images' channels."
            )
        if min(image.shape[1:]) < multiple:
            raise UserInputError(
                f"image {index} for pre-training is {image.shape[1]}x{image.shape[2]} pixels, "
                f"smaller than the model's {multiple}; give images at least that large."
            )


def pretext_net(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` whose head outputs ``in_channels`` values per pixel (the image).

    Raises:
        UserInputError: the model has no replaceable ``outc`` head (not a U-shaped net).
    """
    head = getattr(model, HEAD, None)
    if not isinstance(head, nn.Conv2d):
        raise UserInputError(
            f"pre-training needs a 2-D U-shaped model with an output head; "
            f"{getattr(model, 'arch', type(model).__name__)} has none: choose --model unet."
        )
    net = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        setattr(net, HEAD, nn.Conv2d(head.in_channels, model.in_channels, kernel_size=1))
    return net


def transfer_weights(pretext: nn.Module, model: nn.Module) -> list[str]:
    """Copy every tensor of ``pretext`` but its head into ``model`` (in place); the names."""
    target = model.state_dict()
    copied = []
    with torch.no_grad():
        for name, tensor in pretext.state_dict().items():
            if name.split(".")[0] != HEAD and name in target:
                target[name].copy_(tensor)
                copied.append(name)
    return copied


class _Batches:
    """Random masked patches: ``(inputs, targets, masks)``, each (B, C, p, p) float32."""

    def __init__(self, images: Sequence[np.ndarray], config: PretrainConfig, multiple: int):
        smallest = min(min(image.shape[1:]) for image in images)
        self.side = max(multiple, min(config.patch, smallest) // multiple * multiple)
        self.images, self.config = images, config
        self.rng = np.random.default_rng(config.seed)

    def _crop(self) -> np.ndarray:
        image = self.images[int(self.rng.integers(len(self.images)))]
        y = int(self.rng.integers(image.shape[1] - self.side + 1))
        x = int(self.rng.integers(image.shape[2] - self.side + 1))
        patch = image[:, y : y + self.side, x : x + self.side]
        patch = np.rot90(patch, int(self.rng.integers(4)), axes=(1, 2))
        return patch[:, :, ::-1] if self.rng.random() < 0.5 else patch

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch: the hidden blocks hold the patch's channel mean in ``inputs``."""
        config, side = self.config, self.side
        targets = np.stack([self._crop() for _ in range(config.batch_size)]).astype(np.float32)
        cells = -(-side // config.block)
        hidden = self.rng.random((config.batch_size, 1, cells, cells)) < config.mask_ratio
        masks = np.repeat(np.repeat(hidden, config.block, 2), config.block, 3)[..., :side, :side]
        means = targets.mean(axis=(2, 3), keepdims=True)
        inputs = np.where(masks, means, targets).astype(np.float32)
        masks = np.broadcast_to(masks, targets.shape).astype(np.float32)
        return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (inputs, targets, masks))


def _autocast(bf16_cpu: bool | None, net: nn.Module, side: int) -> Any:
    """bf16 autocast when asked, or (``None``) where the CPU has native bf16 and a timed pass of
    ``net`` on ``side`` x ``side`` patches is faster in it (as the training step decides)."""
    from napari_unet.core.device import cpu_supports_bf16
    from napari_unet.core.training.precision import bf16_trains_faster

    use = bf16_cpu
    if use is None:
        use = cpu_supports_bf16() and bf16_trains_faster(net, (side, side))
    return torch.autocast("cpu", dtype=torch.bfloat16) if use else contextlib.nullcontext()


def _masked_mse(output: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden pixels; ``output`` may be cropped by the margin."""
    margin = (targets.shape[-1] - output.shape[-1]) // 2
    if margin:
        targets, masks = (t[..., margin:-margin, margin:-margin] for t in (targets, masks))
    return ((output.float() - targets) ** 2 * masks).sum() / masks.sum().clamp_min(1.0)


def _stop_function(stop: Any) -> Callable[[], bool]:
    if stop is None:
        return lambda: False
    return stop.is_set if hasattr(stop, "is_set") else stop


def iter_pretrain(
    model: nn.Module, images: Sequence[np.ndarray], config: PretrainConfig, *, stop: Any = None
) -> Generator[PretrainEvent, None, PretrainResult]:
    """Pre-train ``model`` (on the CPU, in place) on ``images``; yields events, returns the result.

    Raises:
        UserInputError: see :func:`check_images` and :func:`pretext_net`.
    """
    multiple = int(getattr(model, "size_multiple", 1))
    check_images(images, model.in_channels, multiple)
    should_stop, start = _stop_function(stop), time.perf_counter()
    net = pretext_net(model, config.seed)
    net.train()
    torch.manual_seed(config.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    batches, losses, reason = _Batches(images, config, multiple), [], "steps"
    precision = _autocast(config.bf16_cpu, net, batches.side)
    while config.steps is None or len(losses) < config.steps:
        elapsed = time.perf_counter() - start
        if config.seconds is not None and elapsed >= config.seconds:
            reason = "time"
            break
        if should_stop():
            reason = "stopped"
            break
        inputs, targets, masks = batches.sample()
        with precision:
            output = net(inputs)
        loss = _masked_mse(output, targets, masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        yield PretrainEvent(len(losses), losses[-1], time.perf_counter() - start)
    transfer_weights(net, model)
    first, last = (losses[0], losses[-1]) if losses else (float("nan"), float("nan"))
    return PretrainResult(len(losses), first, last, time.perf_counter() - start, reason)


def pretrain(
    model: nn.Module,
    images: Sequence[np.ndarray],
    config: PretrainConfig,
    *,
    stop: Any = None,
    on_event: Callable[[PretrainEvent], None] | None = None,
) -> PretrainResult:
    """Run :func:`iter_pretrain` to the end (``on_event`` sees every event); the result."""
    from napari_unet.core.generators import run_to_end

    return run_to_end(iter_pretrain(model, images, config, stop=stop), on_event)
