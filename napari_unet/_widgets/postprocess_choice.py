"""What the predict form chooses over a model's stored post-processing (moved out of
``predict_worker``, which re-exports it)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from napari_unet.core.config import Config, setting

if TYPE_CHECKING:
    from napari_unet.core.checkpoint.format import CheckpointInfo
    from napari_unet.core.postprocess.config import PostprocessConfig


@dataclasses.dataclass(frozen=True)
class PostprocessChoice(Config):
    """The post-processing chosen in the predict form: it overrides these four fields of the
    model's stored defaults (:meth:`CheckpointInfo.postprocess_config`) and keeps the others
    (``foreground_class``, watershed settings...).

    Attributes:
        output: ``"semantic"`` or ``"instances"``.
        threshold: foreground probability cut, 0..1.
        min_size: objects with fewer pixels are removed.
        unseeded: ``"object"`` or ``"drop"`` (:attr:`PostprocessConfig.unseeded`).
    """

    output: str = setting(
        "semantic",
        "Output",
        tooltip="One id per object (instances) or one id per class",
        choices=(("instances", "Instance labels"), ("semantic", "Semantic labels")),
        order=2,
    )
    threshold: float = setting(
        0.5,
        "Threshold",
        tooltip="Foreground probability cut",
        min=0.0,
        max=1.0,
        step=0.05,
        advanced=True,
        order=3,
    )
    min_size: int = setting(
        0,
        "Min. object size",
        tooltip="Objects with fewer pixels are removed",
        min=0,
        max=100000,
        step=5,
        suffix=" px",
        advanced=True,
        order=4,
    )
    unseeded: str = setting(
        "object",
        "Unseeded foreground",
        tooltip="Instances: foreground that no object centre (seed) reaches becomes objects of "
        "its own or stays background (fewer specks and rims); preset from the model",
        choices=(("object", "Own objects"), ("drop", "Background")),
        advanced=True,
        order=5,
    )

    def __post_init__(self) -> None:
        if self.unseeded not in ("object", "drop"):
            raise ValueError(f"unseeded must be 'object' or 'drop', got {self.unseeded!r}")
        if self.output not in ("semantic", "instances"):
            raise ValueError(f"output must be 'semantic' or 'instances', got {self.output!r}")
        if not 0.0 <= self.threshold <= 1.0 or self.min_size < 0:
            raise ValueError(f"invalid threshold={self.threshold!r} or min_size={self.min_size!r}")

    def apply(self, info: CheckpointInfo) -> PostprocessConfig:
        """The model's post-processing with this choice on top."""
        return info.postprocess_config(
            output=self.output,
            threshold=self.threshold,
            min_size=self.min_size,
            unseeded=self.unseeded,
        )
