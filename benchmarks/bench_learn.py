"""Learning from K corrected images of a new modality: our recipe against a plain loop and a forest.

Usage::

    python benchmarks/bench_learn.py [--quick] [--json OUT] [--minutes M] [--parallel N]
        [--sets A,B] [--plan K:SEED,...] [--methods recipe,plain,rf]
        [--ablations NAME,...|all] [--evals NAME,...]

Per data set (``_learn_data.py``: fixed test images, a pool, K images drawn per seed), per
(K, seed) of the plan (default 3:0, 3:1, 3:2, 10:0) and per method, one run with a fixed budget
of CPU minutes (process CPU time, one torch thread):

- ``recipe``: exactly ``napari-unet-loop train --task instances --minutes M`` (ISBI:
  ``--task semantic --label-map 0:1,255:0``, as the built-in em-membranes) and then
  ``predict --labels instances|semantic`` with the model's own operating point
  (``_learn_recipe.py``: the CLI's parser and ``run``);
- ``plain``: the issue's 40-line loop (``_learn_methods.py``);
- ``rf``: an ilastik-style random forest (100 trees, ilastik's default filters), with the plain
  loop's instance post-processing.

Scores (``napari_unet.core.evaluation.score.evaluate_pair``, mean over the test images): ``ap50``,
``ap75``, foreground ``iou``; ISBI: membrane ``iou`` and ``rand_error``. Checkpoints are scored
at 25/50/100 % of the budget (learning curve against minutes). ``--ablations`` adds recipe runs
with one factor changed (:data:`ABLATIONS`); ``--evals`` scores every recipe run again with a
post-processing or checkpoint change that needs no retraining (:data:`EVALS`). The JSON (runs,
per-(set, K, method) mean and std, the draws) goes to ``--json`` (default
``benchmarks/out/bench_learn[_quick].json``) with a PNG of the curves beside it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import logging
import multiprocessing
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _learn_data import LearnSet, requested_sets, synthetic_set
from _learn_runs import (
    ABLATIONS,
    EVALS,
    headline,
    run_one,
    summarize,
)

logger = logging.getLogger("bench_learn")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MODES: dict[str, dict[str, Any]] = {
    "full": dict(minutes=10.0, sets=("dsb2018_stained_bf", "dsb2018_fluo", "isbi2012"),
                 plan=((3, 0), (3, 1), (3, 2), (10, 0)), fractions=(0.25, 0.5, 1.0)),
    "quick": dict(minutes=2.0, sets=("dsb2018_fluo",), plan=((3, 0),),
                  fractions=(0.25, 0.5, 1.0)),
    # hidden: tiny synthetic data, seconds (tests/test_bench_learn.py)
    "smoke": dict(minutes=0.08, sets=("synthetic",), plan=((3, 0),),
                  fractions=(0.0, 1.0)),
}  # fmt: skip


def _plan(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple((int(k), int(s)) for k, s in (p.split(":") for p in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K:SEED,K:SEED..., got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(name for name in text.split(",") if name)


def build_specs(sets: dict[str, LearnSet], args, mode: dict[str, Any]) -> list[dict[str, Any]]:
    """One spec per run: set, K, seed, method, recipe variant."""
    ablations = list(ABLATIONS) if args.ablations == ("all",) else list(args.ablations)
    evals = tuple(EVALS) if args.evals == ("all",) else args.evals
    specs = []
    for name in args.sets or mode["sets"]:
        for k, seed in args.plan or mode["plan"]:
            for method in args.methods:
                variants = ["default"] if method != "recipe" or not args.only_ablations else []
                variants += ablations if method == "recipe" else []
                for variant in variants:
                    specs.append({"set": sets[name], "k": k, "seed": seed, "method": method,
                                  "variant": variant, "minutes": args.minutes or mode["minutes"],
                                  "fractions": args.fractions or mode["fractions"],
                                  "evals": evals if variant == "default" or args.rescore else (),
                                  "smoke": args.smoke, "rescore": args.rescore})  # fmt: skip
    return specs


def execute(
    specs: list[dict[str, Any]], work: Path, parallel: int, partial: Path | None = None
) -> list[dict[str, Any]]:
    """Run the specs, ``parallel`` at a time (1: in this process, in order).

    Each finished run is also appended to ``partial`` (JSON lines), so a long run that is
    stopped keeps what it finished (``merge_learn.py`` reads such files).
    """
    jobs = [(spec, str(work / f"run{i:03d}")) for i, spec in enumerate(specs)]
    records: list[dict[str, Any]] = []

    def done(record: dict[str, Any]) -> None:
        records.append(record)
        logger.info("%s", _line(record))
        if partial is not None:
            with open(partial, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, default=str) + "\n")

    if parallel <= 1:
        for spec, folder in jobs:
            done(run_one(spec, folder))
        return records
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        parallel, mp_context=context, max_tasks_per_child=1
    ) as pool:
        futures = [pool.submit(run_one, spec, folder) for spec, folder in jobs]
        for future in futures:
            done(future.result())
    return records


def _line(record: dict[str, Any]) -> str:
    scores = "  ".join(f"{k} {v:.3f}" for k, v in headline(record["metrics"]).items())
    return (
        f"{record['set']} K={record['k']} seed {record['seed']} {record['method']}"
        f"[{record['variant']}]: {record['steps']} steps, {record['cpu_s']:.0f} cpu-s  {scores}"
    )


def plot(summary: list[dict[str, Any]], records: list[dict[str, Any]], path: Path) -> Path:
    """Accuracy against K (left) and against minutes (right, K = 3), one row per set."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    sets = sorted({row["set"] for row in summary})
    figure = Figure(figsize=(10, 3.2 * len(sets)), layout="constrained")
    axes = figure.subplots(len(sets), 2, squeeze=False)
    for row_axes, name in zip(axes, sets):
        key = "iou" if any(r["membranes"] for r in records if r["set"] == name) else "ap50"
        label = "membrane IoU" if key == "iou" else "AP@0.5"
        series = sorted({(r["method"], r["variant"]) for r in records if r["set"] == name},
                        key=lambda mv: (("recipe", "plain", "rf").index(mv[0]), mv[1] != "default",
                                        mv[1]))  # fmt: skip
        for method, variant in series:  # the defaults, and each ablation run (its own line)
            text = method if variant == "default" else f"{method} [{variant}]"
            rows = [r for r in summary if r["set"] == name and r["method"] == method
                    and r["variant"] == variant]  # fmt: skip
            if rows:
                rows.sort(key=lambda r: r["k"])
                row_axes[0].errorbar([r["k"] for r in rows], [r[f"{key}_mean"] for r in rows],
                                     yerr=[r[f"{key}_std"] for r in rows], marker="o",
                                     capsize=3, label=text)  # fmt: skip
            k_min = min(x["k"] for x in records)
            runs = [r for r in records if r["set"] == name and r["method"] == method
                    and r["variant"] == variant and r["k"] == k_min]  # fmt: skip
            if runs and method != "rf":
                points = {}  # budget fraction -> [(CPU minutes, score)] over the seeds
                for run in runs:
                    for point in run["curve"]:
                        if point["metrics"]:
                            points.setdefault(point["fraction"], []).append(
                                (point["minutes"], point["metrics"][key])
                            )
                means = [[sum(c) / len(c) for c in zip(*points[f])] for f in sorted(points)]
                row_axes[1].plot([m[0] for m in means], [m[1] for m in means], marker="o",
                                 label=text)  # fmt: skip
        for ax, xlabel in zip(row_axes, ("corrected images K", "CPU minutes (K smallest)")):
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            ax.set_title(name)
    figure.savefig(path, format="png", dpi=100)
    return path


