"""The pooled training data of ``nuclei-generalist``: several shared sets as one folder.

``train_builtin.py nuclei-generalist`` trains on images of three modalities at once: fluorescence
nuclei (``dsb2018_fluo``), grey bright-field nuclei (the ``brightfield_gray`` tiles of
``dsb2018_stained_bf``) and ssTEM neurite regions (``isbi2012``, each region between membranes
one instance, membranes background). The stained RGB tiles of ``dsb2018_stained_bf`` are left out
on purpose: they stay a modality the model has never seen, on which ``bench_learn.py`` measures
whether this start beats ``fluo-nuclei`` for a new modality.

:func:`build_pool` writes the pool once under a data root of its own (one-channel PNG images,
16-bit instance labels), named ``<set>_<stem>.png`` so one folder holds all, and returns that
root; every other part of ``train_builtin.py`` then reads it as it reads a single set. The
recipe's validation files (``builtin_recipes.py``) hold every image ``bench_learn.py`` tests on,
so no benchmark test image is trained on.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from skimage.measure import label as connected_regions

logger = logging.getLogger("train_builtin")

#: Where the pool lives under the data root that :func:`build_pool` returns.
POOL_FOLDER = "nuclei_generalist_pool"


def _grey_stems(data_dir: Path) -> list[str]:
    """Stems of the 16 ``brightfield_gray`` tiles of ``dsb2018_stained_bf``, in index order."""
    with open(data_dir / "dsb2018_stained_bf" / "index.csv", encoding="utf-8") as handle:
        rows = csv.DictReader(handle)
        return [row["file"].split(".")[0] for row in rows if row["modality"] == "brightfield_gray"]


def pool_sources(data_dir: Path) -> list[tuple[str, Path, str]]:
    """``(pool file name, source folder, source stem)`` for every pooled image."""
    fluo, stained, isbi = (data_dir / s for s in ("dsb2018_fluo", "dsb2018_stained_bf", "isbi2012"))
    sources = [(f"fluo_{p.stem}.png", fluo, p.stem) for p in sorted(fluo.glob("images/*.png"))]
    sources += [(f"grey_{stem}.png", stained, stem) for stem in _grey_stems(data_dir)]
    sources += [(f"isbi_{p.stem}.png", isbi, p.stem) for p in sorted(isbi.glob("images/*.png"))]
    return sources


def _pooled_pair(name: str, folder: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """``(image (Y, X), instance labels (Y, X) uint16)`` of one source image, as pooled."""
    image = iio.imread(folder / "images" / f"{stem}.png")
    labels = iio.imread(folder / "labels" / f"{stem}.png")
    if image.ndim == 3:  # grey stored as RGB with three equal channels
        image = image[..., 0]
    if name.startswith("isbi_"):  # 255 = neurite interior, 0 = membrane
        labels = connected_regions(labels == 255, connectivity=1)
    return image, np.asarray(labels, dtype=np.uint16)


def build_pool(data_dir: Path, root: Path) -> Path:
    """Write the pool under ``root / POOL_FOLDER`` (once; kept files are reused); return ``root``.

    Raises:
        SystemExit: a source set is missing from ``data_dir``.
    """
    if not (data_dir / "dsb2018_stained_bf" / "index.csv").exists():
        raise SystemExit(f"the shared data sets are not under {data_dir}; pass --data DIR")
    folder = root / POOL_FOLDER
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    sources = pool_sources(data_dir)
    for name, source, stem in sources:
        if (folder / "labels" / name).exists():
            continue
        image, labels = _pooled_pair(name, source, stem)
        iio.imwrite(folder / "images" / name, image)
        iio.imwrite(folder / "labels" / name, labels)
    logger.info("nuclei-generalist pool: %d images in %s", len(sources), folder)
    return root
