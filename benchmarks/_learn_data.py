"""The data sets of ``bench_learn.py``: fixed test images, a training pool, the K-image draws.

Every set is used as a new modality: its test images never change, and the K corrected images of
a run are the first K of a seeded permutation of the pool (so the K = 3 images are among the
K = 10 ones of the same seed). ``dsb2018_fluo`` keeps the issue's draw for seed 0: 040, 041, 043
first, tested on 034, 039, 044, 049, 059 (the built-in ``fluo-nuclei``'s validation images).
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Issue 17's fixed draw: dsb2018_fluo, seed 0.
FLUO_FIRST = ("040", "041", "043")
FLUO_TEST = ("034", "039", "044", "049", "059")
#: ISBI 2012: the built-in em-membranes' validation slices.
ISBI_TEST = ("25", "26", "27", "28", "29")


@dataclasses.dataclass(frozen=True)
class LearnSet:
    """One data set: stems of the test images and of the training pool, and where files are.

    Attributes:
        membranes: ISBI-style labels (0 = membrane, 255 = cell) scored as membranes.
        first: stems forced to the front of seed 0's permutation (the issue's draw).
    """

    name: str
    folder: str
    test: tuple[str, ...]
    pool: tuple[str, ...]
    membranes: bool = False
    first: tuple[str, ...] = ()
    suffix: str = ".png"

    def image(self, stem: str) -> Path:
        """The image file of ``stem``."""
        return Path(self.folder) / "images" / f"{stem}{self.suffix}"

    def labels(self, stem: str) -> Path:
        """The label file of ``stem``."""
        return Path(self.folder) / "labels" / f"{stem}{self.suffix}"

    def choose(self, k: int, seed: int) -> tuple[str, ...]:
        """The K corrected images of ``seed``: the first K of a seeded permutation of the pool."""
        if k > len(self.pool):
            raise ValueError(f"{self.name}: K = {k} but the pool holds {len(self.pool)} images")
        order = [self.pool[i] for i in np.random.default_rng(seed).permutation(len(self.pool))]
        if seed == 0 and self.first:
            order = [*self.first, *(s for s in order if s not in self.first)]
        return tuple(order[:k])

    def describe(self) -> dict:
        """JSON-ready: folder, test stems, pool stems and the rule."""
        return {
            "folder": self.folder,
            "test": list(self.test),
            "pool": list(self.pool),
            "membranes": self.membranes,
            "rule": "first K of numpy default_rng(seed).permutation(pool)"
            + (f"; seed 0 starts with {', '.join(self.first)}" if self.first else ""),
        }


def shared_sets(root: Path) -> dict[str, LearnSet]:
    """The three shared sets under ``root`` (../shared/data), as new modalities."""
    fluo = sorted(p.stem for p in (root / "dsb2018_fluo" / "images").glob("*.png"))
    with open(root / "dsb2018_stained_bf" / "index.csv", encoding="utf-8") as handle:
        stained = [
            row["file"] for row in csv.DictReader(handle) if row["modality"] == "stained_rgb"
        ]
    # 8 test tiles spread over the 107 (neighbouring tiles come from the same slide)
    stained_test = tuple(stem for i, stem in enumerate(stained) if i % 13 == 6)
    isbi = sorted(p.stem for p in (root / "isbi2012" / "images").glob("*.png"))
    return {
        "dsb2018_stained_bf": LearnSet(
            "dsb2018_stained_bf",
            str(root / "dsb2018_stained_bf"),
            test=stained_test,
            pool=tuple(s for s in stained if s not in stained_test),
        ),
        "dsb2018_fluo": LearnSet(
            "dsb2018_fluo",
            str(root / "dsb2018_fluo"),
            test=FLUO_TEST,
            pool=tuple(s for s in fluo if s not in FLUO_TEST),
            first=FLUO_FIRST,
        ),
        "isbi2012": LearnSet(
            "isbi2012",
            str(root / "isbi2012"),
            test=ISBI_TEST,
            pool=tuple(s for s in isbi if s not in ISBI_TEST),
            membranes=True,
        ),
    }


def stained_grey_set(root: Path, folder: Path) -> LearnSet:
    """``dsb2018_stained_bf``'s 16 ``brightfield_gray`` tiles as one-channel images in ``folder``.

    The files hold grey as RGB with three equal channels, which a one-channel built-in model
    refuses (``train --model fluo-nuclei``: channel mismatch), so channel 0 is written as a grey
    PNG. Test: every 4th tile from the 2nd (4 tiles), pool: the other 12.
    """
    import imageio.v3 as iio

    source = root / "dsb2018_stained_bf"
    with open(source / "index.csv", encoding="utf-8") as handle:
        stems = [
            row["file"] for row in csv.DictReader(handle) if row["modality"] == "brightfield_gray"
        ]
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for stem in stems:
        image = iio.imread(source / "images" / f"{stem}.png")
        iio.imwrite(folder / "images" / f"{stem}.png", image[..., 0] if image.ndim == 3 else image)
        target = folder / "labels" / f"{stem}.png"
        if not target.exists():
            target.symlink_to((source / "labels" / f"{stem}.png").resolve())
    test = tuple(stem for i, stem in enumerate(stems) if i % 4 == 1)
    return LearnSet(
        "dsb2018_stained_grey",
        str(folder),
        test=test,
        pool=tuple(s for s in stems if s not in test),
    )


def isbi_cells_set(base: LearnSet, folder: Path) -> LearnSet:
    """ISBI 2012 as an *instance* set (``isbi2012_cells``), written to ``folder``: each cell is a
    4-connected region of the interior (label 255) and the membranes are background.

    The issue's second unseen modality is EM of tissue with instance labels; this is the one real
    stand-in the shared data holds (cells of 75-5,000 px, median ~500 px, with their real detail,
    where the ``_xN`` sets are interpolated). Images are linked, labels written as uint16 PNG;
    same test slices and draws as ``isbi2012``.
    """
    import imageio.v3 as iio
    from scipy import ndimage as ndi

    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for stem in (*base.test, *base.pool):
        image = folder / "images" / f"{stem}.png"
        if not image.exists():
            image.symlink_to(base.image(stem).resolve())
        cells, _ = ndi.label(iio.imread(base.labels(stem)) == 255)
        iio.imwrite(folder / "labels" / f"{stem}.png", cells.astype(np.uint16))
    return dataclasses.replace(base, name="isbi2012_cells", folder=str(folder), membranes=False)


def synthetic_set(folder: Path, n: int = 8, side: int = 96) -> LearnSet:
    """A tiny synthetic nuclei set written to ``folder`` (tests): 5 pool, 3 test images."""
    import tifffile

    from napari_unet.core.synthetic import synthetic_nuclei

    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    stems = [f"{i:03d}" for i in range(n)]
    for i, stem in enumerate(stems):
        image, labels = synthetic_nuclei((side, side), n_nuclei=10, seed=i)
        scaled = np.clip(image.astype(np.float64) / max(float(image.max()), 1e-6) * 60000, 0, 65535)
        tifffile.imwrite(folder / "images" / f"{stem}.tif", scaled.astype(np.uint16))
        tifffile.imwrite(folder / "labels" / f"{stem}.tif", labels.astype(np.uint16))
    return LearnSet(
        "synthetic", str(folder), test=tuple(stems[-3:]), pool=tuple(stems[:-3]), suffix=".tif"
    )


def zoomed_set(base: LearnSet, folder: Path, factor: int) -> LearnSet:
    """``base`` with every image and label enlarged ``factor`` times, written to ``folder``
    (name ``<base>_x<factor>``): objects far larger than the U-Net's receptive field, as whole
    cells in a phase-contrast image are, for the scale the fingerprint chooses (issue 17).

    Images: bicubic interpolation (torch; intensities kept in their dtype); labels: nearest
    neighbour (each pixel a ``factor`` x ``factor`` block).
    """
    import imageio.v3 as iio
    import torch

    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for stem in (*base.test, *base.pool):
        image = iio.imread(base.image(stem))
        planes = torch.from_numpy(np.atleast_3d(image).astype(np.float32)).permute(2, 0, 1)
        big = torch.nn.functional.interpolate(planes[None], scale_factor=factor, mode="bicubic")
        big = big[0].permute(1, 2, 0).numpy().reshape(*big.shape[-2:], *image.shape[2:])
        if np.issubdtype(image.dtype, np.integer):
            big = np.clip(np.round(big), 0, np.iinfo(image.dtype).max)
        iio.imwrite(folder / "images" / f"{stem}.png", big.astype(image.dtype))
        labels = iio.imread(base.labels(stem))
        block = np.ones((factor, factor), dtype=labels.dtype)
        iio.imwrite(folder / "labels" / f"{stem}.png", np.kron(labels, block))
    return dataclasses.replace(base, name=f"{base.name}_x{factor}", folder=str(folder),
                               suffix=".png")  # fmt: skip


def zoomed_sets(sets: dict[str, LearnSet], names: Sequence[str], folder: Path) -> dict:
    """The ``<set>_x<N>`` of ``names`` (:func:`zoomed_set` of a set in ``sets``), in ``folder``."""
    zoomed = {}
    for name in names:
        base, _, factor = name.rpartition("_x")
        if base in sets and factor.isdigit() and name not in sets:
            zoomed[name] = zoomed_set(sets[base], folder / name, int(factor))
    return zoomed


def requested_sets(root: Path, names: Sequence[str], folder: Path) -> dict[str, LearnSet]:
    """The shared sets under ``root`` plus the derived ones ``names`` asks for, written under
    ``folder``: ``dsb2018_stained_grey``, ``isbi2012_cells`` and any ``<set>_x<N>``."""
    sets = shared_sets(root)
    if "dsb2018_stained_grey" in names:
        sets["dsb2018_stained_grey"] = stained_grey_set(root, folder / "grey")
    if "isbi2012_cells" in names:
        sets["isbi2012_cells"] = isbi_cells_set(sets["isbi2012"], folder / "cells")
    sets.update(zoomed_sets(sets, names, folder / "zoomed"))
    return sets
