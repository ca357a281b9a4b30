"""``napari-unet-loop models [--json]``: the architectures and built-in checkpoints available.

``--json`` prints a JSON array of ``{"name", "kind": "architecture" | "builtin", "card": {...}}``.
An architecture's card holds its default settings, parameter count and docstring summary; a
built-in checkpoint's card is what the checkpoint itself stores (``CheckpointInfo.to_dict()``,
with the fields of a ``card`` dict in its provenance on top) and its path.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``models``."""
    parser = subparsers.add_parser(
        "models",
        help="list model architectures and built-in checkpoints",
        description="List the model architectures and the built-in checkpoints.",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON array of model cards")
    parser.set_defaults(run=run)
    return parser


def _summary(docstring: str | None) -> str:
    """The first paragraph of a docstring on one line."""
    first = (docstring or "").strip().split("\n\n")[0]
    return " ".join(first.split())


def architecture_card(name: str) -> dict[str, Any]:
    """Default settings, parameter count and summary of architecture ``name``."""
    import torch

    from napari_unet.core.models import build_model, default_config

    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            model = build_model(name)
    except (RuntimeError, NotImplementedError, TypeError):
        model = build_model(name)
    return {
        "default_config": default_config(name),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "in_channels": int(model.in_channels),
        "out_channels": int(model.out_channels),
        "margin": int(model.margin),
        "size_multiple": int(getattr(model, "size_multiple", 1)),
        "summary": _summary(type(model).__doc__),
    }


def builtin_card(path: Any) -> dict[str, Any]:
    """What a built-in checkpoint stores about itself (or the error reading it)."""
    from napari_unet.core.checkpoint.format import read_checkpoint_info
    from napari_unet.core.errors import CheckpointError

    try:
        info = read_checkpoint_info(path)
    except CheckpointError as err:
        return {"path": str(path), "error": str(err)}
    card = dict(info.provenance.get("card") or {})
    card.update(info.to_dict())
    card["path"] = str(path)
    return card


def model_cards() -> list[dict[str, Any]]:
    """Every architecture and built-in checkpoint as ``{"name", "kind", "card"}``."""
    from napari_unet.core.checkpoint.format import builtin_checkpoints
    from napari_unet.core.models import list_architectures

    cards = [
        {"name": name, "kind": "architecture", "card": architecture_card(name)}
        for name in list_architectures()
    ]
    cards += [
        {"name": name, "kind": "builtin", "card": builtin_card(path)}
        for name, path in builtin_checkpoints().items()
    ]
    return cards


def run(args: argparse.Namespace) -> int:
    """Print the list (a table, or JSON with ``--json``)."""
    cards = model_cards()
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    print("Architectures (train or fine-tune with these):")
    for entry in (c for c in cards if c["kind"] == "architecture"):
        card = entry["card"]
        print(f"  {entry['name']:<14} {card['parameters'] / 1e6:6.2f}M params  {card['summary']}")
    builtins = [c for c in cards if c["kind"] == "builtin"]
    print("Built-in checkpoints (use with --model NAME):")
    if not builtins:
        print("  (none installed; pass a checkpoint file with --model path/to/model.pt)")
    for entry in builtins:
        card = entry["card"]
        if "error" in card:
            print(f"  {entry['name']:<14} unreadable: {card['error']}")
            continue
        text = card.get("description") or card.get("name") or ""
        print(f"  {entry['name']:<14} {card['task']:<12} {card['arch']:<14} {text}")
    return 0
