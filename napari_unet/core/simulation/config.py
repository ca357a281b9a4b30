"""The experiment's settings: :class:`SimulateConfig` (torch-free, so it pickles across the spawn
boundary and a script can build it without importing torch)."""

from __future__ import annotations

import dataclasses
from typing import Any

from napari_unet.core.config import Config
from napari_unet.core.inference.config import PredictConfig
from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.training.config import TrainConfig
from napari_unet.core.training.context import FLAT_COPIES

__all__ = ["PRIMARY_METRIC", "SIMULATE_TASKS", "SimulateConfig"]

#: Tasks the experiment can score (it needs label images).
SIMULATE_TASKS: tuple[str, ...] = ("binary", "semantic", "instances")
#: The metric a curve shows by default, per task.
PRIMARY_METRIC: dict[str, str] = {"binary": "iou", "semantic": "iou", "instances": "ap50"}


@dataclasses.dataclass(frozen=True)
class SimulateConfig(Config):
    """How the experiment runs.

    Attributes:
        task: ``binary``, ``semantic`` or ``instances``.
        rounds: correction rounds after round 0.
        per_round: images corrected per round.
        minutes: training budget per round in minutes (wall clock of the training loop).
        steps_per_round: training budget per round in steps; with ``minutes``, whichever ends
            first. With neither, ``train.steps`` applies.
        eval_images: held-out images (default: a quarter of the images not corrected, >= 1).
        seed: seeds the permutation, the training runs (seed + round) and nothing else.
        label_map: ``((src, dst), ...)`` from the data set's truth values to class ids.
        train: training settings; task, budget, seed and label map are set per round.
        predict: how images are predicted (they are already normalised: normalisation ``none``).
        postprocess: probabilities -> labels; None = semantic labels, or instances for the
            ``instances`` task.
        flat_copies: a 2.5-D model (``context_slices``) also trains on each corrected slice
            with itself as its own neighbours (``core.training.context``); the copies are made
            after the held-back split and are not images of the experiment.
    """

    task: str = "semantic"
    rounds: int = 4
    per_round: int = 2
    minutes: float | None = None
    steps_per_round: int | None = None
    eval_images: int | None = None
    seed: int = 0
    label_map: tuple[tuple[int, int], ...] | None = None
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(val_fraction=0.0))
    predict: PredictConfig = dataclasses.field(default_factory=PredictConfig)
    postprocess: PostprocessConfig | None = None
    flat_copies: bool = FLAT_COPIES

    def __post_init__(self) -> None:
        if self.task not in SIMULATE_TASKS:
            raise ValueError(f"simulate task must be one of {SIMULATE_TASKS}, got {self.task!r}")
        checks = {
            "rounds": self.rounds >= 0,
            "per_round": self.per_round >= 1,
            "minutes": self.minutes is None or self.minutes > 0,
            "steps_per_round": self.steps_per_round is None or self.steps_per_round >= 1,
            "eval_images": self.eval_images is None or self.eval_images >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"SimulateConfig: invalid {values}")
        if self.label_map is not None:
            pairs = tuple((int(s), int(d)) for s, d in self.label_map)
            object.__setattr__(self, "label_map", pairs)

    @property
    def postprocess_config(self) -> PostprocessConfig:
        """The resolved post-processing (instances for the instance task)."""
        if self.postprocess is not None:
            return self.postprocess
        return PostprocessConfig(output="instances" if self.task == "instances" else "semantic")

    def round_train_config(self, round_index: int, checkpoint_dir: str) -> TrainConfig:
        """The training settings of round ``round_index`` (budget, seed, label map set)."""
        budget: dict[str, Any] = {}
        if self.minutes is not None or self.steps_per_round is not None:
            budget = {"steps": self.steps_per_round, "minutes": self.minutes}
        return self.train.replace(
            task=self.task,
            seed=self.seed + round_index,
            targets=self.train.targets.replace(task=self.task, label_map=self.label_map),
            checkpoint_dir=checkpoint_dir,
            **budget,
        )
