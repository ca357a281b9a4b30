"""Held-back validation units are never slivers or stray strokes (``core.training.split``), and
the Fine-tune dock's summary holds back exactly what the trainer does."""

from __future__ import annotations

import numpy as np

from napari_unet._widgets.data_summary import held_back_tiles, tile_pixels
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.split import (
    split_validation,
    tile_counts,
    tile_starts,
    unit_candidates,
)

TILE = 128


def _item(shape, name="a", mask=None) -> TrainingItem:
    rng = np.random.default_rng(0)
    labels = np.zeros(shape, np.uint8)
    labels[10:40, 10:40] = 1
    mask = np.ones(shape, bool) if mask is None else mask
    return TrainingItem(
        image=rng.random((1, *shape), dtype=np.float32),
        labels=labels,
        annotated_mask=mask,
        name=name,
    )


def _held(items, fraction, seed, at_least_one=True) -> dict[str, np.ndarray]:
    _, val = split_validation(items, fraction, tile=TILE, seed=seed, at_least_one=at_least_one)
    return {v.name: v.mask for v in val}


def test_tile_starts_fold_a_border_sliver_into_its_neighbour():
    assert tile_starts(520, 128) == [0, 128, 256, 384]  # 8 rows: folded
    assert tile_starts(600, 128) == [0, 128, 256, 384, 512]  # 88 rows: a tile of its own
    assert tile_starts(100, 128) == [0]  # one short tile is the whole axis
    counts = tile_counts(np.ones((520, 300), bool), 128)
    assert counts.shape == (5, 3) and counts.sum() == 520 * 300
    assert counts[4].sum() == 0 and counts[:, 2].sum() == 0  # the slivers' own cells
    assert counts[3, 1] == 136 * 172  # the corner tile took the 8 rows and the 44 columns


def test_a_border_sliver_is_never_held_back_on_its_own():
    """The walkthrough's 520 x 696 DSB image held back one 8 x 128 sliver (1024 pixels) as its
    whole validation set; now a sliver goes wherever the tile beside it goes."""
    item = _item((520, 300))
    last_row_held = 0
    for seed in range(30):
        held = _held([item], 0.3, seed).get("a", np.zeros((520, 300), bool))
        np.testing.assert_array_equal(held[512:], np.repeat(held[511:512], 8, axis=0))
        np.testing.assert_array_equal(held[:, 256:], np.repeat(held[:, 255:256], 44, axis=1))
        last_row_held += bool(held[511].any())
    assert last_row_held > 0  # the folded tiles were held back on some seeds


def test_adding_a_sliver_keeps_every_tile_on_its_side():
    for seed in range(10):
        before = _held([_item((512, 256))], 0.3, seed, at_least_one=False)
        after = _held([_item((520, 256))], 0.3, seed, at_least_one=False)
        if "a" not in before:
            assert "a" not in after
            continue
        np.testing.assert_array_equal(after["a"][:512], before["a"])


def test_the_forced_tile_is_well_annotated_and_the_summary_agrees():
    """When the hash holds nothing back, the one forced tile is not a stray brush stroke."""
    stroke = np.zeros((256, 256), bool)
    stroke[200:205, 30:35] = True  # 25 pixels in tile (1, 0)
    items = [_item((256, 256), "full"), _item((256, 256), "stroke", mask=stroke)]
    fraction, checked = 0.001, 0
    for seed in range(40):
        groups, _, _ = unit_candidates(items, TILE, seed)
        if groups[0][1] != "stroke" or groups[0][0] < fraction:
            continue  # the lowest hash is not the stroke's tile (or the hash holds it anyway)
        held = _held(items, fraction, seed)
        assert list(held) == ["full"] and held["full"].sum() == TILE * TILE
        counts = {item.name: tile_pixels(item.mask, TILE) for item in items}
        tiles = held_back_tiles(counts, fraction, seed=seed)
        assert list(tiles) == ["full"] and int(counts["full"][tiles["full"]].sum()) == TILE * TILE
        checked += 1
    assert checked > 0


def test_the_summary_holds_back_what_the_trainer_holds_back_with_slivers():
    items = [_item((520, 696), "dsb"), _item((300, 200), "small")]
    for seed in range(10):
        held = _held(items, 0.1, seed)
        counts = {item.name: tile_pixels(item.mask, TILE) for item in items}
        tiles = held_back_tiles(counts, 0.1, seed=seed)
        summary = {name: int(counts[name][mask].sum()) for name, mask in tiles.items()}
        assert summary == {name: int(mask.sum()) for name, mask in held.items()}
        assert min(summary.values()) >= 64 * 128  # no sliver is a unit
