"""Label files marked as a model's prediction, so that opening them never passes them off as edits.

``napari-unet-loop predict`` marks the labels it writes: a TIFF's ``Software`` tag reads
``napari-unet-loop predict {"model": ..., "task": ..., "output": ...}`` and an OME-Zarr output's
group attributes hold ``{"napari_unet": {"prediction": {...}}}``. The napari reader then opens such
a file as a *predicted* Labels layer (its snapshot is the file itself), so only what the user
changes afterwards counts as a correction and is learnt from. A file without the mark (labels
drawn by hand, or saved from napari after correcting) opens as the user's annotation, as before.

The other outputs of ``predict`` (probabilities, restored images) carry an output mark
(:func:`output_tag`, :func:`zarr_output_attributes`): a TIFF ``Software`` tag
``napari-unet-loop output {"kind": ..., "model": ...}`` or ``{"napari_unet": {"output": {...}}}``
in a Zarr group. :func:`written_by_predict` tells either mark apart from a file the user made, and
:func:`check_overwritable` refuses to replace the latter: ``predict`` never overwrites a file it
did not write. A measurements CSV (:mod:`napari_unet.core.postprocess.measure`) has no tags: its
first line is the comment ``# napari-unet-loop measurements {...}`` (:data:`CSV_PREFIX`), and only
a CSV that starts with it counts as written by ``predict``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

#: Start of the TIFF ``Software`` tag of a predicted label file.
SOFTWARE_PREFIX = "napari-unet-loop predict"
#: Start of the TIFF ``Software`` tag of a non-label ``predict`` output (probabilities, restored).
OUTPUT_PREFIX = "napari-unet-loop output"
#: First line of a measurements CSV written by the plugin (a comment for CSV readers).
CSV_PREFIX = "# napari-unet-loop measurements"
#: Key of the plugin's attributes in a Zarr group.
ZARR_KEY = "napari_unet"
#: Keys of the plugin's Zarr section that only ``predict`` outputs have (``output`` is written by
#: :func:`napari_unet.core.io.zarr_io.create_output` into every output it creates).
_ZARR_OUTPUT_KEYS = ("prediction", "output")


@dataclass(frozen=True)
class PredictionMark:
    """What produced a label file.

    Attributes:
        model: the model's name (a built-in name or the checkpoint's).
        task: the model's task (``binary``, ``semantic``, ``instances``).
        output: the labels written: ``semantic`` (class ids) or ``instances`` (object ids).
    """

    model: str
    task: str
    output: str

    def to_dict(self) -> dict[str, str]:
        """The mark as a JSON-ready dict."""
        return {"model": self.model, "task": self.task, "output": self.output}

    @classmethod
    def from_dict(cls, raw: object) -> PredictionMark | None:
        """The mark stored as ``raw``, or None when ``raw`` is not one (never raises)."""
        if not isinstance(raw, dict):
            return None
        values = [raw.get(key) for key in ("model", "task", "output")]
        if not all(isinstance(v, str) and v for v in values):
            return None
        if values[2] not in ("semantic", "instances"):
            return None
        return cls(*values)


def software_tag(mark: PredictionMark) -> str:
    """The TIFF ``Software`` text that marks a predicted label file."""
    return f"{SOFTWARE_PREFIX} {json.dumps(mark.to_dict(), sort_keys=True)}"


def parse_software(text: object) -> PredictionMark | None:
    """The mark in a TIFF ``Software`` text, or None (other software, or a damaged mark)."""
    if not isinstance(text, str) or not text.startswith(SOFTWARE_PREFIX + " "):
        return None
    try:
        return PredictionMark.from_dict(json.loads(text[len(SOFTWARE_PREFIX) + 1 :]))
    except ValueError:
        return None


def zarr_attributes(mark: PredictionMark) -> dict[str, dict]:
    """Group attributes that mark a Zarr output as a prediction (written when it is created)."""
    return {ZARR_KEY: {"prediction": mark.to_dict()}}


def read_mark(path: str | os.PathLike) -> PredictionMark | None:
    """The prediction mark of a TIFF file or Zarr folder, None when it has none or is unreadable.

    Only metadata is read (the first TIFF page's tags, the Zarr group's attributes).
    """
    path = Path(path)
    try:
        if path.is_dir():
            import zarr

            attributes = dict(zarr.open_group(store=str(path), mode="r").attrs)
            section = attributes.get(ZARR_KEY)
            return PredictionMark.from_dict(section.get("prediction") if section else None)
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return parse_software(tif.pages[0].software) if tif.pages else None
    except Exception as err:  # PNG, plain arrays, damaged files: no mark
        logger.debug("no prediction mark in %s (%s: %s)", path, type(err).__name__, err)
        return None


def output_tag(kind: str, model: str) -> str:
    """The TIFF ``Software`` text of a ``predict`` output of ``kind`` (``probabilities``, ...)."""
    return f"{OUTPUT_PREFIX} {json.dumps({'kind': kind, 'model': model}, sort_keys=True)}"


def zarr_output_attributes(kind: str, model: str) -> dict[str, dict]:
    """Group attributes that mark a Zarr store as a ``predict`` output of ``kind``."""
    return {ZARR_KEY: {"output": {"kind": kind, "model": model}}}


def _zarr_section(path: Path) -> object:
    import zarr

    return dict(zarr.open_group(store=str(path), mode="r").attrs).get(ZARR_KEY)


def written_by_predict(path: str | os.PathLike) -> bool:
    """True when ``path`` carries a mark of ``napari-unet-loop predict`` (labels or other output).

    False for anything else: a file or folder the user made, an unreadable or damaged one.
    Only metadata is read.
    """
    path = Path(path)
    try:
        if path.is_dir():
            section = _zarr_section(path)
            return isinstance(section, dict) and any(k in section for k in _ZARR_OUTPUT_KEYS)
        if path.suffix.lower() == ".csv":
            with open(path, encoding="utf-8", errors="replace") as handle:
                return handle.readline().startswith(CSV_PREFIX + " ")
        import tifffile

        with tifffile.TiffFile(path) as tif:
            text = tif.pages[0].software if tif.pages else None
    except Exception as err:  # PNG, plain arrays, damaged files: not ours
        logger.debug("%s is not a predict output (%s: %s)", path, type(err).__name__, err)
        return False
    return parse_software(text) is not None or (
        isinstance(text, str) and text.startswith(OUTPUT_PREFIX + " ")
    )


def check_overwritable(path: str | os.PathLike) -> None:
    """Refuse to replace ``path`` unless it is absent or an earlier ``predict`` output.

    Raises:
        UserInputError: ``path`` exists and carries no prediction mark (the user's own file).
    """
    from napari_unet.core.errors import UserInputError

    path = Path(path)
    if not (path.exists() or path.is_symlink()) or written_by_predict(path):
        return
    whose = "your annotation?" if "_labels" in path.name else "your own file?"
    raise UserInputError(
        f"{path} exists and is not a prediction ({whose}); it was left as it is: choose "
        "another --out folder or move the file."
    )
