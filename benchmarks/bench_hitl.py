"""Human-in-the-loop learning curve through the REAL session folder and trainer process.

Usage::

    python benchmarks/bench_hitl.py [--quick] [--json OUT] [--plot OUT.png] \
        [--dataset isbi2012|dsb2018|both]

It reuses ``core.simulation.experiment.iter_simulate`` (seeded split, held-out images never
corrected, correction effort, held-out scoring) with a custom ``trainer`` hook that goes the way the
GUI goes: each round, the images just "corrected" (prediction replaced by the ground truth) are
added to a :class:`~napari_unet.session.Session` (the user's file as source) and saved as reviewed
slices (``labels`` = truth, ``reviewed`` = all True, ``snapshot`` = the model's prediction); then
``trainer.process.run_trainer`` runs in a **spawned** process (as ``TrainerClient`` starts it),
reads its data from the session folder, learns for ``--minutes`` starting from the previous
round's newest version and publishes versions; the newest version is loaded back as the model.

Curves: ISBI 2012 (semantic, label map 0:1,255:0, membrane = class 1): membrane ``iou`` and
``rand_error``; DSB2018 (instances): ``ap50`` and ``f1_50``; against corrected images and
minutes of training (the trainer's own loop time; ``wall_minutes`` adds process start-up, data
loading and the baseline validation). The trainer holds back ``val_fraction`` of the corrected
tiles and publishes a version only when it beats the start model there (the GUI's rule), so a
round may publish nothing: the next round then starts again from the previous version.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import multiprocessing
import os
import queue
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("bench_hitl")

DATA_ROOT = Path(
    os.environ.get("NAPARI_UNET_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled folder: ``<root>/<folder>/{images,labels}``, paired by file stem."""

    key: str
    folder: str
    task: str
    label_map: tuple[tuple[int, int], ...] | None
    metrics: tuple[str, ...]
    eval_images: int


DATASETS = {
    "isbi2012": Dataset(
        "isbi2012", "isbi2012", "semantic", ((0, 1), (255, 0)), ("iou", "rand_error"), 8
    ),
    "dsb2018": Dataset("dsb2018", "dsb2018_fluo", "instances", None, ("ap50", "f1_50", "iou"), 12),
}

#: name -> (rounds, per_round, minutes, steps, depth, base, patch, batch, eval cap, val_fraction)
MODES = {
    "full": dict(rounds=4, per_round=2, minutes=2.0, steps=None, depth=4, base=16, patch=128,
                 batch=4, eval_cap=None, val_fraction=0.1, val_every=10),
    "quick": dict(rounds=2, per_round=1, minutes=0.5, steps=None, depth=3, base=8, patch=128,
                  batch=4, eval_cap=3, val_fraction=0.1, val_every=10),
    "smoke": dict(rounds=2, per_round=1, minutes=None, steps=3, depth=2, base=4, patch=32,
                  batch=2, eval_cap=1, val_fraction=0.0, val_every=2),
}  # fmt: skip


def load_folder(spec: Dataset, root: Path, normalization: Any) -> tuple[list, dict[str, Path]]:
    """Normalised ``TrainingItem`` objects (full truth, raw values) and their source files."""
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.io.images import list_images, read_image
    from napari_unet.core.training.items import TrainingItem

    folder = root / spec.folder
    labels = {p.stem: p for p in list_images(folder / "labels")}
    items, sources = [], {}
    for path in list_images(folder / "images"):
        image = np.asarray(read_image(path).image)
        if image.ndim != 2:
            raise SystemExit(f"{path}: expected a 2-D grayscale image, got shape {image.shape}")
        truth = np.asarray(read_image(labels[path.stem]).image)
        items.append(
            TrainingItem(image=normalize(image[None], normalization), labels=truth, name=path.stem)
        )
        sources[path.stem] = path
    return items, sources


