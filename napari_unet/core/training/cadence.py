"""When the training loop validates: every ``val_every`` steps, and for a time budget also by time.

A 2-minute CPU run makes a few dozen steps: with only ``val_every = 50`` its first validation
came at ~80 % of the budget, so the "best" model was chosen from one or two scores. With a
``minutes`` budget the loop also validates once :data:`BUDGET_SHARE` of the budget has passed
since the last validation, at least :data:`MIN_STEPS` steps later (whichever rule fires first);
the loop always validates at the end (:func:`~napari_unet.core.training.loop.iter_train`). The
decision reads only the step count and the loop's clock, so it is the same for the same clock.

``latest.pt`` (the full training state, for resuming a killed run) is written at a validation
point only when :func:`latest_due`: at the run's first, then at most once per
:data:`LATEST_INTERVAL_S` of training, and always at the end. It used to be written at every
validation point: about 14 full checkpoints (23 MB each for a depth-4 base-16 U-Net with Adam)
in a 2-minute CPU run, 7 a minute, even without validation data, and one every ``val_every``
steps however fast they ran.
"""

from __future__ import annotations

from typing import Any

#: Share of a time budget between two time-triggered validations.
BUDGET_SHARE = 0.08
#: Fewest steps between two time-triggered validations (a validation costs steps).
MIN_STEPS = 10
#: Least training time (seconds) between two ``latest.pt`` writes after the run's first: a
#: killed run loses at most about this much training.
LATEST_INTERVAL_S = 60.0


def validation_due(config: Any, step: int, elapsed_s: float, last_step: int, last_s: float) -> bool:
    """Whether to validate after ``step`` (1-based, just done).

    Args:
        config: the :class:`~napari_unet.core.training.config.TrainConfig` (``val_every``,
            ``minutes``).
        step: steps done. elapsed_s: seconds of training so far (the loop's clock).
        last_step, last_s: step and clock of the last validation (0, 0.0 before any).
    """
    if step % config.val_every == 0:
        return True
    if config.minutes is None:
        return False
    interval_s = BUDGET_SHARE * 60.0 * float(config.minutes)
    return step - last_step >= MIN_STEPS and elapsed_s - last_s >= interval_s


def latest_due(elapsed_s: float, last_saved: int, saved_s: float) -> bool:
    """Whether a validation point also writes ``latest.pt``.

    Args:
        elapsed_s: seconds of training so far (the loop's clock).
        last_saved, saved_s: step and clock of this run's last ``latest.pt`` (-1 before any).
    """
    return last_saved < 0 or elapsed_s - saved_s >= LATEST_INTERVAL_S
