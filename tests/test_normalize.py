"""Normalisation: any real dtype -> finite float32; NaN, Inf and constant images handled."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.errors import ChannelMismatchError, UserInputError
from napari_unet.core.inference.normalization import (
    NormalizationConfig,
    apply_normalization,
    normalization_params,
    normalize,
    percentile_range,
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


def test_percentile_mode_is_per_channel_formula(rng):
    image = rng.normal(size=(2, 40, 50)) * np.array([1.0, 100.0])[:, None, None]
    result = normalize(image, NormalizationConfig(low=2.0, high=98.0))
    assert result.dtype == np.float32 and result.shape == image.shape
    for c in range(2):
        lo, hi = np.percentile(image[c], [2.0, 98.0])
        np.testing.assert_allclose(result[c], (image[c] - lo) / (hi - lo), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["percentile", "meanstd", "none"])
def test_every_dtype_gives_finite_float32_and_input_untouched(rng, dtype, mode):
    if dtype is bool:
        image = rng.random((1, 30, 30)) > 0.5
    elif np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        image = rng.integers(info.min, info.max, size=(1, 30, 30), dtype=dtype, endpoint=True)
    else:
        image = (rng.normal(size=(1, 30, 30)) * 100).astype(dtype)
    before = image.copy()
    config = NormalizationConfig(mode=mode, mean=(5.0,), std=(2.0,))
    result = normalize(image, config)
    assert result.dtype == np.float32
    assert np.isfinite(result).all()
    np.testing.assert_array_equal(image, before)
    if mode == "percentile":
        assert np.percentile(result, 50) == pytest.approx(
            (np.percentile(image.astype(np.float64), 50) - percentile_range(image)[0])
            / np.subtract(*percentile_range(image)[::-1]),
            abs=1e-3,
        )


def test_nan_and_inf_are_replaced(rng):
    image = rng.random((2, 20, 20))
    image[0, 0, 0] = np.nan
    image[0, 1, 1] = np.inf
    image[1, 2, 2] = -np.inf
    image[1, 3, 3] = 1e300  # beyond float32
    for mode in ("percentile", "meanstd", "none"):
        result = normalize(image, NormalizationConfig(mode=mode, mean=(0.5,), std=(0.25,)))
        assert np.isfinite(result).all(), mode
    result = normalize(image)
    lo, hi = np.percentile(image[0][np.isfinite(image[0])], [1.0, 99.8])
    assert result[0, 0, 0] == 0.0  # NaN -> low value
    assert result[0, 1, 1] == pytest.approx(1.0)  # +Inf -> high value
    assert result[0, 5, 5] == pytest.approx((image[0, 5, 5] - lo) / (hi - lo), abs=1e-5)


def test_constant_and_empty_images_become_zeros():
    for image in [
        np.full((1, 16, 16), 7, np.uint8),
        np.zeros((2, 16, 16), np.float32),
        np.full((1, 16, 16), np.nan),
        np.ones((1, 1, 1), bool),
    ]:
        result = normalize(image)
        np.testing.assert_array_equal(result, np.zeros(image.shape, np.float32))


def test_sparse_image_falls_back_to_the_value_range():
    image = np.zeros((1, 100, 100), np.uint16)
    image[0, 50, 50] = 1000  # both percentiles are 0
    result = normalize(image)
    assert result.max() == 1.0 and result.min() == 0.0


def test_meanstd_mode_and_channel_mismatch(rng):
    image = rng.integers(0, 255, size=(3, 10, 10), dtype=np.uint8)
    config = NormalizationConfig(mode="meanstd", mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0))
    result = normalize(image, config)
    expected = (image - np.array([10.0, 20.0, 30.0])[:, None, None]) / np.array([2.0, 4.0, 5.0])[
        :, None, None
    ]
    np.testing.assert_allclose(result, expected, rtol=1e-6)
    with pytest.raises(ChannelMismatchError, match="3 channel"):
        normalize(image[:2], config)
    single = NormalizationConfig(mode="meanstd", mean=(1.0,), std=(2.0,))
    np.testing.assert_allclose(normalize(image, single), (image - 1.0) / 2.0, rtol=1e-6)


def test_none_mode_casts_only(rng):
    image = rng.integers(0, 4000, size=(1, 8, 8), dtype=np.uint16)
    np.testing.assert_array_equal(
        normalize(image, NormalizationConfig(mode="none")), image.astype(np.float32)
    )


def test_config_validation_and_round_trip():
    config = NormalizationConfig(mode="meanstd", mean=(1, 2), std=(3, 4))
    assert config.mean == (1.0, 2.0)
    assert NormalizationConfig.from_dict(config.to_dict()) == config
    for bad in [
        {"mode": "zscore"},
        {"low": 50.0, "high": 10.0},
        {"high": 101.0},
        {"mean": (1.0,), "std": ()},
        {"mean": (1.0,), "std": (0.0,)},
        {"mode": "meanstd"},
    ]:
        with pytest.raises(ValueError):
            NormalizationConfig(**bad)


def test_big_image_percentiles_use_a_bounded_subsample(rng):
    image = rng.integers(0, 256, size=(2048, 2048), dtype=np.uint8)
    lo, hi = percentile_range(image, 1.0, 99.0)
    exact = np.percentile(image, [1.0, 99.0])
    assert abs(lo - exact[0]) <= 2 and abs(hi - exact[1]) <= 2
    assert percentile_range(np.full((4, 4), np.nan)) == (0.0, 0.0)


def test_tilewise_application_matches_whole_image(rng):
    image = rng.normal(size=(2, 30, 40)).astype(np.float64)
    image[1, 4, 4] = np.nan
    whole = normalize(image)
    params = normalization_params(image)
    tile = image[:, 3:20, 5:31][None]  # raw, as the tiler hands it to prediction
    out = np.empty(tile.shape, np.float32)
    apply_normalization(tile, params, out=out)
    np.testing.assert_array_equal(out[0], whole[:, 3:20, 5:31])
    as_float32 = tile.astype(np.float32)  # a float32 tile is normalised in place
    apply_normalization(as_float32, params, out=as_float32)
    np.testing.assert_allclose(as_float32[0], whole[:, 3:20, 5:31], atol=1e-6)


def test_complex_and_wrong_shape_are_refused():
    with pytest.raises(UserInputError, match="complex"):
        normalize(np.zeros((1, 4, 4), np.complex64))
    with pytest.raises(ValueError, match="C, Y, X"):
        normalize(np.zeros((4, 4)))


def test_issue15_point4_float64_beyond_float32_range_normalises_like_the_image(rng) -> None:
    """A float64 image times 1e300 overflowed float32 before normalisation: it came out flat."""
    image = rng.random((2, 40, 48)) * 255
    image[0, 0, 0], image[0, 1, 1], image[1, 2, 2] = np.nan, np.inf, -np.inf  # kept as before
    reference = normalize(image)
    scaled = normalize(image * 1e300)
    assert np.isfinite(scaled).all()
    np.testing.assert_allclose(scaled, reference, rtol=1e-6, atol=1e-6)
    assert scaled[0, 0, 0] == 0.0 and scaled[1, 2, 2] == reference[1, 2, 2]  # NaN, -Inf -> low
    assert scaled[0, 1, 1] == reference[0, 1, 1]  # +Inf -> the high value
    # tile by tile, as prediction applies it: the same numbers
    params = normalization_params(image * 1e300)
    tiles = np.stack([image[:, :16, :16], image[:, 16:32, 16:32]]) * 1e300
    out = np.empty(tiles.shape, np.float32)
    apply_normalization(tiles, params, out=out)
    np.testing.assert_allclose(out[1], reference[:, 16:32, 16:32], rtol=1e-6, atol=1e-6)


def test_issue15_point4_wide_integers_keep_their_digits() -> None:
    """uint32 / int64 values that float32 rounds: normalised in float64, not cast first."""
    base = np.arange(64 * 64, dtype=np.int64).reshape(1, 64, 64) % 200
    for offset, dtype in ((4_000_000_000, np.uint32), (2**40, np.int64)):
        image = (base + offset).astype(dtype)
        np.testing.assert_allclose(normalize(image), normalize(base), atol=1e-6)


@pytest.mark.parametrize("factor", [1e307, 1e308, float(np.finfo(np.float64).max)])
def test_float64_near_its_maximum_normalises_like_the_image(rng, factor: float) -> None:
    """``hi - lo`` of a signed image near float64's maximum overflowed: it came out flat."""
    image = rng.uniform(-1.0, 1.0, size=(2, 40, 48))
    image[0, 0, 0], image[0, 1, 1], image[1, 2, 2] = np.nan, np.inf, -np.inf
    reference = normalize(image)
    scaled = normalize(image * factor)
    assert np.isfinite(scaled).all()
    np.testing.assert_allclose(scaled, reference, rtol=1e-6, atol=1e-6)
    assert scaled[0, 0, 0] == 0.0 and scaled[0, 1, 1] == reference[0, 1, 1]
    params = normalization_params(image * factor)  # tile by tile, as prediction applies it
    tiles = np.stack([image[:, :16, :16], image[:, 16:32, 16:32]]) * factor
    out = np.empty(tiles.shape, np.float32)
    apply_normalization(tiles, params, out=out)
    np.testing.assert_allclose(out[1], reference[:, 16:32, 16:32], rtol=1e-6, atol=1e-6)


def test_the_whole_float64_range_normalises_to_zero_and_one() -> None:
    image = np.tile(np.array([-1e308, 1e308]), 8 * 4).reshape(1, 8, 8)
    result = normalize(image)
    np.testing.assert_array_equal(result, normalize(np.sign(image)))
    assert set(np.unique(result)) == {0.0, 1.0}
    extremes = np.finfo(np.float64).max * np.sign(image)
    np.testing.assert_array_equal(normalize(extremes), result)
