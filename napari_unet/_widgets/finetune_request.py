"""From the fine-tune form to a ``FinetuneRequest``; start models; status and time lines.

Helpers of :class:`~napari_unet._widgets.finetune_panel.FinetunePanel`, kept apart so the panel
stays about wiring. Nothing here imports torch.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_unet._widgets.finetune_form import FinetuneForm, start_from_value
from napari_unet.core.errors import UserInputError
from napari_unet.core.training.config import TrainConfig
from napari_unet.trainer.events import FinetuneRequest

logger = logging.getLogger(__name__)

#: Steps between validations: frequent, for fast feedback on small corrections.
VAL_EVERY = 20
#: The trainer's validation split (``TrainConfig`` defaults): fraction, tile side, seed.
VAL_FRACTION, VAL_TILE, VAL_SEED = 0.1, 128, 0
#: Sub-folder of the session for training runs (``best.pt``/``latest.pt`` of each run).
RUNS_FOLDER = "runs"
DEFAULT_TASK = "semantic"


def version_label(version: Any) -> str:
    """``"v003 · version 3 (score 0.812)"``."""
    score = (version.metrics or {}).get("score")
    scored = f" (score {score:.3f})" if isinstance(score, (int, float)) else ""
    return f"{version.id} · {version.name}{scored}"


def list_start_models(form: FinetuneForm, session: Any) -> None:
    """Fill the start-model list: built-in models, then the session's versions (newest first)."""
    from napari_unet.core.checkpoint.format import builtin_checkpoints

    versions = []
    if session is not None:
        try:
            versions = [(v.id, version_label(v)) for v in session.versions()]
        except (UserInputError, OSError) as err:
            logger.warning("cannot list the session's versions: %s", err)
    form.set_start_models(list(builtin_checkpoints()), versions)


def start_path(key: str, session: Any) -> Path | None:
    """The checkpoint file of a start key, or None when it cannot be told."""
    if not key:
        return None
    kind, value = key.split(":", 1)
    try:
        if kind == "builtin":
            from napari_unet.core.checkpoint.format import builtin_checkpoints

            return builtin_checkpoints().get(value)
        if kind == "version":
            return None if session is None else session.version_path(value)
    except (UserInputError, OSError) as err:
        logger.warning("cannot find the start model %s: %s", key, err)
        return None
    return Path(value)


def image_name(session: Any, image_id: str) -> str:
    """The display name of a session image (its layer name), quoted; the id when unknown."""
    try:
        return f"'{session.image(image_id).name}'"
    except (UserInputError, OSError, KeyError, AttributeError):
        return image_id


_IMAGE_ID = re.compile(r"\bimage '?(img\d{4,})'?")


def with_image_names(text: str, session: Any) -> str:
    """``text`` with the session's internal image ids (``img0001``) replaced by layer names."""
    if session is None:
        return text
    return _IMAGE_ID.sub(lambda m: f"image {image_name(session, m.group(1))}", text)


def start_key_of_model(model: str | None, session: Any) -> str:
    """The start key of the checkpoint that made a labels layer (its tag's ``model``), or "".

    A built-in's file gives ``builtin:<name>``, one of the session's version files
    ``version:<id>``, any other existing file ``file:<path>``.
    """
    if not model:
        return ""
    from napari_unet.core.checkpoint.format import builtin_checkpoints

    path = Path(model)
    for name, builtin in builtin_checkpoints().items():
        if name == model or _same_file(path, Path(builtin)):
            return f"builtin:{name}"
    if session is not None:
        try:
            for version in session.versions():
                if _same_file(path, Path(session.version_path(version.id))):
                    return f"version:{version.id}"
        except (UserInputError, OSError) as err:
            logger.warning("cannot list the session's versions: %s", err)
    return f"file:{path}" if path.is_file() else ""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def build_request(form: FinetuneForm, session: Any, key: str, task: str | None) -> FinetuneRequest:
    """The :class:`FinetuneRequest` of the form's settings.

    Args:
        form: the settings. session: the open session.
        key: the start key (``builtin:…``, ``version:…``, ``file:…``).
        task: the start model's task when known (the trainer sets it from the model anyway).

    Raises:
        UserInputError: no start model, or settings the trainer would refuse (the message says
            which and what to change).
    """
    if not key:
        raise UserInputError(
            "No model to start from: pick a built-in model or an earlier version, or Load… a "
            "checkpoint file."
        )
    if key.startswith("file:") and not Path(start_from_value(key)).is_file():
        raise UserInputError(
            f"The checkpoint {start_from_value(key)} does not exist any more; Load… another."
        )
    if form.loss_total() <= 0:
        raise UserInputError("All loss weights are 0: give CE, Dice or Jaccard a weight > 0.")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        base = TrainConfig(
            task=task or DEFAULT_TASK,
            val_every=VAL_EVERY,
            val_fraction=VAL_FRACTION,
            val_tile=VAL_TILE,
            seed=VAL_SEED,
            checkpoint_dir=str(Path(session.root) / RUNS_FOLDER / stamp),
        )
        request = FinetuneRequest(
            session=str(session.root),
            start_from=start_from_value(key),
            train_config=form.train_settings(base),
        )
        return form.request_settings(request)
    except ValueError as err:
        raise UserInputError(f"These settings cannot be used ({err}); change them.") from None


