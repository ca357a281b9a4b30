"""napari dock widgets (everything that touches napari, Qt and threads lives in this package).

``SegmentWidget`` is the "U-Net Segment" dock widget of the manifest. Imported lazily so that
``import napari_unet._widgets`` stays cheap until a widget is actually made.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SegmentWidget"]


def __getattr__(name: str) -> Any:
    if name == "SegmentWidget":
        from napari_unet._widgets.segment_widget import SegmentWidget

        return SegmentWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
