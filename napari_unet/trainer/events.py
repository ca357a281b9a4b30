"""What the fine-tune process says and hears: its request and the events it streams back.

Plain, frozen, picklable records (no Qt, no napari, no torch at import) that cross the process
boundary between napari and the trainer (:mod:`napari_unet.trainer.process`):

- napari -> trainer: a :class:`FinetuneRequest` (pickled as it is: its ``train_config`` is a
  ``TrainConfig``, torch-free) when the process starts, then on the
  ``control`` queue ``"stop"`` or ``("corrections", [(image_id, slice_index), ...])``;
- trainer -> napari on the ``events`` queue: the core's ``StepEvent`` / ``ValidationEvent``
  (``napari_unet.core.training.config``), plus :class:`PoolChanged`, :class:`VersionPublished`,
  and exactly one of :class:`TrainerFinished` / :class:`TrainerFailed` at the end.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from napari_unet.core.config import Config, setting
from napari_unet.core.training.config import TrainConfig

#: Control message asking the trainer to finish at the next step.
STOP = "stop"
#: Control message kind: ``(CORRECTIONS, [(image_id, slice_index), ...])``.
CORRECTIONS = "corrections"


def default_num_threads() -> int:
    """Torch threads for the trainer: every core but one (the UI keeps a core), at least 1."""
    return max(1, (os.cpu_count() or 1) - 1)


@dataclasses.dataclass(frozen=True)
class FinetuneRequest(Config):
    """What to fine-tune, on which session, with which settings.

    Attributes:
        session: the session folder (the trainer reads its data from there, never from a pipe).
        start_from: a built-in model name (``core.checkpoint.format.builtin_checkpoints``), a
            version id of the session (``"v003"``) or a checkpoint file path.
        train_config: the :class:`~napari_unet.core.training.config.TrainConfig` (a plain
            dict, e.g. from JSON, is turned into one with ``TrainConfig.from_dict``). ``task``,
            ``normalization``, ``class_names`` and ``checkpoint_dir`` are set by the trainer
            from the start model and the session.
        keep_learning: continuous mode: corrections sent while training join the pool.
        num_threads: torch CPU threads in the trainer (None: :func:`default_num_threads`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        resume_from: a run's ``latest.pt`` to continue from (None: a fresh run).
        version_name: display-name prefix of the published versions (None: ``"version N"``).
        max_step_events_per_s: step events sent per second at most (others are dropped; the
            last step is always sent).
        nice: niceness increment of the trainer process (0: none), so the UI stays responsive.
    """

    session: str = ""
    start_from: str = ""
    train_config: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    keep_learning: bool = setting(
        False,
        "Keep learning",
        tooltip="Continuous mode: corrections saved while training runs join the training data",
        advanced=True,
        order=4,
    )
    num_threads: int | None = setting(
        None, "Threads", tooltip="Trainer CPU threads", min=1, max=1024, advanced=True, order=6
    )
    device: str = setting(
        "auto",
        "Device",
        tooltip="Where the trainer runs (auto: the GPU when there is one)",
        widget="ComboBox",
        advanced=True,
        order=5,
    )
    resume_from: str | None = None
    version_name: str | None = None
    max_step_events_per_s: float = 10.0
    nice: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.train_config, dict):
            object.__setattr__(self, "train_config", TrainConfig.from_dict(self.train_config))
        object.__setattr__(self, "session", os.fspath(self.session))
        object.__setattr__(self, "start_from", os.fspath(self.start_from))
        if self.resume_from is not None:
            object.__setattr__(self, "resume_from", os.fspath(self.resume_from))
        if not self.session:
            raise ValueError("FinetuneRequest: session (the session folder) is required")
        if not self.start_from:
            raise ValueError(
                "FinetuneRequest: start_from (built-in name, version id or checkpoint) is required"
            )
        if not isinstance(self.train_config, TrainConfig):
            raise ValueError("FinetuneRequest: train_config must be a TrainConfig")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"FinetuneRequest: invalid num_threads={self.num_threads!r}")
        if not self.max_step_events_per_s > 0:
            raise ValueError("FinetuneRequest: max_step_events_per_s must be > 0")
        if self.nice < 0:
            raise ValueError(f"FinetuneRequest: invalid nice={self.nice!r}")

    @property
    def threads(self) -> int:
        """The torch thread count the trainer uses."""
        return self.num_threads or default_num_threads()


@dataclasses.dataclass(frozen=True)
class PoolChanged:
    """The training pool changed (start, or corrections added in keep-learning mode).

    Attributes:
        n_items: training slices in the pool. n_validation: slices with held-back tiles.
        n_images: distinct images.
        annotated_pixels: annotated pixels in all (trained on and held back).
        validation_pixels: of those, the ones held back for validation.
        objects: annotated objects (instance ids for instance labels, connected foreground
            regions otherwise) touching the annotated pixels.
        added: names (``"<image_id>/<slice:05d>"``) of the slices just added.
        fingerprint: the data's one-line description and the patch and batch chosen from it
            (``core.training.fingerprint.DatasetFingerprint.describe``).
        flipped: the sentence saying the images' intensities were flipped for the start model
            (``core.training.polarity``; also in ``fingerprint``), else "".
    """

    n_items: int
    n_validation: int = 0
    n_images: int = 0
    annotated_pixels: int = 0
    validation_pixels: int = 0
    objects: int = 0
    added: tuple = ()
    fingerprint: str = ""
    flipped: str = ""


@dataclasses.dataclass(frozen=True)
class VersionPublished:
    """A better model was registered in the session.

    Attributes:
        version_id: its id in the session (``"v004"``). path: its checkpoint file (str).
        metrics: validation metrics (``metrics["score"]`` selects the best; may be empty
            without validation data). step: the optimiser step it was saved at.
    """

    version_id: str
    path: str
    metrics: dict
    step: int


@dataclasses.dataclass(frozen=True)
class TrainerFinished:
    """Training ended normally: ``reason`` is ``steps``, ``time``, ``stopped`` or
    ``early_stopping``; ``steps`` is the number of steps done; ``best_version`` the id of the
    last version published in this run (None when none)."""

    reason: str
    steps: int
    best_version: str | None = None


@dataclasses.dataclass(frozen=True)
class TrainerFailed:
    """Training failed; ``message`` is the sentence to show (what is wrong, what to do)."""

    message: str


TrainerEvent = Any  # StepEvent | ValidationEvent | PoolChanged | VersionPublished | ...

__all__ = [
    "CORRECTIONS",
    "STOP",
    "FinetuneRequest",
    "PoolChanged",
    "TrainerEvent",
    "TrainerFailed",
    "TrainerFinished",
    "VersionPublished",
    "default_num_threads",
]
