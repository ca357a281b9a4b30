"""Pure PyTorch segmentation core: numpy, torch, scipy, scikit-image and tifffile only.

Nothing in here imports napari, Qt or magicgui (``tests/test_imports.py`` checks it), so the
same code serves the CLI, scripts, a cluster job and the GUI.
"""
