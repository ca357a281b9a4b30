"""Losses: hand-computed values, weights, ignore, Dice/Jaccard behaviour, deep supervision."""

from __future__ import annotations

import math

import pytest
import torch

from napari_unet.core.training.losses import (
    LossConfig,
    SegmentationLoss,
    bce_log_jaccard_loss,
    log_jaccard_loss,
    regression_loss,
    soft_dice_loss,
    weighted_cross_entropy,
)
from napari_unet.core.training.targets import IGNORE_INDEX


def example_2x2():
    """Two classes on a 2x2 image; logits chosen so the softmax is easy to write down."""
    logits = torch.tensor([[[[0.0, 1.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 3.0]]]])
    classes = torch.tensor([[[0, 1], [0, 1]]])
    # -log p_true per pixel: softmax over (a, b) for class c: log(e^a + e^b) - logit_c.
    expected = torch.tensor(
        [
            [math.log(2.0), math.log(math.e + 1.0) - 0.0],
            [math.log(math.e**2 + 1.0) - 2.0, math.log(1.0 + math.e**3) - 3.0],
        ]
    )
    return logits, classes, expected


def test_cross_entropy_by_hand():
    logits, classes, expected = example_2x2()
    loss = weighted_cross_entropy(logits, classes)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.mean().item(), rel=1e-6)
    weights = torch.tensor([[[1.0, 3.0], [0.5, 2.0]]])
    weighted = weighted_cross_entropy(logits, classes, weights)
    by_hand = (expected * weights[0]).sum() / weights.sum()
    assert weighted.item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_weights_scale_the_loss_as_expected():
    logits, classes, expected = example_2x2()
    weights = torch.tensor([[[1.0, 3.0], [0.5, 2.0]]])
    base = weighted_cross_entropy(logits, classes, weights)
    # Normalised by the weight sum: a global factor changes nothing.
    assert weighted_cross_entropy(logits, classes, 7 * weights).item() == pytest.approx(base.item())
    # Up-weighting the worst pixel raises the loss, the best pixel lowers it.
    worst = int(expected.flatten().argmax())
    heavier = weights.clone().flatten()
    heavier[worst] *= 10
    assert weighted_cross_entropy(logits, classes, heavier.view(1, 2, 2)) > base
    # A pixel with weight 0 is as good as ignored.
    zero = weights.clone()
    zero[0, 0, 1] = 0
    ignored = classes.clone()
    ignored[0, 0, 1] = IGNORE_INDEX
    assert weighted_cross_entropy(logits, classes, zero).item() == pytest.approx(
        weighted_cross_entropy(logits, ignored, weights).item()
    )


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("term", ["ce", "dice", "jaccard"])
def test_ignored_pixels_change_neither_loss_nor_gradient(channels, term):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, channels, 8, 8, generator=generator)
    classes = torch.randint(0, max(channels, 2), (2, 8, 8), generator=generator)
    ignored = torch.rand(2, 8, 8, generator=generator) < 0.4
    classes[ignored] = IGNORE_INDEX
    weights = torch.rand(2, 8, 8, generator=generator) + 0.5
    task = "binary" if channels == 1 else "instances"
    loss_fn = SegmentationLoss(LossConfig(**{"ce": 0.0, term: 1.0}), task=task)

    def loss_and_grad(values):
        values = values.clone().requires_grad_(True)
        loss = loss_fn(values, classes, weights)
        loss.backward()
        return loss.detach(), values.grad

    loss, grad = loss_and_grad(logits)
    changed = logits.clone()
    noise = 100 * torch.randn(changed.shape, generator=generator)
    changed = torch.where(ignored.unsqueeze(1), noise, changed)
    loss2, grad2 = loss_and_grad(changed)
    assert loss.item() == pytest.approx(loss2.item(), rel=1e-6)
    torch.testing.assert_close(
        grad[~ignored.unsqueeze(1).expand_as(grad)], grad2[~ignored.unsqueeze(1).expand_as(grad)]
    )
    mask = ignored.unsqueeze(1).expand_as(grad)
    assert (grad[mask] == 0).all() and (grad2[mask] == 0).all()
    assert grad[~mask].abs().sum() > 0


def one_hot_logits(classes: torch.Tensor, channels: int, scale: float) -> torch.Tensor:
    onehot = torch.nn.functional.one_hot(classes, channels).movedim(-1, 1).float()
    return scale * (2 * onehot - 1)


def test_dice_is_zero_for_perfect_and_near_one_for_inverse_prediction():
    classes = torch.zeros(1, 16, 16, dtype=torch.int64)
    classes[:, 4:12, 4:12] = 1
    classes[:, 0:2] = 2
    perfect = one_hot_logits(classes, 3, 50.0)
    assert soft_dice_loss(perfect, classes, task="semantic").item() == pytest.approx(0, abs=1e-6)
    inverse = one_hot_logits((classes + 1) % 3, 3, 50.0)
    assert soft_dice_loss(inverse, classes).item() > 0.98
    binary = (classes == 1).long()
    assert soft_dice_loss(50 * (2 * binary[:, None].float() - 1), binary).item() < 1e-6
    assert soft_dice_loss(-50 * (2 * binary[:, None].float() - 1), binary).item() > 0.98
    with pytest.raises(ValueError):
        soft_dice_loss(perfect, classes, task="binary")


