"""Patch sampling, the validation split and training-data checks (numpy only, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.errors import TrainingDataError
from napari_unet.core.training.items import TrainingItem, check_item
from napari_unet.core.training.sampler import PatchSampler
from napari_unet.core.training.split import split_validation
from napari_unet.core.training.targets import IGNORE_INDEX


def simple_targets(labels: np.ndarray, annotated_mask: np.ndarray):
    """Class targets = labels inside the mask; weight 1 there."""
    classes = np.where(annotated_mask, labels.astype(np.int64), IGNORE_INDEX)
    return classes, annotated_mask.astype(np.float32)


def make_item(rng, shape=(64, 64), name="a", mask=None, labels=None) -> TrainingItem:
    image = rng.random((1, *shape), dtype=np.float32)
    if labels is None:
        labels = np.zeros(shape, np.uint8)
        labels[10:20, 10:20] = 1
    return TrainingItem(image=image, labels=labels, annotated_mask=mask, name=name)


def sampler_for(items, input_shape=(32, 32), output_shape=(32, 32), **kwargs) -> PatchSampler:
    return PatchSampler(
        simple_targets, input_shape=input_shape, output_shape=output_shape, items=items, **kwargs
    )


def test_centres_only_on_annotated_pixels_and_class_balanced(rng):
    labels = np.zeros((64, 64), np.uint8)
    labels[30:33, 30:33] = 1  # 9 foreground pixels
    mask = np.zeros((64, 64), bool)
    mask[20:50, 5:60] = True  # 1650 annotated pixels, 9 of class 1
    sampler = sampler_for([make_item(rng, mask=mask, labels=labels)], seed=3)
    centres = sampler.draw_centres(4000)
    assert mask[centres[:, 1], centres[:, 2]].all()
    fraction = labels[centres[:, 1], centres[:, 2]].mean()
    assert 0.45 < fraction < 0.55  # uniform over the two classes, not over pixels (0.5%)
    assert sampler.class_counts() == {0: 1641, 1: 9}


def test_class_balance_spans_items_and_added_items_join_the_pool(rng):
    first = make_item(rng, name="a")
    sampler = sampler_for([first], seed=0)
    labels = np.full((64, 64), 2, np.uint8)
    labels[:, :32] = 0
    sampler.add_item(make_item(rng, name="b", labels=labels))
    assert sorted(sampler.class_counts()) == [0, 1, 2]
    centres = sampler.draw_centres(3000)
    items = [first.labels, labels]
    drawn = np.array([items[i][y, x] for i, y, x in centres])
    counts = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.allclose(counts, 1 / 3, atol=0.04)
    # replacing an item by name does not grow the pool
    sampler.add_item(make_item(rng, name="b"))
    assert len(sampler.items) == 2 and sorted(sampler.class_counts()) == [0, 1]


def test_patches_have_context_and_mirror_padding(rng):
    item = make_item(rng, shape=(20, 24))
    sampler = sampler_for([item], input_shape=(36, 40), output_shape=(28, 32), seed=1)
    batch = sampler.sample(5)
    assert batch.image.shape == (5, 1, 36, 40) and batch.image.dtype == np.float32
    assert batch.classes.shape == (5, 28, 32) and batch.classes.dtype == np.int64
    assert batch.weights.shape == (5, 28, 32)
    # the output window (28 x 32) is larger than the image: it covers the whole image around
    # the drawn pixel, the image input is the reflect-padded image, targets outside are ignored
    _, y, x = batch.centres[0]
    y0, x0 = min(max(y - 14, -8), 0), min(max(x - 16, -8), 0)
    padded = np.pad(item.image[0], 40, mode="reflect")
    expected = padded[y0 - 4 + 40 : y0 + 32 + 40, x0 - 4 + 40 : x0 + 36 + 40]
    np.testing.assert_array_equal(batch.image[0, 0], expected)
    inside = np.zeros((28, 32), bool)
    inside[max(-y0, 0) : 20 - y0, max(-x0, 0) : 24 - x0] = True
    assert (batch.classes[0][~inside] == IGNORE_INDEX).all()
    assert (batch.weights[0][~inside] == 0).all()
    np.testing.assert_array_equal(batch.classes[0][inside], item.labels.ravel())
    full = sampler.sample(2, full_context=True)
    assert full.classes.shape == (2, 36, 40) and full.weights.shape == (2, 36, 40)


def test_window_stays_inside_a_large_image(rng):
    item = make_item(rng, shape=(64, 64))
    sampler = sampler_for([item], input_shape=(16, 16), output_shape=(16, 16), seed=2)
    batch = sampler.sample(50)
    assert (batch.classes != IGNORE_INDEX).all()  # no padding needed: windows are clamped
    for (_, y, x), patch in zip(batch.centres, batch.image):
        y0, x0 = min(max(y - 8, 0), 48), min(max(x - 8, 0), 48)
        np.testing.assert_array_equal(patch, item.image[:, y0 : y0 + 16, x0 : x0 + 16])


def test_sampler_state_resumes_exactly(rng):
    sampler = sampler_for([make_item(rng)], seed=5)
    sampler.sample(3)
    state = sampler.state_dict()
    first = sampler.sample(4)
    other = sampler_for([make_item(np.random.default_rng(0))], seed=99)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.draw_centres(4), first.centres)


@pytest.mark.parametrize(
    ("labels", "mask", "message"),
    [
        (np.zeros((64, 64), np.uint8), np.zeros((64, 64), bool), "nothing is annotated"),
        (np.ones((64, 64), np.uint8), None, "only class 1 is annotated; annotate at least one"),
        (np.zeros((32, 64), np.uint8), None, "same height and width"),
        (np.full((64, 64), 0.5, np.float32), None, "must be integer"),
        (np.full((64, 64), -2, np.int32), None, "negative values"),
        (np.where(np.eye(64) > 0, np.nan, 1.0), None, "hold NaN values; labels must be integer"),
        (np.where(np.eye(64) > 0, np.inf, 1.0), None, "hold infinite values; labels must be"),
        (np.zeros((64, 64), np.uint8), np.ones((10, 10), bool), "annotated mask"),
    ],
)
def test_bad_training_data_says_what_to_change(rng, labels, mask, message):
    with pytest.raises(TrainingDataError, match=message):
        sampler_for([make_item(rng, labels=labels, mask=mask)])


def test_restoration_accepts_float_targets_and_samples_uniformly(rng):
    target = rng.random((1, 32, 32), dtype=np.float32)
    item = TrainingItem(image=rng.random((1, 32, 32), dtype=np.float32), labels=target)
    check_item(item, "restoration")
    sampler = PatchSampler(
        lambda labels, mask: (labels.astype(np.float32), mask.astype(np.float32)),
        input_shape=(16, 16),
        output_shape=(16, 16),
        task="restoration",
        items=[item],
    )
    batch = sampler.sample(2)
    assert batch.classes.shape == (2, 1, 16, 16) and batch.classes.dtype == np.float32


def test_validation_tiles_are_never_trained_on_and_do_not_move(rng):
    items = [make_item(rng, shape=(300, 200), name=f"img{i}") for i in range(3)]
    train_items, val_items = split_validation(items, 0.25, tile=64, seed=0)
    assert val_items, "at least one tile is held back"
    held = {v.name: v.mask for v in val_items}
    total = 0
    for original, trained in zip(items, train_items):
        val_mask = held.get(original.name, np.zeros((300, 200), bool))
        assert not (trained.mask & val_mask).any()
        np.testing.assert_array_equal(trained.mask | val_mask, original.mask)
        total += val_mask.sum()
    assert 0.05 < total / (3 * 300 * 200) < 0.5
    # adding an item and more annotation keeps every earlier tile on its side
    more = [*items, make_item(rng, shape=(100, 100), name="new")]
    _, val_again = split_validation(more, 0.25, tile=64, seed=0)
    again = {v.name: v.mask for v in val_again}
    for name, mask in held.items():
        np.testing.assert_array_equal(again[name], mask)


def test_validation_split_holds_at_least_one_tile_and_keeps_one_for_training(rng):
    mask = np.zeros((256, 256), bool)
    mask[:10, :10] = True
    mask[200:210, 200:210] = True
    item = make_item(rng, shape=(256, 256), mask=mask)
    train, val = split_validation([item], 0.01, tile=128)
    assert len(val) == 1 and val[0].mask.sum() == 100 and train[0].mask.sum() == 100
    train, val = split_validation([item], 0.99, tile=128)
    assert val[0].mask.sum() == 100 and train[0].mask.sum() == 100
    one_tile = make_item(rng, shape=(256, 256), mask=mask & (np.arange(256) < 50)[:, None])
    train, val = split_validation([one_tile], 0.5, tile=128)
    assert val == [] and train[0] is one_tile


def test_validation_batches_cover_each_annotated_pixel_once(rng):
    mask = np.zeros((70, 90), bool)
    mask[5:60, 3:80] = True
    item = make_item(rng, shape=(70, 90), mask=mask)
    sampler = PatchSampler(simple_targets, input_shape=(24, 24), output_shape=(16, 16))
    sampler.add_item(item, check=False)
    batches = sampler.validation_batches(batch_size=4)
    counted = sum(int((b.classes != IGNORE_INDEX).sum()) for b in batches)
    assert counted == mask.sum()
    assert all(b.image.shape[1:] == (1, 24, 24) for b in batches)
