"""Reading images, label volumes and training data of a session (a mixin of ``Session``).

The fine-tune process opens the session read-only in its own process and calls
:meth:`TrainingMixin.training_items`: every slice with annotation, with its image slice, labels
and annotated mask — nothing big travels through a pipe.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.session.entries import ImageEntry
from napari_unet.session.errors import SessionError
from napari_unet.session.paths import check_inside, is_zarr_source
from napari_unet.session.slices import _annotated

logger = logging.getLogger(__name__)

#: ``load_image(entry) -> image as given`` (numpy, Zarr or dask; e.g. the array napari holds).
ImageLoader = Callable[[ImageEntry], Any]


@dataclass(frozen=True, eq=False)
class TrainingSlice:
    """One annotated 2-D slice.

    Attributes:
        image_id, slice_index: where it comes from; ``name`` = ``"<image_id>/<slice:05d>"`` is
            stable across rounds (validation splits hash it).
        image: (C, Y, X) in the image's own dtype (not normalised), or None when not loaded.
        labels: (Y, X) integer labels. annotated_mask: (Y, X) bool, the pixels to learn from.
        task: the image's task when known.
    """

    image_id: str
    slice_index: int
    name: str
    image: np.ndarray | None
    labels: np.ndarray
    annotated_mask: np.ndarray
    task: str | None


class TrainingMixin:
    """Training data; mixed into :class:`~napari_unet.session.Session`."""

    root: Path
    _index: dict

    def find_image(
        self, *, source: str | os.PathLike | None = None, name: str | None = None
    ) -> str | None:
        """Id of the image with this source file (or, without one, this name), else None."""
        self.refresh()
        wanted = str(Path(source).expanduser().absolute()) if source is not None else None
        for image_id, raw in self._index["images"].items():
            if (wanted and raw.get("source") == wanted) or (
                wanted is None and name is not None and raw["name"] == name
            ):
                return image_id
        return None

    def load_image(self, image_id: str) -> Any:
        """The image as given, read from its source file or the session's copy.

        Returns:
            A numpy array for a TIFF/PNG source or a copy; for a Zarr source the lazy
            ``zarr.Array`` (nothing is loaded: index it, e.g. with
            :func:`~napari_unet.core.io.lazy.stack_slices`).

        Raises:
            SessionError: the file is gone, unreadable, or its shape changed since it was added.
        """
        from napari_unet.core.errors import ImageReadError
        from napari_unet.core.io.images import read_image
        from napari_unet.core.io.zarr_io import open_zarr

        entry = self.image(image_id)  # type: ignore[attr-defined]
        path = entry.source or check_inside(
            self.root,
            self._index["images"][image_id]["copy"],
            what=f"image {image_id!r} copy",
            folder="images",
        )
        try:
            image = open_zarr(path).array if is_zarr_source(path) else read_image(path).image
        except (ValueError, ImageReadError) as err:
            raise SessionError(
                f"image {entry.name!r}: cannot read {path} ({err}); put the file back where it "
                "was, or remove the image from the session."
            ) from None
        if tuple(image.shape) != entry.shape:
            raise SessionError(
                f"image {entry.name!r}: {path} now has shape {tuple(image.shape)}, not "
                f"{entry.shape} as when it was added; it changed since — remove and re-add the "
                "image."
            )
        return image

    def load_labels_volume(self, image_id: str, *, dtype: Any = None) -> np.ndarray:
        """(S, Y, X) labels of every slice (0 where none are stored).

        ``dtype`` defaults to the widest dtype stored (uint32 when nothing is). Reshape to the
        layer's shape with ``image(image_id).labels_shape``.
        """
        entry = self.image(image_id)
        stored = {s: self.load_slice(image_id, s).labels for s in self._stored_slices(image_id)}
        stored = {s: v for s, v in stored.items() if v is not None}
        if dtype is None:
            dtype = np.result_type(*stored.values()) if stored else np.uint32
        volume = np.zeros((entry.n_slices, *entry.yx_shape), dtype=dtype)
        for s, labels in stored.items():
            volume[s] = labels
        return volume

    def annotated_mask(self, image_id: str, slice_index: int) -> np.ndarray:
        """(Y, X) bool: what fine-tuning may learn from in this slice (see ``tracking``)."""
        entry = self._check_slice(image_id, slice_index)
        return _annotated(entry, self.load_slice(image_id, slice_index))

    def annotated_slices(self, image_ids: Iterable[str] | None = None) -> list[tuple[str, int]]:
        """(image_id, slice_index) of every slice with annotation (edited or reviewed)."""
        self.refresh()
        ids = list(self._index["images"]) if image_ids is None else list(image_ids)
        return [
            (image_id, s)
            for image_id in ids
            for s in self._stored_slices(image_id)
            if self._index["images"][image_id]["slices"][str(s)]["status"] in ("edited", "reviewed")
        ]

    def iter_training_items(
        self,
        *,
        image_ids: Iterable[str] | None = None,
        load_images: bool = True,
        load_image: ImageLoader | None = None,
    ) -> Iterator[TrainingSlice]:
        """Yield every annotated slice, image by image (each image is read once).

        Args:
            image_ids: restrict to these images (default: all).
            load_images: False yields ``image=None`` (labels and masks only: counting, splits).
            load_image: reads an image given its entry (default: :meth:`load_image`).
        """
        from napari_unet.core.io.lazy import stack_slices

        by_image: dict[str, list[int]] = {}
        for image_id, slice_index in self.annotated_slices(image_ids):  # type: ignore[attr-defined]
            by_image.setdefault(image_id, []).append(slice_index)
        for image_id, slices in by_image.items():
            entry = self.image(image_id)  # type: ignore[attr-defined]
            stack = None
            if load_images:  # only the annotated slices are read (a Zarr volume stays on disk)
                image = load_image(entry) if load_image else self.load_image(image_id)
                stack = stack_slices(image, entry.axes, slices)
            for position, slice_index in enumerate(slices):
                data = self.load_slice(image_id, slice_index)  # type: ignore[attr-defined]
                mask = _annotated(entry, data)
                labels = data.labels
                if labels is None:  # reviewed without labels: everything there is background
                    labels = np.zeros(entry.yx_shape, dtype=np.uint8)
                yield TrainingSlice(
                    image_id=image_id,
                    slice_index=slice_index,
                    name=f"{image_id}/{slice_index:05d}",
                    image=None if stack is None else stack[position],
                    labels=labels,
                    annotated_mask=mask,
                    task=entry.task,
                )

    def training_items(self, **kwargs) -> list[TrainingSlice]:
        """All of :meth:`iter_training_items` as a list (same arguments)."""
        return list(self.iter_training_items(**kwargs))
