"""A new model from a few choices (issue 18, point 2): architecture, task, named classes, input
channels, from scratch or from a built-in's weights; impossible choices get one sentence."""

from __future__ import annotations

import pytest
import torch

from napari_unet.core.checkpoint.format import builtin_checkpoints, load_checkpoint
from napari_unet.core.checkpoint.new_model import NEW_ARCHITECTURES, NewModelConfig, new_checkpoint
from napari_unet.core.errors import UserInputError


@pytest.mark.parametrize("arch", [name for name, _ in NEW_ARCHITECTURES])
def test_each_architecture_makes_a_named_semantic_model(tmp_path, arch) -> None:
    names = ("background", "nucleus", "membrane")
    config = NewModelConfig(arch=arch, task="semantic", class_names=names, in_channels=2)
    loaded = load_checkpoint(new_checkpoint(config, tmp_path / "new.pt"))
    assert loaded.info.arch == arch and loaded.info.task == "semantic"
    assert loaded.info.class_names == names
    assert loaded.model.in_channels == 2 and loaded.model.out_channels == 3
    if arch == "unetpp":
        assert loaded.model.config["deep_supervision"] is True


def test_from_a_builtin_keeps_its_weights_with_a_new_head(tmp_path) -> None:
    name = "em-membranes"
    if name not in builtin_checkpoints():
        pytest.skip("no built-in models")
    config = NewModelConfig(task="semantic", class_names=("bg", "a", "b", "c"), start=name)
    new = load_checkpoint(new_checkpoint(config, tmp_path / "new.pt")).model
    old = load_checkpoint(builtin_checkpoints()[name]).model
    kept = [k for k, v in old.state_dict().items() if new.state_dict()[k].shape == v.shape]
    assert len(kept) > 10 and all(
        torch.equal(old.state_dict()[k], new.state_dict()[k]) for k in kept
    )
    assert new.out_channels == 4


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"class_names": ("background",)}, "at least two class names"),
        ({"class_names": ("a", "a")}, "different"),
        ({"arch": "unetpp", "start": "em-membranes"}, "pick unet as the architecture"),
        ({"start": "nope"}, "not a built-in model"),
        ({"arch": "unet11", "encoder_weights": "/missing/vgg11.pth"}, "vgg11.pth"),
        ({"encoder_weights": "/missing/vgg11.pth"}, "TernausNet only"),
    ],
)
def test_impossible_choices_get_one_sentence(tmp_path, changes, words) -> None:
    if changes.get("start") == "em-membranes" and "em-membranes" not in builtin_checkpoints():
        pytest.skip("no built-in models")
    with pytest.raises(UserInputError, match=words) as info:
        new_checkpoint(NewModelConfig(**changes), tmp_path / "new.pt")
    assert "\n" not in str(info.value) and not (tmp_path / "new.pt").exists()
