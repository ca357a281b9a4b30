"""Issue 17: a new model's width is chosen for the time budget on this CPU. Where the default
base-32 net would make fewer than MIN_STEPS steps in ``--minutes``, ``train`` builds a base-16 net
and says so; step budgets, checkpoints and fast CPUs keep the default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.io import imsave

import napari_unet.core.training.net_width as net_width
from napari_unet.cli import main
from napari_unet.core.checkpoint.format import load_checkpoint
from napari_unet.core.models import build_model
from napari_unet.core.training import precision
from napari_unet.core.training.net_width import MIN_STEPS, choose_width, seconds_per_step


def _net(base: int = 32) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("unet", depth=2, base_channels=base, in_channels=1, out_channels=3)


@pytest.mark.parametrize(
    ("step_s", "base", "expected_base"),
    [(2.0, 32, 16), (0.5, 32, 32), (2.0, 16, 16)],  # 60 steps in 2 min: narrow; 240: keep
)
def test_the_width_follows_the_steps_the_budget_buys(monkeypatch, step_s, base, expected_base):
    monkeypatch.setattr(net_width, "seconds_per_step", lambda *a: step_s)
    choice = choose_width(_net(base), (64, 64), batch=4, budget_s=120)
    assert choice.expected_steps == int(120 / step_s)
    assert choice.base_channels == expected_base
    assert choice.narrowed == (expected_base != base)
    if choice.narrowed:
        assert choice.line() == (
            f"net base 16: base 32 would make about 60 steps in 2 min on this CPU "
            f"(fewer than {MIN_STEPS})"
        )


def test_the_timing_leaves_the_model_and_the_random_streams_alone():
    model = _net()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    seconds = seconds_per_step(model, (32, 32), batch=2)
    assert seconds > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "BN stats too"
    assert torch.equal(state, torch.get_rng_state()) and model.training
    assert all(p.grad is None for p in model.parameters())


class _Recorder(torch.nn.Module):
    """A one-conv net that records, per pass, whether bf16 autocast was on and the input layout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        autocast = torch.is_autocast_enabled("cpu")
        self.seen.append((autocast, x.is_contiguous(memory_format=torch.channels_last)))
        return self.conv(x)


