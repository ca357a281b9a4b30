"""The session side of ``bench_hitl.py``: the data sets, their loading, and the ``iter_simulate``
trainer hook that saves corrections to a session folder and runs the trainer process."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import time
from pathlib import Path
from typing import Any

import numpy as np

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
        postprocess: the start model's own post-processing (its checkpoint's stored settings;
            default ``simulate.postprocess_config``); each published version's own replaces it.
            The snapshot (what the user would correct) is labelled with it, as the Segment dock
            labels with the version's own settings.
    """

    def __init__(
        self, session, start, sources, truths, simulate, train_config, *, threads,
        in_process=False, postprocess=None,
    ) -> None:  # fmt: skip
        self.session, self.start_from = session, str(start)
        self.postprocess = postprocess or simulate.postprocess_config
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
            snapshot = predict_labels(model, item.image, self.simulate, self.postprocess)
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
            from napari_unet.core.simulation.versions import Version, checkpoint_postprocess

            self.start_from = extra["versions"][-1]
            # later rounds fine-tune a trained version: the GUI's default learning rate for that
            self.train_config = {**self.train_config, "lr": LR_FINETUNE}
            loaded = load_checkpoint(self.session.version_path(self.start_from))
            # the published version with its own (re-tuned) post-processing, as simulate scores it
            self.postprocess = checkpoint_postprocess(loaded.info, self.simulate.task)
            model = Version(loaded.model, self.postprocess)
        extra["model_version"] = self.start_from if extra["versions"] or self.extras else "start"
        if not extra["versions"] and self.extras:
            extra["model_version"] = self.extras[-1]["model_version"]
        self.extras.append(extra)
        return model

    def _start(self, request):
        """``(events, control, process)``: the trainer spawned (``process`` None: it ran here)."""
        from napari_unet.trainer.process import run_trainer

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
        return events, control, process

    def _run(self, request):
        """Run one trainer; yields its ``StepEvent`` objects, returns the round's record."""
        from napari_unet.core.training.config import StepEvent, ValidationEvent
        from napari_unet.trainer.events import (
            TrainerFailed,
            TrainerFinished,
            VersionPublished,
        )
        from napari_unet.trainer.guard import VersionSkipped

        start = time.perf_counter()
        events, control, process = self._start(request)
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
