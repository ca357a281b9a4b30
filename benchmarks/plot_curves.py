"""Redraw the learning curves of ``napari-unet-loop simulate`` from its JSON output.

Usage::

    python benchmarks/plot_curves.py docs/results/simulate_isbi2012.json \
        docs/images/simulate_isbi2012.png [--title TITLE] [--metrics iou,rand_error]

The figure is the one ``simulate --plot`` writes (held-out scores against corrected images and
cumulative training minutes, and the pixels corrected per round); this script only saves
re-running the experiment when the figure changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Read the JSON, write the PNG."""
    from napari_unet.cli.simulate import plot_curves

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("summary", type=Path, help="JSON written by simulate --json")
    parser.add_argument("png", type=Path, help="PNG to write")
    parser.add_argument("--title", default="", help="figure title")
    parser.add_argument("--metrics", default="", help="comma-separated metric keys")
    args = parser.parse_args(argv)
    summary = json.loads(args.summary.read_text(encoding="utf-8"))
    metrics = tuple(m for m in args.metrics.split(",") if m)
    plot_curves(summary, args.png, metrics=metrics, title=args.title)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
