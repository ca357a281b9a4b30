"""The npe2 manifest is valid, every python_name resolves, and the entry point points at it."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")

MANIFEST = Path(__file__).resolve().parents[1] / "napari_unet" / "napari.yaml"


def test_manifest_validates_and_names_the_distribution() -> None:
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-unet-loop"
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert {"U-Net Segment", "U-Net Fine-tune"} <= widgets
    menus = manifest.contributions.menus
    assert [item.command for item in menus["napari/layers/segment"]] == [
        "napari-unet-loop.segment_widget",
        "napari-unet-loop.finetune_widget",
    ]
    result = subprocess.run(
        ["npe2", "validate", "napari-unet-loop"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_python_name_resolves_to_a_callable() -> None:
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    for command in manifest.contributions.commands:
        module_name, attr = command.python_name.split(":")
        target = getattr(importlib.import_module(module_name), attr)
        assert callable(target), command.python_name


def test_entry_point_points_at_the_manifest() -> None:
    points = importlib.metadata.entry_points(group="napari.manifest")
    ours = [p for p in points if p.name == "napari-unet-loop"]
    assert ours and ours[0].value == "napari_unet:napari.yaml"


def test_entry_point_modules_import_neither_torch_nor_qt() -> None:
    code = (
        "import sys, napari_unet._reader, napari_unet._writer, napari_unet._sample_data, "
        "napari_unet._datasets, napari_unet._widgets; "
        "heavy = ('torch', 'qtpy', 'PyQt6', 'PySide6', 'napari'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
