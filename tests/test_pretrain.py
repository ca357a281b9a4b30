"""Self-supervised pre-training (issue 17): the pretext task learns, its weights reach the
segmentation training, bad inputs get one sentence, and the budget holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import napari_unet.core.training.loop as core_loop
import napari_unet.core.training.pretrain as core_pretrain
from napari_unet.cli import main
from napari_unet.core.errors import ChannelMismatchError, UserInputError
from napari_unet.core.models import build_model
from napari_unet.core.synthetic import synthetic_nuclei
from napari_unet.core.training.pretrain import (
    HEAD,
    PretrainConfig,
    iter_pretrain,
    pretext_net,
    pretrain,
    transfer_weights,
)


def _image(seed: int = 0, side: int = 64) -> np.ndarray:
    """(1, side, side) float32 in [0, 1]: synthetic nuclei."""
    image, _ = synthetic_nuclei((side, side), n_nuclei=6, seed=seed)
    return (image / max(float(image.max()), 1e-6)).astype(np.float32)[None]


def _net(in_channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("unet", depth=2, base_channels=8, in_channels=in_channels, out_channels=3)


def _config(**kwargs) -> PretrainConfig:
    return PretrainConfig(**{"patch": 32, "batch_size": 2, "bf16_cpu": False, **kwargs})


def _body(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.split(".")[0] != HEAD}


def test_pretext_loss_falls_in_a_few_steps() -> None:
    events = []
    result = pretrain(_net(), [_image(0), _image(1)], _config(steps=30), on_event=events.append)
    assert result.steps == len(events) == 30 and result.reason == "steps"
    first, last = np.mean([e.loss for e in events[:3]]), np.mean([e.loss for e in events[-3:]])
    assert last < 0.5 * first, (first, last)


def test_weights_transfer_all_but_the_head() -> None:
    model = _net()
    pretext = pretext_net(model, seed=0)
    head = getattr(model, HEAD).weight.clone()
    with torch.no_grad():
        for tensor in pretext.parameters():
            tensor.add_(1.0)  # as if trained
    copied = transfer_weights(pretext, model)
    assert copied and all(name.split(".")[0] != HEAD for name in copied)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in _body(pretext).items())
    assert torch.equal(getattr(model, HEAD).weight, head)  # the segmentation head is kept
    assert getattr(pretext, HEAD).out_channels == 1  # the temporary head outputs the image


def test_same_seed_same_weights_and_stop_cancels() -> None:
    first, second = _net(), _net()
    pretrain(first, [_image()], _config(steps=3, seed=4))
    pretrain(second, [_image()], _config(steps=3, seed=4))
    assert all(torch.equal(first.state_dict()[k], v) for k, v in second.state_dict().items())
    stopped = pretrain(_net(), [_image()], _config(steps=3), stop=lambda: True)
    assert stopped.steps == 0 and stopped.reason == "stopped"


def test_time_budget_is_respected(monkeypatch) -> None:
    ticks = iter(np.arange(0.0, 1000.0, 0.25))  # every clock reading moves 0.25 s on

    class Clock:
        @staticmethod
        def perf_counter() -> float:
            return float(next(ticks))

    monkeypatch.setattr(core_pretrain, "time", Clock)
    events = list(iter_pretrain(_net(), [_image()], _config(seconds=2.0)))
    assert events and events[-1].elapsed_s <= 2.0 + 0.25
    assert 2 <= len(events) <= 8  # two clock readings a step: stops at 2 s, not later


@pytest.mark.parametrize(
    ("images", "error", "words"),
    [
        ([], UserInputError, "no images"),
        ([np.zeros((3, 64, 64), np.float32)], ChannelMismatchError, "3 channel(s)"),
        ([np.zeros((1, 8, 64, 64), np.float32)], UserInputError, "2-D images"),
        ([np.zeros((1, 2, 64), np.float32)], UserInputError, "smaller than"),
    ],
)
def test_bad_inputs_are_one_sentence(images, error, words) -> None:
    with pytest.raises(error) as caught:
        pretrain(_net(), images, _config(steps=1))
    message = str(caught.value)
    assert words in message and "\n" not in message and message.endswith(".")


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    tifffile = pytest.importorskip("tifffile")
    for sub in ("images", "labels", "unlabelled"):
        (tmp_path / sub).mkdir()
    for i in range(3):
        image, truth = synthetic_nuclei((64, 64), n_nuclei=6, seed=i)
        tifffile.imwrite(tmp_path / "images" / f"img{i}.tif", image)
        tifffile.imwrite(tmp_path / "labels" / f"img{i}.tif", truth.astype(np.uint16))
        tifffile.imwrite(tmp_path / "unlabelled" / f"more{i}.tif", synthetic_nuclei((64, 64))[0])
    return tmp_path / "images", tmp_path / "labels", tmp_path / "unlabelled"


def _argv(folders, tmp_path: Path, *extra: str) -> list[str]:
    images, labels, _ = folders
    argv = ["train", "--images", str(images), "--labels", str(labels), "--task", "instances"]
    argv += ["--steps", "8", "--patch", "32", "--batch-size", "2", "--val-fraction", "0"]
    return [*argv, "--device", "cpu", "--threads", "1", "--out", str(tmp_path / "m.pt"), *extra]


def test_train_starts_from_the_pretrained_network(folders, tmp_path, monkeypatch) -> None:
    seen: dict = {}
    original_pretrain, original_train = core_pretrain.pretrain, core_loop.iter_train

    def spy_pretrain(model, images, config, **kwargs):
        seen["before"], seen["images"], seen["config"] = _body(model), len(images), config
        result = original_pretrain(model, images, config, **kwargs)
        seen["after"] = _body(model)
        return result

    def spy_train(model, items, config, **kwargs):
        seen["start"], seen["steps"] = _body(model), config.steps
        return original_train(model, items, config, **kwargs)

    monkeypatch.setattr(core_pretrain, "pretrain", spy_pretrain)
    monkeypatch.setattr(core_loop, "iter_train", spy_train)
    argv = _argv(folders, tmp_path, "--pretrain-fraction", "0.25", "--unlabelled", str(folders[2]))
    assert main(argv) == 0
    assert seen["images"] == 6 and seen["config"].steps == 2 and seen["steps"] == 6  # 8 in all
    assert all(torch.equal(seen["start"][k], v) for k, v in seen["after"].items())
    assert not all(torch.equal(seen["before"][k], v) for k, v in seen["after"].items())


def test_train_refuses_unlabelled_images_of_other_channels(folders, tmp_path, capsys) -> None:
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(folders[2] / "rgb.tif", np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    argv = _argv(folders, tmp_path, "--pretrain-fraction", "0.25", "--unlabelled", str(folders[2]))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "3 channel(s) but the model takes 1" in err
    assert not (tmp_path / "m.pt").exists()


def test_unlabelled_without_pretraining_is_refused(folders, tmp_path, capsys) -> None:
    assert main(_argv(folders, tmp_path, "--unlabelled", str(folders[2]))) == 2
    assert "add --pretrain-fraction" in capsys.readouterr().err


def test_unlabelled_images_with_context_slices_are_one_true_sentence(tmp_path, capsys) -> None:
    """A 2.5-D run (``--context-slices``) pre-trains on its stacks; loose ``--unlabelled``
    images have no neighbour slices, and the sentence says so (not a channel count mismatch
    that the images do not have)."""
    tifffile = pytest.importorskip("tifffile")
    from test_context25d import balls, context_args, two_slices_annotated, write_volume

    from napari_unet.core.checkpoint.format import load_checkpoint

    image, labels = balls()
    write_volume(tmp_path, image, labels, two_slices_annotated())
    (tmp_path / "unlabelled").mkdir()
    tifffile.imwrite(tmp_path / "unlabelled" / "more.tif", image[3])
    argv = context_args(tmp_path, "--context-slices", "1", "--pretrain-fraction", "0.5")
    assert main([*argv, "--unlabelled", str(tmp_path / "unlabelled")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--context-slices" in err and "channel(s)" not in err
    assert not (tmp_path / "model.pt").exists()
    assert main(argv) == 0  # the stacks alone (flat copies included) pre-train the model
    assert load_checkpoint(tmp_path / "model.pt").info.context_slices == 1


@pytest.mark.parametrize(
    ("native", "faster", "expected"),
    [(True, False, False), (True, True, True), (False, True, False)],
)
def test_precision_left_open_follows_the_timed_pass(monkeypatch, native, faster, expected) -> None:
    """``bf16_cpu=None``: bf16 only where the CPU has it natively and a timed pass is faster (as
    the training step decides; on an Intel Xeon with AVX512-BF16 bf16 was slower)."""
    import napari_unet.core.device as device
    import napari_unet.core.training.precision as precision

    timed = []
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: native)
    monkeypatch.setattr(
        precision, "bf16_trains_faster", lambda net, shape, *a: timed.append(shape) or faster
    )
    seen = []
    real_forward = torch.nn.Conv2d.forward

    def forward(self, x):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real_forward(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", forward)
    result = pretrain(_net(), [_image(0)], _config(steps=2, bf16_cpu=None))
    assert result.steps == 2 and seen and set(seen) == {expected}
    assert timed == ([(32, 32)] if native else [])
