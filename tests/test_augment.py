"""Augmentation: identity at zero strength, no invented labels, seeding, alignment, speed-free."""

from __future__ import annotations

import pytest
import torch

from napari_unet.core.training.augment import (
    IGNORE_INDEX,
    AugmentConfig,
    _elastic_field,
    augment_batch,
    augment_restoration,
)

#: Every op off; tests switch on what they exercise.
OFF = dict(
    flip=False,
    rot90=False,
    elastic=False,
    affine_scale=(1.0, 1.0),
    affine_rotation_deg=0.0,
    gamma=(1.0, 1.0),
    brightness=0.0,
    contrast=0.0,
    noise_std=0.0,
    blur_sigma=(0.0, 0.0),
)
GEOMETRY = dict(
    OFF, flip=True, rot90=True, elastic=True, affine_scale=(0.9, 1.1), affine_rotation_deg=15.0
)


def block_batch(batch: int = 4, size: int = 64, block: int = 8):
    """Image whose intensity equals its label id: (B, 1, H, W) float32, (B, H, W) int64."""
    ids = torch.arange(size) // block
    labels = (ids[:, None] * (size // block) + ids[None, :]) % 7 + 1
    labels[:block] = 0  # a background band so flips are visible
    classes = labels.expand(batch, size, size).clone()
    image = classes[:, None].float()
    weights = 1.0 + classes.float() / 10
    return image, classes, weights


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_strength_zero_is_identity():
    image, classes, weights = block_batch()
    out = augment_batch(image, classes, weights, AugmentConfig(strength=0.0), gen(0))
    assert torch.equal(out[0], image) and torch.equal(out[1], classes)
    assert torch.equal(out[2], weights)


@pytest.mark.parametrize("probability", [0.5, 1.0])
def test_elastic_alpha_zero_is_exact_identity(probability):
    image, classes, weights = block_batch()
    image = image + torch.rand(image.shape, generator=gen(5))
    config = AugmentConfig(**dict(OFF, elastic=True), elastic_alpha=0.0, probability=probability)
    out = augment_batch(image, classes, weights, config, gen(1))
    assert torch.equal(out[0], image) and torch.equal(out[1], classes)
    assert torch.equal(out[2], weights)


def test_small_elastic_changes_something():
    image, classes, weights = block_batch()
    config = AugmentConfig(**dict(OFF, elastic=True), elastic_alpha=4.0, probability=1.0)
    out = augment_batch(image, classes, weights, config, gen(1))
    assert not torch.equal(out[1], classes)
    assert not torch.equal(out[0], image)


def test_labels_never_invented_over_many_seeds():
    image, classes, weights = block_batch()
    classes[0, 20:30, 20:30] = IGNORE_INDEX  # unannotated pixels stay ignorable
    allowed = set(classes.unique().tolist()) | {IGNORE_INDEX}
    allowed_w = set(weights.unique().tolist()) | {0.0}
    config = AugmentConfig(probability=1.0, elastic_alpha=15.0, affine_rotation_deg=40.0)
    for seed in range(25):
        out_image, out_classes, out_weights = augment_batch(
            image, classes, weights, config, gen(seed)
        )
        assert out_classes.dtype == torch.int64 and out_classes.shape == classes.shape
        assert set(out_classes.unique().tolist()) <= allowed
        assert set(out_weights.unique().tolist()) <= allowed_w
        assert bool(torch.isfinite(out_image).all())


def test_outside_pixels_become_ignore_with_zero_weight():
    image, classes, weights = block_batch(batch=2)
    config = AugmentConfig(**dict(OFF, affine_scale=(0.5, 0.5)), probability=1.0)
    out_image, out_classes, out_weights = augment_batch(image, classes, weights, config, gen(0))
    ignored = out_classes == IGNORE_INDEX
    assert ignored[:, 0, 0].all() and ignored[:, 32, 32].logical_not().all()
    assert float(out_weights[ignored].abs().max()) == 0.0
    # reflection padding keeps the image defined there
    assert bool(torch.isfinite(out_image).all())


def test_same_seed_same_output_different_seed_different():
    image, classes, weights = block_batch()
    config = AugmentConfig(probability=1.0)
    a = augment_batch(image, classes, weights, config, gen(3))
    b = augment_batch(image, classes, weights, config, gen(3))
    c = augment_batch(image, classes, weights, config, gen(4))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])


def test_inputs_are_not_modified():
    image, classes, weights = block_batch()
    copies = image.clone(), classes.clone(), weights.clone()
    augment_batch(image, classes, weights, AugmentConfig(probability=1.0), gen(0))
    for original, copy in zip((image, classes, weights), copies):
        assert torch.equal(original, copy)