class SessionTrainer:
    """The ``iter_simulate`` trainer hook: session folder -> trainer process -> version.

    Args:
        session: the (writable) session the corrections go to.
        start: checkpoint of the initial model (round 1 starts from it).
        sources: image file of every item, by name; truths: label-mapped truth by name.
        simulate: the ``SimulateConfig`` (how the snapshot prediction is made).
        train_config: the ``TrainConfig`` dict of every round's request.
        threads: torch threads of the trainer. in_process: call ``run_trainer`` here (debug).
    """

    def __init__(
        self, session, start, sources, truths, simulate, train_config, *, threads, in_process=False
    ) -> None:
        self.session, self.start_from = session, str(start)
        self.sources, self.truths, self.simulate = sources, truths, simulate
        self.train_config, self.threads, self.in_process = train_config, threads, in_process
        self.written: dict[str, str] = {}  # item name -> session image id
        self.extras: list[dict] = []  # per round: version, loop/start-up seconds, validation

    def __call__(self, model, items, round_index):
        from napari_unet.core.simulation.experiment import predict_labels
        from napari_unet.trainer.events import FinetuneRequest

        for item in items:
            if item.name in self.written:
                continue
            snapshot = predict_labels(model, item.image, self.simulate)
            truth = self.truths[item.name]
            image_id = self.session.add_image(
                item.name, axes="YX", source=self.sources[item.name], task=self.simulate.task
            )
            self.session.save_slice(
                image_id,
                0,
                labels=truth.astype(np.int32),
                reviewed=np.ones(truth.shape, bool),
                snapshot=snapshot.astype(np.int32),
            )
            self.written[item.name] = image_id
        request = FinetuneRequest(
            session=str(self.session.root),
            start_from=self.start_from,
            train_config=self.train_config,
            num_threads=self.threads,
            device="cpu",
            nice=0,
            version_name=f"round {round_index}",
        )
        extra = yield from self._run(request)
        extra["round"] = round_index
        if extra["versions"]:
            from napari_unet.core.checkpoint.format import load_checkpoint
            from napari_unet.core.config import LR_FINETUNE

            self.start_from = extra["versions"][-1]
            # later rounds fine-tune a trained version: the GUI's default learning rate for that
            self.train_config = {**self.train_config, "lr": LR_FINETUNE}
            model = load_checkpoint(self.session.version_path(self.start_from)).model
        extra["model_version"] = self.start_from if extra["versions"] or self.extras else "start"
        if not extra["versions"] and self.extras:
            extra["model_version"] = self.extras[-1]["model_version"]
        self.extras.append(extra)
        return model

    def _run(self, request):
        """Run one trainer; yields its ``StepEvent`` objects, returns the round's record."""
        from napari_unet.core.training.config import StepEvent, ValidationEvent
        from napari_unet.trainer.events import (
            TrainerFailed,
            TrainerFinished,
            VersionPublished,
        )
        from napari_unet.trainer.guard import VersionSkipped
        from napari_unet.trainer.process import run_trainer

        start = time.perf_counter()
        if self.in_process:
            events, control, process = queue.Queue(), queue.Queue(), None
            run_trainer(request.to_dict(), events, control)
        else:
            context = multiprocessing.get_context("spawn")
            events, control = context.Queue(), context.Queue()
            process = context.Process(
                target=run_trainer, args=(request.to_dict(), events, control), daemon=True
            )
            process.start()
        extra: dict[str, Any] = {
            "versions": [],
            "skipped": [],
            "startup_s": None,
            "loop_s": 0.0,
            "val": None,
        }
        final = None
        try:
            while final is None:
                try:
                    event = events.get(timeout=0.5)
                except queue.Empty:
                    if process is None or not process.is_alive():
                        code = None if process is None else process.exitcode
                        final = TrainerFailed(f"the trainer process ended (exit code {code})")
                    continue
                if extra["startup_s"] is None:
                    extra["startup_s"] = time.perf_counter() - start
                if isinstance(event, StepEvent):
                    extra["loop_s"] = float(event.elapsed_s)
                    yield event
                elif isinstance(event, ValidationEvent):  # step 0: the start model's
                    extra["val" if event.step else "val_baseline"] = event.metrics.get("score")
                elif isinstance(event, VersionPublished):
                    extra["versions"].append(event.version_id)
                elif isinstance(event, VersionSkipped):  # not better than its parent
                    extra["skipped"].append(event.message)
                elif isinstance(event, (TrainerFinished, TrainerFailed)):
                    final = event
        finally:
            if process is not None:
                if process.is_alive() and final is None:
                    control.put("stop")
                process.join(30)
                if process.is_alive():
                    process.terminate()
                    process.join(5)
        if isinstance(final, TrainerFailed):
            raise RuntimeError(f"round failed: {final.message}")
        extra["steps"], extra["reason"] = final.steps, final.reason
        extra["wall_s"] = time.perf_counter() - start
        return extra


