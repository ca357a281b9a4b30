"""The human-in-the-loop experiment, run by a script: correct, fine-tune, repeat.

Names from modules that import torch are loaded on first use, so that importing this
package (or one of its torch-free modules) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_unet.core.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from napari_unet.core.simulation.experiment import (
        PRIMARY_METRIC,
        RoundRecord,
        SimulateConfig,
        SimulateEvent,
        SimulateProgress,
        SimulateResult,
        Trainer,
        default_trainer,
        iter_simulate,
        simulate,
    )

_LAZY = {
    "PRIMARY_METRIC": "napari_unet.core.simulation.experiment",
    "RoundRecord": "napari_unet.core.simulation.experiment",
    "SimulateConfig": "napari_unet.core.simulation.experiment",
    "SimulateEvent": "napari_unet.core.simulation.experiment",
    "SimulateProgress": "napari_unet.core.simulation.experiment",
    "SimulateResult": "napari_unet.core.simulation.experiment",
    "Trainer": "napari_unet.core.simulation.experiment",
    "default_trainer": "napari_unet.core.simulation.experiment",
    "iter_simulate": "napari_unet.core.simulation.experiment",
    "simulate": "napari_unet.core.simulation.experiment",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


__all__ = [
    "PRIMARY_METRIC",
    "RoundRecord",
    "SimulateConfig",
    "SimulateEvent",
    "SimulateProgress",
    "SimulateResult",
    "Trainer",
    "default_trainer",
    "iter_simulate",
    "simulate",
]
