"""The Fine-tune dock's start model and rate, decided without Qt (issue 17: a built-in on a new
modality, or a start whose channels are adapted, fine-tunes at the recipe's 1e-3)."""

from __future__ import annotations

from types import SimpleNamespace

from napari_unet._widgets.logic.start_choice import (
    BUILTIN_FOR_TASK,
    builtin_for,
    image_channels,
    labels_task,
    start_choice,
)
from napari_unet.core.checkpoint.format import builtin_checkpoints, read_checkpoint_info
from napari_unet.core.config import LR_FINETUNE, LR_SCRATCH


def image(task, channels=1):
    layout = SimpleNamespace(n_channels=channels)
    return SimpleNamespace(task=task, layout=layout)


def test_the_builtin_for_a_task_has_that_task():
    for task, name in BUILTIN_FOR_TASK.items():
        assert read_checkpoint_info(builtin_checkpoints()[name]).task == task


def test_the_labels_pick_the_builtin():
    builtins = ["em-membranes", "fluo-nuclei"]
    assert builtin_for(labels_task([image("instances"), image(None)]), builtins) == (
        "builtin:fluo-nuclei"
    )
    assert builtin_for(labels_task([image("semantic")]), builtins) == "builtin:em-membranes"
    assert builtin_for(labels_task([image("semantic"), image("instances")]), builtins) == ""
    assert builtin_for("binary", builtins) == "" and builtin_for("instances", []) == ""
    assert image_channels([image(None, 3), image(None, 3)]) == 3
    assert image_channels([image(None, 3), image(None, 1)]) is None


def test_a_suggested_builtin_says_why_and_takes_the_recipes_rate():
    choice = start_choice(
        "builtin:fluo-nuclei", "fluo-nuclei (built-in)", task="instances", suggested=True
    )
    assert choice.lr == LR_SCRATCH == 1e-3
    assert choice.line == (
        "Starts from fluo-nuclei (built-in): your labels are instances and you have no model of "
        "your own yet; learning rate 0.001, the recipe's rate for a new modality."
    )


def test_adapted_channels_take_the_recipes_rate_and_versions_stay_gentle():
    adapted = start_choice("file:/m.pt", "m.pt", model_channels=1, channels=3)
    assert adapted.lr == LR_SCRATCH
    assert "it takes 1 channel and the images have 3 channels, so its first layer is adapted" in (
        adapted.line
    )
    same = start_choice("file:/m.pt", "m.pt", model_channels=1, channels=1)
    assert same.lr == LR_FINETUNE and same.line == "Starts from m.pt; learning rate 0.0001."
    version = start_choice("version:v002", "v002 · model", model_channels=1, channels=1)
    assert version.lr == LR_FINETUNE and "already learnt from this session" in version.line
    new = start_choice("file:/new.pt", "new.pt", new=True, model_channels=1, channels=3)
    assert new.lr == LR_SCRATCH and "trained from scratch" in new.line
