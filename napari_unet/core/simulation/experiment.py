"""The human-in-the-loop experiment, done by a script: correct, fine-tune, measure, repeat.

A fixed set of held-out images is chosen up front (the last ``eval_images`` of a seeded
permutation) and never corrected. Round 0 scores the initial model on it. Each later round takes
the next ``per_round`` images of the permutation, predicts them with the current model and
"corrects" them from the ground truth (they become fully annotated :class:`TrainingItem` objects;
the correction effort is how much of the prediction had to change), fine-tunes on every image
corrected so far (continuing from the previous round's model) and scores the held-out set again.

:func:`iter_simulate` yields :class:`SimulateProgress` and one :class:`RoundRecord` per round and
returns a :class:`SimulateResult`; :func:`simulate` drains it. The trainer is pluggable
(:data:`Trainer`) so a benchmark can drive another training back end through the same rounds.

The correction effort is defined in :mod:`napari_unet.core.simulation.parts`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

from napari_unet.core.config import Config
from napari_unet.core.errors import UserInputError
from napari_unet.core.generators import run_to_end
from napari_unet.core.inference.prediction import PredictConfig
from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.simulation.parts import (
    correction_effort,
    mapped_truth,
    mean_metrics,
    new_model_for,
    plan_split,
    predict_labels,
)
from napari_unet.core.training.config import StepEvent, TrainConfig
from napari_unet.core.training.items import TrainingItem

__all__ = [
    "PRIMARY_METRIC",
    "RoundRecord",
    "SimulateConfig",
    "SimulateEvent",
    "SimulateProgress",
    "SimulateResult",
    "Trainer",
    "correction_effort",
    "default_trainer",
    "iter_simulate",
    "mapped_truth",
    "mean_metrics",
    "new_model_for",
    "plan_split",
    "predict_labels",
    "simulate",
]

logger = logging.getLogger(__name__)

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


@dataclasses.dataclass(frozen=True)
class RoundRecord:
    """One round: what was corrected, how long training ran, and the held-out metrics.

    Attributes:
        round: 0 for the initial model, then 1, 2, ...
        corrected_images: images corrected so far (cumulative).
        new_images: names of the images corrected in this round.
        minutes_trained: wall-clock minutes of this round's training (0 for round 0).
        cumulative_minutes: training minutes so far.
        steps: optimisation steps of this round.
        pixels_corrected, objects_corrected: the correction effort of this round (module doc).
        metrics: mean of :func:`~napari_unet.core.evaluation.score.evaluate_pair` over the held-out
            images (NaN where undefined on every image).
    """

    round: int
    corrected_images: int
    new_images: tuple[str, ...]
    minutes_trained: float
    cumulative_minutes: float
    steps: int
    pixels_corrected: int
    objects_corrected: int
    metrics: dict

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN/Inf metrics become None)."""
        data = dataclasses.asdict(self)
        data["new_images"] = list(self.new_images)
        data["metrics"] = {k: _finite_or_none(v) for k, v in self.metrics.items()}
        return data


@dataclasses.dataclass(frozen=True)
class SimulateProgress:
    """Work inside a round: ``phase`` is ``evaluate``, ``correct`` or ``train``.

    ``done``/``total`` count images (evaluate, correct) or steps (train; ``total`` 0 when the
    budget is in minutes); ``loss`` is the last training loss.
    """

    round: int
    phase: str
    done: int
    total: int
    loss: float | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class SimulateResult:
    """The whole experiment: the rounds, the split, and the final model."""

    rounds: tuple[RoundRecord, ...]
    held_out: tuple[str, ...]
    corrected: tuple[str, ...]
    model: Any

    def to_dict(self, config: dict | None = None) -> dict[str, Any]:
        """``{"rounds": [...], "config": {...}, "held_out": [...], "corrected": [...]}``."""
        return {
            "rounds": [r.to_dict() for r in self.rounds],
            "config": dict(config or {}),
            "held_out": list(self.held_out),
            "corrected": list(self.corrected),
        }


SimulateEvent = SimulateProgress | RoundRecord

#: ``trainer(model, items, round_index) -> generator of events returning the trained model``:
#: trains on every corrected item, continuing from ``model``.
Trainer = Callable[[Any, list[TrainingItem], int], Generator[Any, None, Any]]


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def default_trainer(config: SimulateConfig, work_dir: str) -> Trainer:
    """The :data:`Trainer` running :func:`~napari_unet.core.training.loop.iter_train` in place."""
    from napari_unet.core.training.loop import iter_train

    def trainer(model: Any, items: list[TrainingItem], round_index: int):
        train_config = config.round_train_config(round_index, f"{work_dir}/round_{round_index}")
        yield from iter_train(model, items, train_config, parent=None)
        return model

    return trainer


