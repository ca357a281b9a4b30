"""2.5-D models that start as 2-D models: the neighbour slices' input weights at zero (issue 20)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core.errors import UserInputError
from napari_unet.core.models import build_model
from napari_unet.core.models.context25d import (
    context_channels,
    first_conv,
    stack_neighbour_slices,
    start_from_2d,
    zero_context_weights,
)


def _nets(radius: int, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    net2d = build_model("unet", depth=2, base_channels=4)
    torch.manual_seed(seed + 1)
    net25d = build_model("unet", depth=2, base_channels=4, in_channels=context_channels(1, radius))
    return net2d.eval(), net25d.eval()


def _volume(seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(1, 5, 32, 32))).float()


@pytest.mark.parametrize("radius", [1, 2])
def test_a_25d_model_started_from_2d_weights_predicts_as_the_2d_model_at_step_0(radius):
    net2d, net25d = _nets(radius)
    volume = _volume()
    with torch.inference_mode():
        before = net25d(stack_neighbour_slices(volume, radius))
        start_from_2d(net25d, net2d, radius)
        wide = net25d(stack_neighbour_slices(volume, radius))
        flat = net2d(volume[0][:, None])  # (Z, 1, Y, X): each slice alone
    assert not torch.allclose(before, flat, atol=1e-3)  # different weights before the copy
    torch.testing.assert_close(wide, flat, atol=1e-5, rtol=1e-5)


def test_zeroed_context_weights_make_the_output_blind_to_the_neighbours_only():
    _, net = _nets(1)
    centre = first_conv(net, 3).weight[:, 1].clone()
    zero_context_weights(net, 1)
    weight = first_conv(net, 3).weight
    assert torch.count_nonzero(weight[:, [0, 2]]) == 0
    torch.testing.assert_close(weight[:, 1], centre)  # the centre slice's weights are kept
    stack = stack_neighbour_slices(_volume(), 1)
    other = stack.clone()
    other[:, [0, 2]] = torch.randn_like(other[:, [0, 2]])  # other neighbours, same centre
    with torch.inference_mode():
        torch.testing.assert_close(net(stack), net(other))


def test_zeroed_context_weights_still_learn_from_the_neighbours():
    _, net = _nets(1)
    zero_context_weights(net, 1)
    net.train()
    net(stack_neighbour_slices(_volume(), 1)).square().mean().backward()
    assert torch.count_nonzero(first_conv(net, 3).weight.grad[:, [0, 2]]) > 0


def test_a_net_that_does_not_read_that_many_channels_is_refused_in_one_sentence():
    net2d, _ = _nets(1)
    with pytest.raises(UserInputError, match=r"cannot start as a 2\.5-D model"):
        zero_context_weights(net2d, 1)


def test_flat_copies_give_each_annotated_slice_again_as_its_own_neighbours():
    from napari_unet.core.training.context import context_items

    volume = np.random.default_rng(0).normal(size=(1, 4, 8, 8)).astype(np.float32)
    labels = np.zeros((4, 8, 8), np.uint8)
    mask = np.zeros((4, 8, 8), bool)
    mask[2] = True
    items = context_items(volume, labels, mask, 1, flat_copies=True, name="v")
    assert [item.name for item in items] == ["v[2]", "v[2]/flat"]
    context, flat = items[0].image, items[1].image
    assert not np.allclose(context[0], context[1])
    for channel in range(3):
        np.testing.assert_allclose(flat[channel], context[1])  # the centre slice, thrice
