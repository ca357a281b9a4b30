"""One run of ``bench_learn.py`` (train one method on K images, score it) and the aggregation."""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from _learn_variants import ABLATIONS, EVALS, FLIPS_ONLY  # noqa: F401

logger = logging.getLogger("bench_learn")

METRICS = ("ap50", "ap75", "iou", "rand_error", "pixel_error", "n_pred", "n_true")


def headline(metrics: dict[str, Any] | None) -> dict[str, float]:
    """The reported scores present in ``metrics``."""
    keys = ("ap50", "ap75", "iou", "rand_error")
    return {k: metrics[k] for k in keys if metrics and metrics.get(k) is not None}


def score(preds: list[np.ndarray], truths: list[np.ndarray], membranes: bool) -> dict[str, float]:
    """Mean over the test images of the project's evaluate scores (counts are summed)."""
    from napari_unet.core.evaluation.score import evaluate_pair

    task, label_map = ("semantic", {0: 1, 255: 0}) if membranes else ("instances", None)
    per_image = [evaluate_pair(p, t, task=task, label_map=label_map) for p, t in zip(preds, truths)]
    result = {}
    for key in METRICS:
        values = [m[key] for m in per_image if key in m and np.isfinite(m[key])]
        if values:
            result[key] = float(sum(values) if key.startswith("n_") else np.mean(values))
    return result


def _read(path: Path, channels_first: bool = False) -> np.ndarray:
    from napari_unet.core.io.images import read_image

    data = read_image(path).image
    if channels_first:
        data = data[None] if data.ndim == 2 else np.moveaxis(data[..., :3], -1, 0)
    return np.asarray(data)


def run_one(spec: dict[str, Any], folder: str) -> dict[str, Any]:
    """Train ``spec['method']`` on the K images of ``spec`` and score it; the run record."""
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = Path(folder)
    work.mkdir(parents=True, exist_ok=True)
    data = spec["set"]
    train = data.choose(spec["k"], spec["seed"])
    truths = [_read(data.labels(s)) for s in data.test]
    record: dict[str, Any] = {
        "set": data.name, "k": spec["k"], "seed": spec["seed"], "method": spec["method"],
        "variant": spec["variant"], "membranes": data.membranes, "minutes": spec["minutes"],
        "train_images": list(train), "test_images": list(data.test),
    }  # fmt: skip
    logger.info("start %s K=%d seed %d %s[%s]", data.name, spec["k"], spec["seed"],
                spec["method"], spec["variant"])  # fmt: skip
    runner = {"recipe": _run_recipe, "plain": _run_plain, "rf": _run_rf}[spec["method"]]
    record.update(runner(spec, data, train, truths, work))
    return record


def _run_recipe(spec, data, train, truths, work: Path) -> dict[str, Any]:
    from _learn_methods import instances_from_probabilities
    from _learn_recipe import link_folder, predict_recipe, train_recipe

    variant = ABLATIONS.get(spec["variant"], {})
    if spec.get("smoke"):  # tiny images: a patch that fits, validations that happen
        variant = {**variant, "cli": [*variant.get("cli", ()), "--patch", "32", "--val-every", "5"]}
    if variant.get("unlabelled") == "pool":  # the pool's other images: never a test image
        rest = [data.image(s) for s in data.pool if s not in train]
        folder = link_folder(work / "unlabelled", rest)
        variant = {**variant, "cli": [*variant["cli"], "--unlabelled", str(folder)]}
    if spec.get("rescore"):
        run = _kept_run(work)
    else:
        run = train_recipe(
            work, [data.image(s) for s in train], [data.labels(s) for s in train],
            membranes=data.membranes, minutes=spec["minutes"], seed=spec["seed"],
            fractions=spec["fractions"], variant=variant,
        )  # fmt: skip
    tests = [data.image(s) for s in data.test]

    def evaluate(checkpoint: Path, name: str, extra: dict[str, Any] | None = None):
        extra = extra or {}
        out = work / f"pred_{name}"
        paths = predict_recipe(checkpoint, tests, out, membranes=data.membranes,
                               post=extra.get("post"), cli=extra.get("cli", ()),
                               drop_unseeded=extra.get("drop_unseeded", False))  # fmt: skip
        if extra.get("plain_post"):
            probs = [_read(p.with_name(p.name.replace("_labels", "_probabilities"))) for p in paths]
            preds = [instances_from_probabilities(p.astype(np.float32)) for p in probs]
        else:
            preds = [_read(p) for p in paths]
        return score(preds, truths, data.membranes)

    curve = []
    for point in run["curve"]:
        checkpoint = point["checkpoint"]
        metrics = None if checkpoint is None else evaluate(checkpoint, f"{point['fraction']:.2f}")
        curve.append({"fraction": point["fraction"], "minutes": round(point["cpu_s"] / 60, 3),
                      "steps": point["steps"], "metrics": metrics})  # fmt: skip
    evals = {}
    for name in spec["evals"]:
        extra = EVALS[name]
        if data.membranes and (extra.keys() & {"plain_post", "post", "drop_unseeded"}):
            continue  # instance post-processing does not apply to membranes
        checkpoint = run["latest"] if extra.get("checkpoint") == "latest" else run["checkpoint"]
        evals[name] = evaluate(checkpoint, name, extra)
    return {
        "steps": run["steps"], "cpu_s": run["cpu_s"], "wall_s": run["wall_s"],
        "metrics": curve[-1]["metrics"], "curve": curve, "evals": evals,
        "factor": variant.get("factor", "defaults"), "command": " ".join(run["argv"]),
    }  # fmt: skip


