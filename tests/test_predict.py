"""Prediction end to end: axes, channels, normalisation, tiling, activation, devices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from napari_unet.core.device import (
    autocast_dtype,
    available_devices,
    cpu_supports_bf16,
    get_device,
)
from napari_unet.core.errors import AxesError, ChannelMismatchError, DeviceError
from napari_unet.core.inference.normalization import NormalizationConfig, normalize
from napari_unet.core.inference.prediction import (
    PredictConfig,
    PredictProgress,
    TileGeometry,
    iter_predict,
    predict,
    shift_period,
    tta_transforms,
)

DTYPES = [
    np.uint8,
    np.uint16,
    np.uint32,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
    bool,
]


class PixelNet(nn.Module):
    """Fake SegmentationNet: a per-pixel linear map (1x1 conv), center-cropped by ``margin``."""

    def __init__(self, in_channels=1, out_channels=2, margin=0, size_multiple=1):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.margin, self.size_multiple = margin, size_multiple
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        torch.manual_seed(0)
        nn.init.normal_(self.conv.weight)
        nn.init.normal_(self.conv.bias)

    def valid_input_shape(self, shape):
        return tuple(-(-int(s) // self.size_multiple) * self.size_multiple for s in shape)

    def forward(self, image):
        m = self.margin
        return self.conv(image)[..., m : image.shape[-2] - m, m : image.shape[-1] - m]


def reference(model: PixelNet, image: np.ndarray, task: str = "semantic") -> np.ndarray:
    """Untiled result for a (C, Y, X) image: normalise, 1x1 conv, activation."""
    normalized = torch.from_numpy(normalize(image))
    weight = model.conv.weight.detach()[:, :, 0, 0]
    logits = (
        torch.einsum("kc,cyx->kyx", weight, normalized) + model.conv.bias.detach()[:, None, None]
    )
    if task == "binary":
        return torch.sigmoid(logits).numpy()
    if task == "restoration":
        return logits.numpy()
    return torch.softmax(logits, dim=0).numpy()


FP32 = {"device": "cpu", "precision": "fp32"}
CPU = PredictConfig(tile_shape=(32, 32), overlap=6, batch_size=3, **FP32)


@pytest.mark.parametrize("margin", [0, 5])
@pytest.mark.parametrize("task", ["semantic", "binary", "restoration"])
def test_tiled_prediction_equals_untiled(rng, margin, task):
    out_channels = 1 if task == "binary" else 3
    model = PixelNet(in_channels=2, out_channels=out_channels, margin=margin, size_multiple=4)
    image = rng.normal(size=(97, 51, 2)).astype(np.float32)
    probabilities = predict(model, image, "YXC", task=task, config=CPU)
    assert probabilities.shape == (out_channels, 97, 51)
    assert probabilities.dtype == np.float32
    expected = reference(model, np.moveaxis(image, -1, 0), task)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_stack_is_predicted_slice_by_slice_with_total_progress(rng):
    model = PixelNet(out_channels=2)
    image = rng.random((3, 40, 45)) * np.array([1.0, 10.0, 100.0])[:, None, None]
    generator = iter_predict(model, image, "ZYX", config=CPU)
    records = []
    while True:
        try:
            records.append(next(generator))
        except StopIteration as stop:
            probabilities = stop.value
            break
    assert probabilities.shape == (2, 3, 40, 45)
    for z in range(3):  # per-slice normalisation: each slice like a single image
        np.testing.assert_allclose(
            probabilities[:, z], reference(model, image[z : z + 1]), atol=1e-5
        )
    total = records[-1].total_tiles
    assert all(r.total_tiles == total and r.n_slices == 3 for r in records)
    assert [r.slice_index for r in records] == sorted(r.slice_index for r in records)
    assert records[-1].done_tiles == total and records[-1].fraction == 1.0
    assert all(a.done_tiles < b.done_tiles for a, b in itertools.pairwise(records))
    assert PredictProgress(0, 1, 1, 4).fraction == 0.25


def test_region_prediction_is_the_crop_of_the_full_prediction(rng):
    model = PixelNet(out_channels=2, margin=3)
    image = rng.random((2, 50, 60)).astype(np.float32)
    full = predict(model, image, "TYX", config=CPU)
    region = (slice(10, 33), slice(5, 60))
    part = predict(model, image, "TYX", config=CPU, region=region)
    assert part.shape == (2, 2, 23, 55)
    np.testing.assert_allclose(part, full[:, :, 10:33, 5:60], atol=1e-5)


def test_prediction_and_cancel_leave_the_callers_model_untouched(rng):
    model = PixelNet()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    generator = iter_predict(model, rng.random((64, 64)), "YX", config=CPU.replace(batch_size=1))
    first = next(generator)
    assert first.done_tiles == 1 and model.training
    generator.close()
    assert model.training
    assert model.conv.weight.is_contiguous()  # not switched to channels_last in place
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_gives_finite_probabilities_summing_to_one(rng, dtype):
    if dtype is bool:
        image = rng.random((33, 47)) > 0.5
    elif np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        image = rng.integers(info.min, info.max, size=(33, 47), dtype=dtype, endpoint=True)
    else:
        image = (rng.normal(size=(33, 47)) * 1000).astype(dtype)
    probabilities = predict(PixelNet(out_channels=3), image, "YX", config=CPU)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)


def test_nan_inf_and_constant_images(rng):
    model = PixelNet(out_channels=2)
    image = rng.random((40, 40))
    image[3, 3], image[5, 5], image[7, 7] = np.nan, np.inf, -np.inf
    for data in (image, np.full((40, 40), 9.0), np.full((40, 40), np.nan)):
        probabilities = predict(model, data, "YX", config=CPU)
        assert np.isfinite(probabilities).all()
        np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)


def test_bad_axes_and_channels_raise_user_errors(rng):
    model = PixelNet(in_channels=1)
    with pytest.raises(AxesError, match=r"\(64, 64, 3\)"):
        predict(model, rng.random((64, 64, 3)), "YX", config=CPU)
    with pytest.raises(ChannelMismatchError, match="grayscale"):
        predict(model, rng.random((64, 64, 3)), "YXC", config=CPU)
    with pytest.raises(ChannelMismatchError, match="3"):
        predict(PixelNet(in_channels=3), rng.random((64, 64)), "YX", config=CPU)
    with pytest.raises(ValueError, match="task"):
        predict(model, rng.random((64, 64)), "YX", task="detection", config=CPU)
    with pytest.raises(DeviceError, match="cpu"):
        predict(model, rng.random((8, 8)), "YX", config=CPU.replace(device="cuda:7"))


def test_meanstd_normalization_and_float16_output(rng):
    model = PixelNet(out_channels=2)
    image = rng.integers(0, 255, size=(30, 30), dtype=np.uint8)
    norm = NormalizationConfig(mode="meanstd", mean=(100.0,), std=(50.0,))
    probabilities = predict(
        model, image, "YX", normalization=norm, config=CPU.replace(probability_dtype="float16")
    )
    assert probabilities.dtype == np.float16
    logits = model.conv(torch.from_numpy((image[None, None] - 100.0) / 50.0).float())
    expected = torch.softmax(logits, dim=1)[0].detach().numpy()
    np.testing.assert_allclose(probabilities, expected, atol=2e-3)


def test_predict_config_validation_and_round_trip():
    config = PredictConfig(tile_shape=256)
    assert config.tile_shape == (256, 256) and config.overlap is None
    assert PredictConfig.from_dict(config.to_dict()) == config
    assert PredictConfig.from_dict(CPU.to_dict()) == CPU
    for bad in [
        {"tile_shape": (0, 64)},
        {"overlap": -1},
        {"overlap": 64, "tile_shape": 64},
        {"batch_size": 0},
        {"precision": "fp8"},
        {"blend": "hann"},
        {"probability_dtype": "int8"},
        {"tta": "rotations"},
    ]:
        with pytest.raises(ValueError):
            PredictConfig(**bad)


def test_device_policy():
    assert available_devices()[0] == "cpu"
    assert get_device("cpu") == torch.device("cpu")
    assert get_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        assert get_device("auto") == torch.device("cpu")
        with pytest.raises(DeviceError, match="auto, cpu"):
            get_device("cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        get_device("gpu")
    expected_auto = torch.bfloat16 if cpu_supports_bf16() else None
    assert autocast_dtype("cpu", "auto") is expected_auto
    assert autocast_dtype("cpu", "fp32") is None
    assert autocast_dtype("cpu", "bf16") is torch.bfloat16
    assert autocast_dtype(torch.device("cuda"), "auto") is torch.float16
    assert isinstance(cpu_supports_bf16(), bool)
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype("cpu", "fp64")


def test_bf16_and_memory_format_agree_with_fp32(rng):
    torch.manual_seed(0)
    model = ConvNet()
    image = rng.random((40, 40)).astype(np.float32)
    fp32 = predict(model, image, "YX", config=CPU.replace(precision="fp32"))
    plain = predict(model, image, "YX", config=CPU.replace(precision="fp32", channels_last=False))
    bf16 = predict(model, image, "YX", config=CPU.replace(precision="bf16"))
    np.testing.assert_allclose(plain, fp32, atol=1e-5)
    assert np.abs(bf16 - fp32).max() < 0.05  # bf16 has ~3 significant digits
    assert (bf16.argmax(0) == fp32.argmax(0)).mean() > 0.95


class ConvNet(nn.Module):
    """A tiny padded net (margin 0, any size) with a 3x3 receptive field."""

    in_channels, out_channels, margin, size_multiple = 1, 2, 0, 1

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))

    def forward(self, image):
        return self.body(image)


@pytest.mark.parametrize("mode", ["flips", "dihedral"])
def test_tta_is_the_mean_over_the_symmetries_of_the_image(rng, mode):
    torch.manual_seed(0)
    model = ConvNet()  # 3x3 kernels: not flip-equivariant, so the augmentation matters
    image = rng.random((40, 56)).astype(np.float32)
    config = PredictConfig(tile_shape=64, **FP32)  # one tile: the tile is the image
    got = predict(model, image, "YX", config=config.replace(tta=mode))
    transforms = tta_transforms(mode)
    assert len(transforms) == {"flips": 4, "dihedral": 8}[mode] == len(set(transforms))
    expected = np.zeros_like(got)
    for transpose, dims in transforms:
        view = np.flip(image.T if transpose else image, axis=dims)
        out = np.flip(predict(model, view.copy(), "YX", config=config), axis=dims)
        expected += out.swapaxes(-1, -2) if transpose else out
    np.testing.assert_allclose(got, expected / len(transforms), atol=1e-5)
    plain = predict(model, image, "YX", config=config)
    assert np.abs(got - plain).max() > 1e-3
    np.testing.assert_allclose(got.sum(axis=0), 1.0, atol=1e-5)


@pytest.mark.parametrize("mode", ["flips", "dihedral"])
def test_tta_of_an_equivariant_net_changes_nothing_across_tiles_and_margins(rng, mode):
    model = PixelNet(in_channels=2, out_channels=3, margin=5, size_multiple=4)
    image = rng.normal(size=(97, 51, 2)).astype(np.float32)
    got = predict(model, image, "YXC", config=CPU.replace(tta=mode))
    np.testing.assert_allclose(got, reference(model, np.moveaxis(image, -1, 0)), atol=1e-5)


def test_tile_geometry_is_the_plan_iter_predict_uses(rng):
    """The one tile plan (the distributed block predictor reuses it: it must not drift)."""
    padded = PixelNet(out_channels=2, size_multiple=16)
    image = rng.random((150, 170)).astype(np.float32)
    for tile, overlap in ((64, 16), (512, 32), (40, 10)):
        config = PredictConfig(tile_shape=tile, batch_size=64, **FP32)
        geometry = TileGeometry.of(padded, config)
        assert (geometry.overlap, geometry.period, geometry.margin) == (overlap, 16, 0)
        steps = list(iter_predict(padded, image, "YX", config=config))
        assert steps[-1].total_tiles == geometry.plan(image.shape).n_tiles
    valid = TileGeometry.of(PixelNet(margin=4), PredictConfig(tile_shape=64, **FP32))
    assert (valid.overlap, valid.margin) == (0, 4)
    assert TileGeometry.of(padded, PredictConfig(tile_shape=64, overlap=5, **FP32)).overlap == 5


def test_shift_period_of_valid_and_padded_rules():
    assert shift_period(lambda s: tuple(-(-x // 16) * 16 for x in s)) == 16
    assert shift_period(lambda s: s) == 1


models = pytest.importorskip("napari_unet.core.models")


def _randomise_batchnorm(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def _full_forward(model, image: np.ndarray, margin: int) -> np.ndarray:
    """One forward pass over the mirror-padded image (padded up to a valid size), cropped."""
    normalized = normalize(image[None])
    height, width = image.shape
    valid = model.valid_input_shape((height + 2 * margin, width + 2 * margin))
    pad = ((0, 0), (margin, valid[0] - height - margin), (margin, valid[1] - width - margin))
    padded = np.pad(normalized, pad, mode="reflect")
    with torch.inference_mode():
        logits = model(torch.from_numpy(padded)[None])
    return torch.softmax(logits, dim=1)[0, :, :height, :width].numpy()


def test_unet_original_tiled_equals_one_full_forward(rng):
    torch.manual_seed(0)
    model = models.build_model("unet_original", depth=2, base_channels=4, batch_norm=True).eval()
    _randomise_batchnorm(model)
    image = rng.random((61, 75)).astype(np.float32)
    tile = model.valid_input_shape((model.margin * 2 + 20, model.margin * 2 + 20))
    config = PredictConfig(tile_shape=tile, device="cpu", batch_size=2, precision="fp32")
    probabilities = predict(model, image, "YX", config=config)
    expected = _full_forward(model, image, model.margin)
    assert probabilities.shape == (2, 61, 75)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)


def test_unet_single_tile_equals_full_forward_and_tiles_agree(rng):
    torch.manual_seed(0)
    model = models.build_model("unet", depth=2, base_channels=4).eval()
    _randomise_batchnorm(model)
    image = rng.random((45, 53)).astype(np.float32)
    one_tile = predict(model, image, "YX", config=PredictConfig(tile_shape=64, **FP32))
    np.testing.assert_allclose(one_tile, _full_forward(model, image, 0), atol=1e-4)
    tiled = predict(model, image, "YX", config=PredictConfig(tile_shape=32, overlap=12, **FP32))
    # Padded nets see zero padding at tile borders: tiles agree closely, not exactly.
    assert np.abs(tiled - one_tile).mean() < 0.02
    np.testing.assert_allclose(tiled.sum(axis=0), 1.0, atol=1e-5)


def test_issue15_point4_a_float64_image_beyond_float32_range_predicts_like_the_image(
    shared_data,
) -> None:
    """The issue's case: fluo-nuclei on a DSB image times 1e300 found 0 objects (exit 0)."""
    from napari_unet.core.checkpoint.format import load_checkpoint, resolve_checkpoint
    from napari_unet.core.io.images import read_image
    from napari_unet.core.postprocess.labels import labels_from_probabilities

    loaded = load_checkpoint(resolve_checkpoint("fluo-nuclei"))
    info = loaded.info
    image = read_image(shared_data / "dsb2018_fluo/images/000.png").image
    settings = {
        "task": info.task,
        "normalization": info.normalization_config(),
        "config": PredictConfig(device="cpu", precision="fp32"),
    }
    reference = predict(loaded.model, image, "YX", **settings)
    scaled = predict(loaded.model, image.astype(np.float64) * 1e300, "YX", **settings)
    np.testing.assert_allclose(scaled, reference, atol=1e-4)
    post = info.postprocess_config(output=None, threshold=None, min_size=None)
    objects = labels_from_probabilities(reference, task=info.task, config=post)
    assert objects.max() > 5
    np.testing.assert_array_equal(
        labels_from_probabilities(scaled, task=info.task, config=post), objects
    )


