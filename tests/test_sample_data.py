"""Sample data: synthetic (deterministic) and real (from NAPARI_UNET_DATA_DIR or pooch)."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from napari_unet import _datasets
from napari_unet._sample_data import (
    dsb2018_sample,
    isbi2012_sample,
    synthetic_em_sample,
    synthetic_nuclei_sample,
)


def test_synthetic_samples_are_deterministic_with_ground_truth() -> None:
    for make in (synthetic_nuclei_sample, synthetic_em_sample):
        first, second = make(), make()
        assert [kind for *_, kind in first][:2] == ["image", "labels"]
        for (a, *_), (b, *_) in zip(first, second):
            np.testing.assert_array_equal(a, b)
    image, labels = synthetic_nuclei_sample()[0][0], synthetic_nuclei_sample()[1][0]
    assert image.shape == labels.shape == (512, 512) and labels.max() > 50
    em, membranes = synthetic_em_sample()[0][0], synthetic_em_sample()[1][0]
    assert set(np.unique(membranes)) == {0, 1}
    assert em[membranes == 1].mean() < em[membranes == 0].mean()  # dark membranes


def test_real_samples_from_the_data_dir(shared_data, monkeypatch) -> None:
    monkeypatch.setenv(_datasets.DATA_DIR_ENV, str(shared_data))
    (image, _, _), (membranes, _, kind) = isbi2012_sample()
    assert image.shape == (512, 512) and image.dtype == np.uint8 and kind == "labels"
    assert set(np.unique(membranes)) == {0, 1}
    assert 0.1 < membranes.mean() < 0.35  # ~22 % membrane; 1 = membrane after conversion
    (nuclei, _, _), (labels, _, _) = dsb2018_sample()
    assert nuclei.shape == labels.shape == (256, 256) and labels.max() == 66
    assert _datasets._array_sha256(nuclei) == _datasets.DSB_IMAGE_SHA256
    assert _datasets._array_sha256(labels) == _datasets.DSB_LABELS_SHA256


def test_offline_gives_a_clear_message(monkeypatch, tmp_path) -> None:
    import pooch

    monkeypatch.delenv(_datasets.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(_datasets.CACHE_ENV, str(tmp_path))

    def offline(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(_datasets.DatasetUnavailableError, match=r"offline.*NAPARI_UNET_DATA_DIR"):
        isbi2012_sample()
    with pytest.raises(_datasets.DatasetUnavailableError, match="offline"):
        dsb2018_sample()


def test_pooch_download_checks_the_hash_and_converts(shared_data, monkeypatch, tmp_path) -> None:
    """pooch "downloads" the pinned URLs from a local mirror; hashes are really checked."""

    monkeypatch.delenv(_datasets.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(_datasets.CACHE_ENV, str(tmp_path / "cache"))
    mirror = tmp_path / "mirror"
    (mirror / "image").mkdir(parents=True)
    (mirror / "label").mkdir()
    shutil.copy(shared_data / "isbi2012" / "images" / "00.png", mirror / "image" / "0.png")
    shutil.copy(shared_data / "isbi2012" / "labels" / "00.png", mirror / "label" / "0.png")
    requested = []

    def copy_from_mirror(url, output_file, pooch_instance):
        requested.append(url)
        relative = url.split("/data/membrane/train/", 1)[1]
        shutil.copyfile(mirror / relative, output_file)

    monkeypatch.setattr(_datasets, "DOWNLOADER", copy_from_mirror)
    sample = _datasets.load_isbi_slice()
    assert sample.labels.dtype == np.uint8 and set(np.unique(sample.labels)) == {0, 1}
    expected = hashlib.sha256((mirror / "image" / "0.png").read_bytes()).hexdigest()
    assert expected == _datasets.ISBI_FILES["image"][1]
    assert all(_datasets.ISBI_COMMIT in url for url in requested) and len(requested) == 2
    # a tampered file is refused
    shutil.rmtree(tmp_path / "cache")
    (mirror / "label" / "0.png").write_bytes(b"not the original")
    with pytest.raises(_datasets.DatasetUnavailableError, match="hash"):
        _datasets.load_isbi_slice()
