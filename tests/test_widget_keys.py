"""The plugin's napari viewer keys (issue 18, keyboard): run, mark reviewed, next region, stop.

They must not take any of napari's own keys (napari's default shortcuts, its app-model menu keys
and the layer and viewer class keymaps) and must reach the dock panels. Run under Xvfb.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import layers as L
from napari_unet._widgets.shortcuts import SHORTCUTS, VIEWER_KEYS, shortcuts_text

pytestmark = pytest.mark.gui
TIMEOUT = 20_000


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(path, model, task="binary", tile_shape=(64, 64), overlap=8)


def napari_keys(viewer) -> set[str]:
    """Every key napari itself binds, as normalised strings (``"Shift+R"``)."""
    from app_model.types import KeyBinding
    from napari._app_model import get_app_model
    from napari.components import ViewerModel
    from napari.layers import Image, Labels, Points, Shapes, Surface, Tracks, Vectors
    from napari.utils.shortcuts import default_shortcuts

    keys = {str(kb) for kbs in default_shortcuts.values() for kb in kbs}
    keys |= {str(kb.keybinding) for kb in get_app_model().keybindings}
    for cls in (ViewerModel, Image, Labels, Points, Shapes, Surface, Tracks, Vectors):
        keys |= {str(k) for k in getattr(cls, "class_keymap", {})}
    return {str(KeyBinding.from_str(k)) for k in keys}


def press(viewer, keys: str) -> None:
    """Call what ``viewer`` binds to ``keys`` (as napari's key handler does)."""
    from app_model.types import KeyBinding

    wanted = KeyBinding.from_str(keys)
    (func,) = [f for k, f in viewer.keymap.items() if KeyBinding.from_str(str(k)) == wanted]
    func(viewer)


def test_viewer_keys_leave_napari_keys_alone_and_are_listed(make_napari_viewer) -> None:
    from app_model.types import KeyBinding

    from napari_unet._widgets import FinetuneWidget, SegmentWidget

    viewer = make_napari_viewer()
    taken = napari_keys(viewer)
    ours = {str(KeyBinding.from_str(keys)) for keys, _ in VIEWER_KEYS.values()}
    assert len(ours) == len(VIEWER_KEYS) and not ours & taken, ours & taken
    assert {str(KeyBinding.from_str(k)) for k in ("Ctrl+Z", "Shift+A", "M")} <= taken
    before = set(viewer.keymap)
    viewer.window.add_dock_widget(SegmentWidget(viewer))
    viewer.window.add_dock_widget(FinetuneWidget(viewer))
    assert len(set(viewer.keymap) - before) == 4
    for keys, what in VIEWER_KEYS.values():
        assert (keys, what) in SHORTCUTS and f"{keys}: {what}" in shortcuts_text()


def test_keys_run_mark_next_and_stop(make_napari_viewer, checkpoint, qtbot, monkeypatch) -> None:
    from napari_unet._widgets import FinetuneWidget, SegmentWidget
    from napari_unet._widgets.finetune_panel import FinetunePanel
    from napari_unet._widgets.guidance_panel import GuidancePanel

    calls: list[str] = []
    monkeypatch.setattr(GuidancePanel, "next_region", lambda self: calls.append("next"))
    monkeypatch.setattr(FinetunePanel, "stop", lambda self: calls.append("stop"))
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((96, 96)).astype(np.float32), name="cells")
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment)
    panel = segment.segment
    panel.form.model.add_checkpoint(checkpoint)
    qtbot.waitUntil(lambda: panel.form.tile.value() == 64, timeout=TIMEOUT)

    press(viewer, VIEWER_KEYS["run"][0])
    qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT)
    labels = L.find_plugin_layer(viewer, role="labels", image_layer="cells")
    assert labels is not None and "Predicted" in panel.status.text()

    viewer.layers.selection.active = labels
    press(viewer, VIEWER_KEYS["mark"][0])
    reviewed = L.plugin_tag(labels).get("reviewed")
    assert reviewed is not None and reviewed.any()

    finetune = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(finetune)
    press(viewer, VIEWER_KEYS["next"][0])
    press(viewer, VIEWER_KEYS["stop"][0])
    assert calls == ["next", "stop"]


def test_a_deleted_panel_key_does_nothing(make_napari_viewer) -> None:
    from napari_unet._widgets.shortcuts import bind_viewer_keys

    class Panel:
        def act(self) -> None:
            raise AssertionError("called after deletion")

    viewer = make_napari_viewer()
    panel = Panel()
    bind_viewer_keys(viewer, {"stop": panel.act})
    del panel
    gc.collect()
    press(viewer, VIEWER_KEYS["stop"][0])
