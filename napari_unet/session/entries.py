"""Typed, read-only views of the records of a session index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_unet.core.io.axes import StackLayout


@dataclass(frozen=True)
class ImageEntry:
    """One image of the session.

    Attributes:
        id: stable identifier (also the name of its data folders).
        name: display name (napari layer name).
        source: the user's image file (only ever read), or None when the session holds a copy.
        copy: the copy inside the session (``images/<id>.tif``), or None.
        axes, shape, dtype: of the image as given (e.g. ``"ZYX"``, (5, 512, 512), ``"uint8"``).
        task: ``binary`` | ``semantic`` | ``instances`` | None when not known yet.
        class_names: names of the label classes, when known.
    """

    id: str
    name: str
    source: Path | None
    copy: Path | None
    axes: str
    shape: tuple[int, ...]
    dtype: str
    task: str | None
    class_names: tuple[str, ...]

    @property
    def layout(self) -> StackLayout:
        """How the image maps onto (S, C, Y, X) slices."""
        return StackLayout(axes=self.axes, shape=self.shape)

    @property
    def n_slices(self) -> int:
        """Number of 2-D slices S."""
        return self.layout.n_slices

    @property
    def yx_shape(self) -> tuple[int, int]:
        """(Y, X) of each slice."""
        return self.layout.yx_shape

    @property
    def labels_shape(self) -> tuple[int, ...]:
        """Shape of the image's labels layer (the image shape without C)."""
        return self.layout.spatial_shape

    @property
    def kind(self) -> str:
        """``instances`` or ``semantic``: how edits are turned into annotated objects."""
        return "instances" if self.task == "instances" else "semantic"


@dataclass(frozen=True)
class SliceEntry:
    """The index record of one slice (paths relative to the session, or None)."""

    status: str = "unlabelled"
    labels: str | None = None
    reviewed: str | None = None
    snapshot: str | None = None
    model_version: str | None = None
    created: str | None = None
    modified: str | None = None
    pixels_changed: int = 0
    objects_touched: int = 0
    reviewed_pixels: int = 0
    annotated_pixels: int = 0


@dataclass(frozen=True)
class VersionEntry:
    """A model version: ``file`` is relative to the session (``models/...``)."""

    id: str
    name: str
    file: str
    parent: str | None
    created: str
    steps: int
    data: dict
    metrics: dict


def image_entry(root: Path, image_id: str, raw: dict) -> ImageEntry:
    """Typed view of a validated image record."""
    return ImageEntry(
        id=image_id,
        name=raw["name"],
        source=Path(raw["source"]) if raw.get("source") else None,
        copy=root / raw["copy"] if raw.get("copy") else None,
        axes=raw["axes"],
        shape=tuple(raw["shape"]),
        dtype=raw["dtype"],
        task=raw.get("task"),
        class_names=tuple(raw.get("class_names") or ()),
    )


def slice_entry(raw: dict | None) -> SliceEntry:
    """Typed view of a validated slice record (an absent record is ``unlabelled``)."""
    if not raw:
        return SliceEntry()
    return SliceEntry(**{k: raw.get(k, v) for k, v in SliceEntry().__dict__.items()})


def version_entry(raw: dict) -> VersionEntry:
    """Typed view of a validated version record."""
    return VersionEntry(**{k: raw.get(k) for k in VersionEntry.__dataclass_fields__})


@dataclass(frozen=True, eq=False)
class SliceData:
    """The stored arrays of one slice; each (Y, X) or None when absent.

    Attributes:
        labels: current labels (integer dtype as saved).
        reviewed: bool mask of reviewed pixels.
        snapshot: the model's prediction the labels are compared with.
    """

    labels: np.ndarray | None
    reviewed: np.ndarray | None
    snapshot: np.ndarray | None
