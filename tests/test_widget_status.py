"""The Fine-tune dock's status lines say true things (compared with the start model too)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("qtpy")

from napari_unet._widgets import finetune_request as R


def validation(step: int, score: float, improved: bool = True):
    return SimpleNamespace(step=step, metrics={"score": score}, improved=improved)


def test_a_score_below_the_start_model_is_not_called_better() -> None:
    scores = R.RunScores()
    assert R.validation_text(validation(0, 0.890, False), scores) == (
        "Start model: validation score 0.890."
    )
    text = R.validation_text(validation(20, 0.824), scores)
    assert "better" not in text
    assert text == (
        "Step 20: validation score 0.824, below the start model's 0.890; nothing published yet."
    )
    text = R.validation_text(validation(40, 0.912), scores)
    assert text == "Step 40: validation score 0.912, above the start model's 0.890 (best so far)."
    scores.published = "v003"
    text = R.validation_text(validation(60, 0.900, False), scores)
    assert "above the start model's 0.890 but not this run's best 0.912" in text
    assert "v003 stays" in R.validation_text(validation(80, 0.85, False), scores)


def test_a_run_without_a_version_says_so_and_why() -> None:
    scores = R.RunScores()
    R.validation_text(validation(0, 0.89, False), scores)
    R.validation_text(validation(20, 0.80), scores)
    R.validation_text(validation(40, 0.85), scores)
    done = SimpleNamespace(reason="time", steps=42, best_version=None)
    assert R.finished_text(done, scores) == (
        "Finished (time budget used) after 42 steps: no version published — validation never "
        "beat the start model (best 0.850 ≤ 0.890)."
    )
    published = SimpleNamespace(reason="steps", steps=50, best_version="v002")
    assert R.finished_text(published, scores) == (
        "Finished (step budget used) after 50 steps; newest version v002."
    )
    assert "no version published" in R.finished_text(
        SimpleNamespace(reason="stopped", steps=0, best_version=None), R.RunScores()
    )


def test_without_a_start_score_the_run_best_is_the_reference() -> None:
    scores = R.RunScores()
    assert R.validation_text(validation(20, 0.5), scores) == (
        "Step 20: validation score 0.500 (best so far)."
    )
    assert R.validation_text(validation(40, 0.4, False), scores) == (
        "Step 40: validation score 0.400."
    )


def test_messages_name_images_and_tasks_as_a_user_would() -> None:
    from napari_unet.trainer.data import task_phrase

    session = SimpleNamespace(image=lambda image_id: SimpleNamespace(name="dsb2018 nuclei"))
    text = "the labels of image img0001 slice 0 are instances labels"
    assert R.with_image_names(text, session) == (
        "the labels of image 'dsb2018 nuclei' slice 0 are instances labels"
    )
    assert R.with_image_names(text, None) == text
    assert f"start from {task_phrase('instances')} model" == (
        "start from an instance segmentation model"
    )
