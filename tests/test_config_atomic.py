"""The config base class and atomic writes."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from napari_unet.core.atomic import atomic_write_json, atomic_write_with
from napari_unet.core.config import Config, check_task


@dataclasses.dataclass(frozen=True)
class Inner(Config):
    sigma: float = 5.0


@dataclasses.dataclass(frozen=True)
class Outer(Config):
    tile_shape: tuple[int, int] = (256, 256)
    names: tuple[str, ...] = ("background", "cell")
    inner: Inner = Inner()
    device: str | None = None

    def __post_init__(self) -> None:
        if min(self.tile_shape) < 1:
            raise ValueError("tile_shape must be positive")


def test_config_round_trips_through_json() -> None:
    cfg = Outer(tile_shape=(64, 32), names=("a", "b", "c"), inner=Inner(2.0), device="cpu")
    again = Outer.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert isinstance(again.tile_shape, tuple) and isinstance(again.inner, Inner)


def test_config_rejects_unknown_keys_and_validates() -> None:
    with pytest.raises(ValueError, match="unknown setting"):
        Outer.from_dict({"tile": 3})
    with pytest.raises(ValueError, match="positive"):
        Outer().replace(tile_shape=(0, 4))
    with pytest.raises(dataclasses.FrozenInstanceError):
        Outer().tile_shape = (1, 1)  # type: ignore[misc]


def test_check_task() -> None:
    assert check_task("instances") == "instances"
    with pytest.raises(ValueError, match="binary"):
        check_task("panoptic")


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path) -> None:
    target = tmp_path / "index.json"
    atomic_write_json(target, {"version": 1})

    def broken_writer(handle) -> None:
        handle.write(b'{"version": 2, "half": ')
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write_with(target, broken_writer)
    assert json.loads(target.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["index.json"], "temporary file left behind"


def test_atomic_write_gives_normal_permissions(tmp_path) -> None:
    umask = os.umask(0o022)
    try:
        target = atomic_write_json(tmp_path / "new.json", {})
    finally:
        os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o644
    target.chmod(0o640)
    atomic_write_json(target, {"again": True})
    assert target.stat().st_mode & 0o777 == 0o640