def test_flips_and_rot90_are_exact_and_aligned():
    image, classes, weights = block_batch(batch=8)
    config = AugmentConfig(**dict(OFF, flip=True, rot90=True))
    changed = 0
    for seed in range(4):
        out_image, out_classes, out_weights = augment_batch(
            image, classes, weights, config, gen(seed)
        )
        assert torch.equal(out_image[:, 0], out_classes.float())
        assert torch.equal(out_weights, 1.0 + out_classes.float() / 10)
        changed += int((out_classes != classes).flatten(1).any(1).sum())
        # every sample is one of the 8 symmetries of its input
        for sample in out_classes:
            candidates = [torch.rot90(classes[0], k, (0, 1)) for k in range(4)]
            candidates += [c.flip(-1) for c in candidates]
            assert any(torch.equal(sample, c) for c in candidates)
    assert changed > 0


def test_rot90_keeps_non_square_shape():
    image = torch.rand(4, 2, 32, 48)
    classes = torch.randint(0, 3, (4, 32, 48))
    config = AugmentConfig(**dict(OFF, flip=True, rot90=True))
    for seed in range(5):
        out_image, out_classes, _ = augment_batch(image, classes, None, config, gen(seed))
        assert out_image.shape == image.shape and out_classes.shape == classes.shape


def test_geometry_keeps_image_and_labels_aligned():
    image, classes, weights = block_batch(block=16)
    # alpha 5 on a 64-pixel patch: strong but not folding (folds squeeze regions below 5 px)
    config = AugmentConfig(**GEOMETRY, probability=1.0, elastic_alpha=5.0)
    for seed in range(5):
        out_image, out_classes, _ = augment_batch(image, classes, weights, config, gen(seed))
        # region interiors: the 5x5 neighbourhood has one label, so bilinear sampling is exact
        padded = torch.nn.functional.pad(out_classes[:, None].float(), (2, 2, 2, 2), value=-9)
        low = -torch.nn.functional.max_pool2d(-padded, 5, stride=1)[:, 0]
        high = torch.nn.functional.max_pool2d(padded, 5, stride=1)[:, 0]
        interior = (low == high) & (out_classes != IGNORE_INDEX)
        assert interior.sum() > 0.3 * interior.numel()
        diff = (out_image[:, 0] - out_classes.float()).abs()[interior]
        assert float(diff.max()) < 1e-3
        assert not torch.equal(out_classes, classes)


def test_intensity_ops_touch_the_image_only():
    image, classes, weights = block_batch()
    image = image / 8
    ops = dict(gamma=(0.7, 1.5), brightness=0.1, contrast=0.2, noise_std=0.03)
    config = AugmentConfig(**dict(OFF, **ops, blur_sigma=(0.5, 1.0)), probability=1.0)
    out_image, out_classes, out_weights = augment_batch(image, classes, weights, config, gen(0))
    assert torch.equal(out_classes, classes) and torch.equal(out_weights, weights)
    assert out_image.dtype == torch.float32 and bool(torch.isfinite(out_image).all())
    assert float((out_image - image).abs().mean()) > 1e-3


def test_elastic_field_std_is_alpha_at_every_node():
    for sigma in (0.0, 1.0):
        config = AugmentConfig(elastic_alpha=10.0, elastic_sigma=sigma)
        field = _elastic_field(4000, config, gen(0))
        std = field.std(dim=0)  # (2, k, k): per component and node
        assert field.shape == (4000, 2, 3, 3)
        assert torch.allclose(std, torch.full_like(std, 10.0), rtol=0.08)


def test_restoration_gets_the_same_geometry():
    image = torch.rand(3, 1, 48, 48, generator=gen(9))
    target = torch.cat([image, 2 * image], dim=1)
    config = AugmentConfig(**GEOMETRY, probability=1.0)
    out_image, out_target = augment_restoration(image, target, config, gen(2))
    assert out_target.shape == target.shape
    assert torch.allclose(out_target[:, :1], out_image, atol=1e-6)
    assert torch.allclose(out_target[:, 1:], 2 * out_image, atol=1e-5)
    assert not torch.allclose(out_image, image)


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="strength"):
        AugmentConfig(strength=1.5)
    with pytest.raises(ValueError, match="affine_scale"):
        AugmentConfig(affine_scale=(1.2, 0.9))
    config = AugmentConfig(strength=0.4, gamma=(0.8, 1.2))
    assert AugmentConfig.from_dict(config.to_dict()) == config


def test_shape_mismatch_is_refused():
    image, classes, weights = block_batch()
    with pytest.raises(ValueError, match="classes"):
        augment_batch(image, classes[:, :10], weights, AugmentConfig(), gen(0))
