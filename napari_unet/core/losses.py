"""Deprecated: this module moved to :mod:`napari_unet.core.training.losses`.

A relayout shim: importing it warns and gives the new module; it goes in the next release.
"""

import importlib
import sys
import warnings

warnings.warn(
    "napari_unet.core.losses moved to napari_unet.core.training.losses; import it from there "
    "(the old path goes in the next release).",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("napari_unet.core.training.losses")
