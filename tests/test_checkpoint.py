"""Checkpoints: bit-exact round trips, half-precision storage, every bad file refused clearly."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint.format import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointInfo,
    builtin_checkpoints,
    load_checkpoint,
    read_checkpoint_info,
    resolve_checkpoint,
    save_checkpoint,
)
from napari_unet.core.errors import CheckpointError, UserInputError
from napari_unet.core.models import build_model


def tiny_net(out_channels: int = 1, **config) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, out_channels=out_channels, **config)
    # make BatchNorm running stats non-trivial so buffers are checked too
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 1, 16, 16))
    return model.eval()


def state_dicts_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a
    )


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    model = tiny_net(out_channels=3)
    path = save_checkpoint(
        tmp_path / "sub" / "model.pt",
        model,
        task="instances",
        class_names=("bg", "cell", "edge"),
        normalization={"mode": "meanstd", "mean": [10.0], "std": [2.0]},
        tile_shape=(64, 48),
        overlap=8,
        provenance={"parent": None, "steps": np.int64(120), "metrics": {"iou": np.float32(0.5)}},
        training_state={"optimizer": {"step": torch.tensor(3.0)}, "epoch": 2},
    )
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    assert state_dicts_equal(model.state_dict(), loaded.model.state_dict())
    image = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(image), loaded.model(image))
    info = loaded.info
    assert (info.arch, info.task, info.in_channels, info.out_channels) == (
        "unet",
        "instances",
        1,
        3,
    )
    assert info.class_names == ("bg", "cell", "edge")
    assert info.tile_shape == (64, 48) and info.overlap == 8
    assert info.format_version == FORMAT_VERSION
    assert info.provenance["steps"] == 120 and isinstance(info.provenance["steps"], int)
    assert "created" in info.provenance and "software" in info.provenance
    norm = info.normalization_config()
    assert norm.mode == "meanstd" and norm.mean == (10.0,)
    assert loaded.training_state["epoch"] == 2
    assert torch.equal(loaded.training_state["optimizer"]["step"], torch.tensor(3.0))
    assert read_checkpoint_info(path) == info
    assert CheckpointInfo.from_dict(info.to_dict()) == info


def test_float16_storage_halves_the_file_and_stays_close(tmp_path: Path) -> None:
    model = tiny_net()
    full = save_checkpoint(tmp_path / "full.pt", model, task="binary")
    half = save_checkpoint(tmp_path / "half.pt", model, task="binary", weights_dtype="float16")
    assert half.stat().st_size < 0.7 * full.stat().st_size
    loaded = load_checkpoint(half).model
    for key, value in loaded.state_dict().items():
        original = model.state_dict()[key]
        assert value.dtype == original.dtype  # restored to float32 (int buffers untouched)
        assert torch.allclose(value.float(), original.float(), rtol=1e-3, atol=1e-4)
    image = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(image), loaded(image), atol=1e-2)


def test_default_class_names_and_normalization(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", tiny_net(out_channels=4), task="semantic")
    info = read_checkpoint_info(path)
    assert info.class_names == ("background", "class 1", "class 2", "class 3")
    assert info.normalization_config().mode == "percentile"


@pytest.mark.parametrize(
    ("task", "out_channels"), [("binary", 2), ("instances", 1), ("semantic", 1), ("cells", 1)]
)
def test_task_must_match_output_channels(tmp_path: Path, task: str, out_channels: int) -> None:
    with pytest.raises(CheckpointError, match=r"task|output channel"):
        save_checkpoint(tmp_path / "m.pt", tiny_net(out_channels), task=task)
    assert not (tmp_path / "m.pt").exists()


def test_wrong_number_of_class_names_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="class names"):
        save_checkpoint(tmp_path / "m.pt", tiny_net(3), task="semantic", class_names=("a", "b"))


def test_unplain_training_state_refused_at_save(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"training_state\['x'\]"):
        save_checkpoint(
            tmp_path / "m.pt", tiny_net(), task="binary", training_state={"x": object()}
        )
    assert not (tmp_path / "m.pt").exists()


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        read_checkpoint_info(tmp_path)


def test_truncated_file_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", tiny_net(), task="binary")
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or damaged"):
            load_checkpoint(path)


def test_corrupted_bytes_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", tiny_net(), task="binary")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"damaged|truncated"):
        load_checkpoint(path)


def test_bit_flipped_weights_say_the_file_is_damaged_in_one_sentence(tmp_path: Path) -> None:
    """A flipped bit in a tensor fails the zip CRC: the message names the file, not a member."""
    import zipfile

    path = save_checkpoint(tmp_path / "m.pt", tiny_net(), task="binary")
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    start = member.header_offset + 30 + len(member.filename) + len(member.extra)
    data[start + member.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    expected = (
        f"{path} is damaged (a checksum does not match): copy it again or pick another checkpoint."
    )
    for read in (load_checkpoint, lambda p: read_checkpoint_info(p, verify=True)):
        with pytest.raises(CheckpointError) as caught:
            read(path)
        assert str(caught.value) == expected


def test_random_bytes_refused(tmp_path: Path) -> None:
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(path)


def test_bare_state_dict_explained(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(tiny_net().state_dict(), path)
    with pytest.raises(CheckpointError, match="bare PyTorch state_dict") as info:
        load_checkpoint(path)
    assert "build_model" in str(info.value) and "save_checkpoint" in str(info.value)


def test_other_tools_checkpoint_explained(tmp_path: Path) -> None:
    path = tmp_path / "lightning.ckpt"
    torch.save({"epoch": 3, "state_dict": tiny_net().state_dict()}, path)
    with pytest.raises(CheckpointError, match="another tool"):
        read_checkpoint_info(path)


MARKER_NAME = "code_was_executed.txt"


class Payload:
    """Unpickling this would create a marker file: it must never happen."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __reduce__(self):
        return (Path.touch, (Path(self.folder) / MARKER_NAME,))


