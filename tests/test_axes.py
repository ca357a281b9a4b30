"""Axes strings: stacking, restoring, guessing (never silently for ambiguous shapes)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.errors import AxesError, ChannelMismatchError
from napari_unet.core.io.axes import StackLayout, check_channels, guess_axes, to_stack


@pytest.mark.parametrize(
    ("shape", "axes", "stack_shape", "n_channels"),
    [
        ((6, 7), "YX", (), 1),
        ((2, 6, 7), "CYX", (), 2),
        ((6, 7, 3), "YXC", (), 3),
        ((4, 6, 7), "ZYX", (4,), 1),
        ((4, 6, 7), "TYX", (4,), 1),
        ((4, 2, 6, 7), "ZCYX", (4,), 2),
        ((3, 4, 6, 7, 2), "TZYXC", (3, 4), 2),
        ((3, 4, 2, 6, 7), "tzcyx", (3, 4), 2),
    ],
)
def test_to_stack_is_a_view_with_the_right_values(shape, axes, stack_shape, n_channels):
    image = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    stack, layout = to_stack(image, axes)
    assert layout.axes == axes.upper()
    assert layout.stack_shape == stack_shape
    assert layout.n_slices == int(np.prod(stack_shape))
    assert layout.n_channels == n_channels
    assert stack.shape == (layout.n_slices, n_channels, 6, 7)
    assert stack.dtype == image.dtype
    assert np.shares_memory(stack, image)
    assert layout.spatial_shape == (*stack_shape, 6, 7)
    # Spot-check one pixel: the last slice, last channel, y=5, x=3.
    index = {a: s - 1 for a, s in zip(axes.upper(), shape)}
    index.update(Y=5, X=3)
    assert stack[-1, -1, 5, 3] == image[tuple(index[a] for a in axes.upper())]


def test_restore_and_channels_first_round_trip():
    image = np.random.default_rng(0).random((3, 4, 2, 5, 6))
    stack, layout = to_stack(image, "TZCYX")
    labels = stack[:, 0]  # (S, Y, X)
    restored = layout.restore(labels)
    assert restored.shape == layout.spatial_shape == (3, 4, 5, 6)
    np.testing.assert_array_equal(restored, image[:, :, 0])
    probabilities = layout.channels_first(stack)  # (S, C, Y, X) -> (C, T, Z, Y, X)
    assert probabilities.shape == (2, 3, 4, 5, 6)
    np.testing.assert_array_equal(probabilities, np.moveaxis(image, 2, 0))
    per_class = layout.restore(np.moveaxis(stack, 1, 0), axis=1)
    np.testing.assert_array_equal(per_class, probabilities)
    with pytest.raises(ValueError, match="slice"):
        layout.restore(np.zeros((5, 5, 6)))


def test_layout_without_stack_axes():
    layout = StackLayout(axes="YXC", shape=(10, 12, 3))
    assert layout.n_slices == 1
    assert layout.spatial_shape == (10, 12)
    assert layout.restore(np.zeros((1, 10, 12))).shape == (10, 12)
    assert layout.channels_first(np.zeros((1, 2, 10, 12))).shape == (2, 10, 12)


@pytest.mark.parametrize(
    ("shape", "axes", "words"),
    [
        ((64, 64), "ZYX", ["(64, 64)", "3 letter", "2 dimension"]),
        ((3, 64, 64), "QYX", ["Q", "(3, 64, 64)"]),
        ((3, 64, 64), "YYX", ["repeats Y"]),
        ((3, 64, 64), "ZCX", ["no Y and X"]),
    ],
)
def test_bad_axes_name_the_shape_and_the_problem(shape, axes, words):
    with pytest.raises(AxesError) as info:
        to_stack(np.zeros(shape), axes)
    for word in words:
        assert word in str(info.value)


def test_guess_axes_refuses_ambiguous_shapes():
    assert guess_axes((64, 80)) == "YX"
    assert guess_axes((64, 80, 3), rgb=True) == "YXC"
    assert guess_axes((5, 64, 80, 4), rgb=True) == "ZYXC"
    assert guess_axes((20, 64, 80)) == "ZYX"
    assert guess_axes((20, 64, 80), rgb=False) == "ZYX"
    for shape, rgb in [((3, 64, 64), None), ((3, 64, 64), False), ((64, 64, 3), None)]:
        with pytest.raises(AxesError, match="CYX") as info:
            guess_axes(shape, rgb=rgb)
        assert "--axes" in str(info.value)
    with pytest.raises(AxesError, match="RGB"):
        guess_axes((64, 64, 5), rgb=True)
    with pytest.raises(AxesError, match="ZCYX"):
        guess_axes((4, 2, 64, 64))
    with pytest.raises(AxesError, match="TZCYX"):
        guess_axes((2, 3, 2, 64, 64))
    with pytest.raises(AxesError, match="two dimensions"):
        guess_axes((64,))


def test_metadata_axes_win_and_are_translated():
    assert guess_axes((3, 64, 64), metadata_axes="CYX") == "CYX"
    assert guess_axes((64, 64, 3), metadata_axes="YXS") == "YXC"  # tifffile samples
    assert guess_axes((7, 64, 64), metadata_axes="IYX") == "SYX"  # image sequence
    assert guess_axes((2, 5, 64, 64), metadata_axes="tzyx") == "TZYX"
    with pytest.raises(AxesError, match="Q"):
        guess_axes((3, 64, 64), metadata_axes="QYX")
    with pytest.raises(AxesError, match="both"):
        guess_axes((2, 64, 64, 3), metadata_axes="CYXS")
    with pytest.raises(AxesError, match="dimension"):
        guess_axes((3, 64, 64), metadata_axes="YX")


def test_check_channels_says_what_to_do():
    check_channels(3, 3)
    with pytest.raises(ChannelMismatchError, match="grayscale") as info:
        check_channels(3, 1, shape=(64, 64, 3), axes="YXC")
    assert "(64, 64, 3)" in str(info.value) and "YXC" in str(info.value)
    with pytest.raises(ChannelMismatchError, match="channel axis"):
        check_channels(1, 3)
    with pytest.raises(ChannelMismatchError, match="expects 2"):
        check_channels(4, 2)


def test_channel_mismatch_names_what_the_user_sees_not_internal_axes():
    """The Segment dock predicts on an internal (S, C, Y, X) stack: the sentence names the
    channel counts, not "SCYX" or the stacked shape."""
    with pytest.raises(ChannelMismatchError) as info:
        check_channels(3, 1, shape=(1, 3, 64, 64), axes="SCYX")
    text = str(info.value)
    assert text.startswith("the model expects 1 channel but the image has 3 channels;")
    assert "SCYX" not in text and "(1, 3, 64, 64)" not in text
