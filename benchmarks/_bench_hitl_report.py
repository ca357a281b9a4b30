"""The results side of ``bench_hitl.py``: flat per-data-set results and their plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from _bench_hitl_session import DATASETS, Dataset


def summarize(spec, records, extras, result, session, n_eval) -> dict:
    """Flat ``<dataset>_*`` keys: headline scalars and per-round lists."""
    k = spec.key
    loop = [0.0] + [e["loop_s"] / 60.0 for e in extras]
    wall = [0.0] + [e["wall_s"] / 60.0 for e in extras]
    out: dict[str, Any] = {
        f"{k}_task": spec.task,
        f"{k}_eval_images": n_eval,
        f"{k}_corrected_images": [r.corrected_images for r in records],
        f"{k}_train_minutes": [round(float(v), 3) for v in np.cumsum(loop)],
        f"{k}_wall_minutes": [round(float(v), 3) for v in np.cumsum(wall)],
        f"{k}_steps": [r.steps for r in records],
        f"{k}_pixels_corrected": [r.pixels_corrected for r in records],
        f"{k}_objects_corrected": [r.objects_corrected for r in records],
        f"{k}_startup_s": [None] + [round(e["startup_s"] or 0.0, 2) for e in extras],
        f"{k}_versions_published": [None] + [e["versions"] for e in extras],
        f"{k}_versions_skipped": [None] + [e["skipped"] for e in extras],
        f"{k}_model_version": ["start"] + [e["model_version"] for e in extras],
        f"{k}_val_score": [None] + [e["val"] for e in extras],
        f"{k}_val_score_start_model": [None] + [e.get("val_baseline") for e in extras],
        f"{k}_held_out": list(result.held_out),
        f"{k}_corrected": list(result.corrected),
        f"{k}_session": str(session.root),
        f"{k}_session_versions": [v.id for v in session.versions()],
    }
    for name in sorted({m for r in records for m in r.metrics}):
        values = [r.to_dict()["metrics"].get(name) for r in records]
        if name in spec.metrics or name in ("iou", "dice", "rand_error", "ap50", "f1_50"):
            out[f"{k}_{name}"] = values
            out[f"{k}_initial_{name}"] = values[0]
            out[f"{k}_final_{name}"] = values[-1]
    return out


def plot(results: dict, spec: Dataset, path: Path) -> Path:
    """Accuracy vs corrected images (minutes on the top axis) and effort per round (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    k = spec.key
    x = results[f"{k}_corrected_images"]
    minutes = results[f"{k}_train_minutes"]
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=(3, 2))
    for name in spec.metrics:
        values = [np.nan if v is None else v for v in results[f"{k}_{name}"]]
        label = f"{name} (lower is better)" if "error" in name else name
        left.plot(x, values, marker="o", label=label)
    left.set(xlabel="images corrected", ylabel="held-out score", ylim=(0, 1), xticks=x)
    top = left.secondary_xaxis("top")
    top.set_xticks(x, [f"{m:.1f}" for m in minutes])
    top.set_xlabel("cumulative training minutes", fontsize=8)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    rounds = list(range(1, len(x)))
    right.bar(rounds, [p / 1000.0 for p in results[f"{k}_pixels_corrected"][1:]], color="tab:gray")
    right.set(xlabel="round", ylabel="pixels corrected (thousands)", xticks=rounds)
    right.grid(alpha=0.3, axis="y")
    figure.suptitle(
        f"{k} ({spec.task}) through session + trainer process, "
        f"{results['rounds']} rounds x {results['per_round']} images"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def write_plots(results: dict, path: Path) -> int:
    """One PNG per data set: ``path``, or ``<stem>_<dataset>.png`` with several."""
    keys = results["datasets"]
    for key in keys:
        target = path if len(keys) == 1 else path.with_name(f"{path.stem}_{key}{path.suffix}")
        print(f"wrote {plot(results, DATASETS[key], target)}")
    return 0
