"""Sample data: synthetic (deterministic) and real (from NAPARI_UNET_DATA_DIR or pooch)."""

from __future__ import annotations

import hashlib
import json
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
    assert nuclei.shape == labels.shape == (520, 696) and labels.max() == 61
    assert _datasets._array_sha256(nuclei) == _datasets.DSB_IMAGE_SHA256
    assert _datasets._array_sha256(labels) == _datasets.DSB_LABELS_SHA256


def test_offline_gives_a_clear_message(monkeypatch, tmp_path) -> None:
    import pooch

    monkeypatch.delenv(_datasets.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(_datasets.CACHE_ENV, str(tmp_path))

    def offline(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(_datasets.DatasetUnavailableError) as caught:
        isbi2012_sample()
    text = str(caught.value)  # one short sentence, the advice first (notifications cut it off)
    assert text.startswith("Use a synthetic sample, or set NAPARI_UNET_DATA_DIR")
    assert "offline" in text and "ConnectionError" not in text and len(text) < 140
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


def _dsb_mirror(shared_data, folder):
    """The DSB2018 originals as GitHub serves them, rebuilt from the converted shared copy."""
    from PIL import Image

    from napari_unet.core.io.images import read_image

    grey = read_image(shared_data / "dsb2018_fluo" / "images" / _datasets.DSB_LOCAL_NAME).image
    labels = read_image(shared_data / "dsb2018_fluo" / "labels" / _datasets.DSB_LOCAL_NAME).image
    folder.mkdir()
    rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=-1)
    Image.fromarray(rgba, mode="RGBA").save(folder / "image.png")
    names = [f"mask_{i:03d}.png" for i in range(1, int(labels.max()) + 1)]  # sorted = id order
    for index, name in enumerate(names, start=1):
        Image.fromarray(((labels == index) * 255).astype(np.uint8)).save(folder / name)
    (folder / "listing.json").write_text(json.dumps([{"name": n, "type": "file"} for n in names]))
    return labels


def test_pooch_dsb_download_converts_rgba_and_masks(shared_data, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(_datasets.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(_datasets.CACHE_ENV, str(tmp_path / "cache"))
    mirror = tmp_path / "mirror"
    expected = _dsb_mirror(shared_data, mirror)
    requested = []

    def copy_from_mirror(url, output_file, pooch_instance):
        requested.append(url)
        assert _datasets.DSB_COMMIT in url and _datasets.DSB_IMAGE_ID in url
        if "api.github.com" in url:
            source = mirror / "listing.json"
        elif "/images/" in url:
            source = mirror / "image.png"
        else:
            source = mirror / url.rsplit("/masks/", 1)[1]
        shutil.copyfile(source, output_file)

    monkeypatch.setattr(_datasets, "DOWNLOADER", copy_from_mirror)
    sample = _datasets.load_dsb_nuclei()
    assert sample.image.shape == (520, 696) and sample.image.dtype == np.uint8
    assert sample.labels.dtype == np.uint16
    np.testing.assert_array_equal(sample.labels, expected)
    n_requests = len(requested)
    assert n_requests == 2 + int(expected.max())
    _datasets.load_dsb_nuclei()  # cached: no second download
    assert len(requested) == n_requests
    # content that does not match the pinned digests is refused and leaves the cache
    shutil.rmtree(tmp_path / "cache")
    (mirror / "mask_001.png").write_bytes((mirror / "mask_002.png").read_bytes())
    with pytest.raises(_datasets.DatasetUnavailableError, match="content hash"):
        _datasets.load_dsb_nuclei()
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_missing_local_copy_names_the_variable(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(_datasets.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(_datasets.DatasetUnavailableError, match="NAPARI_UNET_DATA_DIR"):
        isbi2012_sample()


def test_ground_truth_is_tagged_and_the_image_names_its_model(shared_data, monkeypatch) -> None:
    """The ground truth is never a correction target; the image says which built-in fits it."""
    monkeypatch.setenv(_datasets.DATA_DIR_ENV, str(shared_data))
    expected = {
        synthetic_nuclei_sample: "fluo-nuclei",
        dsb2018_sample: "fluo-nuclei",
        synthetic_em_sample: "em-membranes",
        isbi2012_sample: "em-membranes",
    }
    for make, model in expected.items():
        (_, image_kwargs, _), *truths = make()
        assert image_kwargs["metadata"]["napari_unet"]["model"] == model
        for _, kwargs, kind in truths:
            tag = kwargs["metadata"]["napari_unet"]
            assert kind == "labels" and tag["role"] == "ground_truth"
            assert tag["image_layer"] == image_kwargs["name"]
            assert kwargs["name"].endswith("ground truth") and kwargs["visible"] is False


def test_dsb_sample_is_a_validation_image_of_fluo_nuclei() -> None:
    """The sample must show the model on an image it was not trained on."""
    from napari_unet.core.checkpoint.format import builtin_checkpoints, read_checkpoint_info

    path = builtin_checkpoints().get("fluo-nuclei")
    if path is None:
        pytest.skip("fluo-nuclei is not installed")
    card = read_checkpoint_info(path).provenance.get("card") or {}
    validation = card.get("validation_files")
    if not validation:
        pytest.skip("the fluo-nuclei card lists no validation files")
    assert _datasets.DSB_LOCAL_NAME in validation
    assert _datasets.DSB_LOCAL_NAME not in card.get("training_files", [])
