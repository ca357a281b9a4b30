"""How many times smaller a 2-D U-Net sees the images, chosen from the corrected objects (issue 17).

A U-Net segments an object well when it sees it at about the size its recipe was made for: the
built-in models and the learning recipe's pixel settings (boundary width, border weights, elastic
grid, operating point) were made on nuclei of 15-23 px (an eighth to a tenth of the depth-4
net's 200 px receptive field). Whole fibroblasts of 250 px in a 1024 x 1024 phase-contrast image
are far larger, and a start model trained on 20-px nuclei has never seen such sizes. As nnU-Net
resamples to a target spacing and Cellpose rescales to a target diameter (30 px), a new or
fine-tuned instance model then sees the image ``k`` times smaller (``UNetConfig.downscale``: ``k``
x ``k`` blocks averaged, logits resized back, so labels, tiles and post-processing stay in the
image's own pixels; it trains on its items shrunk once, :mod:`~napari_unet.core.training.
scaled_pool`): ``k`` is the factor that brings the median corrected object nearest to
:data:`TARGET_DIAMETER` (25 px; objects up to 37 px keep ``k`` = 1), at most :data:`MAX_AUTO`,
and small enough that the images still span two pooling periods. Measured on stained nuclei
enlarged 4 and 6 times (91 and 136 px, 10 CPU-minutes, K = 3, two seeds): AP@0.5 0.23 -> 0.47
at ``k`` = 4 and 0.22 -> 0.47 at ``k`` = 6 (docs/learning_ablation.md). Only instance labels
choose it (a semantic class's connected regions, e.g. a membrane network, are not objects of a
size); other architectures keep 1.

Torch-free except :func:`with_downscale`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The median object's width (px, as the net sees it) the images are shrunk towards: the size the
#: recipe and the built-ins were made for (nuclei of 15-23 px; Cellpose's target is 30 px). An
#: absolute size, not a share of the field: a shallow net's field is no reason to shrink nuclei.
TARGET_DIAMETER = 25.0
#: The largest factor chosen automatically (``UNetConfig``'s largest).
MAX_AUTO = 8
#: Architectures whose config has ``downscale``.
ARCHS = ("unet",)


def choose_downscale(
    diameter: float | None, median_shape: tuple[int, ...], size_multiple: int
) -> int:
    """The factor ``k`` (1 = full resolution) for objects of median ``diameter`` px: the one
    that brings them nearest to :data:`TARGET_DIAMETER`.

    Args:
        diameter: median equivalent diameter of the corrected objects (None: no objects).
        size_multiple: the net's input divisor at full resolution (``k`` = 1).
        median_shape: (Y, X) of the median image.
    """
    if diameter is None:
        return 1
    k = factor_for(diameter)
    while k > 1 and min(median_shape) < 2 * size_multiple * k:
        k -= 1  # the shrunk image must still span two pooling periods
    return k


def factor_for(diameter: float) -> int:
    """The factor (1-:data:`MAX_AUTO`) bringing objects ``diameter`` px wide nearest to
    :data:`TARGET_DIAMETER`, before the images' size is considered."""
    return max(1, min(MAX_AUTO, math.floor(diameter / TARGET_DIAMETER + 0.5)))


def check_factor(k: int | None, arch: str, three_d: bool = False) -> None:
    """Refuse an explicit factor ``k`` > 1 for a net that cannot see the images smaller."""
    from napari_unet.core.errors import UserInputError

    if k is not None and k > 1 and (arch not in ARCHS or three_d):
        raise UserInputError(
            f"--downscale {k} needs a 2-D U-Net (--model unet or a checkpoint of one); {arch} "
            f"{'in 3-D ' if three_d else ''}sees the images at full resolution: "
            "leave --downscale out, or downscale the images yourself."
        )


def downscale_of(model_config: dict[str, Any]) -> int:
    """The factor a model config says (1 when absent)."""
    return int(model_config.get("downscale", 1) or 1)


def with_downscale(model_or_checkpoint: Any, k: int, folder: Path | None = None) -> Any:
    """``model_or_checkpoint`` seeing the images ``k`` times smaller (the same weights).

    A model object is rebuilt with the factor (its attributes such as ``context_slices`` kept); a
    checkpoint file is copied into ``folder`` with the factor in its config (the start model's
    own file is never changed). Unchanged when it already has ``k``.
    """
    import torch

    from napari_unet.core.atomic import atomic_write_with
    from napari_unet.core.checkpoint.integrity import load_payload
    from napari_unet.core.models import build_model

    if isinstance(model_or_checkpoint, torch.nn.Module):
        model = model_or_checkpoint
        if downscale_of(model.config) == k:
            return model
        rebuilt = build_model(model.arch, **{**model.config, "downscale": int(k)})
        rebuilt.load_state_dict(model.state_dict())
        rebuilt.context_slices = getattr(model, "context_slices", 0)
        return rebuilt.train(model.training)
    path = Path(model_or_checkpoint)
    if folder is None:
        raise ValueError("a checkpoint is copied: give the folder for the copy")
    payload = load_payload(path, map_location="cpu", verify=True)
    info = payload["info"]
    if downscale_of(info.get("model_config", {})) == k:
        return model_or_checkpoint
    info["model_config"] = {**info["model_config"], "downscale": int(k)}
    if k == 1:
        del info["model_config"]["downscale"]
    provenance = dict(info.get("provenance") or {})
    provenance["downscaled_from"] = str(path)
    info["provenance"] = provenance
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{path.stem}.downscale{k}.pt"
    atomic_write_with(out, lambda handle: torch.save(payload, handle))
    logger.info("start model %s sees the images %dx smaller: %s", path.name, k, out.name)
    return str(out)
