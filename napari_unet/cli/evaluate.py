"""``napari-unet-loop evaluate``: score predicted label images against ground truth.

Pairs ``<stem>_labels.tif`` in ``--pred`` with ``<stem>.tif|.tiff|.png`` in ``--truth``, prints a
per-image table and the mean, and optionally writes ``{"per_image": [...], "mean": {...},
"unpaired": {...}}`` as JSON.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Columns of the printed table per task (the JSON holds every metric).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "binary": ("iou", "dice", "pixel_error", "rand_error", "variation_of_information"),
    "semantic": ("iou", "mean_iou", "dice", "pixel_error", "rand_error"),
    "instances": ("ap50", "ap75", "f1_50", "matched_iou", "iou", "n_true", "n_pred"),
}
_SHORT = {"variation_of_information": "vi", "pixel_error": "pix_err", "rand_error": "rand_err"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score predicted labels against ground truth",
        description=(
            "Pair <stem>_labels.tif predictions with <stem>.tif/.tiff/.png ground truth and "
            "print per-image and mean metrics (IoU, Dice, pixel error, Rand error, AP, ...)."
        ),
    )
    parser.add_argument("--pred", required=True, type=Path, help="folder of <stem>_labels.tif")
    parser.add_argument("--truth", required=True, type=Path, help="folder of ground-truth images")
    parser.add_argument(
        "--task", required=True, choices=("binary", "semantic", "instances"), help="what to score"
    )
    parser.add_argument(
        "--label-map",
        default=None,
        metavar="SRC:DST,...",
        help="map ground-truth values first, e.g. 0:1,255:0 for ISBI 2012 (membrane = 1)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write JSON here")
    parser.set_defaults(run=run)
    return parser


def _cell(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key.startswith("n_"):
        return f"{value:.1f}" if not float(value).is_integer() else f"{int(value)}"
    return f"{value:.4f}"


def _names(names: list[str], limit: int = 10) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def format_table(result: dict[str, Any], task: str) -> str:
    """The per-image rows and the mean row as aligned text."""
    columns = TABLE_COLUMNS[task]
    rows = [["image", *(_SHORT.get(c, c) for c in columns)]]
    for row in result["per_image"]:
        rows.append([row["name"], *(_cell(c, row.get(c)) for c in columns)])
    rows.append(["mean", *(_cell(c, result["mean"].get(c)) for c in columns)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns) + 1)]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Evaluate the folders; exit status 0 on success."""
    from napari_unet.cli._output import check_output_file
    from napari_unet.core.atomic import atomic_write_json
    from napari_unet.core.evaluation.score import evaluate_folders
    from napari_unet.core.training.targets import parse_label_map

    if args.json is not None:  # before the (possibly long) scoring
        check_output_file(args.json, what="the JSON file", flag="--json", suffix=".json")
    label_map = parse_label_map(args.label_map) if args.label_map else None
    result = evaluate_folders(args.pred, args.truth, task=args.task, label_map=label_map)
    print(format_table(result, args.task))
    unpaired = result["unpaired"]
    if unpaired["predictions"]:
        print(f"skipped (no ground truth): {_names(unpaired['predictions'])}")
    if unpaired["truth"]:
        print(f"skipped (no prediction): {_names(unpaired['truth'])}")
    if args.json is not None:
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
