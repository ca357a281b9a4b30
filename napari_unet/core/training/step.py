"""One optimisation step: sample, augment, forward (mixed precision), loss, backward, update.

Patches are sampled on the CPU with their full context targets, moved to the device, augmented
there (one resampling for image and targets), then the targets are centre-cropped by the
model's margin to the output size (a model that sees the images ``k`` times smaller runs on its
pool's ``k`` times smaller patches without its own pooling and resize,
:mod:`~napari_unet.core.training.scaled_pool`). On CUDA the forward pass runs under fp16
autocast with a ``GradScaler``; on the CPU bf16 autocast is opt-in. Gradients are clipped by
norm.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

import torch

from napari_unet.core.models.aux import has_distance_aux
from napari_unet.core.training.augment import augment_batch, augment_restoration
from napari_unet.core.training.aux import distance_loss
from napari_unet.core.training.precision import bf16_by_default
from napari_unet.core.training.sampler import PatchSampler
from napari_unet.core.training.scaled_pool import at_pool_scale

logger = logging.getLogger(__name__)


def channels_last_format(model: torch.nn.Module) -> torch.memory_format:
    """Channels-last for the model's batches: 2-D (B, C, H, W) or 3-D (B, C, D, H, W)."""
    volumetric = getattr(model, "spatial_dims", 2) == 3
    return torch.channels_last_3d if volumetric else torch.channels_last


class StepRunner:
    """Runs training steps for one model/optimiser pair.

    Args:
        model: the network (already on ``device``, in train mode).
        optimizer: its optimiser.
        loss_fn: ``(logits | list of logits, classes, weights) -> scalar``.
        config: the :class:`~napari_unet.core.training.config.TrainConfig`.
        device: where the model lives.
        generator: CPU generator for augmentation (its state is part of the resume state).
        sampler: the patch sampler.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Any,
        config: Any,
        device: torch.device,
        generator: torch.Generator,
        sampler: PatchSampler,
    ) -> None:
        self.model = model
        self.net = model  # the net itself (``model`` becomes a DDP wrapper in distributed runs)
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.config = config
        self.device = device
        self.generator = generator
        self.sampler = sampler
        self.augment = config.augment.strength > 0
        self.context_radius = int(getattr(model, "context_slices", 0) or 0)  # 2.5-D: Z flips
        use_amp = config.amp and device.type == "cuda"
        bf16_cpu = config.bf16_cpu
        if bf16_cpu is None:  # left open: native bf16 is not always faster, so it is timed
            layout = torch.contiguous_format
            if config.channels_last:
                layout = channels_last_format(model)
            bf16_cpu = device.type == "cpu" and bf16_by_default(model, sampler.input_shape, layout)
        self.autocast_dtype = (
            torch.float16
            if use_amp
            else (torch.bfloat16 if bf16_cpu and device.type == "cpu" else None)
        )
        self.scaler = torch.amp.GradScaler("cuda") if use_amp else None
        self.heads = bool(
            hasattr(model, "forward_heads") and getattr(model, "config", {}).get("deep_supervision")
        )
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        # a distance head (aux="distance") learns next to the classes (core.training.aux)
        self.aux = has_distance_aux(model) and not self.heads and config.loss.distance > 0

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sampled, augmented batch on the device: image (B, C, h_in, w_in), targets at output."""
        batch = self.sampler.sample(self.config.batch_size, full_context=self.augment)
        non_blocking = self.device.type == "cuda"
        image = torch.from_numpy(batch.image).to(self.device, non_blocking=non_blocking)
        classes = torch.from_numpy(batch.classes).to(self.device, non_blocking=non_blocking)
        weights = torch.from_numpy(batch.weights).to(self.device, non_blocking=non_blocking)
        if self.augment:
            if self.config.task == "restoration":
                both = torch.cat([classes, weights[:, None]], dim=1)
                image, both = augment_restoration(image, both, self.config.augment, self.generator)
                classes, weights = both[:, :-1], both[:, -1]
            else:
                image, classes, weights = augment_batch(
                    image,
                    classes,
                    weights,
                    self.config.augment,
                    self.generator,
                    context_radius=self.context_radius,
                )
            centre = tuple(
                slice(m, m + n) for m, n in zip(self.sampler.margin, self.sampler.output_shape)
            )
            classes, weights = classes[(..., *centre)], weights[(..., *centre)]
        if self.config.channels_last:
            image = image.contiguous(memory_format=channels_last_format(self.model))
        return image, classes.contiguous(), weights.contiguous()

    def forward(self, image: torch.Tensor) -> Any:
        """Logits (or the list of deep-supervision heads) under the configured autocast."""
        context = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with context, at_pool_scale(self.net):  # pools k x smaller: no pooling, no resize
            if self.heads:
                return self.model.forward_heads(image)
            if self.aux:
                return self.model.forward_with_aux(image)
            return self.model(image)

    def loss_value(self, loss: torch.Tensor) -> float:
        """``loss`` as a float (the distributed runner averages it over the processes)."""
        return float(loss.detach())

    def step(self) -> float:
        """One optimisation step; returns the loss as a float (NaN/Inf are left to the caller).

        A non-finite loss skips the update, so the weights stay as they were.
        """
        image, classes, weights = self.batch()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.forward(image)
        aux = None
        if self.aux:
            logits, aux = logits
        if isinstance(logits, (list, tuple)):
            logits = [head.float() for head in logits]
        else:
            logits = logits.float()
        loss = self.loss_fn(logits, classes, weights)
        if aux is not None:
            loss = loss + self.config.loss.distance * distance_loss(aux, classes)
        value = self.loss_value(loss)
        if not math.isfinite(value):
            return value
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return value
