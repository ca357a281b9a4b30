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
import datetime
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench_hitl_report import plot, summarize, write_plots  # noqa: F401
from _bench_hitl_session import (
    DATA_ROOT,
    DATASETS,
    MODES,
    Dataset,
    SessionTrainer,
    load_folder,
)

logger = logging.getLogger("bench_hitl")


def _start_model(spec: Dataset, args, mode: dict, work: Path, first: tuple, label_map):
    """``(model, start checkpoint, items, sources)``: ``--init``'s model (items re-read with its
    normalisation) or a new seeded one saved to ``work``; ``first``: ``(items, sources,
    normalization)`` as first read."""
    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.simulation.experiment import new_model_for

    items, sources, normalization = first
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
    return model, start, items, sources


def _train_config(spec: Dataset, args: argparse.Namespace, mode: dict) -> dict:
    """The ``TrainConfig`` dict of every round's request."""
    from napari_unet.core.config import LR_FINETUNE
    from napari_unet.core.training.config import TrainConfig

    return TrainConfig(
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


def _printer(spec: Dataset, records: list):
    """The ``run_to_end`` callback: keeps each ``RoundRecord`` in ``records`` and prints it."""
    from napari_unet.core.simulation.experiment import RoundRecord

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

    return show


def run_dataset(spec: Dataset, args: argparse.Namespace, mode: dict, work: Path) -> dict:
    """Run the rounds on one data set; returns its flat, prefixed results."""
    from napari_unet.core.checkpoint.format import read_checkpoint_info
    from napari_unet.core.generators import run_to_end
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.inference.prediction import PredictConfig
    from napari_unet.core.simulation.experiment import (
        RoundRecord,
        SimulateConfig,
        iter_simulate,
        mapped_truth,
    )
    from napari_unet.core.simulation.versions import checkpoint_postprocess
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
    model, start, items, sources = _start_model(
        spec, args, mode, work, (items, sources, normalization), label_map
    )
    train = _train_config(spec, args, mode)
    folder = (args.session_dir or work) / f"{spec.key}_session"
    session = Session.create(folder)
    truths = {item.name: mapped_truth(item.labels, label_map) for item in items}
    own = checkpoint_postprocess(read_checkpoint_info(start), config.task)  # the start's own
    hook = SessionTrainer(
        session,
        start,
        sources,
        truths,
        config,
        train,
        threads=args.threads,
        in_process=args.in_process,
        postprocess=own,
    )
    records: list[RoundRecord] = []

    show = _printer(spec, records)
    events = iter_simulate(model, items, config, trainer=hook, postprocess=own)
    result = run_to_end(events, show)
    return summarize(spec, records, hook.extras, result, session, n_eval)


def _parser() -> argparse.ArgumentParser:
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
