"""When the training loop validates: every ``val_every`` steps, and for a time budget also by time.

A 2-minute CPU run makes a few dozen steps: with only ``val_every = 50`` its first validation
came at ~80 % of the budget, so the "best" model was chosen from one or two scores. With a
``minutes`` budget the loop also validates once :data:`BUDGET_SHARE` of the budget has passed
since the last validation, at least :data:`MIN_STEPS` steps later (whichever rule fires first);
the loop always validates at the end (:func:`~napari_unet.core.training.loop.iter_train`). The
decision reads only the step count and the loop's clock, so it is the same for the same clock.
"""

from __future__ import annotations

from typing import Any

#: Share of a time budget between two time-triggered validations.
BUDGET_SHARE = 0.08
#: Fewest steps between two time-triggered validations (a validation costs steps).
MIN_STEPS = 10


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
