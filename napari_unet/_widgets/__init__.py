"""napari dock widgets (everything that touches napari, Qt and threads lives in this package).

``SegmentWidget`` is the "U-Net Segment" dock widget of the manifest, ``FinetuneWidget`` the
"U-Net Fine-tune" one. Imported lazily so that
``import napari_unet._widgets`` stays cheap until a widget is actually made.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FinetuneWidget", "SegmentWidget"]


def __getattr__(name: str) -> Any:
    if name == "SegmentWidget":
        from napari_unet._widgets.segment_widget import SegmentWidget

        return SegmentWidget
    if name == "FinetuneWidget":
        from napari_unet._widgets.finetune_widget import FinetuneWidget

        return FinetuneWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
