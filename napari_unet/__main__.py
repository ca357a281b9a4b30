"""``python -m napari_unet`` runs the command-line interface."""

import sys

from napari_unet.cli import main

sys.exit(main())
