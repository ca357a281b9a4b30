"""The session index ``session.json``: its format, validation, and typed read-only views.

Layout (format ``"napari-unet-loop session"``, version 1)::

    {"format": ..., "format_version": 1, "name": str, "created": iso, "modified": iso,
     "counter": int,                       # numbers every file name, never reused
     "images": {id: {"name", "source": abs path | null, "copy": "images/<id>.tif" | null,
                     "axes", "shape", "dtype", "task", "class_names", "created",
                     "slices": {"<index>": {"status", "labels", "reviewed", "snapshot",
                                            "model_version", "created", "modified",
                                            "pixels_changed", "objects_touched",
                                            "reviewed_pixels", "annotated_pixels"}}}},
     "versions": [{"id", "name", "file": "models/...", "parent", "created", "steps", "data",
                   "metrics"}],
     "rounds": [{"started", "ended", "version", "seconds_correcting", "pixels_edited",
                 "objects_edited", "pixels_reviewed"}],
     "validation_pins": [{"image_id", "slice_index", "rect": [y0, x0, y1, x1] | null}],
     "settings": {...}}

:func:`validate_index` checks every entry (types, ids, and that every path stays inside the
session or points at an image file) and names the bad entry in its :class:`SessionError`.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from napari_unet.core.io.axes import StackLayout, check_axes
from napari_unet.session.errors import SessionError
from napari_unet.session.paths import check_id, check_inside, check_source
from napari_unet.session.tracking import STATUSES

FORMAT = "napari-unet-loop session"
FORMAT_VERSION = 1
INDEX_NAME = "session.json"
#: Array kinds stored per slice -> their sub-folder.
SLICE_FILES: dict[str, str] = {"labels": "labels", "reviewed": "reviewed", "snapshot": "snapshots"}
_COUNTS = ("pixels_changed", "objects_touched", "reviewed_pixels", "annotated_pixels")


def now() -> str:
    """UTC time stamp, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def new_round() -> dict[str, Any]:
    """An open accounting round (closed when a model version is added)."""
    return {
        "started": now(),
        "ended": None,
        "version": None,
        "seconds_correcting": 0.0,
        "pixels_edited": 0,
        "objects_edited": 0,
        "pixels_reviewed": 0,
    }


def new_index(name: str) -> dict[str, Any]:
    """The index of an empty session."""
    stamp = now()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": str(name),
        "created": stamp,
        "modified": stamp,
        "counter": 0,
        "images": {},
        "versions": [],
        "rounds": [new_round()],
        "validation_pins": [],
        "settings": {},
    }


def referenced_files(index: dict) -> set[str]:
    """Every data path the index names (relative POSIX paths)."""
    files: set[str] = set()
    for image in index["images"].values():
        if image.get("copy"):
            files.add(image["copy"])
        for record in image["slices"].values():
            files.update(record[key] for key in SLICE_FILES if record.get(key))
    files.update(version["file"] for version in index["versions"])
    return files


def _need(condition: bool, what: str, problem: str) -> None:
    if not condition:
        raise SessionError(
            f"session.json: {what} {problem}; the session index is damaged or was edited by hand "
            "— restore it from a backup or create a new session."
        )