@pytest.mark.parametrize("axes", ["TZYX", "TZCYX"])
@pytest.mark.parametrize("output", ["semantic", "instances"])
def test_issue15_point5_time_and_depth_images_predict_and_postprocess(rng, axes, output):
    """TZYX / TZCYX images failed in post-processing ('got (K,T,Z,Y,X)') through the core API."""
    from napari_unet.core.postprocess.config import PostprocessConfig
    from napari_unet.core.postprocess.labels import labels_from_probabilities

    channels = 2 if "C" in axes else 1
    model = PixelNet(in_channels=channels, out_channels=3)
    shape = {"T": 2, "Z": 3, "C": channels, "Y": 40, "X": 45}
    image = rng.random(tuple(shape[a] for a in axes)).astype(np.float32)
    probabilities = predict(model, image, axes, task="instances", config=CPU)
    assert probabilities.shape == (3, 2, 3, 40, 45)
    for t, z in itertools.product(range(2), range(3)):  # each plane like a single image
        plane = image[t, z][None] if channels == 1 else image[t, z]  # (C, Y, X)
        np.testing.assert_allclose(probabilities[:, t, z], reference(model, plane), atol=1e-5)
    config = PostprocessConfig(output=output)
    labels = labels_from_probabilities(probabilities, task="instances", config=config)
    assert labels.shape == (2, 3, 40, 45)
    flat = labels_from_probabilities(
        probabilities.reshape(3, 6, 40, 45), task="instances", config=config
    )
    np.testing.assert_array_equal(labels.reshape(6, 40, 45), flat)


