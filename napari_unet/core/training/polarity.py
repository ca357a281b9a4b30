"""Which way up a start model should see your images: bright objects or dark ones (issue 17).

A model trained on fluorescence nuclei (bright on a dark background) finds nothing in stained
bright-field nuclei (dark on a bright background): the built-in ``fluo-nuclei`` scored AP@0.5 0.00
on the stained test tiles as they are and 0.47 with their intensities flipped, before any training
(docs/learning_ablation.md). Before a fine-tune, :func:`choose_polarity` scores the start model on
the corrected pixels both ways, with the training loop's own validation score, and flips the
images (:attr:`~napari_unet.core.inference.normalization.NormalizationConfig.invert`, stored in
every checkpoint of the run, so prediction flips them too) when that scores higher by more than
:data:`MARGIN`. A new model learns either way up: nothing to choose. Once flipped, the held-back
tiles are flipped too, so the publication guard judges a child against the start model the way up
it was chosen: a higher bar than the start model as the user had it.

Example:
    >>> choice = choose_polarity(model, items, config)  # doctest: +SKIP
    >>> items, normalization = flipped(items, config.normalization) if choice.invert else ...
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from napari_unet.core.inference.normalization import NormalizationConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.split import is_flat_copy

logger = logging.getLogger(__name__)

#: The flipped images must beat the images as they are by more than this (validation score).
MARGIN = 0.02
#: At most this many corrected images are scored (the first by name): the choice costs two
#: predictions of them, not of the whole pool.
MAX_ITEMS = 8


@dataclasses.dataclass(frozen=True)
class PolarityChoice:
    """The start model's validation score on the corrected pixels as they are and flipped.

    Attributes:
        invert: flip the images (relative to how they were normalised).
        score, flipped_score: the two scores (None: nothing to score).
    """

    invert: bool
    score: float | None
    flipped_score: float | None

    def line(self) -> str:
        """One line for the user, e.g. ``intensities flipped for the start model: it scores 0.615
        on your corrected pixels flipped, 0.161 as they are (it learnt objects the other way up:
        bright on dark against dark on bright)``."""

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        flipped, kept = fmt(self.flipped_score), fmt(self.score)
        if self.invert:
            return (
                f"intensities flipped for the start model: it scores {flipped} on your corrected "
                f"pixels flipped, {kept} as they are (it learnt objects the other way up: bright "
                "on dark against dark on bright)"
            )
        return (
            f"intensities kept as they are: the start model scores {kept} on your corrected "
            f"pixels, {flipped} flipped"
        )


def flip_image(image: Any, normalization: NormalizationConfig | None) -> Any:
    """A normalised image flipped as :attr:`NormalizationConfig.invert` flips it: ``1 - x``
    (percentile normalisation) or ``-x`` (the other modes)."""
    mode = (normalization or NormalizationConfig()).mode
    return (1.0 - image) if mode == "percentile" else -image


def flipped(
    items: Sequence[TrainingItem], normalization: NormalizationConfig | None
) -> tuple[list[TrainingItem], NormalizationConfig]:
    """``(items, normalization)`` with every image flipped and ``invert`` toggled: the images
    as the flipped normalisation gives them (the arrays are new; labels and masks are shared)."""
    normalization = normalization or NormalizationConfig()
    items = [
        dataclasses.replace(item, image=flip_image(item.image, normalization)) for item in items
    ]
    return items, normalization.replace(invert=not normalization.invert)


def choose_polarity(model: Any, items: Sequence[TrainingItem], config: Any) -> PolarityChoice:
    """Score ``model`` on the annotated pixels of ``items`` as they are and flipped.

    Args:
        model: the start model (its weights are not changed).
        items: the corrected images, normalised as the start model's checkpoint says.
        config: the run's ``TrainConfig`` (task, targets, batch size, device).

    Returns:
        The :class:`PolarityChoice` (``invert`` only when the flipped score is higher by more
        than :data:`MARGIN`).
    """
    from napari_unet.core.simulation.versions import score_model

    if config.task == "restoration":  # the targets are images too: never flip the input alone
        return PolarityChoice(False, None, None)
    originals = [item for item in items if not is_flat_copy(item)]
    sample = sorted(originals, key=lambda item: item.name or "")[:MAX_ITEMS]
    if not sample:
        return PolarityChoice(False, None, None)
    score = score_model(model, sample, config)
    flipped_score = score_model(model, flipped(sample, config.normalization)[0], config)
    better = flipped_score is not None and (score is None or flipped_score > score + MARGIN)
    choice = PolarityChoice(bool(better), score, flipped_score)
    logger.debug("%s", choice.line())
    return choice


def stored_invert(checkpoint: Any) -> bool:
    """Whether the checkpoint (e.g. the ``latest.pt`` of a run being resumed) sees its images
    flipped (its stored normalisation)."""
    from napari_unet.core.checkpoint.format import read_checkpoint_info

    return bool(read_checkpoint_info(checkpoint).normalization_config().invert)
