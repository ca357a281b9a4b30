"""The loss and augmentation settings a :class:`~napari_unet.core.training.config.TrainConfig`
holds (no torch); :mod:`napari_unet.core.training.config` re-exports both.
"""

from __future__ import annotations

import dataclasses

from napari_unet.core.config import Config, setting

__all__ = ["AugmentConfig", "LossConfig"]


@dataclasses.dataclass(frozen=True)
class LossConfig(Config):
    """Weights of the loss terms.

    Attributes:
        ce: weighted cross entropy (BCE for binary), the paper's loss.
        dice: soft Dice loss (1 − mean Dice over foreground classes).
        jaccard: ``−log(soft Jaccard)``; with ``ce`` this is TernausNet's ``BCE − log J``
            (per-class soft Jaccard of the softmax for multi-class tasks).
        use_weight_map: multiply the cross entropy by the target weight map when given.
        deep_supervision_weights: one weight per supervised head (shallow to deep);
            ``None`` = equal weights. The loss is the weighted mean of the heads' losses.
        regression: ``"l1"`` or ``"mse"`` for the restoration task.
        smooth: additive smoothing of Dice and Jaccard (keeps empty classes finite).
        distance: weight of the distance regression (smooth L1 on the foreground) of a model
            with a distance head (``aux="distance"``; :mod:`napari_unet.core.training.aux`).
        skeleton_recall: weight of the Skeleton Recall term (soft recall of each foreground
            class's probability on the tubed skeleton of its true pixels; it punishes gaps in
            thin structures such as membranes: :mod:`napari_unet.core.training.skeleton`).
            0 (default) = off; ``None`` = auto, decided from the training labels when
            training starts: on (weight 1) for a binary or 2-class semantic task whose class
            1 is thin and encloses regions (membranes), off otherwise (instance tasks never).
            Off by default: it did not lower the ISBI 2012 Rand error at the 2-minute budget
            (docs/learning_ablation.md, "Skeleton Recall").
    """

    ce: float = setting(
        1.0,
        "CE",
        tooltip="Weight of the (border-weighted) cross entropy",
        row="Loss weights",
        min=0.0,
        max=10.0,
        step=0.1,
        advanced=True,
        order=1,
    )
    dice: float = setting(
        0.0,
        "Dice",
        tooltip="Weight of the soft Dice loss",
        row="Loss weights",
        min=0.0,
        max=10.0,
        step=0.1,
        advanced=True,
        order=1,
    )
    jaccard: float = setting(
        0.0,
        "Jacc.",
        tooltip="Weight of the −log Jaccard loss",
        row="Loss weights",
        min=0.0,
        max=10.0,
        step=0.1,
        advanced=True,
        order=1,
    )
    use_weight_map: bool = True
    deep_supervision_weights: tuple[float, ...] | None = None
    regression: str = "l1"
    smooth: float = 1.0
    distance: float = 1.0
    skeleton_recall: float | None = 0.0

    def __post_init__(self) -> None:
        terms = (self.ce, self.dice, self.jaccard)
        if min(terms) < 0 or sum(terms) <= 0:
            raise ValueError(f"loss weights must be >= 0 with a positive sum, got {terms}")
        if self.regression not in ("l1", "mse"):
            raise ValueError(f"regression must be 'l1' or 'mse', got {self.regression!r}")
        if self.smooth < 0 or self.distance < 0 or (self.skeleton_recall or 0) < 0:
            raise ValueError(
                "smooth, distance and skeleton_recall must be >= 0, got "
                f"{self.smooth}, {self.distance}, {self.skeleton_recall}"
            )
        if self.deep_supervision_weights is not None:
            weights = tuple(float(w) for w in self.deep_supervision_weights)
            if not weights or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(
                    f"deep_supervision_weights must be >= 0 with a positive sum, got {weights}"
                )
            object.__setattr__(self, "deep_supervision_weights", weights)


@dataclasses.dataclass(frozen=True)
class AugmentConfig(Config):
    """Augmentation settings; magnitudes are the maxima at ``strength == 1``.

    Attributes:
        flip: random horizontal and vertical flips (each with probability 1/2).
        flip_context: 2.5-D models: the neighbour slices in reverse order (probability 1/2).
        rot90: random rotation by k * 90 degrees (k uniform in 0..3; 0 or 2 for non-square patches).
        elastic: the paper's elastic deformation.
        elastic_alpha: standard deviation, in pixels, of each displacement component at every
            coarse-grid node AFTER smoothing (the paper: 10 px). The smoothed grid is rescaled
            so this holds exactly at every node, whatever ``elastic_sigma`` is.
        elastic_sigma: Gaussian smoothing of the coarse displacement grid, in grid cells (0 = the
            paper: independent node displacements, smoothed only by the bicubic upsampling).
        elastic_grid: nodes per side of the coarse grid (the paper: 3), spanning the patch
            corner to corner.
        affine_scale: (low, high) zoom factor range (> 1 zooms in).
        affine_rotation_deg: maximum rotation angle in degrees (uniform in +-this).
        gamma: (low, high) gamma range, applied to the sample's intensity range rescaled to [0, 1].
        brightness: maximum additive shift, as a fraction of the sample's intensity range.
        contrast: maximum relative contrast change around the sample's mean.
        noise_std: maximum Gaussian noise std, as a fraction of the sample's intensity range
            (each sample draws its std uniformly in [0, noise_std]).
        blur_sigma: (low, high) Gaussian blur sigma range in pixels.
        probability: probability that each random op (elastic, affine, gamma, brightness/contrast,
            noise, blur) is applied to a sample, independently per op and sample.
        image_interpolation: ``"bilinear"`` or ``"bicubic"`` resampling of the image.
        strength: 0..1, scales every magnitude (ranges shrink towards the identity); 0 = identity.
    """

    flip: bool = True
    flip_context: bool = True
    rot90: bool = True
    elastic: bool = True
    elastic_alpha: float = 10.0
    elastic_sigma: float = 0.0
    elastic_grid: int = 3
    affine_scale: tuple[float, float] = (0.9, 1.1)
    affine_rotation_deg: float = 15.0
    gamma: tuple[float, float] = (0.7, 1.5)
    brightness: float = 0.1
    contrast: float = 0.2
    noise_std: float = 0.03
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    probability: float = 0.5
    image_interpolation: str = "bilinear"
    strength: float = setting(
        1.0,
        "Augmentation",
        tooltip="Augmentation strength (flips, elastic, affine, intensity), 0–1",
        widget="FloatSlider",
        min=0.0,
        max=1.0,
        step=0.01,
        order=2,
    )

    def __post_init__(self) -> None:
        checks = {
            "elastic_alpha": self.elastic_alpha >= 0,
            "elastic_sigma": self.elastic_sigma >= 0,
            "elastic_grid": self.elastic_grid >= 2,
            "affine_scale": 0 < self.affine_scale[0] <= self.affine_scale[1],
            "affine_rotation_deg": 0 <= self.affine_rotation_deg <= 180,
            "gamma": 0 < self.gamma[0] <= self.gamma[1],
            "brightness": self.brightness >= 0,
            "contrast": 0 <= self.contrast < 1,
            "noise_std": self.noise_std >= 0,
            "blur_sigma": 0 <= self.blur_sigma[0] <= self.blur_sigma[1] <= 10,
            "probability": 0 <= self.probability <= 1,
            "image_interpolation": self.image_interpolation in ("bilinear", "bicubic"),
            "strength": 0 <= self.strength <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"AugmentConfig: invalid {values}")