def _parser() -> argparse.ArgumentParser:
    """The command line of ``bench_learn.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2-minute runs, dsb2018_fluo, K=3")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="output JSON (default benchmarks/out/...)")
    parser.add_argument("--minutes", type=float, help="CPU minutes per run (10; quick 2)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time (1)")
    parser.add_argument(
        "--sets",
        type=_names,
        help="data sets (default: the three shared ones; also dsb2018_stained_grey, "
        "isbi2012_cells: EM cells as instances; SET_xN: a set enlarged N times)",
    )
    parser.add_argument("--plan", type=_plan, help="K:SEED pairs (3:0,3:1,3:2,10:0)")
    parser.add_argument("--methods", type=_names, default=("recipe", "plain", "rf"))
    parser.add_argument("--ablations", type=_names, default=(), help="recipe variants, or all")
    parser.add_argument("--evals", type=_names, default=("plain_post", "last_checkpoint"),
                        help=f"extra scorings of recipe runs: {', '.join(EVALS)}")  # fmt: skip
    parser.add_argument(
        "--only-ablations",
        action="store_true",
        help="skip the recipe's default run (when it ran already)",
    )
    parser.add_argument(
        "--fractions",
        type=lambda t: tuple(float(f) for f in t.split(",")),
        help="budget fractions scored (0.25,0.5,1)",
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="no training: score the recipe runs kept in --work-dir again "
        "(same arguments as the run that wrote it) with --evals",
    )
    parser.add_argument("--data", type=Path, default=DATA, help="../shared/data")
    parser.add_argument("--work-dir", type=Path, help="keep checkpoints here (default: temp)")
    return parser


def _print_summary(summary: list[dict]) -> None:
    """One line per summary row: mean ± std of the headline scores."""
    for row in summary:
        scores = "  ".join(
            f"{k} {row[k + '_mean']:.3f}±{row[k + '_std']:.3f}"
            for k in ("ap50", "ap75", "iou", "rand_error") if row.get(k + "_mean") is not None
        )  # fmt: skip
        print(f"{row['set']} K={row['k']} {row['method']}[{row['variant']}] n={row['n']} "
              f"steps {row['steps_mean']:.0f}  {scores}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run, print one line per run and the summary, write the JSON and the PNG."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    mode_name = "smoke" if args.smoke else ("quick" if args.quick else "full")
    mode = MODES[mode_name]
    unknown = [a for a in args.ablations if a not in ABLATIONS and a != "all"]
    unknown += [e for e in args.evals if e not in EVALS and e != "all"]
    if args.rescore and (not args.work_dir or set(args.methods) != {"recipe"}):
        parser.error("--rescore needs --work-dir of an earlier run and --methods recipe")
    if unknown:
        parser.error(f"unknown ablation/eval {unknown}; known: {[*ABLATIONS, *EVALS]}")
    out = args.json or ROOT / "benchmarks" / "out" / f"bench_learn_{mode_name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-learn-") as temp:
        work = args.work_dir or Path(temp)
        if args.smoke:
            sets = {"synthetic": synthetic_set(Path(temp) / "synthetic")}
        else:
            sets = requested_sets(args.data, args.sets or (), work / "derived")
        specs = build_specs(sets, args, mode)
        records = execute(specs, work, args.parallel, out.with_suffix(".partial.jsonl"))
    summary = summarize(records)
    import torch
    from _bench_common import machine_info, threads

    with threads(1):
        machine = machine_info(torch.device("cpu"))
    result = {
        "mode": mode_name,
        "quick": mode_name != "full",
        "command": " ".join(["python benchmarks/bench_learn.py", *(argv or sys.argv[1:])]),
        "budget": {"minutes": specs[0]["minutes"], "clock": "process CPU time, 1 torch thread",
                   "fractions": list(specs[0]["fractions"]), "parallel": args.parallel},
        "sets": {
            name: {**s.describe(), "draws": {f"{k}:{seed}": list(s.choose(k, seed))
                                             for k, seed in args.plan or mode["plan"]}}
            for name, s in sets.items() if name in {spec["set"].name for spec in specs}
        },
        "ablations": {name: ABLATIONS[name] for name in {s["variant"] for s in specs}
                      if name in ABLATIONS},
        "evals": {name: EVALS[name] for name in {e for s in specs for e in s["evals"]}},
        "summary": summary,
        "runs": records,
        **machine,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    _print_summary(summary)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    png = plot(summary, records, out.with_suffix(".png"))
    print(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
