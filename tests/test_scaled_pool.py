"""A U-Net that sees the images k times smaller trains on its items shrunk once: the pools crop
patches k times smaller and the net runs without its own pooling and resize while it trains and
validates, so a step costs what it costs at full resolution; prediction, exports and the
operating point keep the model's own pooling and resize (issue 17, ``scaled_pool``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core.models import build_model
from napari_unet.core.training.config import TrainConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import train
from napari_unet.core.training.pools import build_pools
from napari_unet.core.training.scaled_pool import (
    ScaledPatchSampler,
    at_pool_scale,
    pool_scale,
    shrunk_item,
)


def _net(k: int, depth: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(
        "unet", depth=depth, base_channels=4, in_channels=1, out_channels=3, downscale=k
    )


def _discs(n: int = 2, side: int = 96, radius: int = 14) -> list[TrainingItem]:
    """Images of bright discs (instances) on a dark background, all annotated."""
    yy, xx = np.mgrid[:side, :side]
    items = []
    for i in range(n):
        labels = np.zeros((side, side), np.uint16)
        for j, (cy, cx) in enumerate([(24, 24), (24, 70), (70, 30 + 8 * i), (68, 72)]):
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = j + 1
        image = (labels > 0).astype(np.float32)[None] + np.float32(0.05) * i
        items.append(TrainingItem(image=image, labels=labels, name=f"img{i}"))
    return items


def test_a_shrunk_item_is_what_the_net_sees_and_labels_keep_their_ids():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 12, 10)).astype(np.float32)
    labels = np.arange(120, dtype=np.uint16).reshape(12, 10)  # every pixel its own object
    mask = labels % 3 == 0
    item = TrainingItem(image=image, labels=labels, annotated_mask=mask, name="a")
    small = shrunk_item(item, 4)  # 12 x 10 -> 3 x 3 (the last column: two pixels, edge repeated)
    assert small.image.shape == (2, 3, 3) and small.labels.shape == small.mask.shape == (3, 3)
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(image)[None], 4)[0].numpy()
    np.testing.assert_allclose(small.image[:, :, :2], pooled, rtol=1e-6)  # as the net pools
    np.testing.assert_allclose(small.image[:, 0, 2], image[:, :4, 8:].mean(axis=(1, 2)) * 0.5
                               + image[:, :4, 9].mean(axis=1) * 0.5, rtol=1e-5)  # fmt: skip
    # instances: the block centre's object (row 2, column 2, clipped at the edge) and its mask
    assert small.labels[0].tolist() == [labels[2, 2], labels[2, 6], labels[2, 9]]
    assert small.name == "a"
    np.testing.assert_array_equal(small.mask, mask[[2, 6, 10]][:, [2, 6, 9]])
    assert shrunk_item(item, 1) is item
    target = TrainingItem(image=image, labels=image[:1], name="r")  # restoration: averaged
    np.testing.assert_allclose(shrunk_item(target, 2).labels, shrunk_item(target, 2).image[:1])


def test_a_cell_split_by_an_eraser_line_stays_split_when_shrunk():
    """The user split a merged cell with a 2-px eraser line that falls between the block
    centres: both halves keep the same id in the layer, and centre sampling alone would merge
    them again in the net's copy. Each connected part gets its own object first."""
    labels = np.zeros((64, 64), np.uint16)
    labels[8:56, 8:56] = 5
    labels[:, 32:34] = 0  # the eraser line: columns 32-33; the 8 x 8 block centres are at 4 + 8j
    item = TrainingItem(np.zeros((1, 64, 64), np.float32), labels, labels > 0, name="split")
    small = shrunk_item(item, 8)
    assert small.labels.shape == (8, 8)
    left, right = small.labels[3, 2], small.labels[3, 5]
    assert left and right and left != right, small.labels  # two touching objects: a boundary
    merged = shrunk_item(item, 8, "semantic").labels  # class ids are kept as they are
    assert merged[3, 2] == merged[3, 5] == 5
    labels[:, 56:] = 3  # `train --ignore-value 3`: these pixels are not an object
    kept = shrunk_item(item, 8, "instances", ignore_value=3).labels
    assert (kept[:, 7] == 3).all() and 3 not in kept[:, :7]


def test_a_thin_class_stroke_survives_shrinking():
    """A 2-px scribble of class 2 between the block centres of a semantic item still reaches
    the net's copy: a block is annotated when any pixel is, labelled from the annotated pixel
    nearest its centre (where the centre is annotated, its own label)."""
    labels = np.zeros((32, 32), np.uint8)
    mask = np.zeros((32, 32), bool)
    labels[9:11, 4:28], mask[9:11, 4:28] = 2, True  # rows 9-10; centres of 8 x 8 blocks: 4, 12
    labels[16:32, 16:32], mask[16:32, 16:32] = 1, True  # a filled region keeps its centres
    item = TrainingItem(np.zeros((1, 32, 32), np.float32), labels, mask, name="scribble")
    small = shrunk_item(item, 8, "semantic")
    assert small.mask[1].tolist() == [True, True, True, True]  # the stroke's blocks
    assert small.labels[1].tolist() == [2, 2, 2, 2]
    assert small.mask[2:, 2:].all() and (small.labels[2:, 2:] == 1).all()
    assert not small.mask[0].any() and not small.mask[2:, :2].any()
    assert small.labels.dtype == np.uint8