def _validate_image(root: Path, image_id: str, raw: Any) -> None:
    what = f"image {image_id!r}"
    check_id(image_id, what=what)
    _need(isinstance(raw, dict), what, "is not a record")
    _need(isinstance(raw.get("name"), str), what, "has no name")
    if raw.get("source") is not None:
        check_source(raw["source"], what=what)
    if raw.get("copy") is not None:
        check_inside(root, raw["copy"], what=f"{what} copy", folder="images")
    _need(bool(raw.get("source")) != bool(raw.get("copy")), what, "needs a source or a copy")
    shape = raw.get("shape")
    _need(
        isinstance(shape, list) and all(isinstance(s, int) and s > 0 for s in shape),
        what,
        "has an invalid shape",
    )
    try:
        check_axes(str(raw.get("axes")), tuple(shape))
    except ValueError as err:
        raise SessionError(f"session.json: {what} has invalid axes ({err}).") from None
    _need(isinstance(raw.get("dtype"), str), what, "has no dtype")
    n_slices = StackLayout(axes=raw["axes"].upper(), shape=tuple(shape)).n_slices
    slices = raw.get("slices")
    _need(isinstance(slices, dict), what, "has no slice table")
    for key, record in slices.items():
        where = f"{what} slice {key}"
        _need(key.isdigit() and int(key) < n_slices, where, f"is out of range (0..{n_slices - 1})")
        _need(
            isinstance(record, dict) and record.get("status") in STATUSES,
            where,
            "has an invalid status",
        )
        for name, folder in SLICE_FILES.items():
            if record.get(name) is not None:
                # labels equal to the prediction share the snapshot's file
                allowed = (folder, "snapshots") if name == "labels" else folder
                check_inside(root, record[name], what=f"{where} {name}", folder=allowed)
        for count in _COUNTS:
            value = record.get(count, 0)
            _need(isinstance(value, int) and value >= 0, where, f"has an invalid {count}")


def validate_index(root: Path, raw: Any) -> dict:
    """Check a loaded ``session.json``; returns it, or raises :class:`SessionError`."""
    _need(
        isinstance(raw, dict) and raw.get("format") == FORMAT,
        "the file",
        "is not a napari-unet-loop session index",
    )
    version = raw.get("format_version")
    _need(isinstance(version, int) and version >= 1, "the format version", "is invalid")
    if version > FORMAT_VERSION:
        raise SessionError(
            f"the session in {root} was written by a newer napari-unet-loop (session format "
            f"{version}; this version reads up to {FORMAT_VERSION}); upgrade napari-unet-loop."
        )
    _need(isinstance(raw.get("counter"), int), "the file counter", "is missing")
    for key, kind in (
        ("images", dict),
        ("versions", list),
        ("rounds", list),
        ("validation_pins", list),
        ("settings", dict),
    ):
        _need(isinstance(raw.get(key), kind), f"the {key!r} table", "is missing")
    for image_id, image in raw["images"].items():
        _validate_image(root, image_id, image)
    seen: set[str] = set()
    for position, version_raw in enumerate(raw["versions"]):
        what = f"model version #{position + 1}"
        _need(isinstance(version_raw, dict), what, "is not a record")
        check_id(version_raw.get("id"), what=what)
        _need(version_raw["id"] not in seen, what, "repeats an id")
        seen.add(version_raw["id"])
        check_inside(
            root,
            version_raw.get("file"),
            what=f"model version {version_raw['id']!r}",
            folder="models",
        )
        for key, kind in (("name", str), ("steps", int), ("data", dict), ("metrics", dict)):
            _need(isinstance(version_raw.get(key), kind), what, f"has an invalid {key}")
    for pin in raw["validation_pins"]:
        _need(
            isinstance(pin, dict) and pin.get("image_id") in raw["images"],
            "a validation pin",
            "names an unknown image",
        )
    if not raw["rounds"]:
        raw["rounds"].append(new_round())
    return raw


def drop_missing_files(root: Path, index: dict) -> list[str]:
    """Forget slice files that are gone (deleted by hand), in place; returns the problems.

    A crash cannot cause this (the index is written after its files); a missing labels file
    falls back to the slice's prediction.
    """
    problems = []
    for image_id, image in index["images"].items():
        for key, record in list(image["slices"].items()):
            missing = [n for n in SLICE_FILES if record.get(n) and not (root / record[n]).is_file()]
            for name in missing:
                problems.append(
                    f"image {image['name']!r} slice {key}: {name} file {record[name]} is "
                    "missing; that slice starts again from what is left."
                )
                record[name] = None
            if "labels" in missing and record.get("snapshot"):
                record["labels"] = record["snapshot"]
                record["status"] = "edited" if record.get("reviewed") else "predicted"
            if not any(record.get(name) for name in SLICE_FILES):
                del image["slices"][key]
        if image.get("copy") and not (root / image["copy"]).is_file():
            problems.append(f"image {image_id!r}: its stored copy {image['copy']} is missing.")
    return problems
