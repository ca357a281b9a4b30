"""Training precision on the CPU: bf16 autocast only where a timed pass says it is faster
(``core.training.precision``); explicit settings win and the probe leaves the run untouched."""

from __future__ import annotations

import types

import pytest
import torch

from napari_unet.core.models import build_model
from napari_unet.core.training import precision
from napari_unet.core.training.config import TrainConfig
from napari_unet.core.training.step import StepRunner


def _model():
    torch.manual_seed(0)
    return build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=3)


def _runner(model, **config) -> StepRunner:
    sampler = types.SimpleNamespace(input_shape=(48, 48))
    return StepRunner(model, None, None, TrainConfig(**config), torch.device("cpu"), None, sampler)


def test_the_probe_times_a_copy_and_leaves_weights_statistics_and_randomness_alone(caplog):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    caplog.set_level("INFO")
    precision._MEASURED.clear()
    answer = precision.bf16_trains_faster(model, (48, 48))
    assert isinstance(answer, bool)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "BN stats too"
    assert torch.equal(state, torch.get_rng_state())
    assert all(p.grad is None for p in model.parameters())
    assert "training pass on this CPU: bf16" in caplog.text
    caplog.clear()
    assert precision.bf16_trains_faster(_model(), (48, 48)) is answer, "kept for the process"
    assert "training pass" not in caplog.text, "measured once per net, shape and threads"


@pytest.mark.parametrize("faster", [True, False])
def test_auto_precision_follows_the_probe_on_a_bf16_cpu(monkeypatch, faster):
    asked = []
    monkeypatch.setattr(precision.device, "cpu_supports_bf16", lambda: True)

    def probe(model, shape, layout):
        asked.append((shape, layout))
        return faster

    monkeypatch.setattr(precision, "bf16_trains_faster", probe)
    runner = _runner(_model())
    assert asked == [((48, 48), torch.channels_last)], "timed as the batches will be"
    assert runner.autocast_dtype == (torch.bfloat16 if faster else None)


def test_explicit_precision_and_cpus_without_bf16_skip_the_probe(monkeypatch):
    def refuse(*_):
        raise AssertionError("no probe")

    monkeypatch.setattr(precision, "bf16_trains_faster", refuse)
    monkeypatch.setattr(precision.device, "cpu_supports_bf16", lambda: True)
    assert _runner(_model(), bf16_cpu=True).autocast_dtype == torch.bfloat16
    assert _runner(_model(), bf16_cpu=False).autocast_dtype is None
    monkeypatch.setattr(precision.device, "cpu_supports_bf16", lambda: False)
    assert _runner(_model()).autocast_dtype is None


def test_the_probe_times_a_patch_whose_deepest_features_are_one_pixel():
    """A 16-px patch through a depth-4 net is 1 x 1 at the bottom: batch norm in training mode
    refuses one value per channel, so the probe (one patch) runs the net in eval mode."""
    torch.manual_seed(0)
    model = build_model("unet", depth=4, base_channels=4, in_channels=1, out_channels=3)
    precision._MEASURED.clear()
    assert isinstance(precision.bf16_trains_faster(model, (16, 16)), bool)
    assert model.training, "the model itself is left in training mode"
