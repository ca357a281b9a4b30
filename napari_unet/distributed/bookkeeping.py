"""Resumable runs: per-block completion markers in a folder beside the outputs.

``<out>/<stem>.dask-blocks/`` holds ``plan.json`` (what this run computes: input, model,
settings, grid), ``predicted/<block>.npz`` (written by the worker only after the block's pixels
are in the outputs; for instance labels it also keeps the block's face bands, so a rerun can
stitch without recomputing it), ``relabelled/<block>-<lut>.done`` (instance ids rewritten with
look-up table ``<lut>``) and ``scratch.zarr`` (instance ids before stitching). A rerun with the
same plan skips every block that has its marker; the folder is removed once the outputs are
complete (their attributes then say so).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.atomic import atomic_write_bytes, atomic_write_json
from napari_unet.core.errors import UserInputError
from napari_unet.distributed.stitch import BlockFaces


class BlockBook:
    """The marker folder of one output set (see the module docstring)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @property
    def scratch(self) -> Path:
        return self.folder / "scratch.zarr"

    def start(self, plan: dict[str, Any]) -> int:
        """Record ``plan`` (new run) or check it against the recorded one; finished blocks."""
        recorded = self.folder / "plan.json"
        if recorded.is_file():
            previous = json.loads(recorded.read_text())
            if previous != json.loads(json.dumps(plan)):
                changed = sorted(k for k in plan if previous.get(k) != plan[k])
                raise UserInputError(
                    f"{self.folder} belongs to an unfinished run with other settings "
                    f"({', '.join(changed) or 'format'}); rerun with the same settings to resume, "
                    "or remove that folder and the outputs to start again."
                )
        else:
            (self.folder / "predicted").mkdir(parents=True, exist_ok=True)
            (self.folder / "relabelled").mkdir(exist_ok=True)
            atomic_write_json(recorded, plan)
        return len(list((self.folder / "predicted").glob("*.npz")))

    def _predicted(self, key: str) -> Path:
        return self.folder / "predicted" / f"{key}.npz"

    def is_predicted(self, key: str) -> bool:
        return self._predicted(key).is_file()

    def save_predicted(self, key: str, faces: BlockFaces | None) -> None:
        """Mark block ``key`` done (call only once its pixels are written)."""
        arrays: dict[str, np.ndarray] = {}
        if faces is not None:
            arrays = {"n_ids": np.array(faces.n_ids), "counts": faces.counts}
            for name, bands in (("outer", faces.outer), ("inner", faces.inner)):
                for direction, band in bands.items():  # (dy, dx) or, 3-D, (dz, dy, dx)
                    arrays["_".join([name, *map(str, direction)])] = band
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(self._predicted(key), buffer.getvalue())

    def load_predicted(self, key: str) -> BlockFaces | None:
        with np.load(self._predicted(key)) as data:
            if "n_ids" not in data:
                return None
            bands: dict[str, dict] = {"outer": {}, "inner": {}}
            for name in data.files:
                if name.startswith(("outer_", "inner_")):
                    kind, *steps = name.split("_")
                    bands[kind][tuple(int(s) for s in steps)] = data[name]
            return BlockFaces(n_ids=int(data["n_ids"]), counts=data["counts"], **bands)

    def _relabelled(self, key: str, tag: str) -> Path:
        return self.folder / "relabelled" / f"{key}-{tag}.done"

    def is_relabelled(self, key: str, tag: str) -> bool:
        return self._relabelled(key, tag).is_file()

    def mark_relabelled(self, key: str, tag: str) -> None:
        atomic_write_bytes(self._relabelled(key, tag), b"")

    def finish(self) -> None:
        """Remove the folder (the outputs are complete)."""
        shutil.rmtree(self.folder, ignore_errors=True)
