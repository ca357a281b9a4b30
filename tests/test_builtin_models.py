"""The built-in models: they load offline, predict the right shapes, carry their model cards, and
still score what their cards say on two validation images (a silent change to normalisation,
prediction or post-processing that breaks the shipped models fails here)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint.format import BUILTIN_DIR, builtin_checkpoints, load_checkpoint
from napari_unet.core.evaluation.score import evaluate_pair
from napari_unet.core.inference.prediction import PredictConfig, predict
from napari_unet.core.io.images import read_image
from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.postprocess.labels import labels_from_probabilities
from napari_unet.core.training.config import TrainConfig

NAMES = ("em-membranes", "fluo-nuclei")
DATA = Path(
    os.environ.get("NAPARI_UNET_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)
FOLDERS = {"em-membranes": "isbi2012", "fluo-nuclei": "dsb2018_fluo"}
#: validation images re-scored here, and the allowed drift from the card's per-image values
REGRESSION = {
    "em-membranes": (("25.png", "28.png"), {"pixel_error": 0.01, "rand_error": 0.02}),
    "fluo-nuclei": (("014.png", "024.png"), {"ap50": 0.05}),
}


@pytest.fixture(scope="module")
def loaded():
    """Both built-in checkpoints, loaded once."""
    found = builtin_checkpoints()
    missing = [name for name in NAMES if name not in found]
    assert not missing, f"built-in checkpoints missing from {BUILTIN_DIR}: {missing}"
    return {name: load_checkpoint(found[name]) for name in NAMES}


def _postprocess(info, output: str) -> PostprocessConfig:
    defaults = dict(info.provenance.get("postprocess") or {})
    return PostprocessConfig(output=output, **defaults)


def _labels(model, image, output: str):
    probabilities = predict(
        model.model,
        image,
        "YX",
        task=model.info.task,
        normalization=model.info.normalization_config(),
        config=PredictConfig(device="cpu"),
    )
    return probabilities, labels_from_probabilities(
        probabilities, task=model.info.task, config=_postprocess(model.info, output)
    )


def test_files_are_small_float16_checkpoints():
    for name in NAMES:
        path = BUILTIN_DIR / f"{name}.pt"
        assert path.stat().st_size <= 20 * 1024 * 1024
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        assert payload["weights_dtype"] == "float16"


def test_cards_parse_and_describe_the_split(loaded):
    expected_val = {"em-membranes": 5, "fluo-nuclei": 12}
    for name, model in loaded.items():
        card = model.info.provenance["card"]
        assert card["name"] == name == model.info.name
        val, train = card["validation_files"], card["training_files"]
        assert len(val) == expected_val[name] and not set(val) & set(train)
        assert card["data"]["licence"] and card["data"]["source"]
        config = TrainConfig.from_dict(card["recipe"]["train_config"])
        assert config.task == model.info.task and config.val_fraction == 0
        assert [row["name"] for row in card["validation"]["per_image"]] == [
            Path(f).stem for f in val
        ]
        assert card["training"]["seconds"] > 0 and card["training"]["machine"]["torch"]
        assert card["published_anchors"]["source"]
        for metric in card["validation"]["targets"]:
            assert card["validation"]["mean"][metric] is not None
        for mode in ("flips", "dihedral"):  # scored with test-time augmentation too
            with_tta = card["validation"]["with_tta"][mode]
            assert all(with_tta[metric] is not None for metric in card["validation"]["targets"])
    em = loaded["em-membranes"].info
    mean = em.provenance["card"]["validation"]["mean"]
    # the challenge's pixel error is 1 - F1 of the interior (class 0): F1 = 2 IoU / (1 + IoU)
    # (per image; the means of the two differ a little)
    interior = mean["iou_class_0"]
    background = 1 - 2 * interior / (1 + interior)
    assert mean["pixel_error_background"] == pytest.approx(background, abs=1e-3)
    assert em.provenance["card"]["published_anchors"]["pixel_error_background"] == 0.0611
    assert em.provenance["card"]["validation_files"] == [f"{i}.png" for i in range(25, 30)]
    assert em.class_names == ("interior", "membrane")
    assert tuple(em.provenance["postprocess"]["foreground_class"]) == (0,)
    fluo = loaded["fluo-nuclei"].info.provenance["card"]["validation_files"]
    assert all(int(Path(f).stem) % 5 == 4 for f in fluo)


def test_models_cli_lists_the_cards():
    from napari_unet.cli.models import model_cards

    builtins = {c["name"]: c["card"] for c in model_cards() if c["kind"] == "builtin"}
    for name in NAMES:
        assert builtins[name]["validation_files"]
        assert builtins[name]["task"] in ("semantic", "instances")


def test_predict_shapes_semantic_and_instances(loaded):
    image = (np.random.default_rng(0).random((80, 96)) * 255).astype(np.uint8)
    em = loaded["em-membranes"]
    probabilities, semantic = _labels(em, image, "semantic")
    assert probabilities.shape == (2, 80, 96) and semantic.shape == (80, 96)
    assert set(np.unique(semantic)) <= {0, 1}
    _, regions = _labels(em, image, "instances")
    assert regions.shape == (80, 96) and regions.max() >= 1
    nuclei = loaded["fluo-nuclei"]
    probabilities, instances = _labels(nuclei, image, "instances")
    assert probabilities.shape == (3, 80, 96) and instances.shape == (80, 96)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_validation_scores_match_the_card(loaded, name):
    folder = DATA / FOLDERS[name]
    if not folder.is_dir():
        pytest.skip(f"data set {folder} not available")
    model = loaded[name]
    card = model.info.provenance["card"]
    per_image = {row["name"]: row for row in card["validation"]["per_image"]}
    label_map = card["validation"]["label_map"]
    label_map = {int(k): v for k, v in label_map.items()} if label_map else None
    files, margins = REGRESSION[name]
    output = "instances" if model.info.task == "instances" else "semantic"
    for file in files:
        image = read_image(folder / "images" / file).image
        truth = read_image(folder / "labels" / file).image
        _, labels = _labels(model, image, output)
        scores = evaluate_pair(labels, truth, task=model.info.task, label_map=label_map)
        for metric, margin in margins.items():
            expected = per_image[Path(file).stem][metric]
            assert abs(scores[metric] - expected) <= margin, (name, file, metric)