def test_jaccard_term_positive_and_decreasing_as_prediction_improves():
    classes = torch.zeros(1, 16, 16, dtype=torch.int64)
    classes[:, 3:10, 5:13] = 1
    values = []
    for scale in (-4.0, -1.0, 0.0, 1.0, 4.0, 12.0):
        logits = scale * (2 * classes[:, None].float() - 1)
        values.append(log_jaccard_loss(logits, classes).item())
    assert all(v > 0 for v in values)
    assert values == sorted(values, reverse=True)
    assert values[-1] < 1e-3
    total = bce_log_jaccard_loss(torch.zeros(1, 1, 16, 16), classes)
    by_parts = weighted_cross_entropy(torch.zeros(1, 1, 16, 16), classes) + log_jaccard_loss(
        torch.zeros(1, 1, 16, 16), classes
    )
    assert total.item() == pytest.approx(by_parts.item())


def test_binary_matches_two_class_softmax():
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(2, 1, 8, 8, generator=generator)
    classes = torch.randint(0, 2, (2, 8, 8), generator=generator)
    classes[0, :2] = IGNORE_INDEX
    weights = torch.rand(2, 8, 8, generator=generator)
    two = torch.cat([torch.zeros_like(z), z], dim=1)  # softmax(0, z)[1] == sigmoid(z)
    for fn in (soft_dice_loss, log_jaccard_loss):
        assert fn(z, classes).item() == pytest.approx(fn(two, classes).item(), rel=1e-5)
    assert weighted_cross_entropy(z, classes, weights).item() == pytest.approx(
        weighted_cross_entropy(two, classes, weights).item(), rel=1e-5
    )


def test_deep_supervision_identical_heads_equal_single_head():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 8, 8, generator=generator)
    classes = torch.randint(0, 3, (2, 8, 8), generator=generator)
    loss_fn = SegmentationLoss(LossConfig(ce=1.0, dice=0.5, jaccard=0.5), task="instances")
    single = loss_fn(logits, classes)
    assert loss_fn([logits, logits, logits], classes).item() == pytest.approx(single.item())
    weighted = SegmentationLoss(LossConfig(deep_supervision_weights=(0.0, 1.0)), task="instances")
    other = torch.randn(2, 3, 8, 8, generator=generator)
    assert weighted([other, logits], classes).item() == pytest.approx(
        weighted_cross_entropy(logits, classes).item()
    )
    with pytest.raises(ValueError, match="heads"):
        weighted([logits, logits, logits], classes)


def test_weight_map_switch_and_task_checks():
    logits, classes, _ = example_2x2()
    weights = torch.tensor([[[1.0, 30.0], [0.5, 2.0]]])
    on = SegmentationLoss(LossConfig(), task="semantic")(logits, classes, weights)
    off = SegmentationLoss(LossConfig(use_weight_map=False), task="semantic")(
        logits, classes, weights
    )
    assert on.item() == pytest.approx(weighted_cross_entropy(logits, classes, weights).item())
    assert off.item() == pytest.approx(weighted_cross_entropy(logits, classes).item())
    with pytest.raises(ValueError, match="channel"):
        SegmentationLoss(task="binary")(logits, classes)
    with pytest.raises(ValueError, match="do not match"):
        weighted_cross_entropy(logits, classes[:, :1])
    for bad in (
        {"ce": 0.0},
        {"dice": -1.0},
        {"regression": "huber"},
        {"deep_supervision_weights": (0.0,)},
    ):
        with pytest.raises(ValueError):
            LossConfig(**bad)
    assert LossConfig.from_dict(LossConfig(deep_supervision_weights=(1, 2)).to_dict()) == (
        LossConfig(deep_supervision_weights=(1.0, 2.0))
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_logits_are_computed_in_float32(dtype):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 3, 8, 8, generator=generator).to(dtype)
    classes = torch.randint(0, 3, (1, 8, 8), generator=generator)
    loss_fn = SegmentationLoss(LossConfig(ce=1.0, dice=1.0, jaccard=1.0), task="semantic")
    low = loss_fn(logits.requires_grad_(True), classes)
    assert low.dtype == torch.float32
    low.backward()
    assert logits.grad is not None and logits.grad.dtype == dtype
    assert low.item() == pytest.approx(loss_fn(logits.detach().float(), classes).item(), rel=1e-6)


def test_regression_loss():
    prediction = torch.zeros(2, 2, 4, 4)
    target = torch.ones(2, 2, 4, 4)
    target[:, :, :2] = 3.0
    assert regression_loss(prediction, target).item() == pytest.approx(2.0)
    assert regression_loss(prediction, target, kind="mse").item() == pytest.approx(5.0)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 2:] = True
    assert regression_loss(prediction, target, mask).item() == pytest.approx(1.0)
    restoration = SegmentationLoss(LossConfig(regression="mse"), task="restoration")
    assert restoration(prediction, target, mask).item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        regression_loss(prediction, target[:, :1])
