"""Merge the JSON of several ``bench_learn.py`` runs into one JSON and one learning-curve PNG.

Usage::

    python benchmarks/merge_learn.py OUT.json IN.json [IN.json ...]

Runs made as separate commands (one batch per method or set on a busy machine) are pooled: the
``runs`` of every input, each input's ``command``, ``date``, machine and draws kept under
``sources``, the ``summary`` (mean and std over seeds per set, K, method and variant) recomputed
over the pooled runs, and the PNG of ``bench_learn.py`` (accuracy against K and against CPU
minutes) written beside the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _learn_runs import summarize
from bench_learn import plot

SOURCE_KEYS = (
    "command",
    "date",
    "budget",
    "machine",
    "cpu_model",
    "cpu_cores",
    "torch_version",
    "sets",
)


def merge(inputs: list[dict]) -> dict:
    """One result dict from several ``bench_learn.py`` results (runs pooled)."""
    runs = [run for data in inputs for run in data["runs"]]
    return {
        "mode": "merged",
        "sources": [{k: data[k] for k in SOURCE_KEYS if k in data} for data in inputs],
        "summary": summarize(runs),
        "runs": runs,
    }


def _read(path: Path) -> dict:
    """A ``bench_learn.py`` JSON, or the ``.partial.jsonl`` of a stopped run (runs only)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        runs = [json.loads(line) for line in text.splitlines() if line.strip()]
        return {"command": f"(partial: {path.name})", "runs": runs}
    return json.loads(text)


def main(argv: list[str] | None = None) -> int:
    """Read the inputs, write the merged JSON and its PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="merged JSON to write (PNG beside it)")
    parser.add_argument(
        "inputs", type=Path, nargs="+", help="bench_learn.py JSON (or .partial.jsonl) files"
    )
    args = parser.parse_args(argv)
    merged = merge([_read(path) for path in args.inputs])
    args.out.write_text(json.dumps(merged, indent=1, default=str) + "\n", encoding="utf-8")
    png = plot(merged["summary"], merged["runs"], args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
