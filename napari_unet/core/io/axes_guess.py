"""Guessing the axes of an image from its shape, napari's ``rgb`` flag or file metadata.

Axes are never guessed silently for ambiguous shapes: :func:`guess_axes` raises an
:class:`~napari_unet.core.errors.AxesError` for e.g. ``(3, 512, 512)``. Re-exported by
:mod:`napari_unet.core.io.axes`.
"""

from __future__ import annotations

import logging

from napari_unet.core.errors import AxesError
from napari_unet.core.io.axes_check import AXES_LETTERS, _example_axes, _shape_text, check_axes

logger = logging.getLogger(__name__)

#: tifffile / OME / ImageJ letters translated to ours (``S`` there means RGB samples,
#: ``I`` a generic image sequence).
_METADATA_LETTERS = {"T": "T", "Z": "Z", "C": "C", "Y": "Y", "X": "X", "I": "S", "S": "C"}


def _normalise_metadata_axes(metadata_axes: str, shape: tuple[int, ...]) -> str:
    raw = metadata_axes.strip().upper()
    if "S" in raw and "C" in raw:
        raise AxesError(
            f"the file's axes {raw!r} for shape {_shape_text(shape)} have both channels (C) and "
            "samples (S); pass the axes explicitly (e.g. --axes) with one C."
        )
    unknown = sorted({a for a in raw if a not in _METADATA_LETTERS})
    if unknown:
        raise AxesError(
            f"the file's axes {raw!r} for shape {_shape_text(shape)} contain letter(s) "
            f"{', '.join(unknown)} that cannot be interpreted; pass the axes explicitly "
            f"(e.g. --axes {_example_axes(len(shape)).split(' ')[0]}) using {AXES_LETTERS}."
        )
    return check_axes("".join(_METADATA_LETTERS[a] for a in raw), shape)


def guess_axes(
    shape: tuple[int, ...], *, rgb: bool | None = None, metadata_axes: str | None = None
) -> str:
    """Axes for an image of ``shape``, refusing to guess when the shape is ambiguous.

    Rules, in order:

    1. ``metadata_axes`` (tifffile / OME / ImageJ letters) win; ``I`` (image sequence) becomes the
       generic stack ``S`` and ``S`` (RGB samples) becomes ``C``; other letters (``Q`` ...) raise.
    2. 2-D: ``"YX"``.
    3. ``rgb=True`` (napari's flag) with a last dimension of 3 or 4: ``"YXC"`` (3-D) or
       ``"ZYXC"`` (4-D).
    4. 3-D whose first and last dimensions are both larger than 4 and ``rgb`` not set: ``"ZYX"``.
       This is a stack; it could also be ``TYX``, which predicts identically slice by slice.
    5. Anything else raises, e.g. ``(3, Y, X)`` (channels or slices?), ``(Y, X, 3)`` without the
       rgb flag, any 4-D shape without the rgb flag, and 5-D or more.

    Args:
        shape: The image shape.
        rgb: napari's ``rgb`` flag when known (``None`` = unknown).
        metadata_axes: Axes stored in the file, if any.

    Returns:
        A valid axes string for ``shape``.

    Raises:
        AxesError: The axes cannot be determined safely; the message says to pass them.
    """
    shape = tuple(int(s) for s in shape)
    if metadata_axes:
        return _normalise_metadata_axes(metadata_axes, shape)
    ndim = len(shape)
    shape_txt = _shape_text(shape)
    if ndim == 2:
        return "YX"
    if ndim < 2:
        raise AxesError(f"an image needs at least two dimensions (Y, X); got shape {shape_txt}.")
    if rgb and ndim in (3, 4):
        if shape[-1] in (3, 4):
            return "YXC" if ndim == 3 else "ZYXC"
        raise AxesError(
            f"the image is flagged RGB but its last dimension is {shape[-1]}, not 3 or 4 "
            f"(shape {shape_txt}); pass the axes explicitly (e.g. --axes ZYX)."
        )
    if ndim == 3 and shape[0] > 4 and shape[-1] > 4:
        logger.info("reading shape %s as a ZYX stack (could also be TYX)", shape_txt)
        return "ZYX"
    if ndim == 3:
        raise AxesError(
            f"the axes of an image of shape {shape_txt} are ambiguous (channels or a stack?); "
            "pass them explicitly, e.g. --axes CYX for channels first, YXC for RGB, "
            "or ZYX for a stack of slices."
        )
    raise AxesError(
        f"the axes of a {ndim}-D image of shape {shape_txt} cannot be guessed; pass them "
        "explicitly with one letter per dimension from T, Z, C, Y, X (e.g. --axes "
        f"{'ZCYX' if ndim == 4 else 'TZCYX'})."
    )
