"""Shared setup of ``bench_predict.py``: modes, the benchmark model and config, the ``Setup``.

Everything the contenders and the memory children build the same way lives here, so
``bench_predict.py`` keeps the measuring and reporting.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: Per mode: image side, memory side, timed repeats, model depth/base, matmul size (+ tiles).
MODES: dict[str, dict[str, Any]] = {
    "full": dict(side=2048, memory_side=8192, repeats=3, depth=4, base=32, matmul=4096),
    "quick": dict(side=1024, memory_side=4096, repeats=2, depth=4, base=32, matmul=2048),
    # hidden: the smallest path, for tests/test_bench_predict.py (seconds, not minutes)
    "smoke": dict(
        side=80, memory_side=96, repeats=1, depth=2, base=4, matmul=256, tile=(32, 32), overlap=4
    ),
}
AXES = "YX"
TASK = "semantic"


def _core() -> Any:
    """Import the core modules lazily (so ``--help`` works without them)."""
    from napari_unet.core.inference import normalization as normalize
    from napari_unet.core.inference import prediction as predict
    from napari_unet.core.models import build_model
    from napari_unet.core.postprocess import labels as postprocess

    return normalize, predict, postprocess, build_model


def build(mode: dict[str, Any], out_channels: int) -> torch.nn.Module:
    """The benchmark model: ``unet`` with random (seeded) weights, in eval mode, on the CPU."""
    torch.manual_seed(0)
    build_model = _core()[3]
    model = build_model(
        "unet",
        depth=mode["depth"],
        base_channels=mode["base"],
        in_channels=1,
        out_channels=out_channels,
    )
    return model.eval()


def predict_config(mode: dict[str, Any], device: str, **changes: Any) -> Any:
    """Our default ``PredictConfig`` (smoke mode: tiny tiles), with ``changes`` applied."""
    predict = _core()[1]
    settings: dict[str, Any] = {"device": device}
    if "tile" in mode:
        settings.update(tile_shape=mode["tile"], overlap=mode["overlap"], batch_size=2)
    settings.update(changes)
    return predict.PredictConfig(**settings)


def resolve_precision(config: Any, device: torch.device) -> str:
    """What ``config.precision`` (``"auto"`` included) means on ``device``: fp32, bf16 or fp16."""
    from napari_unet.core.device import autocast_dtype

    dtype = autocast_dtype(device, config.precision)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def autocast(precision: str, device: torch.device) -> Any:
    """The autocast context matching our ``precision`` name (fp32 -> none)."""
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtypes[precision])


@dataclass
class Setup:
    """Everything the contenders share: device, image, models (one per memory format) and config."""

    mode: dict[str, Any]
    device: torch.device
    image: np.ndarray
    model: torch.nn.Module  # handed to iter_predict
    reference: torch.nn.Module  # untouched fp32 default-format copy (MONAI as a user calls it)
    ours_format: torch.nn.Module  # copy in our memory format (plain pass, MONAI same precision)
    config: Any
    precision: str
    overlap: int  # the overlap ours uses (PredictConfig.overlap None -> the padded-net default)

    @classmethod
    def create(cls, mode: dict[str, Any], device_name: str) -> Setup:
        device = torch.device(device_name)
        config = predict_config(mode, device_name)
        model = build(mode, out_channels=2)
        reference = copy.deepcopy(model).to(device)
        ours_format = copy.deepcopy(model).to(device)
        if config.channels_last:
            ours_format = ours_format.to(memory_format=torch.channels_last)
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (mode["side"], mode["side"]), dtype=np.uint8)
        precision = resolve_precision(config, device)
        overlap = _core()[1].TileGeometry.of(model, config).overlap  # iter_predict's own
        return cls(mode, device, image, model, reference, ours_format, config, precision, overlap)

    def warm_up(self, fn: Callable[[np.ndarray], Any]) -> None:
        """One untimed call on a crop holding one full batch of tiles (2x2 tiles)."""
        tile, overlap = self.config.tile_shape[0], self.overlap
        side = min(self.image.shape[0], 2 * tile - overlap)
        fn(np.ascontiguousarray(self.image[:side, :side]))

    def normalized_tensor(self, image: np.ndarray) -> torch.Tensor:
        """``image`` normalised exactly as ``iter_predict`` does, as (1, 1, Y, X) on the device."""
        normalize = _core()[0]
        normalized = normalize.normalize(image[None], normalize.NormalizationConfig())
        return torch.from_numpy(normalized)[None].to(self.device)
