"""Model versions, accounting rounds, validation pins and settings of a session (a mixin).

A version is registered only after its checkpoint file is complete and intact: :meth:`add_version`
checks that the file exists, is not empty, passes the integrity check that ``load_checkpoint``
makes (every CRC: a flipped byte is refused) and describes a model (``read_checkpoint_info``)
before the index names it, so a trainer killed while writing never leaves a truncated version
behind. A file that was being written stays unregistered in ``models/``; it is reclaimed at a
later open once no trainer runs (:mod:`napari_unet.session.reclaim`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_unet.core.atomic import atomic_write_with
from napari_unet.session.entries import VersionEntry, version_entry
from napari_unet.session.errors import SessionError
from napari_unet.session.index import new_round, now
from napari_unet.session.paths import check_inside, sanitize_name
from napari_unet.session.store import write_error

logger = logging.getLogger(__name__)

MODELS_FOLDER = "models"


def _read_checkpoint_info(path: Path) -> object:
    from napari_unet.core.checkpoint.format import read_checkpoint_info  # torch: only when needed

    return read_checkpoint_info(path, verify=True)


def _plain(value: Any, what: str) -> dict:
    value = dict(value or {})
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be JSON-serialisable plain data ({err})") from None
    return value


class VersionsMixin:
    """Versions, rounds, pins and settings; mixed into :class:`~napari_unet.session.Session`."""

    root: Path
    _index: dict

    def refresh(self) -> bool:  # pragma: no cover - provided by Session
        raise NotImplementedError

    def _mutate(self, change: Callable) -> Any:  # pragma: no cover - provided by Session
        raise NotImplementedError

    # ------------------------------------------------------------------ versions
    def versions(self) -> list[VersionEntry]:
        """All registered model versions, oldest first."""
        self.refresh()
        return [version_entry(v) for v in self._index["versions"]]

    def version(self, version_id: str) -> VersionEntry:
        """One version by id; :class:`SessionError` when unknown."""
        for entry in self.versions():
            if entry.id == version_id:
                return entry
        raise SessionError(f"the session has no model version {version_id!r}; pick one listed.")

    def version_path(self, version_id: str) -> Path:
        """Absolute path of a version's checkpoint (checked to stay inside ``models/``)."""
        entry = self.version(version_id)
        return check_inside(
            self.root, entry.file, what=f"model version {version_id!r}", folder=MODELS_FOLDER
        )

    def new_version_path(self, stem: str = "model") -> Path:
        """A fresh, unused file name in ``models/`` for a trainer to write a checkpoint to."""
        folder = self.root / MODELS_FOLDER
        try:
            if not folder.is_symlink():
                folder.mkdir(exist_ok=True)
        except OSError as err:
            raise write_error(self.root, err) from None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"{sanitize_name(stem, default='model')}-{stamp}-{secrets.token_hex(3)}.pt"
        return check_inside(
            self.root, f"{MODELS_FOLDER}/{name}", what="a new model version", folder=MODELS_FOLDER
        )

    def add_version(
        self,
        file: str | os.PathLike,
        *,
        name: str | None = None,
        parent: str | None = None,
        steps: int = 0,
        data: dict | None = None,
        metrics: dict | None = None,
        validate: Callable[[Path], object] | None = _read_checkpoint_info,
    ) -> VersionEntry:
        """Register a finished checkpoint file as a new version and close the accounting round.

        Args:
            file: the checkpoint; a file outside ``models/`` is first copied in (atomically).
            name: display name (default ``"version N"``).
            parent: the version id, built-in model name or file it was fine-tuned from.
            steps: optimiser steps of this round; data, metrics: plain JSON-able summaries.
            validate: called on the file before anything is registered (default:
                ``read_checkpoint_info(path, verify=True)``: it raises for a truncated or
                damaged file).

        Raises:
            SessionError: the file is missing, empty or already registered.
            CheckpointError: ``validate`` refused the file (truncated, damaged, foreign).
        """
        path = Path(file).expanduser().absolute()
        if not path.is_file() or path.stat().st_size == 0:
            raise SessionError(
                f"cannot add {path} as a model version: it is missing or empty; save the "
                "checkpoint completely first."
            )
        if validate is not None:
            validate(path)
        data, metrics = _plain(data, "data"), _plain(metrics, "metrics")
        path = self._in_models_folder(path)
        relative = f"{MODELS_FOLDER}/{path.name}"
        check_inside(self.root, relative, what="the new model version", folder=MODELS_FOLDER)

        register = functools.partial(
            _register_version,
            path=path,
            relative=relative,
            name=name,
            parent=parent,
            steps=steps,
            data=data,
            metrics=metrics,
        )
        record = self._mutate(register)
        logger.info("registered model version %s (%s)", record["id"], relative)
        return version_entry(record)

    def _in_models_folder(self, path: Path) -> Path:
        """``path`` when it lies in ``models/``, else an atomic copy there (a new name)."""
        models = self.root / MODELS_FOLDER
        if os.path.realpath(path.parent) == os.path.realpath(models):
            return path
        target = self.new_version_path(path.stem)
        try:
            with open(path, "rb") as source:
                atomic_write_with(target, lambda handle: shutil.copyfileobj(source, handle))
        except OSError as err:
            raise write_error(self.root, err) from None
        return target

    def rename_version(self, version_id: str, name: str) -> VersionEntry:
        """Give a version a new display name."""

        def change(index: dict, written: list[str]) -> tuple[dict, list[str]]:
            record = self._find_version(index, version_id)
            record["name"] = str(name)
            return record, []

        return version_entry(self._mutate(change))

    def delete_version(self, version_id: str) -> None:
        """Unregister a version and delete its file (its children keep it as their parent)."""

        def change(index: dict, written: list[str]) -> tuple[None, list[str]]:
            record = self._find_version(index, version_id)
            index["versions"].remove(record)
            return None, [record["file"]]

        self._mutate(change)

    @staticmethod
    def _find_version(index: dict, version_id: str) -> dict:
        for record in index["versions"]:
            if record["id"] == version_id:
                return record
        raise SessionError(f"the session has no model version {version_id!r}; pick one listed.")

    # ------------------------------------------------------------------ accounting
    def rounds(self) -> list[dict]:
        """Accounting rounds, oldest first; the last one is open (``ended`` is None).

        Each: started, ended, version (the version that closed it), seconds_correcting,
        pixels_edited, objects_edited, pixels_reviewed (growth summed over saves).
        """
        self.refresh()
        return [dict(r) for r in self._index["rounds"]]

    def add_correction_time(self, seconds: float) -> None:
        """Add time the user spent correcting to the open round."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")

        def change(index: dict, written: list[str]) -> tuple[None, list[str]]:
            index["rounds"][-1]["seconds_correcting"] += float(seconds)
            return None, []

        self._mutate(change)

    # ------------------------------------------------------------------ pins and settings
    def validation_pins(self) -> list[dict]:
        """Slices or rectangles the user pinned as validation: image_id, slice_index, rect."""
        self.refresh()
        return [dict(p) for p in self._index["validation_pins"]]

    def pin_validation(
        self, image_id: str, slice_index: int, rect: tuple[int, int, int, int] | None = None
    ) -> None:
        """Hold back a slice (or a ``(y0, x0, y1, x1)`` rectangle of it) for validation."""
        pin = {
            "image_id": image_id,
            "slice_index": int(slice_index),
            "rect": None if rect is None else [int(v) for v in rect],
        }

        def change(index: dict, written: list[str]) -> tuple[None, list[str]]:
            if image_id not in index["images"]:
                raise SessionError(f"the session has no image {image_id!r}.")
            if pin not in index["validation_pins"]:
                index["validation_pins"].append(pin)
            return None, []

        self._mutate(change)

    def unpin_validation(
        self, image_id: str, slice_index: int, rect: tuple[int, int, int, int] | None = None
    ) -> None:
        """Remove a pin added by :meth:`pin_validation` (no error if absent)."""
        pin = {
            "image_id": image_id,
            "slice_index": int(slice_index),
            "rect": None if rect is None else [int(v) for v in rect],
        }

        def change(index: dict, written: list[str]) -> tuple[None, list[str]]:
            index["validation_pins"] = [p for p in index["validation_pins"] if p != pin]
            return None, []

        self._mutate(change)

    @property
    def settings(self) -> dict:
        """A copy of the session's settings (plain JSON data)."""
        self.refresh()
        return json.loads(json.dumps(self._index["settings"]))

    def update_settings(self, **values: Any) -> None:
        """Set settings (JSON-able values), e.g. ``update_settings(auto_switch_version=True)``."""
        values = _plain(values, "settings")

        def change(index: dict, written: list[str]) -> tuple[None, list[str]]:
            index["settings"].update(values)
            return None, []

        self._mutate(change)


def _register_version(
    index: dict,
    written: list[str],
    *,
    path: Path,
    relative: str,
    name: str | None,
    parent: str | None,
    steps: int,
    data: Any,
    metrics: Any,
) -> tuple[dict, list[str]]:
    """A ``Session._mutate`` change: append the version record and close the accounting round."""
    if any(v["file"] == relative for v in index["versions"]):
        raise SessionError(f"{path} is already a version of this session.")
    number = int(index.get("version_counter", 0)) + 1
    index["version_counter"] = number
    record = {
        "id": f"v{number:03d}",
        "name": name or f"version {number}",
        "file": relative,
        "parent": parent,
        "created": now(),
        "steps": int(steps),
        "data": data,
        "metrics": metrics,
    }
    index["versions"].append(record)
    index["rounds"][-1].update(ended=record["created"], version=record["id"])
    index["rounds"].append(new_round())
    return record, []
