"""The model zoo: registry, shape contracts, geometry, parameter counts, weight loading, pruning."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from napari_unet.core.errors import ChannelMismatchError, CheckpointError
from napari_unet.core.models import SegmentationNet, build_model, list_architectures
from napari_unet.core.models.ternaus import load_vgg_weights
from napari_unet.core.models.unet_original import traced_output_size

#: Small configurations covering every architecture and the main options.
SMALL = {
    "unet": dict(in_channels=2, out_channels=3, depth=2, base_channels=4),
    "unet-bilinear-add": dict(depth=3, base_channels=4, upsampling="bilinear", skip="add"),
    "unet-bilinear": dict(depth=2, base_channels=4, upsampling="bilinear", batch_norm=False),
    "unet-add": dict(depth=2, base_channels=4, skip="add"),
    "unet_original": dict(depth=2, base_channels=4),
    "unet11": dict(in_channels=1, out_channels=2, num_filters=4),
    "unet16": dict(num_filters=4, upsampling="bilinear"),
    "unetpp": dict(depth=2, base_channels=4, deep_supervision=True),
}


def small_model(key: str) -> SegmentationNet:
    torch.manual_seed(0)
    return build_model(key.split("-")[0], **SMALL[key])


def test_registry_lists_all_architectures():
    assert set(list_architectures()) >= {"unet", "unet_original", "unet11", "unet16", "unetpp"}


def test_unknown_architecture_lists_the_known_names():
    with pytest.raises(ValueError, match=r"unknown architecture 'resnet'.*unet_original"):
        build_model("resnet")


@pytest.mark.parametrize(
    ("name", "config", "bad_key"),
    [
        ("unet", {"dept": 3}, "dept"),
        ("unet", {"depth": 6}, "depth"),
        ("unet", {"upsampling": "nearest"}, "upsampling"),
        ("unet", {"skip": "sum"}, "skip"),
        ("unet_original", {"base_channels": "64"}, "base_channels"),
        ("unet11", {"encoder_weights": 3}, "encoder_weights"),
        ("unetpp", {"inference_depth": 2}, "inference_depth"),  # needs deep supervision
    ],
)
def test_bad_config_names_the_key(name, config, bad_key):
    with pytest.raises(ValueError, match=bad_key):
        build_model(name, **config)


@pytest.mark.parametrize("key", sorted(SMALL))
def test_forward_backward_shape_contract(key):
    model = small_model(key)
    shape = model.valid_input_shape((60, 70))
    assert shape[0] >= 60 and shape[1] >= 70
    image = torch.randn(2, model.in_channels, *shape, requires_grad=True)
    logits = model(image)
    out_shape = model.output_shape(shape)
    assert tuple(logits.shape) == (2, model.out_channels, *out_shape)
    assert out_shape == (shape[0] - 2 * model.margin, shape[1] - 2 * model.margin)
    assert logits.dtype == torch.float32
    heads = model.forward_heads(image) if hasattr(model, "forward_heads") else [logits]
    sum(h.square().mean() for h in heads).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("key", sorted(SMALL))
def test_forward_returns_raw_logits(key):
    model = small_model(key).eval()
    image = torch.randn(1, model.in_channels, *model.valid_input_shape((32, 32)))
    output_convs = [
        m
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
        and m.kernel_size == (1, 1)
        and m.out_channels == model.out_channels
    ]
    with torch.no_grad():
        before = model(image)
        for conv in output_convs:
            conv.bias += 10.0  # no activation after the last 1x1 conv: logits move by exactly 10
        torch.testing.assert_close(model(image), before + 10.0)


@pytest.mark.parametrize("key", sorted(SMALL))
def test_config_rebuilds_identical_architecture(key):
    model = small_model(key).eval()
    config = json.loads(json.dumps(model.config))
    rebuilt = build_model(model.arch, **config).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    image = torch.randn(1, model.in_channels, *model.valid_input_shape((32, 32)))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(image), model(image))


@pytest.mark.parametrize("key", sorted(SMALL))
def test_channels_last_matches_contiguous(key):
    model = small_model(key).eval()
    image = torch.randn(1, model.in_channels, *model.valid_input_shape((32, 40)))
    with torch.no_grad():
        expected = model(image)
        model = model.to(memory_format=torch.channels_last)
        logits = model(image.to(memory_format=torch.channels_last))
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("key", sorted(SMALL))
def test_encoder_parameters_strict_subset(key):
    model = small_model(key)
    encoder = {id(p) for p in model.encoder_parameters()}
    everything = {id(p) for p in model.parameters()}
    assert encoder and encoder < everything


def test_wrong_channel_count_is_a_channel_mismatch():
    model = small_model("unet")
    with pytest.raises(ChannelMismatchError, match="2 input channel"):
        model(torch.zeros(1, 3, 16, 16))


def test_padded_unet_odd_sizes():
    model = build_model("unet", depth=3, base_channels=4)
    assert model.size_multiple == 8
    assert model.valid_input_shape((37, 45)) == (40, 48)
    assert model.valid_input_shape((3, 64)) == (8, 64)
    with pytest.raises(ValueError, match=r"divisible by 8.*32 or 40"):
        model.output_shape((37, 40))
    # forward itself tolerates odd sides (the upsampled maps are padded to the skip maps)
    logits = model(torch.randn(1, 1, 37, 45))
    assert logits.shape == (1, 2, 37, 45)


@pytest.mark.parametrize(("base_channels", "expected"), [(64, 31.0e6), (32, 7.76e6), (16, 1.94e6)])
def test_parameter_counts_match_the_seeds(base_channels, expected):
    with torch.device("meta"):
        model = build_model(
            "unet", in_channels=3, out_channels=2, depth=4, base_channels=base_channels
        )
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - expected) / expected < 0.01
    if base_channels == 64:
        assert count == 31_037_698  # milesial's UNet(n_channels=3, n_classes=2, bilinear=False)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_unet_original_geometry(depth):
    model = build_model("unet_original", depth=depth, base_channels=2).eval()
    assert model.margin == 6 * 2**depth - 4  # 92 at depth 4
    smallest = model.valid_input_shape((1, 1))[0]
    step = 2**depth
    assert model.valid_input_shape((smallest + 1, smallest)) == (smallest + step, smallest)
    for size in (smallest, smallest + step):
        assert model.output_shape((size, size)) == (size - 2 * model.margin,) * 2
        with torch.no_grad():
            logits = model(torch.randn(1, 1, size, size + step))
        assert logits.shape == (1, 2, size - 2 * model.margin, size + step - 2 * model.margin)
    with pytest.raises(ValueError, match="nearest valid sizes"):
        model.output_shape((smallest + 1, smallest))
    with pytest.raises(ValueError, match=f"nearest valid sizes: {smallest}$"):
        model.output_shape((smallest - 1, smallest))


def test_unet_original_paper_tile():
    model = build_model("unet_original", base_channels=2).eval()
    assert model.output_shape((572, 572)) == (388, 388)
    assert traced_output_size(572, 4) == 388 and traced_output_size(570, 4) is None
    with torch.no_grad():
        assert model(torch.randn(1, 1, 572, 572)).shape[-2:] == (388, 388)


def test_unet_original_he_initialisation():
    torch.manual_seed(0)
    model = build_model("unet_original", depth=2, base_channels=32)
    conv = model.downs[1][1][2]  # second 3x3 conv of the bottom block, 128 -> 128 channels
    assert math.isclose(conv.weight.std().item(), math.sqrt(2 / (9 * 128)), rel_tol=0.05)
    assert conv.bias.abs().max() == 0
    upconv = model.ups[0].up  # 2x2 stride 2: each output pixel sees one tap per input channel
    assert math.isclose(upconv.weight.std().item(), math.sqrt(2 / 128), rel_tol=0.05)


VGG_CONVS = {
    "unet11": {0: (3, 64), 3: (64, 128), 6: (128, 256), 8: (256, 256), 11: (256, 512),
               13: (512, 512), 16: (512, 512), 18: (512, 512)},
    "unet16": {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256),
               12: (256, 256), 14: (256, 256), 17: (256, 512), 19: (512, 512), 21: (512, 512),
               24: (512, 512), 26: (512, 512), 28: (512, 512)},
}  # fmt: skip


def fake_vgg_state_dict(name: str, dtype: torch.dtype = torch.float32) -> dict:
    """A torchvision-layout VGG state_dict (features + a classifier that must be ignored)."""
    generator = torch.Generator().manual_seed(1)
    state = {}
    for index, (cin, cout) in VGG_CONVS[name].items():
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=generator)
        state[f"features.{index}.bias"] = torch.randn(cout, generator=generator)
    state["classifier.0.weight"] = torch.zeros(4, 8)
    return {k: v.to(dtype) for k, v in state.items()}


@pytest.mark.parametrize(("name", "dtype"), [("unet11", torch.float32), ("unet16", torch.float16)])
def test_ternaus_loads_torchvision_vgg_weights(tmp_path, name, dtype):
    state = fake_vgg_state_dict(name, dtype)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    model = build_model(name, num_filters=4, encoder_weights=str(path))
    assert model.config["encoder_weights"] is None  # the weights now live in the state_dict
    loaded = model.encoder.features.state_dict()
    for index in VGG_CONVS[name]:
        for part in ("weight", "bias"):
            torch.testing.assert_close(
                loaded[f"{index}.{part}"], state[f"features.{index}.{part}"].float()
            )
    gray = build_model(name, in_channels=1, num_filters=4)
    load_vgg_weights(gray, path)
    first = gray.encoder.features[0].weight
    assert first.shape == (64, 1, 3, 3)
    torch.testing.assert_close(first, state["features.0.weight"].float().sum(1, keepdim=True))


def test_ternaus_wrong_weight_files_raise_checkpoint_error(tmp_path):
    model = build_model("unet11", num_filters=4)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_vgg_weights(model, tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_vgg_weights(model, garbage)
    vgg16 = tmp_path / "vgg16.pth"
    torch.save(fake_vgg_state_dict("unet16", torch.float16), vgg16)
    with pytest.raises(CheckpointError, match="VGG11"):
        build_model("unet11", num_filters=4, encoder_weights=str(vgg16))
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match=r"features\.N\.weight"):
        load_vgg_weights(model, foreign)


def test_ternaus_needs_multiples_of_32():
    model = build_model("unet16", num_filters=4)
    assert model.valid_input_shape((33, 64)) == (64, 64)
    with pytest.raises(ValueError, match="divisible by 32"):
        model.output_shape((48, 64))


def test_unetpp_heads_and_pruning():
    torch.manual_seed(0)
    model = build_model("unetpp", depth=3, base_channels=4, deep_supervision=True).eval()
    image = torch.randn(1, 1, 32, 40)
    with torch.no_grad():
        heads = model.forward_heads(image)
    assert len(heads) == 3 and all(h.shape == (1, 2, 32, 40) for h in heads)
    calls = []
    for node in model.nodes.values():
        node.register_forward_hook(lambda *_: calls.append(1))
    for depth, expected_nodes in ((1, 3), (2, 6), (3, 10)):
        model.inference_depth = depth
        calls.clear()
        with torch.no_grad():
            logits = model(image)
        assert len(calls) == expected_nodes  # only nodes X^{i,j} with i + j <= depth
        torch.testing.assert_close(logits, heads[depth - 1])
        assert model.config["inference_depth"] == depth
    assert len(build_model("unetpp", depth=2, base_channels=4).forward_heads(image)) == 1
    with pytest.raises(ValueError, match="inference_depth"):
        model.inference_depth = 4


@pytest.mark.parametrize("name", ["unet", "unetpp", "unet_original"])
def test_batchnorm_folding_keeps_outputs_and_leaves_the_model_alone(name):
    from napari_unet.core.models.fuse import fuse_for_inference, has_batch_norm

    torch.manual_seed(0)
    model = build_model(name, depth=2, base_channels=4, batch_norm=True)
    with torch.no_grad():  # non-trivial running statistics
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    model.train()
    fused = fuse_for_inference(model)
    assert not has_batch_norm(fused) and has_batch_norm(model) and model.training
    image = torch.rand(2, 1, *model.valid_input_shape((40, 40)))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(image), model(image), atol=1e-5, rtol=1e-4)
