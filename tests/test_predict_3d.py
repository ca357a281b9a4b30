"""``iter_predict`` with 3-D networks: volumes tiled in 3-D, per T, with clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core.errors import UserInputError
from napari_unet.core.generators import run_to_end
from napari_unet.core.inference.prediction import (
    DEFAULT_TILE_3D,
    PredictConfig,
    PredictProgress,
    TileGeometry,
    iter_predict,
    predict,
)
from napari_unet.core.models import build_model

CPU = {"device": "cpu", "precision": "fp32"}


def tiny(name: str = "unet3d", **kwargs):
    torch.manual_seed(0)
    settings = {"depth": 1, "base_channels": 2, **kwargs}
    return build_model(name, **settings).eval()


def test_valid_3d_net_tiled_equals_one_tile_on_an_odd_volume(rng):
    """Aligned valid-convolution tiles with mirrored context give the one-pass result."""
    net = tiny(padding="valid", out_channels=3)
    volume = rng.random((7, 23, 29)).astype(np.float32)
    small = PredictConfig(tile_shape=(20, 20, 24), batch_size=3, **CPU)
    whole = PredictConfig(tile_shape=(64, 64, 64), **CPU)
    plan = TileGeometry.of(net, small).plan(volume.shape)
    assert plan.n_tiles > 1 and len(plan.input_shape) == 3
    tiled = predict(net, volume, "ZYX", task="semantic", config=small)
    one = predict(net, volume, "ZYX", task="semantic", config=whole)
    assert tiled.shape == (3, 7, 23, 29) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, one, atol=1e-5)
    np.testing.assert_allclose(tiled.sum(axis=0), 1.0, atol=1e-5)


def test_anisotropic_net_thin_z_is_mirrored_and_progress_counts_tiles(rng):
    net = tiny("unet3d_aniso", depth=2, voxel_size=(4.0, 1.0, 1.0), out_channels=2)
    volume = (rng.random((3, 40, 37)) * 1000).astype(np.uint16)
    before = volume.copy()
    config = PredictConfig(tile_shape=(8, 24, 24), **CPU)
    generator = iter_predict(net, volume, "ZYX", task="semantic", config=config)
    records = []
    probabilities = run_to_end(generator, records.append)
    assert probabilities.shape == (2, 3, 40, 37)
    assert all(isinstance(r, PredictProgress) for r in records)
    assert records[-1].done_tiles == records[-1].total_tiles > 1
    assert records[-1].fraction == 1.0
    assert np.array_equal(volume, before)


def test_tzyx_is_predicted_volume_by_volume(rng):
    net = tiny(padding="same", out_channels=2)
    movie = rng.random((2, 4, 16, 12)).astype(np.float32)
    config = PredictConfig(**CPU)
    both = predict(net, movie, "TZYX", task="semantic", config=config)
    assert both.shape == (2, 2, 4, 16, 12)
    for t in range(2):
        alone = predict(net, movie[t], "ZYX", task="semantic", config=config)
        np.testing.assert_allclose(both[:, t], alone, atol=1e-6)
    z_first = predict(net, np.moveaxis(movie, 0, 1), "ZTYX", task="semantic", config=config)
    np.testing.assert_allclose(z_first, np.moveaxis(both, 2, 1), atol=1e-6)


def test_zcyx_channels_and_a_zyx_region(rng):
    net = tiny(padding="same", in_channels=2, out_channels=1)
    volume = rng.random((6, 2, 20, 20)).astype(np.float32)
    config = PredictConfig(**CPU)
    full = predict(net, volume, "ZCYX", task="binary", config=config)
    assert full.shape == (1, 6, 20, 20)
    assert ((full >= 0) & (full <= 1)).all()
    part = predict(
        net, volume, "ZCYX", task="binary", config=config, region=(slice(4, 12), slice(0, 8))
    )
    assert part.shape == (1, 6, 8, 8)


def test_cancel_by_closing_the_generator(rng):
    net = tiny(padding="same")
    volume = rng.random((8, 40, 40)).astype(np.float32)
    config = PredictConfig(tile_shape=(4, 16, 16), batch_size=1, overlap=0, **CPU)
    generator = iter_predict(net, volume, "ZYX", config=config)
    first = next(generator)
    assert first.done_tiles == 1 and first.total_tiles > 10
    generator.close()


def test_default_tile_is_3d_for_a_3d_model_and_2d_for_a_2d_model():
    net3d = tiny(padding="same")
    assert TileGeometry.of(net3d, PredictConfig()).tile_shape == DEFAULT_TILE_3D
    assert TileGeometry.of(net3d, PredictConfig(tile_shape=(64, 96))).tile_shape == (32, 64, 96)
    assert TileGeometry.of(net3d, PredictConfig(tile_shape=(8, 64, 64))).tile_shape == (8, 64, 64)
    net2d = build_model("unet", depth=1, base_channels=2)
    assert TileGeometry.of(net2d, PredictConfig()).tile_shape == (512, 512)
    with pytest.raises(UserInputError, match="3-D tile but the model is 2-D"):
        TileGeometry.of(net2d, PredictConfig(tile_shape=(8, 64, 64)))


@pytest.mark.parametrize(
    ("shape", "axes", "match"),
    [
        ((16, 16), "YX", "needs a volume, but the image has axes 'YX' with no Z axis"),
        ((3, 16, 16), "TYX", "no Z axis"),
        ((1, 16, 16), "ZYX", "Z axis has only 1 slice"),
    ],
)
def test_images_a_3d_model_cannot_take_are_refused_in_one_sentence(shape, axes, match):
    net = tiny(padding="same")
    image = np.ones(shape, np.float32)
    with pytest.raises(UserInputError, match=match) as info:
        predict(net, image, axes, config=PredictConfig(**CPU))
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("unet3d is a 3-D model")


def test_a_3d_tile_config_is_accepted_and_bad_ones_refused():
    assert PredictConfig(tile_shape=(16, 64, 64)).tile_shape == (16, 64, 64)
    with pytest.raises(UserInputError, match="tile_shape"):
        PredictConfig(tile_shape=(1, 2, 3, 4))


def test_3d_batchnorm_is_folded_for_inference_without_changing_outputs(rng):
    from napari_unet.core.models.fuse import fuse_for_inference

    net = tiny("unet3d_aniso", depth=2, voxel_size=(4.0, 1.0, 1.0))
    with torch.no_grad():  # trained-looking statistics, so folding really changes the weights
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    fused = fuse_for_inference(net)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fused.modules())
    batch = torch.from_numpy(rng.random((2, 1, 4, 16, 16)).astype(np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(fused(batch).numpy(), net(batch).numpy(), atol=1e-4)