def duration(seconds: float) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def time_left(step: Any, since_step_s: float, train_config: TrainConfig) -> float | None:
    """Seconds left by the budget (the earlier of the time and step budgets), or None.

    Args:
        step: the last ``StepEvent`` (step, elapsed_s). since_step_s: seconds since it came.
        train_config: the request's ``TrainConfig`` (``minutes``, ``steps``).
    """
    elapsed = float(step.elapsed_s) + since_step_s
    lefts = []
    if train_config.minutes:
        lefts.append(60.0 * float(train_config.minutes) - elapsed)
    if train_config.steps and step.step > 0 and step.elapsed_s > 0:
        rate = step.step / float(step.elapsed_s)
        lefts.append((int(train_config.steps) - step.step) / rate - since_step_s)
    return max(0.0, min(lefts)) if lefts else None


def timing_text(
    started_at: float | None,
    step: Any,
    step_at: float,
    request: Any,
    *,
    running: bool,
) -> str:
    """``"Elapsed 1 min 02 s · about 3 min 58 s left · step 120"`` (empty before any run)."""
    if started_at is None:
        return ""
    now = time.monotonic()
    if not running:
        done = f" · {step.step} steps" if step is not None else ""
        return f"Ran for {duration(float(step.elapsed_s) if step else now - started_at)}{done}."
    text = f"Elapsed {duration(now - started_at)}"
    if step is None:
        return text + " · starting…"
    if request is not None and request.keep_learning:
        return text + f" · until Stop · step {step.step}"
    left = None if request is None else time_left(step, now - step_at, request.train_config)
    if left is not None:
        text += f" · about {duration(left)} left"
    return text + f" · step {step.step}"


FINISH_REASONS = {
    "steps": "step budget used",
    "time": "time budget used",
    "stopped": "stopped",
    "early_stopping": "no more improvement",
}


@dataclass
class RunScores:
    """Validation scores of one run, to say how a score compares with what counts.

    The trainer publishes a version only when the run's best score beats the start model's
    (``start``, None without validation data or after keep-learning changed the held-back
    tiles), so the status compares against both.
    """

    start: float | None = None
    best: float | None = None
    published: str | None = None

    def reset(self) -> None:
        """A new run."""
        self.start = self.best = self.published = None


def validation_text(event: Any, scores: RunScores | None = None) -> str:
    """Status line of a ``ValidationEvent`` (step 0 is the start model's score).

    ``scores`` is updated with the event (pass the same object for the whole run).
    """
    scores = scores if scores is not None else RunScores()
    score = float(event.metrics.get("score", float("nan")))
    if event.step == 0:
        scores.start = score
        return f"Start model: validation score {score:.3f}."
    previous_best, start = scores.best, scores.start
    if previous_best is None or score > previous_best:
        scores.best = score
    text = f"Step {event.step}: validation score {score:.3f}"
    if start is None:
        return text + (" (best so far)." if event.improved else ".")
    if score <= start:
        if scores.published:
            return text + f", below the start model's {start:.3f}; {scores.published} stays."
        return text + f", below the start model's {start:.3f}; nothing published yet."
    if previous_best is not None and score <= previous_best:
        return (
            text + f", above the start model's {start:.3f} but not this run's best "
            f"{previous_best:.3f}."
        )
    return text + f", above the start model's {start:.3f} (best so far)."


def version_text(event: Any) -> str:
    """Status line of a ``VersionPublished``."""
    score = event.metrics.get("score")
    scored = "" if score is None else f" (validation score {score:.3f})"
    return f"New model version {event.version_id}{scored} at step {event.step}."


def pool_text(event: Any) -> str:
    """Status line of a ``PoolChanged``."""
    added = f" ({len(event.added)} just added)" if event.added else ""
    data = getattr(event, "fingerprint", "")  # what the data look like, the patch chosen
    return (
        f"Training on {event.n_items} slice(s){added}; {event.n_validation} with validation "
        "tiles held back." + (f"\n{data[:1].upper()}{data[1:]}" if data else "")
    )


def finished_text(event: Any, scores: RunScores | None = None) -> str:
    """Status line of a ``TrainerFinished``: says whether a version was published, and why not."""
    scores = scores if scores is not None else RunScores()
    reason = FINISH_REASONS.get(event.reason, event.reason)
    steps = f"after {event.steps} step{'s' if event.steps != 1 else ''}"
    if event.best_version:
        return f"Finished ({reason}) {steps}; newest version {event.best_version}."
    if event.steps == 0:
        return f"Finished ({reason}) before the first step: no version published."
    if scores.start is not None and scores.best is not None:
        return (
            f"Finished ({reason}) {steps}: no version published — validation never beat the "
            f"start model (best {scores.best:.3f} ≤ {scores.start:.3f})."
        )
    return f"Finished ({reason}) {steps}: no version published (no validation score came back)."
