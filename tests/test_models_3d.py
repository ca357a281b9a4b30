"""3-D networks: geometry, margin, pooling rule, learning, checkpoints and the 2-D/3-D refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from napari_unet.core.checkpoint.format import (
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from napari_unet.core.errors import CheckpointError, UserInputError
from napari_unet.core.inference.prediction import predict
from napari_unet.core.models import (
    architecture_spatial_dims,
    build_model,
    list_architectures,
)
from napari_unet.core.models.context25d import (
    context_channels,
    neighbour_indices,
    stack_neighbour_slices,
)
from napari_unet.core.models.pooling import conv_kernel_schedule, pooling_schedule

ISBI_VOXEL = (50.0, 4.0, 4.0)  # nm, serial-section TEM
EMBRYO_VOXEL = (1.75, 0.8, 0.8)  # µm, the embryo nuclei stacks

#: Small configurations of every 3-D variant.
SMALL_3D = {
    "valid": ("unet3d", dict(depth=2, base_channels=2, in_channels=2, out_channels=3)),
    "valid-trilinear": ("unet3d", dict(depth=1, base_channels=2, upsampling="trilinear")),
    "padded": ("unet3d", dict(depth=2, base_channels=2, padding="same")),
    "padded-trilinear": (
        "unet3d",
        dict(depth=2, base_channels=2, padding="same", upsampling="trilinear"),
    ),
    "aniso-isbi": ("unet3d_aniso", dict(depth=3, base_channels=2, voxel_size=ISBI_VOXEL)),
    "aniso-embryo": (
        "unet3d_aniso",
        dict(depth=2, base_channels=2, voxel_size=EMBRYO_VOXEL, upsampling="trilinear"),
    ),
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(key: str) -> nn.Module:
    torch.manual_seed(0)
    name, config = SMALL_3D[key]
    return build_model(name, **config)


def test_registry_has_the_3d_nets_and_knows_their_dims():
    assert {"unet3d", "unet3d_aniso"} <= set(list_architectures())
    assert architecture_spatial_dims("unet3d") == 3
    assert architecture_spatial_dims("unet3d_aniso") == 3
    assert architecture_spatial_dims("unet") == 2
    assert build_model("unet3d", depth=1, base_channels=2).spatial_dims == 3
    assert build_model("unet", depth=3, base_channels=2).size_multiples == (8, 8)


# --- the pooling rule ------------------------------------------------------------------------


def test_pooling_schedule_isbi_pools_yx_until_z_is_within_twice_the_finest():
    # 50/4, 50/8, 50/16 >= 2: Y/X only; at 50 vs 32 nm (< 2x) Z joins.
    assert pooling_schedule(ISBI_VOXEL, 5) == [(1, 2, 2)] * 3 + [(2, 2, 2)] * 2
    assert conv_kernel_schedule(ISBI_VOXEL, 4) == [(1, 3, 3)] * 3 + [(3, 3, 3)] * 2


def test_pooling_schedule_embryo_pools_yx_once_then_isotropically():
    # 1.75 / 0.8 = 2.19 >= 2 -> (1, 2, 2); then 1.75 vs 1.6 -> all axes.
    assert pooling_schedule(EMBRYO_VOXEL, 4) == [(1, 2, 2)] + [(2, 2, 2)] * 3
    assert conv_kernel_schedule(EMBRYO_VOXEL, 2) == [(1, 3, 3), (3, 3, 3), (3, 3, 3)]


def test_pooling_schedule_isotropic_and_fine_z():
    assert pooling_schedule((1, 1, 1), 3) == [(2, 2, 2)] * 3
    assert pooling_schedule((1.9, 1, 1), 2) == [(2, 2, 2)] * 2  # < 2x: still isotropic
    # Z finer than Y/X (e.g. resliced data): pool Z alone until it catches up.
    assert pooling_schedule((20, 50, 50), 2) == [(2, 1, 1), (2, 2, 2)]
    # The rule on the spacing only: same result in nm or µm.
    assert pooling_schedule((0.05, 0.004, 0.004), 4) == pooling_schedule(ISBI_VOXEL, 4)


@pytest.mark.parametrize(
    "voxel", [None, (1.0, 2.0), (0.0, 1.0, 1.0), (-1, 1, 1), (float("nan"), 1, 1), (1000, 1, 1)]
)
def test_missing_or_absurd_voxel_size_is_refused_in_one_sentence(voxel):
    with pytest.raises(UserInputError, match="voxel_size") as info:
        pooling_schedule(voxel, 2)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="voxel_size"):
        build_model("unet3d_aniso", voxel_size=voxel)


def test_aniso_net_uses_the_schedule_and_stores_it_resolved():
    net = build_model("unet3d_aniso", depth=4, base_channels=2, voxel_size=ISBI_VOXEL)
    assert net.config["pool_schedule"] == [[1, 2, 2]] * 3 + [[2, 2, 2]]
    assert net.config["kernel_schedule"] == [[1, 3, 3]] * 3 + [[3, 3, 3]] * 2
    assert net.size_multiples == (2, 16, 16)
    assert [d[0].kernel_size for d in net.downs] == [(1, 2, 2)] * 3 + [(2, 2, 2)]
    assert net.inc[0].kernel_size == (1, 3, 3)
    with pytest.raises(ValueError, match="pool_schedule"):
        build_model("unet3d_aniso", depth=2, pool_schedule=[[2, 2, 2]])


# --- geometry --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(SMALL_3D))
@pytest.mark.parametrize("asked", [(5, 13, 17), (9, 11, 7)])
def test_output_shape_matches_forward_on_odd_sizes(key, asked):
    net = small(key).eval()
    shape = net.valid_input_shape(asked)
    assert len(shape) == 3 and all(s >= a for s, a in zip(shape, asked))
    expected = net.output_shape(shape)
    with torch.no_grad():
        out = net(torch.randn(1, net.in_channels, *shape))
    assert tuple(out.shape) == (1, net.out_channels, *expected)
    assert expected == tuple(s - 2 * net.margin for s in shape)


def test_anisotropic_sides_are_rounded_per_axis_and_z_of_one_works():
    net = small("aniso-isbi").eval()  # depth 3 on the ISBI voxel: pools (1,2,2) x 3
    assert net.size_multiples == (1, 8, 8)
    assert net.valid_input_shape((3, 13, 17)) == (3, 16, 24)
    assert net.output_shape((1, 8, 8)) == (1, 8, 8)
    with torch.no_grad():
        assert net(torch.randn(1, 1, 1, 8, 8)).shape == (1, 2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"the W side divisible by 8; 12 is not .*8 or 16"):
        net.output_shape((3, 16, 12))


def test_padded_output_shape_refuses_sides_not_divisible():
    net = small("padded")
    with pytest.raises(ValueError, match=r"divisible by 4; 6 is not"):
        net.output_shape((8, 6, 8))
    with pytest.raises(UserInputError, match=r"unet3d is a 3-D model: .*\(D, H, W\)"):
        net.output_shape((8, 8))
    with pytest.raises(UserInputError, match=r"unet3d is a 3-D model: .*use a 2-D model"):
        net.valid_input_shape((32, 32))  # what 2-D training asks for its patches
    with pytest.raises(UserInputError, match=r"unet is a 2-D model: .*use a 3-D model"):
        build_model("unet", depth=1, base_channels=2).valid_input_shape((4, 32, 32))


def test_valid_margin_matches_the_paper_and_the_hand_computation():
    # Depth 1: s -> s-4 -> /2 -> -4 -> x2 -> -4: loses 16, margin 8.
    assert build_model("unet3d", depth=1, base_channels=2).margin == 8
    paper = build_model("unet3d", depth=3, base_channels=2)
    assert paper.margin == 44
    assert paper.output_shape((116, 132, 132)) == (28, 44, 44)  # Çiçek et al.'s tile
    with pytest.raises(ValueError, match="nearest valid sizes: 108 or 116"):
        paper.output_shape((110, 132, 132))


def test_valid_margin_is_where_the_output_sits_in_the_input():
    """A crop of the input gives the matching crop of the output (so tiles with margin fit)."""
    net = small("valid").eval()  # depth 2: shifts by multiples of 4 keep the pooling grid
    shape = net.valid_input_shape((20, 20, 20))
    big = tuple(s + 8 for s in shape)
    torch.manual_seed(1)
    volume = torch.randn(1, 2, *big)
    with torch.no_grad():
        full = net(volume)
        crop = net(volume[:, :, 4 : 4 + shape[0], 8 : 8 + shape[1], : shape[2]])
    out = net.output_shape(shape)
    expected = full[:, :, 4 : 4 + out[0], 8 : 8 + out[1], : out[2]]
    assert torch.allclose(crop, expected, atol=1e-5)


# --- parameters, initialisation, gradients ---------------------------------------------------


def test_parameter_count_is_the_papers():
    with torch.device("meta"):
        net = build_model("unet3d", in_channels=3, out_channels=3)
    total = sum(p.numel() for p in net.parameters())
    assert total == 19_073_187
    batch_norm = sum(
        p.numel() for m in net.modules() if isinstance(m, nn.BatchNorm3d) for p in m.parameters()
    )
    conv_biases = sum(
        m.out_channels for m in net.modules() if type(m) is nn.Conv3d and m.bias is None
    )
    up_biases = sum(m.bias.numel() for m in net.modules() if isinstance(m, nn.ConvTranspose3d))
    assert total - batch_norm + conv_biases - up_biases == 19_069_955  # Çiçek et al.'s figure


def test_gaussian_init_has_std_sqrt_2_over_fan_in():
    torch.manual_seed(0)
    net = build_model("unet3d", depth=2, base_channels=16)
    conv = net.downs[1][1][0]  # 3x3x3 conv, 64 -> 64
    fan_in = 64 * 27
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    up = net.ups[0].up  # 2x2x2 stride-2: one tap per input channel
    assert up.weight.std().item() == pytest.approx(math.sqrt(2 / up.in_channels), rel=0.05)


@pytest.mark.parametrize("key", ["valid", "padded", "aniso-embryo"])
def test_gradients_reach_every_parameter(key):
    net = small(key).train()
    shape = net.valid_input_shape((8, 12, 12))
    out = net(torch.randn(2, net.in_channels, *shape))
    out.square().mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    first = next(net.encoder_parameters())
    assert first.grad.abs().sum() > 0
    encoder = {id(p) for p in net.encoder_parameters()}
    assert 0 < len(encoder) < len(list(net.parameters()))
    assert all(id(p) not in encoder for p in net.outc.parameters())


def test_wrong_tensor_rank_is_refused_in_one_sentence():
    net3d = small("padded")
    with pytest.raises(UserInputError, match=r"unet3d is a 3-D model: .*a 2-D image batch"):
        net3d(torch.zeros(1, 1, 8, 8))
    net2d = build_model("unet", depth=1, base_channels=2)
    with pytest.raises(UserInputError, match=r"unet is a 2-D model: .*a volume batch"):
        net2d(torch.zeros(1, 1, 4, 8, 8))
    with pytest.raises(ValueError, match="batch, channels, depth, height, width"):
        net3d(torch.zeros(8, 8, 8))


# --- learning --------------------------------------------------------------------------------


def blob_volume(seed: int = 0, shape=(12, 16, 16)) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 1, D, H, W) noisy image of three ellipsoid blobs and their (1, D, H, W) mask."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    mask = np.zeros(shape, bool)
    for _ in range(3):
        cz, cy, cx = (rng.uniform(2, s - 2) for s in shape)
        mask |= ((z - cz) / 3) ** 2 + ((y - cy) / 4) ** 2 + ((x - cx) / 4) ** 2 <= 1
    image = mask + rng.normal(0, 0.3, shape)
    return (
        torch.from_numpy(image[None, None].astype(np.float32)),
        torch.from_numpy(mask[None].astype(np.int64)),
    )


@pytest.mark.parametrize("key", ["padded", "aniso-embryo"])
def test_tiny_3d_net_overfits_a_blob_volume(key):
    net = small(key).train()
    image, mask = blob_volume()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(image), mask)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    net.eval()
    with torch.no_grad():
        accuracy = (net(image).argmax(1) == mask).float().mean().item()
    assert accuracy > 0.95


# --- checkpoints and refusals ----------------------------------------------------------------


@pytest.mark.parametrize("key", ["valid", "aniso-isbi"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, key):
    net = small(key)
    net.train()
    net(torch.randn(2, net.in_channels, *net.valid_input_shape((6, 10, 10))))  # move BN stats
    net.eval()
    task = "semantic" if net.out_channels > 2 else "binary"
    if task == "binary":
        name, config = SMALL_3D[key]
        net = build_model(name, **{**config, "out_channels": 1}).eval()
    path = save_checkpoint(tmp_path / "net3d.pt", net, task=task)
    loaded = load_checkpoint(path)
    assert loaded.model.arch == net.arch and loaded.model.config == net.config
    assert loaded.info.spatial_dims == 3 and read_checkpoint_info(path).spatial_dims == 3
    volume = torch.randn(1, net.in_channels, *net.valid_input_shape((7, 9, 11)))
    with torch.no_grad():
        assert torch.equal(loaded.model(volume), net(volume))


def test_3d_checkpoint_refused_by_the_2d_path_and_the_reverse(tmp_path):
    net3d = build_model("unet3d", depth=1, base_channels=2, out_channels=1)
    path3d = save_checkpoint(tmp_path / "v.pt", net3d, task="binary")
    with pytest.raises(CheckpointError, match=r"is a 3-D model \(unet3d\): .*2-D models only"):
        load_checkpoint(path3d, spatial_dims=2)
    net2d = build_model("unet", depth=1, base_channels=2, out_channels=1)
    path2d = save_checkpoint(tmp_path / "i.pt", net2d, task="binary")
    with pytest.raises(CheckpointError, match=r"is a 2-D model \(unet\): .*3-D models only"):
        load_checkpoint(path2d, spatial_dims=3)
    assert load_checkpoint(path2d, spatial_dims=2).info.spatial_dims == 2


def test_predict_refuses_a_2d_image_for_a_3d_model_clearly_and_leaves_the_image_alone():
    net = build_model("unet3d", depth=1, base_channels=2, padding="same").eval()
    image = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    before = image.copy()
    with pytest.raises(UserInputError, match=r"^unet3d is a 3-D model and needs a volume") as info:
        predict(net, image, "YX", task="semantic")
    assert "\n" not in str(info.value)
    assert np.array_equal(image, before)


# --- 2.5-D: neighbouring slices as channels of a 2-D net -------------------------------------


def test_neighbour_indices_mirror_at_the_ends():
    assert neighbour_indices(5, 1).tolist() == [
        [1, 0, 1],
        [0, 1, 2],
        [1, 2, 3],
        [2, 3, 4],
        [3, 4, 3],
    ]
    assert neighbour_indices(3, 2)[0].tolist() == [2, 1, 0, 1, 2]
    assert neighbour_indices(1, 2).tolist() == [[0] * 5]  # a Z axis of 1: the slice repeated
    assert neighbour_indices(4, 0).tolist() == [[0], [1], [2], [3]]


def test_stack_neighbour_slices_layout_numpy_and_torch():
    volume = np.arange(2 * 4 * 3 * 3).reshape(2, 4, 3, 3).astype(np.uint16)  # (C, Z, Y, X)
    before = volume.copy()
    stacked = stack_neighbour_slices(volume, 1)
    assert stacked.shape == (4, 6, 3, 3) and stacked.dtype == np.uint16
    # slice 2: channels (z-1, c0), (z-1, c1), (z, c0), (z, c1), (z+1, c0), (z+1, c1)
    for j, z in enumerate((1, 2, 3)):
        for c in range(2):
            assert np.array_equal(stacked[2, j * 2 + c], volume[c, z])
    assert np.array_equal(stacked[0, 0], volume[0, 1])  # mirrored above the first slice
    assert np.array_equal(volume, before)
    tensor = stack_neighbour_slices(torch.from_numpy(volume.astype(np.float32)), 1)
    assert torch.equal(tensor, torch.from_numpy(stacked.astype(np.float32)))
    assert np.array_equal(stack_neighbour_slices(volume, 0), volume.transpose(1, 0, 2, 3))


@pytest.mark.parametrize(
    ("volume", "radius", "match"),
    [
        (np.zeros((4, 8, 8)), 1, r"\(C, Z, Y, X\) volume"),
        (np.zeros((1, 4, 8, 8)), -1, "radius"),
        (np.zeros((1, 4, 8, 8)), 2.0, "radius"),
        (np.zeros((1, 0, 8, 8)), 1, "no slices"),
    ],
)
def test_stack_neighbour_slices_refuses_bad_input(volume, radius, match):
    with pytest.raises(UserInputError, match=match):
        stack_neighbour_slices(volume, radius)


def test_25d_net_uses_the_neighbouring_slice_a_2d_net_cannot():
    """Target of slice z = the squares of slice z + 1: learnable with context, not without."""
    rng = np.random.default_rng(0)
    volume = np.zeros((1, 10, 16, 16), np.float32)
    for z in range(10):
        for _ in range(3):
            y, x = rng.integers(0, 12, 2)
            volume[0, z, y : y + 5, x : x + 5] = 1.0
    target = torch.from_numpy(volume[0, neighbour_indices(10, 1)[:, 2]].astype(np.int64))
    accuracy = {}
    for radius in (0, 1):
        torch.manual_seed(0)
        net = build_model("unet", depth=1, base_channels=4, in_channels=context_channels(1, radius))
        batch = torch.from_numpy(stack_neighbour_slices(volume, radius))
        optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
        for _ in range(40):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(batch), target).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            accuracy[radius] = (net(batch).argmax(1) == target).float().mean().item()
    assert accuracy[1] > 0.97
    assert accuracy[0] < accuracy[1] - 0.1
