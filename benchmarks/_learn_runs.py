"""One run of ``bench_learn.py`` (train one method on K images, score it) and the aggregation."""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("bench_learn")

#: Recipe variants with ONE factor moved toward the plain loop (``--ablations``).
#: ``cli``: extra train flags; ``train``: TrainConfig fields (a dict edits a nested config);
#: ``model``: constructor settings of the new model.
FLIPS_ONLY = {"elastic": False, "affine_scale": (1.0, 1.0), "affine_rotation_deg": 0.0,
              "gamma": (1.0, 1.0), "brightness": 0.0, "contrast": 0.0, "noise_std": 0.0,
              "blur_sigma": (0.0, 0.0)}  # fmt: skip
ABLATIONS: dict[str, dict[str, Any]] = {
    "small_net": {"factor": "model size: depth 4, base 16 (the plain loop's; default base 32)",
                  "model": {"depth": 4, "base_channels": 16}},
    "shallow_net": {"factor": "model size: depth 3, base 16", "model": {"depth": 3,
                    "base_channels": 16}},
    "patch128": {"factor": "patch 128 (default 256)", "cli": ["--patch", "128"]},
    "no_class_balance": {"factor": "loss weights: inverse-frequency class balancing off (w_c = 1)",
                         "train": {"targets": {"class_balance": False}}},
    "no_border_weights": {"factor": "border weight map off", "train": {"targets":
                          {"border_weights": False}}},
    "no_elastic": {"factor": "elastic deformation off", "train": {"augment": {"elastic": False}}},
    "flips_only": {"factor": "augmentation = rot90/flips only (as the plain loop)",
                   "train": {"augment": FLIPS_ONLY}},
    "constant_lr": {"factor": "LR schedule constant (default cosine)",
                    "train": {"schedule": "constant"}},
    "no_val_holdout": {"factor": "no held-back validation tiles (--val-fraction 0): all tiles "
                       "trained, final model kept", "cli": ["--val-fraction", "0"]},
    "fp32": {"factor": "fp32 training (default bf16 autocast on this CPU)",
             "train": {"bf16_cpu": False}},
    "boundary_width1": {"factor": "boundary class 1 px wide (default 2)",
                        "train": {"targets": {"boundary_width": 1}}},
    "class_balance_on": {"factor": "loss weights: inverse-frequency class balancing on",
                         "train": {"targets": {"class_balance": True}}},
    "sqrt_class_balance": {"factor": "loss weights: square root of the inverse-frequency class "
                           "weights", "train": {"targets": {"class_balance": "sqrt"}}},
    "lr3e-3_warmup": {"factor": "learning rate 3e-3 (1e-3) with 6 warm-up steps, cosine",
                      "train": {"lr": 3e-3, "warmup_steps": 6}},
    "patch128_batch16": {"factor": "patch 128, batch 16 (256, 4: same pixels per step)",
                         "cli": ["--patch", "128", "--batch-size", "16"]},
    "wide_net": {"factor": "model size: depth 4, base 48 (default base 32)",
                 "model": {"depth": 4, "base_channels": 48}},
    "no_grad_clip": {"factor": "gradient clipping off (default norm 1.0; the plain loop has none)",
                     "train": {"grad_clip": None}},
    "finetune_fluo": {"factor": "start from the built-in fluo-nuclei (train --model fluo-nuclei, "
                      "lr 1e-3)", "cli": ["--model", "fluo-nuclei"]},
    "distance_aux": {"factor": "distance auxiliary head (train --aux distance): per-object "
                     "normalised distance learnt next to the 3 classes; watershed seeded by its "
                     "maxima (seeds 'distance') instead of the interior probability",
                     "cli": ["--aux", "distance"]},
    "finetune_fluo_lr1e-4": {"factor": "start from the built-in fluo-nuclei, lr 1e-4",
                             "cli": ["--model", "fluo-nuclei", "--lr", "1e-4"]},
    "ssl": {"factor": "self-supervised pre-training, 25 % of the budget, on the K images + the "
            "pool's others (no test image)", "unlabelled": "pool", "cli": ["--pretrain-fraction",
            "0.25"]},
}  # fmt: skip
#: Extra scorings of a trained recipe run, no retraining (``--evals``).
EVALS: dict[str, dict[str, Any]] = {
    "plain_post": {"factor": "the plain loop's post-processing on the recipe's probabilities",
                   "cli": ["--output", "both"], "plain_post": True},
    "last_checkpoint": {"factor": "last weights (latest.pt) instead of the validation-best",
                        "checkpoint": "latest"},
    "predict_fp32": {"factor": "prediction in fp32 (default: bf16 autocast on this CPU)",
                     "cli": ["--precision", "fp32"]},
    "fill_holes": {"factor": "post-processing: holes filled", "post": {"fill_holes": True}},
    "interior_0.3": {"factor": "post-processing: interior (seed) threshold 0.3 (0.5)",
                     "post": {"interior_threshold": 0.3}},
    "interior_0.7": {"factor": "post-processing: interior (seed) threshold 0.7 (0.5)",
                     "post": {"interior_threshold": 0.7}},
    "threshold_0.3": {"factor": "post-processing: foreground threshold 0.3 (0.5)",
                      "cli": ["--threshold", "0.3"]},
    "threshold_0.7": {"factor": "post-processing: foreground threshold 0.7 (0.5)",
                      "cli": ["--threshold", "0.7"]},
    "drop_unseeded": {"factor": "post-processing: foreground no interior seed reaches is dropped "
                      "(default: each such region becomes an object)", "drop_unseeded": True},
    "min_size_20": {"factor": "post-processing: objects < 20 px removed (0)",
                    "cli": ["--min-size", "20"]},
    "interior_seeds": {"factor": "post-processing: interior seeds (the 3-class watershed) "
                       "instead of a distance head's", "post": {"seeds": "interior"}},
    "untuned": {"factor": "post-processing: the defaults a from-scratch model had before the "
                "operating point was tuned (threshold 0.5, seeds 0.5, min size 0, unseeded "
                "object)", "post": {"threshold": 0.5, "interior_threshold": 0.5, "min_size": 0,
                                    "unseeded": "object"}},
    "untuned_membranes": {"factor": "post-processing: threshold 0.5, min size 0 as flags (the "
                          "membrane setting before it was tuned; argmax)",
                          "cli": ["--threshold", "0.5", "--min-size", "0"]},
}  # fmt: skip
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
