"""Writing a measurements table as CSV, marked as ours by its first comment line.

The first line is ``# napari-unet-loop measurements {...}``
(:data:`napari_unet.core.io.marks.CSV_PREFIX`), so ``predict`` may replace the file later but never
a CSV the user made. Re-exported by :mod:`napari_unet.core.postprocess.measure`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def measurements_csv_text(table: Mapping[str, np.ndarray], *, source: Mapping | None = None) -> str:
    """The CSV text of ``table``: the mark line, the header, one row per object."""
    from napari_unet.core.io.marks import CSV_PREFIX

    buffer = io.StringIO()
    buffer.write(f"{CSV_PREFIX} {json.dumps(dict(source or {}), sort_keys=True)}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(table)
    writer.writerow(names)
    columns = [np.asarray(table[name]).tolist() for name in names]
    for row in zip(*columns, strict=True):
        writer.writerow([_cell(v) for v in row])
    return buffer.getvalue()


def _cell(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return value


def write_measurements_csv(
    path: str | os.PathLike, table: Mapping[str, np.ndarray], *, source: Mapping | None = None
) -> Path:
    """Write ``table`` as CSV to ``path`` atomically (a reader sees the old file or the new one).

    Args:
        path: the ``.csv`` file.
        table: columns as returned by :func:`measure_objects`.
        source: what the table measures (model, image), written into the first comment line.

    Returns:
        ``path``.
    """
    from napari_unet.core.atomic import atomic_write_text

    lengths = {len(np.asarray(v)) for v in table.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths: {sorted(lengths)}")
    return atomic_write_text(path, measurements_csv_text(table, source=source))