def run_dataset(spec: Dataset, args: argparse.Namespace, mode: dict, work: Path) -> dict:
    """Run the rounds on one data set; returns its flat, prefixed results."""
    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.config import LR_FINETUNE
    from napari_unet.core.generators import run_to_end
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.inference.prediction import PredictConfig
    from napari_unet.core.simulation.experiment import (
        RoundRecord,
        SimulateConfig,
        iter_simulate,
        mapped_truth,
        new_model_for,
    )
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.session import Session

    normalization = NormalizationConfig()
    items, sources = load_folder(spec, args.data_root, normalization)
    label_map = dict(spec.label_map) if spec.label_map else None
    n_eval = min(spec.eval_images, mode["eval_cap"] or spec.eval_images)
    config = SimulateConfig(
        task=spec.task,
        rounds=mode["rounds"],
        per_round=mode["per_round"],
        minutes=mode["minutes"],
        steps_per_round=mode["steps"],
        eval_images=n_eval,
        seed=args.seed,
        label_map=spec.label_map,
        predict=PredictConfig(tile_shape=(512, 512), device="cpu"),
    )
    if args.init:  # a built-in model or checkpoint: every round must beat its parent
        from napari_unet.core.checkpoint.format import load_checkpoint, resolve_checkpoint

        start = resolve_checkpoint(args.init)
        loaded = load_checkpoint(start)
        model, normalization = loaded.model, loaded.info.normalization_config()
        items, sources = load_folder(spec, args.data_root, normalization)
    else:
        model = new_model_for(
            "unet",
            items,
            spec.task,
            label_map=label_map,
            seed=args.seed,
            depth=mode["depth"],
            base_channels=mode["base"],
        )
        start = save_checkpoint(
            work / f"{spec.key}_start.pt", model, task=spec.task, normalization=normalization
        )
    train = TrainConfig(
        task=spec.task,
        minutes=mode["minutes"],
        steps=mode["steps"],
        batch_size=mode["batch"],
        patch_shape=(mode["patch"], mode["patch"]),
        val_fraction=mode["val_fraction"],
        val_tile=max(32, min(128, mode["patch"])),
        val_every=mode["val_every"],
        seed=args.seed,
        device="cpu",
        **({"lr": LR_FINETUNE} if args.init else {}),  # a trained start: the GUI's fine-tune lr
    ).to_dict()
    folder = (args.session_dir or work) / f"{spec.key}_session"
    session = Session.create(folder)
    truths = {item.name: mapped_truth(item.labels, label_map) for item in items}
    hook = SessionTrainer(
        session,
        start,
        sources,
        truths,
        config,
        train,
        threads=args.threads,
        in_process=args.in_process,
    )
    records: list[RoundRecord] = []

    def show(event: Any) -> None:
        if isinstance(event, RoundRecord):
            records.append(event)
            shown = {k: round(event.metrics.get(k, float("nan")), 4) for k in spec.metrics}
            print(
                f"[{spec.key}] round {event.round}: {event.corrected_images} corrected, "
                f"{event.steps} steps, {event.pixels_corrected} px / "
                f"{event.objects_corrected} objects edited, {shown}",
                flush=True,
            )

    events = iter_simulate(model, items, config, trainer=hook)
    result = run_to_end(events, show)
    return summarize(spec, records, hook.extras, result, session, n_eval)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="1 data set, 2 rounds x 1 image x 0.5 min, tiny net")
    add("--smoke", action="store_true", help="test mode: a few steps per round, depth-2 net")
    add("--dataset", choices=("isbi2012", "dsb2018", "both"), help="default: both (quick: isbi)")
    add("--data-root", type=Path, default=DATA_ROOT, help="folder holding isbi2012/, dsb2018_fluo/")
    add("--json", type=Path, help="write the results here")
    add("--plot", type=Path, help="PNG; with several data sets, <stem>_<dataset>.png")
    add("--rounds", type=int), add("--per-round", type=int), add("--minutes", type=float)
    add("--base-channels", type=int), add("--depth", type=int)
    add("--threads", type=int, default=os.cpu_count(), help="trainer torch threads (all cores)")
    add("--seed", type=int, default=0)
    add("--init", help="start from this built-in model or checkpoint (default: a new model)")
    add("--session-dir", type=Path, help="keep the sessions here (default: temporary)")
    add("--in-process", action="store_true", help="run the trainer here, not spawned (debug)")
    add("--replot", type=Path, help="only redraw --plot from this results JSON")
    args = parser.parse_args(argv)
    if args.replot:
        import json

        return write_plots(json.loads(args.replot.read_text(encoding="utf-8")), args.plot)
    logging.basicConfig(level=logging.WARNING)
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    mode = dict(MODES[name])
    for key, value in (
        ("rounds", args.rounds),
        ("per_round", args.per_round),
        ("minutes", args.minutes),
        ("base", args.base_channels),
        ("depth", args.depth),
    ):
        if value is not None:
            mode[key] = value
    chosen = args.dataset or ("isbi2012" if name != "full" else "both")
    keys = ["isbi2012", "dsb2018"] if chosen == "both" else [chosen]
    import torch

    from napari_unet.cli.simulate import machine_description

    results: dict[str, Any] = {
        "mode": name,
        "quick": name != "full",
        "datasets": keys,
        "rounds": mode["rounds"],
        "per_round": mode["per_round"],
        "minutes_per_round": mode["minutes"],
        "steps_per_round": mode["steps"],
        "model": args.init or f"unet depth {mode['depth']} base {mode['base']} (from scratch)",
        "patch": mode["patch"],
        "batch_size": mode["batch"],
        "val_fraction": mode["val_fraction"],
        "trainer_threads": args.threads,
        "trainer": "in-process" if args.in_process else "spawned process (run_trainer)",
    }
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-hitl-") as tmp:
        for key in keys:
            results.update(run_dataset(DATASETS[key], args, mode, Path(tmp)))
        if args.session_dir is None:
            for key in keys:
                results[f"{key}_session"] = None  # removed with the temporary folder
    results["total_minutes"] = round((time.perf_counter() - began) / 60.0, 2)
    results["machine"] = machine_description()
    results["torch_threads_main"] = torch.get_num_threads()
    results["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    results["command"] = " ".join(["python", "benchmarks/bench_hitl.py", *(argv or sys.argv[1:])])
    for key, value in results.items():
        if not isinstance(value, list):
            print(f"{key:34s} {value}")
    if args.json:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return write_plots(results, args.plot) if args.plot else 0


def write_plots(results: dict, path: Path) -> int:
    """One PNG per data set: ``path``, or ``<stem>_<dataset>.png`` with several."""
    keys = results["datasets"]
    for key in keys:
        target = path if len(keys) == 1 else path.with_name(f"{path.stem}_{key}{path.suffix}")
        print(f"wrote {plot(results, DATASETS[key], target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
