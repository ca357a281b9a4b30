"""The test tensors of a bioimage.io package: preprocessing, accepted sizes, crops, files.

The test input is cut from the middle of a sample at a size the network accepts and normalised
the way the package's own preprocessing will (:func:`scale_range` is bioimage.io's formula), so
``bioimageio.core`` reproduces the stored test output. Used by
:mod:`napari_unet.core.checkpoint.bioimageio_export`, which re-exports :func:`scale_range`.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["EPS", "scale_range"]

#: ``scale_range``'s epsilon in bioimage.io (added to the denominator).
EPS = 1e-6


def scale_range(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """bioimage.io ``scale_range`` per channel of ``image`` (B, C, Y, X): percentiles over Y, X."""
    image = image.astype(np.float32)
    lo = np.percentile(image, low, axis=(-2, -1), keepdims=True)
    hi = np.percentile(image, high, axis=(-2, -1), keepdims=True)
    return ((image - lo) / (hi - lo + EPS)).astype(np.float32)


def _preprocess(image: np.ndarray, normalization: dict) -> tuple[np.ndarray, list[dict]]:
    """The test input as the package's preprocessing sees it, and that preprocessing; a flipped
    normalisation (``invert``) ends with ``scale_linear`` (gain -1; offset 1 after percentiles)."""
    image, steps = _normalizing_steps(image, normalization)
    if not normalization.get("invert"):
        return image, steps
    offset = 1.0 if normalization.get("mode", "percentile") == "percentile" else 0.0
    steps.append({"id": "scale_linear", "kwargs": {"gain": -1.0, "offset": offset}})
    return (offset - image).astype(np.float32), steps


def _normalizing_steps(image: np.ndarray, normalization: dict) -> tuple[np.ndarray, list[dict]]:
    """``_preprocess`` before the flip."""
    mode = normalization.get("mode", "percentile")
    steps: list[dict] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if mode == "percentile":
        low, high = float(normalization.get("low", 1.0)), float(normalization.get("high", 99.8))
        steps.append(
            {
                "id": "scale_range",
                "kwargs": {"axes": ["y", "x"], "min_percentile": low, "max_percentile": high},
            }
        )
        return scale_range(image, low, high), steps
    if mode == "meanstd":
        channels = image.shape[1]
        mean = [float(v) for v in normalization["mean"]] * (
            channels if len(normalization["mean"]) == 1 else 1
        )
        std = [float(v) for v in normalization["std"]] * (
            channels if len(normalization["std"]) == 1 else 1
        )
        steps.append(
            {
                "id": "fixed_zero_mean_unit_variance",
                "kwargs": {"mean": mean, "std": std, "axis": "channel"},
            }
        )
        m = np.asarray(mean, np.float32)[None, :, None, None]
        s = np.asarray(std, np.float32)[None, :, None, None]
        return ((image.astype(np.float32) - m) / (s + EPS)).astype(np.float32), steps
    return image.astype(np.float32), steps


def _geometry(net: torch.nn.Module) -> tuple[int, int, int]:
    """(smallest input side, step between accepted sides, pixels lost per side)."""
    rule = getattr(net, "valid_input_shape", None)
    smallest = int(rule((1, 1))[0]) if rule else 1
    step = int(rule((smallest + 1, smallest + 1))[0]) - smallest if rule else 1
    return smallest, max(step, 1), int(getattr(net, "margin", 0))


def _test_input(sample: np.ndarray, size: int, smallest: int, step: int) -> np.ndarray:
    """A (1, C, S, S) crop from the middle of ``sample`` (C, Y, X), S an accepted side <= size."""
    side = smallest + step * max(0, (min(size, *sample.shape[-2:]) - smallest) // step)
    if side > min(sample.shape[-2:]):
        reflect = [(0, 0)] + [(0, max(0, side - n)) for n in sample.shape[-2:]]
        sample = np.pad(sample, reflect, mode="reflect")
    top, left = ((n - side) // 2 for n in sample.shape[-2:])
    return np.ascontiguousarray(sample[None, :, top : top + side, left : left + side])


def _finite(raw: np.ndarray) -> np.ndarray:
    """The test input with NaN/Inf replaced by the median of its finite values.

    Other tools pass NaN through their preprocessing, so a test tensor with NaN would make every
    output NaN and the package's own test meaningless.
    """
    good = np.isfinite(raw)
    if good.all():
        return raw
    fill = float(np.median(raw[good])) if good.any() else 0.0
    logger.info("test input: %d non-finite values replaced by %g", raw.size - good.sum(), fill)
    return np.where(good, raw, np.float32(fill)).astype(np.float32)


def _tensor_files(raw: np.ndarray, output: np.ndarray) -> dict[str, bytes]:
    """Test tensors (.npy, exact) and sample tensors (.tif, for viewers), batch axis included."""
    import tifffile

    files = {}
    for stem, array in (("input", raw), ("output", output)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        files[f"test_{stem}.npy"] = buffer.getvalue()
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, array[0], photometric="minisblack")
        files[f"sample_{stem}.tif"] = buffer.getvalue()
    return files
