"""Z-order symmetry for 2.5-D and 3-D models (issue 20): reversing the slices above and below
is a valid symmetry of a volume, used as training augmentation (neighbours reversed at random)
and at prediction (``PredictConfig.z_flip``: both orders averaged), with ``--tta`` on top."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_context25d import RAW, PickNeighbour, ramp_volume, restore

from napari_unet.cli import build_parser
from napari_unet.core.errors import UserInputError
from napari_unet.core.evaluation.metrics import em_region_scores
from napari_unet.core.inference.prediction import PredictConfig, predict
from napari_unet.core.models import build_model
from napari_unet.core.models.context25d import context_channels
from napari_unet.core.training import augment as augment_module
from napari_unet.core.training.augment import augment_batch
from napari_unet.core.training.augment_context import flip_context
from napari_unet.core.training.config import AugmentConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import TrainConfig, train

CPU = {"device": "cpu", "precision": "fp32", "probability_dtype": "float32"}


def _net25d(radius: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    channels = context_channels(1, radius)
    net = build_model("unet", depth=2, base_channels=4, in_channels=channels, out_channels=1)
    net.context_slices = radius
    return net.eval()


def _net3d() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model("unet3d_aniso", depth=2, base_channels=2, voxel_size=(4.0, 1.0, 1.0))
    return net.eval()


def _stack(depth: int = 6) -> np.ndarray:
    return np.random.default_rng(0).random((depth, 32, 32)).astype(np.float32)


def _probabilities(net, image, **config) -> np.ndarray:
    """Binary probabilities ``(Z, Y, X)``, both Z orders averaged unless ``z_flip=False``."""
    tile = (8, 32, 32) if getattr(net, "spatial_dims", 2) == 3 else (32, 32)
    settings = PredictConfig(tile_shape=tile, z_flip=True, **CPU).replace(**config)
    return predict(net, image, "ZYX", task="binary", config=settings)[0]


def test_z_flip_averages_the_two_orders_of_the_neighbours():
    volume = ramp_volume()
    below = restore(PickNeighbour(1, 0), volume, "ZYX")[0]  # z_flip off in restore()
    above = restore(PickNeighbour(1, 2), volume, "ZYX")[0]
    config = PredictConfig(device="cpu", probability_dtype="float32", tile_shape=(16, 16))
    assert not config.z_flip  # off by default (it costs 2x; bench_3d measured no gain)
    config = config.replace(z_flip=True)
    both = predict(
        PickNeighbour(1, 0), volume, "ZYX", task="restoration", normalization=RAW, config=config
    )[0]
    np.testing.assert_allclose(both, (below + above) / 2)


@pytest.mark.parametrize("make", [_net25d, _net3d], ids=["2.5-D", "3-D"])
def test_z_flip_makes_the_prediction_symmetric_in_z(make):
    net, image = make(), _stack()
    flipped = _probabilities(net, image[::-1].copy())[::-1]
    np.testing.assert_allclose(_probabilities(net, image), flipped, atol=1e-5)
    one_order = _probabilities(net, image, z_flip=False)
    assert (
        np.abs(one_order - _probabilities(net, image[::-1].copy(), z_flip=False)[::-1]).max() > 1e-4
    )


@pytest.mark.parametrize("make", [_net25d, _net3d], ids=["2.5-D", "3-D"])
@pytest.mark.parametrize("mode", ["flips", "dihedral"])
def test_tta_works_for_25d_and_3d_models(make, mode):
    """With ``--tta`` the prediction commutes with the flips it averages (and with Z)."""
    net, image = make(), _stack()
    got = _probabilities(net, image, tta=mode)
    np.testing.assert_allclose(
        got, _probabilities(net, image[:, ::-1].copy(), tta=mode)[:, ::-1], atol=1e-5
    )
    np.testing.assert_allclose(
        got, _probabilities(net, image[::-1].copy(), tta=mode)[::-1], atol=1e-5
    )
    assert np.abs(got - _probabilities(net, image)).max() > 1e-4  # the flips changed something


def test_z_flip_changes_nothing_for_a_2d_model():
    torch.manual_seed(0)
    net, image = build_model("unet", depth=2, base_channels=4).eval(), _stack()
    np.testing.assert_array_equal(
        _probabilities(net, image), _probabilities(net, image, z_flip=False)
    )


def test_a_bad_z_flip_setting_is_refused_in_one_sentence():
    with pytest.raises(UserInputError, match="z_flip='yes' is not valid; use True or False"):
        PredictConfig(z_flip="yes")


def test_predict_z_flip_flag():
    parser = build_parser()
    base = ["predict", "img.tif", "--model", "m.pt", "--out", "out"]
    assert parser.parse_args(base).z_flip is False
    assert parser.parse_args([*base, "--z-flip"]).z_flip is True
    assert parser.parse_args([*base, "--no-z-flip"]).z_flip is False


def test_flip_context_reverses_the_neighbours_of_about_half_the_samples():
    radius, channels = 2, 2
    image = torch.arange(16 * 5 * channels, dtype=torch.float32).reshape(16, 5 * channels, 1, 1)
    image = image.expand(-1, -1, 4, 4).contiguous()
    out = flip_context(image, radius, torch.Generator().manual_seed(0))
    blocks_in = image.reshape(16, 5, channels, 4, 4)
    blocks_out = out.reshape(16, 5, channels, 4, 4)
    reversed_ = [bool(torch.equal(blocks_out[i], blocks_in[i].flip(0))) for i in range(16)]
    same = [bool(torch.equal(out[i], image[i])) for i in range(16)]
    assert all(r != s for r, s in zip(reversed_, same))  # each sample one or the other
    assert 3 <= sum(reversed_) <= 13
    torch.testing.assert_close(blocks_out[:, 2], blocks_in[:, 2])  # the centre slice stays


def test_no_context_draws_nothing_so_2d_augmentation_is_unchanged():
    image = torch.rand(4, 3, 16, 16)
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert flip_context(image, 0, generator) is image
    assert torch.equal(generator.get_state(), state)
    config = AugmentConfig()
    plain = augment_batch(image, None, None, config, torch.Generator().manual_seed(1))[0]
    off = AugmentConfig(flip_context=False)
    kept = augment_batch(image, None, None, off, torch.Generator().manual_seed(1), context_radius=1)
    torch.testing.assert_close(plain, kept[0])  # flip_context off: the same draws as 2-D
    flipped = augment_batch(
        image, None, None, config, torch.Generator().manual_seed(1), context_radius=1
    )
    assert not torch.equal(plain, flipped[0])


def test_training_a_25d_model_reverses_its_neighbours(tmp_path, monkeypatch):
    radii = []
    original = augment_module.flip_context
    monkeypatch.setattr(
        augment_module, "flip_context", lambda im, r, g: radii.append(r) or original(im, r, g)
    )
    rng = np.random.default_rng(0)
    items = [
        TrainingItem(rng.random((3, 32, 32), np.float32), rng.integers(0, 2, (32, 32)), None, "a")
    ]
    config = TrainConfig(
        task="binary", steps=2, batch_size=2, patch_shape=(32, 32), val_fraction=0.0,
        device="cpu", num_threads=1, checkpoint_dir=str(tmp_path), tune_postprocess=False,
    )  # fmt: skip
    train(_net25d().train(), items, config)
    assert radii == [1, 1]


def test_filled_membranes_do_not_count_a_thick_membrane_as_splits():
    truth = np.zeros((20, 20), bool)
    truth[:, 10] = True  # two regions, a 1-px membrane
    probability = np.zeros((20, 20), np.float32)
    probability[:, 8:13] = np.array([0.6, 0.8, 1.0, 0.8, 0.6])  # 5-px predicted membrane
    assert em_region_scores(probability, truth)["rand_error"] > 0.05
    assert em_region_scores(probability, truth, fill_membranes=True)["rand_error"] == 0.0
    gap = probability.copy()
    gap[5, 8:13] = 0.2  # a gap merges the two regions, filled or not
    assert em_region_scores(gap, truth, fill_membranes=True)["rand_error"] > 0.3


def test_train_context_slices_reverses_the_neighbours_new_and_fine_tuned(tmp_path, monkeypatch):
    from test_context25d import context_args, two_slices_annotated
    from test_train_3d import balls, write_volume

    from napari_unet.cli import main

    radii = []
    original = augment_module.flip_context
    monkeypatch.setattr(
        augment_module, "flip_context", lambda im, r, g: radii.append(r) or original(im, r, g)
    )
    image, labels = balls()
    write_volume(tmp_path, image, labels, two_slices_annotated())
    assert main(context_args(tmp_path, "--context-slices", "1")) == 0
    assert radii == [1, 1]  # a new 2.5-D model, 2 steps
    assert main(context_args(tmp_path, model=str(tmp_path / "model.pt"), out="tuned.pt")) == 0
    assert radii == [1] * 4  # its checkpoint, fine-tuned
    assert main(context_args(tmp_path, out="flat.pt")) == 0  # a 2-D model draws no Z flip
    assert radii == [1] * 4 + [0] * 2