def test_the_net_at_pool_scale_is_the_core_of_the_net_at_full_resolution():
    net = _net(4).eval()
    image = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        full = net(image)
        with at_pool_scale(net):
            core = net(torch.nn.functional.avg_pool2d(image, 4))
        assert net.resize_io, "restored"
    assert core.shape[-2:] == (16, 16) and full.shape[-2:] == (64, 64)
    resized = torch.nn.functional.interpolate(core, size=(64, 64), mode="bilinear")
    torch.testing.assert_close(full, resized)
    with pytest.raises(RuntimeError), at_pool_scale(net):
        raise RuntimeError("a failing step")
    assert net.resize_io and "resize_io" not in vars(net)
    with at_pool_scale(net):
        with at_pool_scale(net):
            pass
        assert not net.resize_io, "an inner use leaves the outer one's state"
    assert net.resize_io
    flat = _net(1)
    with at_pool_scale(flat):
        assert flat.resize_io  # nothing to switch off at full resolution
    assert pool_scale(net) == 4 and pool_scale(flat) == 1


def test_the_pools_of_a_downscaled_net_crop_patches_k_times_smaller():
    items = _discs()
    config = TrainConfig(task="instances", patch_shape=(64, 64), batch_size=2, val_fraction=0.3)
    sampler, validation, input_shape = build_pools(_net(2), items, None, config)
    assert isinstance(sampler, ScaledPatchSampler) and input_shape == (64, 64)
    assert sampler.input_shape == sampler.output_shape == (32, 32)
    batch = sampler.sample(2)
    assert batch.image.shape == (2, 1, 32, 32) and batch.classes.shape == (2, 32, 32)
    assert all(i.image.shape == (1, 96, 96) for i in sampler.items), "as given: full resolution"
    assert all(i.image.shape[-2:] == (96, 96) for i in validation.items)
    assert {i.name for i in validation.items} <= {"img0", "img1"}
    sampler.add_item(items[0])  # replaced by name: still one copy, the item as given
    assert [i.name for i in sampler.items].count("img0") == 1
    assert next(i for i in sampler.items if i.name == "img0") is items[0]
    plain, _, _ = build_pools(_net(1), items, None, config)
    assert type(plain) is not ScaledPatchSampler and plain.input_shape == (64, 64)


def test_training_a_downscaled_net_runs_on_small_patches_and_predicts_at_full_size(tmp_path):
    from napari_unet.core.inference.prediction import PredictConfig, predict

    net = _net(2)
    seen = []  # (batch, side) of every output of the net
    hook = net.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape[::2])))
    config = TrainConfig(task="instances", patch_shape=(64, 64), batch_size=2, steps=3,
                         val_every=2, val_fraction=0.3, device="cpu",
                         checkpoint_dir=str(tmp_path))  # fmt: skip
    result = train(net, _discs(), config)
    hook.remove()
    assert result.steps == 3 and result.best_metrics, "trained and validated"
    # steps and validation batches (2 patches) at pool scale: 32 px, not the 64-px patch
    assert [side for batch, side in seen if batch == 2].count(32) >= 3
    assert {side for batch, side in seen if batch == 2} == {32}, seen
    assert net.resize_io
    image = _discs(1)[0].image[0]
    probabilities = predict(net, image, "YX", task="instances",
                            config=PredictConfig(tile_shape=(64, 64)))  # fmt: skip
    assert probabilities.shape[-2:] == (96, 96)


def test_the_width_rule_times_a_downscaled_net_on_the_patches_it_trains_on():
    from napari_unet.core.training.net_width import seconds_per_step

    net = _net(4)
    seen = []  # the copy timed keeps the hook (deepcopy)
    net.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    assert seconds_per_step(net, (256, 256), batch=2) > 0
    # every pass at pool scale: the timed ones (batch 2) and, on a CPU with native bf16, the
    # precision probe's (batch 1) that decides whether they run under bf16 autocast
    assert {shape[2:] for shape in seen} == {(64, 64)} and (2, 1, 64, 64) in seen, seen
    assert net.resize_io


def test_held_back_tiles_are_predicted_with_k_times_the_context():
    from napari_unet.core.inference.prediction import PredictConfig
    from napari_unet.core.training.operating_point_scoring import CONTEXT, _pieces

    item = _discs(1, side=320)[0]
    mask = np.zeros((320, 320), bool)
    mask[128:192, 128:192] = True  # one held-back tile in the middle
    held = TrainingItem(image=item.image, labels=item.labels, annotated_mask=mask, name="h")
    config = PredictConfig(tile_shape=(64, 64), device="cpu")
    for k in (1, 2):
        ((probabilities, _, _, core, box),) = _pieces(_net(k).eval(), [held], config)
        assert probabilities.shape[-2:] == (64 + 2 * k * CONTEXT,) * 2
        assert core == (slice(k * CONTEXT, k * CONTEXT + 64),) * 2 and box == (slice(128, 192),) * 2
