"""Image -> probabilities: normalize, overlap-tile prediction for any predictor, the
model's prediction generator, and where the model is unsure.

Names from modules that import torch are loaded on first use, so that importing this
package (or one of its torch-free modules) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_unet.core.inference.normalization import (
    MAX_PERCENTILE_SAMPLES,
    MODES,
    PRESCALE_ABOVE,
    NormalizationConfig,
    NormalizationParams,
    apply_normalization,
    normalization_params,
    normalize,
    percentile_range,
)
from napari_unet.core.inference.tiling import (
    BLENDS,
    MIN_WEIGHT,
    AxisPlan,
    Predictor,
    Prepare,
    Region,
    TilePlan,
    TileProgress,
    iter_tile_predict,
    plan_tiles,
    tile_predict,
)
from napari_unet.core.inference.uncertainty import disagreement, entropy, most_uncertain_tile
from napari_unet.core.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from napari_unet.core.inference.config import (
        DEFAULT_PADDED_OVERLAP,
        MIN_TILE,
        PROBABILITY_DTYPES,
        TTA_MODES,
        PredictConfig,
    )
    from napari_unet.core.inference.prediction import (
        PredictProgress,
        iter_predict,
        predict,
        shift_period,
        tta_transforms,
    )

_LAZY = {
    "DEFAULT_PADDED_OVERLAP": "napari_unet.core.inference.config",
    "MIN_TILE": "napari_unet.core.inference.config",
    "PROBABILITY_DTYPES": "napari_unet.core.inference.config",
    "TTA_MODES": "napari_unet.core.inference.config",
    "PredictConfig": "napari_unet.core.inference.config",
    "PredictProgress": "napari_unet.core.inference.prediction",
    "iter_predict": "napari_unet.core.inference.prediction",
    "predict": "napari_unet.core.inference.prediction",
    "shift_period": "napari_unet.core.inference.prediction",
    "tta_transforms": "napari_unet.core.inference.prediction",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


__all__ = [
    "BLENDS",
    "DEFAULT_PADDED_OVERLAP",
    "MAX_PERCENTILE_SAMPLES",
    "MIN_TILE",
    "MIN_WEIGHT",
    "MODES",
    "PRESCALE_ABOVE",
    "PROBABILITY_DTYPES",
    "TTA_MODES",
    "AxisPlan",
    "NormalizationConfig",
    "NormalizationParams",
    "PredictConfig",
    "PredictProgress",
    "Predictor",
    "Prepare",
    "Region",
    "TilePlan",
    "TileProgress",
    "apply_normalization",
    "disagreement",
    "entropy",
    "iter_predict",
    "iter_tile_predict",
    "most_uncertain_tile",
    "normalization_params",
    "normalize",
    "percentile_range",
    "plan_tiles",
    "predict",
    "shift_period",
    "tile_predict",
    "tta_transforms",
]
