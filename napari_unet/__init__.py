"""napari-unet-loop: U-Net segmentation for napari that learns from your corrections.

Importing this package stays light on purpose (no torch, no Qt): napari imports it when it
discovers plugins and when it opens files.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