def test_issue15_point7_bad_predict_config_values_are_one_sentence_user_errors():
    from napari_unet.core.errors import UserInputError

    cases = [
        ({"tile_shape": 0}, "tile_shape=0", ">= 1"),
        ({"tile_shape": -5}, "tile_shape=-5", ">= 1"),
        ({"tile_shape": (64,)}, "tile_shape=(64,)", "one or two"),
        ({"tile_shape": "abc"}, "tile_shape='abc'", "whole numbers"),
        ({"tile_shape": True}, "tile_shape=True", "whole numbers"),
        ({"tile_shape": 64.5}, "tile_shape=64.5", "whole numbers"),
        ({"overlap": -1}, "overlap=-1", ">= 0"),
        ({"overlap": 1.5}, "overlap=1.5", ">= 0"),
        ({"overlap": 64, "tile_shape": 64}, "overlap=64", "0 to 63"),
        ({"batch_size": 0}, "batch_size=0", ">= 1"),
        ({"device": ""}, "device=''", "'cpu'"),
        ({"precision": "fp8"}, "precision='fp8'", "auto, fp32, bf16, fp16"),
        ({"blend": "hann"}, "blend='hann'", "gaussian, constant"),
        ({"probability_dtype": "int8"}, "probability_dtype='int8'", "float32, float16"),
        ({"tta": "rotations"}, "tta='rotations'", "none, flips, dihedral"),
    ]
    for bad, named, allowed in cases:
        with pytest.raises(UserInputError) as info:
            PredictConfig(**bad)
        message = str(info.value)
        assert named in message and allowed in message, message
        assert message.count(". ") == 0 and "\n" not in message  # one sentence


def test_issue15_point7_empty_images_and_tiles_too_small_are_refused(rng):
    from napari_unet.core.errors import UserInputError

    model = PixelNet(out_channels=2)
    for shape, axes in (((0, 0), "YX"), ((0, 16), "YX"), ((16, 0), "YX"), ((2, 0, 0), "ZYX")):
        with pytest.raises(UserInputError, match=r"the image is empty \(shape"):
            predict(model, np.zeros(shape, np.float32), axes, config=CPU)
    valid = PixelNet(out_channels=2, margin=20)  # loses 20 pixels on each side
    config = PredictConfig(tile_shape=(32, 32), overlap=0, **FP32)
    with pytest.raises(UserInputError, match=r"too small for this model .* at least 41x41"):
        predict(valid, rng.random((100, 100)), "YX", config=config)
    # the default overlap of padded nets fits small tiles (it raised a raw ValueError at 32)
    small = PredictConfig(tile_shape=(32, 32), **FP32)
    assert predict(model, rng.random((70, 70)), "YX", config=small).shape == (2, 70, 70)