@pytest.mark.parametrize("bf16_faster", [True, False])
def test_the_pass_is_timed_in_the_precision_and_layout_the_run_trains_in(monkeypatch, bf16_faster):
    """On a CPU whose bf16 pass is faster the run trains under bf16 autocast
    (``core.training.step``): an fp32 timing there promised half the steps (AMD EPYC: 127
    against 287-328 made in 10 minutes)."""
    asked = []
    monkeypatch.setattr(precision.device, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(
        precision, "bf16_trains_faster", lambda *a, **k: asked.append(a) or bf16_faster
    )
    monkeypatch.setattr(net_width.copy, "deepcopy", lambda m: m)  # the passes the copy makes
    model = _Recorder()
    seconds_per_step(model, (16, 16), batch=2)
    assert len(asked) == 1, "asked once, as the run's StepRunner asks (cached there)"
    assert model.seen == [(bf16_faster, True)] * (1 + net_width.TIMED_PASSES)


def test_a_cpu_without_native_bf16_is_timed_in_fp32(monkeypatch):
    monkeypatch.setattr(precision.device, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(precision, "bf16_trains_faster", lambda *a, **k: pytest.fail("timed"))
    monkeypatch.setattr(net_width.copy, "deepcopy", lambda m: m)
    model = _Recorder()
    seconds_per_step(model, (16, 16), batch=2)
    assert {autocast for autocast, _ in model.seen} == {False}


def _write(folder) -> None:
    yy, xx = np.mgrid[:64, :64]
    for kind in ("images", "labels"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for i in range(2):
        labels = np.zeros((64, 64), np.uint8)
        labels[(yy - 16) ** 2 + (xx - 16 - i) ** 2 <= 49] = 1
        labels[(yy - 44) ** 2 + (xx - 40) ** 2 <= 64] = 2
        image = ((labels > 0) * 2000 + 500).astype(np.uint16)
        imsave(folder / "images" / f"i{i}.png", image, check_contrast=False)
        imsave(folder / "labels" / f"i{i}.png", labels, check_contrast=False)


def _train(folder, out, *budget: str) -> list[str]:
    return ["train", "--images", str(folder / "images"), "--labels", str(folder / "labels"),
            "--task", "instances", "--model", "unet", "--device", "cpu", "--val-fraction", "0",
            "--out", str(out), *budget]  # fmt: skip


def _base(path) -> int:
    return int(load_checkpoint(path).info.model_config["base_channels"])


def test_train_builds_the_narrow_net_when_the_cpu_is_slow_for_the_budget(
    tmp_path, monkeypatch, caplog
):
    _write(tmp_path)
    caplog.set_level("INFO")
    monkeypatch.setattr(net_width, "seconds_per_step", lambda *a: 60.0)  # a very slow CPU
    slow = tmp_path / "slow.pt"
    assert main(_train(tmp_path, slow, "--minutes", "0.05")) == 0
    assert _base(slow) == 16
    assert "net base 16: base 32 would make about 0 steps in 0.05 min" in caplog.text
    caplog.clear()
    steps = tmp_path / "steps.pt"  # a step budget: the steps are given, the net is the default
    assert main(_train(tmp_path, steps, "--steps", "2")) == 0
    assert _base(steps) == 32 and "net base" not in caplog.text
    tuned = tmp_path / "tuned.pt"  # a checkpoint keeps its net
    assert main([*_train(tmp_path, tuned, "--minutes", "0.05"), "--model", str(slow)]) == 0
    assert _base(tuned) == 16


def test_train_keeps_the_default_net_on_a_fast_cpu(tmp_path, monkeypatch, caplog):
    _write(tmp_path)
    caplog.set_level("INFO")
    monkeypatch.setattr(net_width, "seconds_per_step", lambda *a: 1e-3)
    fast = tmp_path / "fast.pt"
    assert main(_train(tmp_path, fast, "--minutes", "0.05")) == 0
    assert _base(fast) == 32 and "net base 16" not in caplog.text


def test_the_users_width_overrides_the_rule(tmp_path, monkeypatch, caplog, capsys):
    """``--base-channels N`` builds a new model N wide whatever the budget buys (and, without
    ``--model``, a new model rather than the built-in start); a checkpoint refuses it."""
    _write(tmp_path)
    caplog.set_level("INFO")
    monkeypatch.setattr(net_width, "seconds_per_step", lambda *a: 60.0)  # the rule would narrow
    wide = tmp_path / "wide.pt"
    assert main([*_train(tmp_path, wide, "--minutes", "0.05"), "--base-channels", "32"]) == 0
    assert _base(wide) == 32 and "net base 16" not in caplog.text
    args = _train(tmp_path, tmp_path / "w8.pt", "--steps", "2")
    no_model = [a for i, a in enumerate(args) if "--model" not in args[i - 1 : i + 1]]
    assert main([*no_model, "--base-channels", "8"]) == 0
    assert _base(tmp_path / "w8.pt") == 8
    refused = tmp_path / "refused.pt"
    status = main(
        [*_train(tmp_path, refused, "--steps", "2"), "--model", str(wide), "--base-channels", "8"]
    )
    assert status != 0 and not refused.exists()
    assert "--base-channels sets the width of a new model" in capsys.readouterr().err


def test_a_gpu_run_keeps_the_default_net_and_the_timing_uses_the_runs_threads(monkeypatch):
    """The timing is a CPU's: a CUDA run keeps base 32; a CPU run times with ``--threads``."""
    import argparse
    import types

    import napari_unet.cli.train_width as train_width
    import napari_unet.core.device as device

    seen = []
    monkeypatch.setattr(
        net_width, "seconds_per_step", lambda *a: seen.append(torch.get_num_threads()) or 60.0
    )
    model = build_model("unet", depth=2, base_channels=32, in_channels=1, out_channels=3)
    args = argparse.Namespace(minutes=1.0, resume=None, nproc=1, device="cuda", threads=1,
                              model="unet", ignore_value=None, seed=0)  # fmt: skip
    data = types.SimpleNamespace(patch_shape=(32, 32), batch_size=2, downscale=1)
    targets = types.SimpleNamespace(label_map=None)
    monkeypatch.setattr(device, "get_device", lambda name: torch.device(name))
    assert train_width.apply(args, None, model, [], "instances", targets, data) is model
    assert seen == []
    threads = torch.get_num_threads()
    args.device = "cpu"
    labels = np.zeros((32, 32), np.int32)
    labels[4:12, 4:12] = 1
    item = types.SimpleNamespace(image=np.zeros((1, 32, 32), np.float32), labels=labels)
    narrow = train_width.apply(args, None, model, [item], "instances", targets, data)
    assert seen == [1] and torch.get_num_threads() == threads
    assert narrow.config["base_channels"] == 16 and narrow.config["depth"] == 2


def test_pre_training_leaves_the_segmentation_the_rest_of_the_budget(monkeypatch):
    """``--pretrain-fraction 0.25`` of 2 minutes: the width is chosen for the 90 s left."""
    import argparse
    import types

    import napari_unet.cli.train_width as train_width

    budgets = []

    def choose(model, shape, *, batch, budget_s):
        budgets.append(budget_s)
        return net_width.WidthChoice(32, 32, 1000, budget_s)

    monkeypatch.setattr(net_width, "choose_width", choose)
    model = build_model("unet", depth=2, base_channels=32, in_channels=1, out_channels=3)
    args = argparse.Namespace(minutes=2.0, resume=None, nproc=1, device="cpu", threads=None,
                              pretrain_fraction=0.25)  # fmt: skip
    data = types.SimpleNamespace(patch_shape=(32, 32), batch_size=2, downscale=1)
    assert train_width.apply(args, None, model, [], "instances", None, data) is model
    assert budgets == [90.0]