def _kept_run(work: Path) -> dict[str, Any]:
    """The run record of a recipe run kept in ``work`` (``--rescore``): its final model only."""
    from napari_unet.core.checkpoint.format import read_checkpoint_info

    checkpoint = work / "model.pt"
    provenance = read_checkpoint_info(checkpoint).provenance
    latest = read_checkpoint_info(work / "model.training" / "latest.pt").provenance
    return {
        "checkpoint": checkpoint, "latest": work / "model.training" / "latest.pt",
        "steps": latest["steps"], "cpu_s": latest["elapsed_s"], "wall_s": None,
        "curve": [{"fraction": 1.0, "steps": latest["steps"], "cpu_s": latest["elapsed_s"],
                   "checkpoint": checkpoint}],
        "argv": ["(rescored)", str(checkpoint), f"best at step {provenance['steps']}"],
    }  # fmt: skip


def _load_training(data, train):
    from _learn_methods import classes_from_labels, normalize_plain

    images = [normalize_plain(_read(data.image(s), channels_first=True)) for s in train]
    classes = [classes_from_labels(_read(data.labels(s)), data.membranes) for s in train]
    return images, classes


def _to_labels(probabilities: np.ndarray, membranes: bool) -> np.ndarray:
    from _learn_methods import instances_from_probabilities, membranes_from_probabilities

    if membranes:
        return membranes_from_probabilities(probabilities)
    return instances_from_probabilities(probabilities)


def _run_plain(spec, data, train, truths, work: Path) -> dict[str, Any]:
    import _learn_methods as methods

    images, classes = _load_training(data, train)
    tests = [methods.normalize_plain(_read(data.image(s), channels_first=True)) for s in data.test]
    if spec.get("smoke"):
        methods.PLAIN["patch"] = 64
    wall, cpu = time.perf_counter(), time.process_time()
    model, snapshots = methods.train_plain(
        images, classes, budget_s=60.0 * spec["minutes"], snapshots=spec["fractions"],
        seed=spec["seed"],
    )  # fmt: skip
    cpu_s, wall_s = time.process_time() - cpu, time.perf_counter() - wall
    curve = []
    for snap in snapshots:
        model.load_state_dict(snap["state"])
        preds = [_to_labels(methods.predict_plain(model, t), data.membranes) for t in tests]
        curve.append(
            {
                "fraction": snap["fraction"],
                "minutes": round(snap["cpu_s"] / 60, 3),
                "steps": snap["steps"],
                "metrics": score(preds, truths, data.membranes),
            }
        )
    return {
        "steps": snapshots[-1]["steps"], "cpu_s": cpu_s, "wall_s": wall_s,
        "metrics": curve[-1]["metrics"], "curve": curve, "factor": "plain loop",
        "settings": {**methods.PLAIN, "class_weights": methods.PLAIN_CLASS_WEIGHTS},
    }  # fmt: skip


def _run_rf(spec, data, train, truths, work: Path) -> dict[str, Any]:
    import _learn_methods as methods

    images, classes = _load_training(data, train)
    wall, cpu = time.perf_counter(), time.process_time()
    forest = methods.train_forest(images, classes, seed=spec["seed"])
    cpu_s, wall_s = time.process_time() - cpu, time.perf_counter() - wall
    preds = []
    for stem in data.test:
        image = methods.normalize_plain(_read(data.image(stem), channels_first=True))
        preds.append(_to_labels(methods.predict_forest(forest, image), data.membranes))
    metrics = score(preds, truths, data.membranes)
    return {
        "steps": 0, "cpu_s": cpu_s, "wall_s": wall_s, "metrics": metrics, "curve": [],
        "factor": "random forest", "settings": {"trees": 100, "sigmas": methods.RF_SIGMAS,
        "pixels_per_class": methods.RF_PIXELS_PER_CLASS},
    }  # fmt: skip


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (set, K, method, variant); recipe evals as variants."""
    groups: dict[tuple, list[tuple[dict, float, float]]] = {}
    for r in records:
        key = (r["set"], r["k"], r["method"], r["variant"])
        groups.setdefault(key, []).append((r["metrics"] or {}, r["steps"], r["cpu_s"]))
        for name, metrics in r.get("evals", {}).items():
            key = (r["set"], r["k"], r["method"], f"{r['variant']}+{name}")
            groups.setdefault(key, []).append((metrics, r["steps"], r["cpu_s"]))
    rows = []
    for (name, k, method, variant), runs in groups.items():
        row: dict[str, Any] = {"set": name, "k": k, "method": method, "variant": variant,
                               "n": len(runs),
                               "steps_mean": statistics.fmean(r[1] for r in runs),
                               "cpu_s_mean": statistics.fmean(r[2] for r in runs)}  # fmt: skip
        for metric in METRICS:
            values = [r[0][metric] for r in runs if r[0].get(metric) is not None]
            if values:
                row[f"{metric}_mean"] = statistics.fmean(values)
                row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows
