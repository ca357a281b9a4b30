"""The training loop on tiny nets: it learns, ignores unannotated pixels, resumes exactly, stops."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
import torch

import napari_unet.core.training.run_parts as run_parts
from napari_unet.core.checkpoint.format import load_checkpoint
from napari_unet.core.errors import TrainingDataError, TrainingDivergedError
from napari_unet.core.models import build_model
from napari_unet.core.training.augment import AugmentConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import (
    CheckpointEvent,
    StepEvent,
    TrainConfig,
    ValidationEvent,
    iter_train,
    train,
)

NO_AUGMENT = AugmentConfig(strength=0.0)


def discs(seed: int = 0, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """A (1, 64, 64) float32 image of bright discs on noise and its 0/1 labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((64, 64), np.uint8)
    for cy, cx, r in [(16, 16, 8), (40, 45, 10), (50, 15, 6)]:
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    image = (labels + rng.normal(0, noise, labels.shape)).astype(np.float32)[None]
    return image, labels


def tiny_model(out_channels: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("unet", depth=2, base_channels=8, in_channels=1, out_channels=out_channels)


def config(tmp_path, **changes) -> TrainConfig:
    settings = {
        "task": "binary",
        "steps": 6,
        "batch_size": 2,
        "patch_shape": (32, 32),
        "val_fraction": 0.0,
        "val_every": 2,
        "augment": NO_AUGMENT,
        "checkpoint_dir": str(tmp_path / "run"),
        "device": "cpu",
    }
    settings.update(changes)
    return TrainConfig(**settings)


def foreground_iou(model, image, labels) -> float:
    model.eval()
    with torch.no_grad():
        predicted = (model(torch.from_numpy(image[None]))[0, 0] > 0).numpy()
    truth = labels > 0
    return float((predicted & truth).sum() / (predicted | truth).sum())


def test_tiny_unet_overfits_discs(tmp_path):
    image, labels = discs()
    model = tiny_model()
    cfg = config(
        tmp_path, steps=150, patch_shape=(64, 64), lr=3e-3, schedule="constant", val_every=50
    )
    events = list(_drain(iter_train(model, [TrainingItem(image, labels, name="d")], cfg)))
    losses = [e.loss for e in events if isinstance(e, StepEvent)]
    assert len(losses) == 150
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    assert foreground_iou(model, image, labels) >= 0.9
    kinds = {e.kind for e in events if isinstance(e, CheckpointEvent)}
    assert kinds == {"best", "latest"}
    loaded = load_checkpoint(tmp_path / "run" / "best.pt")
    provenance = loaded.info.provenance
    assert provenance["steps"] == 150 and provenance["data"]["n_images"] == 1
    assert provenance["data"]["annotated_pixels"] == 64 * 64
    assert provenance["train_config"]["lr"] == 3e-3 and provenance["seed"] == 0


def _drain(events):
    while True:
        try:
            yield next(events)
        except StopIteration as done:
            _drain.result = done.value
            return


def one_step_gradients(tmp_path, labels: np.ndarray, mask: np.ndarray) -> list[torch.Tensor]:
    """Gradients of one step, read back as the SGD update with lr 1 (no momentum, no clip)."""
    image, _ = discs()
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    cfg = config(tmp_path, steps=1, optimizer="sgd", momentum=0.0, lr=1.0, grad_clip=None)
    cfg = cfg.replace(schedule="constant")
    train(model, [TrainingItem(image, labels, mask, name="x")], cfg)
    return [b - p.detach() for b, p in zip(before, model.parameters())]


def test_labels_outside_the_annotated_mask_do_not_change_gradients(tmp_path):
    _, labels = discs()
    mask = np.zeros((64, 64), bool)
    mask[5:40, 5:40] = True
    changed = labels.copy()
    changed[~mask] = 1 - changed[~mask]  # flip every unannotated pixel
    first = one_step_gradients(tmp_path, labels, mask)
    second = one_step_gradients(tmp_path, changed, mask)
    assert any(g.abs().sum() > 0 for g in first)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    # and the gradients do depend on annotated labels
    changed[mask] = 1 - changed[mask]
    third = one_step_gradients(tmp_path, changed, mask)
    assert not all(torch.equal(a, b) for a, b in zip(first, third))


def test_resume_from_latest_is_bit_identical(tmp_path):
    image, labels = discs()
    items = [TrainingItem(image, labels, name="d")]
    settings = {
        "augment": AugmentConfig(),
        "val_fraction": 0.3,
        "val_tile": 32,
        "optimizer": "adamw",
        "warmup_steps": 2,
    }
    straight = tiny_model()
    train(straight, items, config(tmp_path / "a", **settings))

    done = []
    first = tiny_model()
    for event in iter_train(
        first, items, config(tmp_path / "b", **settings), stop=lambda: len(done) >= 3
    ):
        if isinstance(event, StepEvent):
            done.append(event.step)
    assert done == [1, 2, 3]
    resumed = tiny_model(seed=123)  # weights come from the checkpoint
    latest = tmp_path / "b" / "run" / "latest.pt"
    result = train(resumed, items, config(tmp_path / "c", **settings), resume_from=latest)
    assert result.steps == 6 and result.reason == "steps"
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_stop_flag_is_honoured_at_the_next_step(tmp_path):
    image, labels = discs()
    stop = threading.Event()
    steps = []
    events = iter_train(
        tiny_model(), [TrainingItem(image, labels)], config(tmp_path, steps=100), stop=stop
    )
    for event in _drain(events):
        if isinstance(event, StepEvent):
            steps.append(event.step)
            if event.step == 2:
                stop.set()
    result = _drain.result
    assert steps == [1, 2] and result.reason == "stopped" and result.stopped_early
    assert load_checkpoint(result.latest_path).training_state["step"] == 2


def test_stop_does_not_run_a_final_validation(tmp_path):
    image, labels = discs()
    stop = threading.Event()
    cfg = config(tmp_path, val_fraction=0.3, val_tile=32, steps=100, val_every=3)
    validated = []
    events = iter_train(tiny_model(), [TrainingItem(image, labels)], cfg, stop=stop)
    for event in _drain(events):
        if isinstance(event, ValidationEvent):
            validated.append(event.step)
        if isinstance(event, StepEvent) and event.step == 4:
            stop.set()
    assert _drain.result.reason == "stopped" and _drain.result.steps == 4
    assert validated == [3]  # none after the Stop at step 4 (it used to validate step 4 too)


def test_validation_reports_metrics_and_best_checkpoint(tmp_path):
    image, labels = discs()
    cfg = config(tmp_path, val_fraction=0.3, val_tile=32, steps=4, early_stopping_patience=1)
    events = list(iter_train(tiny_model(), [TrainingItem(image, labels, name="d")], cfg))
    validations = [e for e in events if isinstance(e, ValidationEvent)]
    assert validations and validations[0].improved
    assert {"foreground_iou", "mean_iou", "loss", "score"} <= set(validations[0].metrics)
    assert 0.0 <= validations[0].metrics["score"] <= 1.0


def test_nan_loss_raises_and_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    original = run_parts.SegmentationLoss
    calls = []

    class PoisonedLoss(original):
        def forward(self, logits, classes, weights=None):
            calls.append(1)
            loss = super().forward(logits, classes, weights)
            return loss * float("nan") if len(calls) == 4 else loss

    monkeypatch.setattr(run_parts, "SegmentationLoss", PoisonedLoss)
    image, labels = discs()
    latest = tmp_path / "run" / "latest.pt"
    with pytest.raises(TrainingDivergedError, match="lower the learning rate") as info:
        train(tiny_model(), [TrainingItem(image, labels)], config(tmp_path, steps=6))
    assert "step 4" in str(info.value)
    written = hashlib.sha256(latest.read_bytes()).hexdigest()
    assert load_checkpoint(latest).training_state["step"] == 2
    monkeypatch.undo()
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        train(tiny_model(), [TrainingItem(image, labels)], config(tmp_path, lr=1e30, steps=6))
    assert hashlib.sha256(latest.read_bytes()).hexdigest() == written


@pytest.mark.parametrize(
    ("make_labels", "mask", "message"),
    [
        (lambda y: y, np.zeros((64, 64), bool), "nothing is annotated"),
        (lambda y: np.ones_like(y), None, "only class 1 is annotated; annotate at least one"),
        (lambda y: y[:32], None, "same height and width"),
        (lambda y: y.astype(np.float32) * 0.5, None, "integer"),
        (lambda y: y.astype(np.int32) - 1, None, "negative"),
    ],
)
def test_bad_input_gets_its_message(tmp_path, make_labels, mask, message):
    image, labels = discs()
    item = TrainingItem(image, make_labels(labels), mask)
    with pytest.raises(TrainingDataError, match=message):
        train(tiny_model(), [item], config(tmp_path))


def test_fine_tune_from_checkpoint_with_frozen_encoder(tmp_path):
    image, labels = discs()
    items = [TrainingItem(image, labels)]
    first = train(tiny_model(), items, config(tmp_path / "a", steps=2))
    cfg = config(tmp_path / "b", steps=2, freeze_encoder=True)
    result = train(first.best_path, items, cfg)
    parent = load_checkpoint(first.best_path).model
    child = load_checkpoint(result.best_path)
    assert child.info.provenance["parent"] == str(first.best_path)
    assert "postprocess" not in child.info.provenance  # the parent had none
    encoder = {id(p) for p in child.model.encoder_parameters()}
    for (name, a), b in zip(child.model.named_parameters(), parent.parameters()):
        if id(a) in encoder:
            assert torch.equal(a, b), name
    assert any(not torch.equal(a, b) for a, b in zip(child.model.parameters(), parent.parameters()))


@pytest.mark.parametrize(
    ("arch", "task", "out_channels", "extra"),
    [
        ("unet_original", "instances", 3, {}),
        ("unetpp", "semantic", 2, {"deep_supervision": True}),
        ("unet", "restoration", 1, {}),
    ],
)
def test_other_architectures_and_tasks_train(tmp_path, arch, task, out_channels, extra):
    image, labels = discs()
    target = image[0] * 0.5 if task == "restoration" else labels
    torch.manual_seed(0)
    model = build_model(
        arch, depth=2, base_channels=8, in_channels=1, out_channels=out_channels, **extra
    )
    cfg = config(
        tmp_path, task=task, steps=2, val_fraction=0.3, val_tile=32, augment=AugmentConfig()
    )
    result = train(model, [TrainingItem(image, target, name="d")], cfg)
    assert result.steps == 2 and np.isfinite(result.best_metrics["loss"])
    assert load_checkpoint(result.best_path).info.task == task


def test_items_added_while_training_join_the_pool(tmp_path):
    import queue

    image, labels = discs()
    new_items: queue.Queue = queue.Queue()
    events = iter_train(
        tiny_model(),
        [TrainingItem(image, labels, name="a")],
        config(tmp_path, steps=4),
        new_items=new_items,
    )
    for event in events:
        if isinstance(event, StepEvent) and event.step == 1:
            new_items.put(TrainingItem(image[:, :, ::-1].copy(), labels[:, ::-1], name="b"))
    provenance = load_checkpoint(tmp_path / "run" / "latest.pt").info.provenance
    assert provenance["data"]["n_images"] == 2


def test_fine_tuning_keeps_the_parents_post_processing(tmp_path):
    """A fine-tuned built-in keeps what its output means (EM instances = neurite regions)."""
    from napari_unet.core.checkpoint.format import builtin_checkpoints

    em = builtin_checkpoints()["em-membranes"]
    expected = load_checkpoint(em).info.postprocess_config(output="instances")
    assert expected.foreground_class == (0,)  # regions between membranes
    rng = np.random.default_rng(0)
    image = rng.random((1, 64, 64)).astype(np.float32)
    labels = (rng.random((64, 64)) > 0.8).astype(np.uint8)
    cfg = config(tmp_path, task="semantic", steps=1, val_every=1)
    result = train(em, [TrainingItem(image, labels)], cfg)
    for path in (result.best_path, result.best_path.with_name("latest.pt")):
        child = load_checkpoint(path).info
        assert child.postprocess_config(output="instances") == expected
