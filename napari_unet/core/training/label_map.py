"""Label maps: a data set's label values mapped to ours (e.g. ISBI 2012 ``0:1,255:0``).

Moved out of :mod:`napari_unet.core.training.targets`, which re-exports every name here.
"""

from __future__ import annotations

import numpy as np

from napari_unet.core.errors import UserInputError

__all__ = ["LabelMap", "apply_label_map", "parse_label_map"]

#: Maps a data set's label values to ours, e.g. ISBI 2012 ``{0: 1, 255: 0}``.
LabelMap = dict[int, int]


def parse_label_map(text: str) -> LabelMap:
    """Parse ``"SRC:DST,SRC:DST"`` (e.g. ``"0:1,255:0"``) into a :data:`LabelMap`.

    Raises:
        UserInputError: the text is not a comma-separated list of ``int:int`` pairs, or a source
            value appears twice.
    """
    mapping: LabelMap = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            source, target = (int(value) for value in item.split(":"))
        except ValueError:
            raise UserInputError(
                f"cannot read label map entry {item!r}; write pairs SRC:DST separated by commas, "
                "e.g. 0:1,255:0"
            ) from None
        if source in mapping:
            raise UserInputError(f"label map maps value {source} twice; give each source once")
        mapping[source] = target
    if not mapping:
        raise UserInputError("the label map is empty; write pairs SRC:DST, e.g. 0:1,255:0")
    return mapping


def apply_label_map(labels: np.ndarray, mapping: LabelMap) -> np.ndarray:
    """Replace label values by ``mapping``; values not in the map are kept unchanged.

    Sources are matched in the original ``labels``, so swaps such as ``{0: 1, 1: 0}`` work.

    Args:
        labels: integer array of any shape.
        mapping: source value -> target value.

    Returns:
        New array, same shape; dtype wide enough for the targets (at least ``labels.dtype``).
    """
    labels = np.asarray(labels)
    dtype = labels.dtype
    for value in mapping.values():
        dtype = np.promote_types(dtype, np.min_scalar_type(value))
    out = labels.astype(dtype, copy=True)
    for source, target in mapping.items():
        out[labels == source] = target
    return out
