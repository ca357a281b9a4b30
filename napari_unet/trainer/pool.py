"""The fine-tune process's training pool: the session's corrections gathered, checked and fitted.

:class:`TrainerPool` is the data half of :class:`napari_unet.trainer.process.Trainer`: it reads
every annotated slice from the session, refuses bad input before training starts
(``core.training.preflight``), fits patch and batch to the data (the dataset fingerprint), splits
off the held-back tiles, announces the pool (:class:`PoolChanged`) and queues corrections made
while training (keep-learning).
"""

from __future__ import annotations

import logging
from typing import Any

from napari_unet.core.checkpoint.start_fit import fit_start
from napari_unet.trainer.context import context_slice_items, context_slices_of
from napari_unet.trainer.control import Feed
from napari_unet.trainer.data import (
    check_training_data,
    preflight_items,
    slice_name,
    summarize,
    to_items,
)
from napari_unet.trainer.events import PoolChanged
from napari_unet.trainer.guard import data_settings
from napari_unet.trainer.volume import is_volumetric, volume_items, volume_settings

logger = logging.getLogger(__name__)


class TrainerPool:
    """The training data of one fine-tune run (a base of ``Trainer``, which sets ``session``,
    ``request``, ``info``, ``normalization``, ``plan``, ``config`` and ``send``)."""

    def gather(self) -> tuple[list[Any], list[Any]]:
        """Every annotated slice of the session -> ``(train_items, val_items)``; checks them
        (``core.training.preflight``) and fits patch and batch to them (the fingerprint)."""
        slices = self.session.training_items()
        items = self._fit_start(slices)
        check_training_data(slices, self.info, repr(self.request.start_from))
        preflight_items(items, self.info)
        settings = volume_settings if is_volumetric(self.info) else data_settings
        self.fingerprint, self.config = settings(items, self.info, self.config)
        self._downscale(self.fingerprint.downscale)
        items = self._polarity(items)  # scored with the patch fitted to the data
        self.pool = {item.name: item for item in items}
        train, self.val_items = self.plan.split(items)
        self.held = {item.name: item for item in self.val_items}  # as the core's pool has them
        self._send_pool(())
        return train, self.val_items

    def _fit_start(self, slices: list[Any]) -> list[Any]:
        """The start model fitted to the slices (``core.checkpoint.start_fit``: a wider head
        for more classes, the channels adapted; copies in the run folder); the items as it
        takes them. ``channels_note`` says what was done."""
        semantic = [s for s in slices if s.task in (None, "semantic")]  # painted class ids
        fitted = fit_start(self.start_path, self._items(slices), self.run_dir, class_items=semantic)
        if fitted.written:
            self.start_path, self.info = fitted.path, fitted.info
            self.config = self._config(fitted.info)
        self.channels_note = fitted.note
        return fitted.items

    def _downscale(self, k: int) -> None:
        """The start model seeing the images ``k`` times smaller when the fingerprint chose a
        new scale for the corrected objects (a copy in the run folder)."""
        from napari_unet.core.checkpoint.format import read_checkpoint_info
        from napari_unet.core.training.downscale import downscale_of, with_downscale

        if k != downscale_of(self.info.model_config):
            self.start_path = with_downscale(self.start_path, k, self.run_dir)
            self.info = read_checkpoint_info(self.start_path)

    def _polarity(self, items: list[Any]) -> list[Any]:
        """The items flipped, with ``normalization`` and ``config`` (so later corrections and
        every version), when the start model sees the corrections better the other way up
        (``core.training.polarity``); a resumed run keeps its stored choice."""
        from napari_unet.core.checkpoint.format import load_checkpoint
        from napari_unet.core.training.polarity import choose_polarity, flipped, stored_invert

        self.polarity_note = ""
        if self.info.task == "restoration" or not items:
            return items
        if self.request.resume_from is not None:
            flip = stored_invert(self.request.resume_from) != self.normalization.invert
        else:
            config = self.config.replace(normalization=self.normalization)
            choice = choose_polarity(load_checkpoint(self.start_path).model, items, config)
            flip, self.polarity_note = choice.invert, choice.line() if choice.invert else ""
        if not flip:
            return items
        items, self.normalization = flipped(items, self.normalization)
        self.config = self.config.replace(normalization=self.normalization)
        return items

    def _items(self, slices: list[Any]) -> list[Any]:
        """Training items: one per slice, or (3-D start model) one sparse volume per image."""
        if is_volumetric(self.info):
            return volume_items(self.session, slices, self.normalization)
        if radius := context_slices_of(self.info):  # 2.5-D: each slice with its neighbours
            return context_slice_items(self.session, slices, radius, self.normalization)
        return to_items(slices, self.normalization)

    def _send_pool(self, added: tuple) -> None:
        items = list(self.pool.values())
        counts = summarize(items, self.val_items, self.info.task)
        self.data = {k: counts[k] for k in ("n_images", "n_slices", "annotated_pixels", "objects")}
        self.data["validation_pixels"] = counts["validation_pixels"]
        notes = (
            self.fingerprint.describe(),
            getattr(self, "channels_note", ""),
            getattr(self, "polarity_note", ""),
        )
        self.data["fingerprint"] = "; ".join(n for n in notes if n)
        self.send(
            PoolChanged(
                n_items=counts["n_slices"],  # 2.5-D flat copies not counted
                n_validation=counts["n_validation"],
                n_images=counts["n_images"],
                annotated_pixels=counts["annotated_pixels"],
                validation_pixels=counts["validation_pixels"],
                objects=counts["objects"],
                added=tuple(added),
                fingerprint=self.data["fingerprint"],
                flipped=getattr(self, "polarity_note", ""),
            )
        )

    def _fitted(self, items: list[Any]) -> list[Any]:
        """Corrections made while training, as the model takes them (greyscale stored as RGB
        gets one channel for a one-channel model)."""
        from napari_unet.core.checkpoint.channels import collapse_grey

        return collapse_grey(items) if self.info.in_channels == 1 else items

    def load_corrections(self, keys: list[tuple[str, int]], feed: Feed) -> None:
        """Reload ``keys`` from the session and queue them for the training pool."""
        if not self.request.keep_learning:
            logger.info("ignoring %d correction(s): keep-learning is off", len(keys))
            return
        self.session.refresh()
        wanted = {slice_name(i, s) for i, s in keys}
        image_ids = sorted({i for i, _ in keys if i in {e.id for e in self.session.images()}})
        every = list(self.session.iter_training_items(image_ids=image_ids))
        if is_volumetric(self.info):  # the image's whole volume item is rebuilt
            wanted = {s.name for s in every}
        slices = [s for s in every if s.name in wanted and s.annotated_mask.any()]
        for item in self._fitted(self._items(slices)):
            feed.put(self.plan.prepare_new(item))
            self.pool[item.name] = item
        logger.info("queued %d corrected slice(s) for training", len(slices))