def iter_simulate(
    model: Any,
    items: Sequence[TrainingItem],
    config: SimulateConfig,
    *,
    trainer: Trainer | None = None,
    work_dir: str | None = None,
    stop: Callable[[], bool] | None = None,
) -> Generator[SimulateEvent, None, SimulateResult]:
    """Run the experiment; yields progress and one :class:`RoundRecord` per round.

    Args:
        model: the initial model (a :class:`~napari_unet.core.models.SegmentationNet`, trained
            in place by the default trainer).
        items: every image with its full ground truth: ``image`` (C, Y, X) float32 normalised,
            ``labels`` (Y, X) raw truth (``config.label_map`` maps it), unique ``name``.
        config: the settings.
        trainer: fine-tunes between rounds (default: :func:`default_trainer`).
        work_dir: where the default trainer writes its checkpoints (default: a temporary
            folder, removed at the end).
        stop: called between steps of work; True ends the experiment after the current round.

    Returns:
        The :class:`SimulateResult` (rounds done so far when stopped).

    Raises:
        UserInputError: too few images for the rounds and the held-out set, or duplicate names.
    """
    names = [item.name for item in items]
    if len(set(names)) != len(names) or not all(names):
        raise UserInputError("every image needs a unique name; rename the duplicate files.")
    n_corrected = config.rounds * config.per_round
    n_eval = config.eval_images or max(1, (len(items) - n_corrected) // 4)
    order, held = plan_split(len(items), n_corrected=n_corrected, n_eval=n_eval, seed=config.seed)
    label_map = dict(config.label_map) if config.label_map else None
    truths = {i: mapped_truth(items[i].labels, label_map) for i in (*order, *held)}
    should_stop = stop or (lambda: False)
    cleanup = None
    if work_dir is None and trainer is None:
        cleanup = tempfile.TemporaryDirectory(prefix="napari-unet-simulate-")
        work_dir = cleanup.name
    trainer = trainer or default_trainer(config, str(work_dir))
    logger.info(
        "simulate: %d image(s) to correct in %d round(s), %d held out: %s",
        n_corrected,
        config.rounds,
        n_eval,
        [names[i] for i in held],
    )

    def evaluate(round_index: int):
        from napari_unet.core.evaluation.score import evaluate_pair

        rows = []
        for done, i in enumerate(held, start=1):
            pred = predict_labels(model, items[i].image, config)
            rows.append(evaluate_pair(pred, truths[i], task=config.task))
            yield SimulateProgress(round_index, "evaluate", done, len(held))
        return mean_metrics(rows)

    records: list[RoundRecord] = []
    try:
        metrics = yield from evaluate(0)
        record = RoundRecord(0, 0, (), 0.0, 0.0, 0, 0, 0, metrics)
        records.append(record)
        yield record
        corrected: list[TrainingItem] = []
        cumulative = 0.0
        for r in range(1, config.rounds + 1):
            if should_stop():
                break
            new = order[(r - 1) * config.per_round : r * config.per_round]
            pixels = objects = 0
            for done, i in enumerate(new, start=1):
                pred = predict_labels(model, items[i].image, config)
                p, o = correction_effort(pred, truths[i], task=config.task)
                pixels, objects = pixels + p, objects + o
                corrected.append(dataclasses.replace(items[i], annotated_mask=None))
                yield SimulateProgress(r, "correct", done, len(new))
            model, steps, seconds = yield from _train_round(
                trainer, model, corrected, r, config, should_stop
            )
            cumulative += seconds / 60.0
            metrics = yield from evaluate(r)
            record = RoundRecord(
                round=r,
                corrected_images=len(corrected),
                new_images=tuple(names[i] for i in new),
                minutes_trained=seconds / 60.0,
                cumulative_minutes=cumulative,
                steps=steps,
                pixels_corrected=pixels,
                objects_corrected=objects,
                metrics=metrics,
            )
            records.append(record)
            logger.info("round %d: %d steps, %s", r, steps, metrics)
            yield record
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    return SimulateResult(
        rounds=tuple(records),
        held_out=tuple(names[i] for i in held),
        corrected=tuple(names[i] for i in order),
        model=model,
    )


def _train_round(trainer, model, corrected, round_index, config, should_stop):
    """Run ``trainer`` on the corrected pool; returns ``(model, steps, seconds)``."""
    total = config.steps_per_round or (0 if config.minutes else config.train.steps or 0)
    steps, start = 0, time.perf_counter()
    events = trainer(model, list(corrected), round_index)
    while True:
        try:
            event = next(events)
        except StopIteration as done:
            model = done.value if done.value is not None else model
            break
        if isinstance(event, StepEvent):
            steps = event.step
            yield SimulateProgress(round_index, "train", steps, total, event.loss)
            if should_stop():
                events.close()
                break
    return model, steps, time.perf_counter() - start


def simulate(*args: Any, **kwargs: Any) -> SimulateResult:
    """Run :func:`iter_simulate` to the end (same arguments) and return its result."""
    return run_to_end(iter_simulate(*args, **kwargs))