class Harmless:
    """A custom class with no code on unpickling; still refused (it is an object)."""

    value = 1


def test_pickled_code_is_refused_and_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    model = tiny_net()
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "info": {"arch": "unet"},
        "state_dict": model.state_dict(),
        "hook": Payload(str(tmp_path)),
    }
    torch.save(payload, path)
    # the file really would run code when unpickled the unsafe way (proves the test is meaningful)
    canary = tmp_path / "canary"
    canary.mkdir()
    pickle.loads(pickle.dumps(Payload(str(canary))))
    assert (canary / MARKER_NAME).exists()

    for loader in (load_checkpoint, read_checkpoint_info):
        with pytest.raises(CheckpointError, match="refused") as info:
            loader(path)
        message = str(info.value)
        assert "Python objects" in message and "execute code" in message
        assert "re-save" in message.lower()
    assert not (tmp_path / MARKER_NAME).exists()


def test_custom_class_object_refused(tmp_path: Path) -> None:
    path = tmp_path / "object.pt"
    torch.save({"format": FORMAT, "thing": Harmless()}, path)
    with pytest.raises(CheckpointError, match="contains Python objects"):
        load_checkpoint(path)


def _rewrite(path: Path, edit) -> None:
    """Load a checkpoint's plain payload, let ``edit(payload)`` change it, save it again."""
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)


def test_newer_format_version_asks_for_upgrade(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", tiny_net(), task="binary")
    _rewrite(path, lambda p: p.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match=r"newer napari-unet-loop.*upgrade"):
        load_checkpoint(path)


def test_unknown_architecture(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", tiny_net(), task="binary")
    _rewrite(path, lambda p: p["info"].update(arch="transformer9000"))
    with pytest.raises(CheckpointError, match=r"transformer9000.*does not know") as info:
        load_checkpoint(path)
    assert "unet" in str(info.value)


def test_state_dict_mismatch(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", tiny_net(), task="binary")

    def damage(payload: dict) -> None:
        state = payload["state_dict"]
        state.pop("inc.0.weight")
        state["extra.weight"] = torch.zeros(1)
        first = next(k for k in state if k.endswith("bias"))
        state[first] = torch.zeros(99)

    _rewrite(path, damage)
    with pytest.raises(CheckpointError, match="do not fit") as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "missing: inc.0.weight" in message and "extra.weight" in message
    assert "wrong shape" in message


def test_stored_task_inconsistent_with_channels(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", tiny_net(), task="binary")
    _rewrite(path, lambda p: p["info"].update(task="instances"))
    with pytest.raises(CheckpointError, match="instances model needs 3"):
        load_checkpoint(path)


def test_save_is_atomic_on_failure(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", tiny_net(), task="binary")
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(path, tiny_net(), task="binary", provenance={"bad": {1, 2}})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_resolve_checkpoint(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", tiny_net(), task="binary")
    assert resolve_checkpoint(str(path)) == path
    assert isinstance(builtin_checkpoints(), dict)
    with pytest.raises(CheckpointError, match=r"built-in models.*--model") as info:
        resolve_checkpoint("no-such-model")
    assert isinstance(info.value, UserInputError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_loading_onto_missing_cuda_says_so(tmp_path: Path) -> None:
    from napari_unet.core.errors import DeviceError

    path = save_checkpoint(tmp_path / "m.pt", tiny_net(), task="binary")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        load_checkpoint(path, map_location="cuda")


def test_postprocess_config_merges_model_defaults_and_overrides(tmp_path) -> None:
    from napari_unet.core.checkpoint.format import read_checkpoint_info

    model = build_model("unet", depth=2, base_channels=4, out_channels=2)
    path = save_checkpoint(
        tmp_path / "em.pt",
        model,
        task="semantic",
        provenance={"postprocess": {"foreground_class": [0], "min_size": 7, "future": 1}},
    )
    info = read_checkpoint_info(path)
    defaults = info.postprocess_config()
    assert defaults.output == "semantic" and defaults.foreground_class == (0,)
    assert defaults.min_size == 7
    chosen = info.postprocess_config(output="instances", min_size=None, threshold=0.3)
    assert (chosen.output, chosen.min_size, chosen.threshold) == ("instances", 7, 0.3)
