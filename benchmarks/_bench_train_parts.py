"""The parts of ``bench_train.py``: modes, data and model, and the timers (our loop, a plain
seed-style loop, augmentation, the patch sampler, the weight map)."""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: Per mode: timed steps, warm-up steps, model depth/base, patch side, image side, repeats.
MODES: dict[str, dict[str, Any]] = {
    "full": dict(steps=12, warmup=2, depth=4, base=32, patch=256, side=1024, repeats=5),
    "quick": dict(steps=4, warmup=1, depth=4, base=32, patch=256, side=1024, repeats=3),
    # hidden: the smallest path, for tests/test_bench_train.py (seconds)
    "smoke": dict(steps=2, warmup=1, depth=2, base=4, patch=32, side=128, repeats=1),
}
BATCH = 4
N_INSTANCES = 300


def make_data(side: int, n_instances: int = N_INSTANCES, seed: int = 0):
    """A normalised (1, side, side) float32 image and (side, side) instance labels (<= n ids)."""
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.synthetic import synthetic_nuclei

    scale = side / 1024.0
    image, labels = synthetic_nuclei(
        (side, side),
        n_nuclei=int(n_instances * 1.15) if side >= 1024 else max(4, int(40 * scale * scale)),
        radius=(6.0 * max(scale, 0.25), 14.0 * max(scale, 0.25)),
        seed=seed,
    )
    labels = np.where(labels <= n_instances, labels, 0).astype(np.int32)
    return normalize(image[None].astype(np.float32)), labels


def build_model(mode: dict[str, Any]) -> torch.nn.Module:
    """The benchmark model with seeded weights."""
    from napari_unet.core.models import build_model as build

    torch.manual_seed(0)
    return build("unet", depth=mode["depth"], base_channels=mode["base"], in_channels=1,
                 out_channels=2)  # fmt: skip


def time_ours(model, image, classes, mode, device, **overrides) -> dict[str, float]:
    """Patches/s of ``iter_train`` between step events after the warm-up steps."""
    from napari_unet.core.training.items import TrainingItem
    from napari_unet.core.training.loop import StepEvent, TrainConfig, iter_train

    steps, warmup = mode["steps"], mode["warmup"]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as folder:
        config = TrainConfig(
            task="semantic",
            steps=steps + warmup,
            batch_size=BATCH,
            patch_shape=(mode["patch"], mode["patch"]),
            device=str(device),
            checkpoint_dir=folder,
            **overrides,
        )
        item = TrainingItem(image=image, labels=classes, name="bench")
        stamps: dict[int, float] = {}
        losses = []
        start = time.perf_counter()
        for event in iter_train(model, [item], config):
            if isinstance(event, StepEvent):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                stamps[event.step] = time.perf_counter()
                losses.append(event.loss)
        total = time.perf_counter() - start
    seconds = stamps[steps + warmup] - stamps[warmup]
    return {
        "patches_per_s": steps * BATCH / seconds,
        "seconds_per_step": seconds / steps,
        "setup_and_finish_s": total - (stamps[steps + warmup] - stamps[1]),
        "final_loss": float(losses[-1]),
    }


def time_plain(model, image, classes, mode, device) -> dict[str, float]:
    """Patches/s of a plain seed-style loop: crops + flips in numpy, fp32, plain CE."""
    rng = np.random.default_rng(0)
    patch, side = mode["patch"], image.shape[-1]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.to(device).train()

    def step() -> float:
        xs, ys = [], []
        for _ in range(BATCH):
            y0, x0 = rng.integers(0, side - patch + 1, size=2)
            x = image[:, y0 : y0 + patch, x0 : x0 + patch]
            t = classes[y0 : y0 + patch, x0 : x0 + patch]
            if rng.random() < 0.5:
                x, t = x[:, :, ::-1], t[:, ::-1]
            if rng.random() < 0.5:
                x, t = x[:, ::-1], t[::-1]
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(t))
        x = torch.from_numpy(np.stack(xs)).to(device)
        t = torch.from_numpy(np.stack(ys).astype(np.int64)).to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), t)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    for _ in range(mode["warmup"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(mode["steps"]):
        loss = step()
    seconds = time.perf_counter() - start
    model.to("cpu")
    return {
        "patches_per_s": mode["steps"] * BATCH / seconds,
        "seconds_per_step": seconds / mode["steps"],
        "final_loss": loss,
    }


def time_augment(mode: dict[str, Any], device: torch.device) -> float:
    """Median milliseconds of ``augment_batch`` on a batch of 4 patches with targets, weights."""
    from napari_unet.core.training.augment import AugmentConfig, augment_batch

    side = 256 if mode is not MODES["smoke"] else mode["patch"]
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(BATCH, 1, side, side, generator=generator).to(device)
    classes = (torch.rand(BATCH, side, side, generator=generator) > 0.5).long().to(device)
    weights = torch.ones(BATCH, side, side).to(device)
    config = AugmentConfig()
    augment_batch(image, classes, weights, config, generator)
    samples = []
    for _ in range(max(5, mode["repeats"] * 4)):
        start = time.perf_counter()
        augment_batch(image, classes, weights, config, generator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        samples.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(samples)


def time_sampler(model, image, classes, mode) -> float:
    """Median milliseconds of our sampler drawing a full-context batch of 4 patches."""
    from napari_unet.core.training.items import TrainingItem
    from napari_unet.core.training.sampler import PatchSampler
    from napari_unet.core.training.state import targets_function
    from napari_unet.core.training.targets import TargetConfig

    shape = model.valid_input_shape((mode["patch"], mode["patch"]))
    sampler = PatchSampler(
        targets_function(TargetConfig(task="semantic"), "semantic", 2),
        input_shape=shape,
        output_shape=model.output_shape(shape),
        items=[TrainingItem(image=image, labels=classes, name="bench")],
    )
    samples = []
    for _ in range(max(5, mode["repeats"] * 4)):
        start = time.perf_counter()
        sampler.sample(BATCH, full_context=True)
        samples.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(samples)


def time_weight_map(mode: dict[str, Any]) -> tuple[float, int]:
    """Best seconds of ``border_weight_map`` on 300 instances at 1024^2 (smoke: small image)."""
    from napari_unet.core.training.targets import border_weight_map

    side = 1024 if mode is not MODES["smoke"] else mode["side"]
    _, labels = make_data(side, seed=1)
    n = int(len(np.unique(labels)) - 1)
    best = float("inf")
    for _ in range(mode["repeats"]):
        start = time.perf_counter()
        border_weight_map(labels)
        best = min(best, time.perf_counter() - start)
    return best, n
