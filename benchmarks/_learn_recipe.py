"""Our recipe in ``bench_learn.py``: exactly ``napari-unet-loop train`` then ``predict``.

The CLI's own parser and ``run`` functions are called on folders holding the K corrected images
(symbolic links), so every default is the CLI's. Three things are hooked, each by replacing a
module attribute for the duration of one run (:func:`recipe_hooks`):

- the budget clock of :mod:`napari_unet.core.training.loop` becomes process CPU time, so a busy
  shared machine does not shrink a run's compute (on an idle machine with one thread CPU seconds
  equal the wall seconds the CLI counts); the width rule (``core.training.net_width``) times its
  pass in the same clock, so its estimate counts what the budget counts;
- ``iter_train`` is tapped to copy ``best.pt`` at fractions of the budget (the learning curve:
  what a user stopping then would get) and, for ablations only, to replace TrainConfig fields;
- for ablations only: the new model's constructor settings, and post-processing settings that
  have no CLI flag.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ISBI_LABEL_MAP = "0:1,255:0"


@contextlib.contextmanager
def patched(module: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``module.name = value`` for the block."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def link_folder(folder: Path, files: Sequence[Path]) -> Path:
    """A folder of symbolic links to ``files`` (same names); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        (folder / path.name).symlink_to(path.resolve())
    return folder


def _overridden(config, train_overrides: dict[str, Any]):
    """``config`` with ``train_overrides`` applied (``config`` itself when there are none)."""
    if train_overrides:  # a dict value replaces fields of a nested config (augment, loss...)
        return config.replace(
            **{
                key: getattr(config, key).replace(**value) if isinstance(value, dict) else value
                for key, value in train_overrides.items()
            }
        )
    return config


@contextlib.contextmanager
def recipe_hooks(
    *,
    clock: Callable[[], float],
    fractions: Sequence[float],
    snapshot_dir: Path,
    curve: list[dict[str, Any]],
    train_overrides: dict[str, Any],
    model_overrides: dict[str, Any],
) -> Iterator[dict[str, Any]]:
    """Install the hooks described in the module docstring; yields a dict filled with ``steps``."""
    import napari_unet.core.simulation.parts as model_parts
    import napari_unet.core.training.loop as core_train
    import napari_unet.core.training.net_width as net_width
    import napari_unet.core.training.pretrain as core_pretrain
    from napari_unet.core.training.config import StepEvent

    original_train, original_new_model = core_train.iter_train, model_parts.new_model_for
    state: dict[str, Any] = {"steps": 0}

    def tapped(model_or_checkpoint, items, config, **kwargs):
        config = _overridden(config, train_overrides)
        budget = 60.0 * float(config.minutes)
        best = Path(config.checkpoint_dir) / "best.pt"
        pending = sorted(f for f in fractions if f < 1.0)
        generator = original_train(model_or_checkpoint, items, config, **kwargs)
        while True:
            try:
                event = next(generator)
            except StopIteration as done:
                return done.value
            if isinstance(event, StepEvent):
                state["steps"] = event.step
                while pending and event.elapsed_s >= pending[0] * budget:
                    fraction = pending.pop(0)
                    copy = None
                    if best.exists():
                        copy = snapshot_dir / f"best_{fraction:.2f}.pt"
                        shutil.copyfile(best, copy)
                    curve.append(
                        {"fraction": fraction, "steps": event.step,
                         "cpu_s": round(event.elapsed_s, 2), "checkpoint": copy}
                    )  # fmt: skip
            yield event

    def new_model(name, items, task, **kwargs):
        # new_model_for builds the model train would build; overrides are its constructor settings
        return original_new_model(name, items, task, **kwargs, **model_overrides)

    clock_module = types.SimpleNamespace(perf_counter=clock)
    with (
        patched(core_train, "time", clock_module),
        patched(core_pretrain, "time", clock_module),  # pre-training counts in the same clock
        patched(net_width, "time", clock_module),  # the width rule times its pass in it too
        patched(core_train, "iter_train", tapped),
        patched(model_parts, "new_model_for", new_model),
    ):
        yield state


def train_recipe(
    work: Path,
    train_images: Sequence[Path],
    train_labels: Sequence[Path],
    *,
    membranes: bool,
    minutes: float,
    seed: int,
    fractions: Sequence[float],
    variant: dict[str, Any],
) -> dict[str, Any]:
    """``train --task instances|semantic --minutes M`` on the K images; returns the run record.

    Returns:
        ``{"checkpoint", "latest", "steps", "cpu_s", "wall_s", "curve", "argv"}``; ``curve``
        lists ``{"fraction", "steps", "cpu_s", "checkpoint"}`` (checkpoint None while the
        recipe had not yet published a model).
    """
    from napari_unet.cli import build_parser

    images = link_folder(work / "images", train_images)
    labels = link_folder(work / "labels", train_labels)
    out = work / "model.pt"
    argv = ["train", "--images", str(images), "--labels", str(labels)]
    argv += ["--task", "semantic" if membranes else "instances"]
    argv += ["--label-map", ISBI_LABEL_MAP] if membranes else []
    argv += ["--minutes", f"{minutes:g}", "--seed", str(seed), "--device", "cpu", "--threads", "1"]
    # the recipe trains a new model (--model unet); a variant's --model (later) wins
    argv += ["--out", str(out), "--model", "unet", *variant.get("cli", ())]
    args = build_parser().parse_args(argv)
    curve: list[dict[str, Any]] = []
    wall, cpu = time.perf_counter(), time.process_time()
    with (
        recipe_hooks(
            clock=time.process_time,
            fractions=fractions,
            snapshot_dir=work,
            curve=curve,
            train_overrides=dict(variant.get("train", {})),
            model_overrides=dict(variant.get("model", {})),
        ) as state,
        contextlib.redirect_stdout(io.StringIO()) as printed,
    ):
        status = args.run(args)
    if status:
        raise RuntimeError(f"train exited with {status}: {printed.getvalue()}")
    curve.append(
        {"fraction": 1.0, "steps": state["steps"], "cpu_s": round(time.process_time() - cpu, 2),
         "checkpoint": out}
    )  # fmt: skip
    return {
        "checkpoint": out,
        "latest": work / "model.training" / "latest.pt",
        "steps": state["steps"],
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "curve": curve,
        "argv": ["napari-unet-loop", *argv],
    }


def predict_recipe(
    checkpoint: Path,
    test_images: Sequence[Path],
    out: Path,
    *,
    membranes: bool,
    post: dict[str, Any] | None = None,
    cli: Sequence[str] = (),
    drop_unseeded: bool = False,
) -> list[Path]:
    """``predict IMAGES --model CHECKPOINT --labels instances|semantic``: the label files written.

    ``post`` replaces post-processing fields that have no CLI flag (ablations only); ``cli``
    adds flags (e.g. ``--threshold``); ``drop_unseeded`` leaves foreground that no interior seed
    reached as background instead of making each such region an object.
    """
    import napari_unet.core.postprocess.blocks as blocks
    import napari_unet.core.postprocess.labels as postprocess
    from napari_unet.cli import build_parser

    argv = ["predict", *map(str, test_images), "--model", str(checkpoint), "--out", str(out)]
    argv += ["--labels", "semantic" if membranes else "instances", "--device", "cpu", *cli]
    args = build_parser().parse_args(argv)
    original = postprocess.labels_from_probabilities

    def labels_from_probabilities(probabilities, *, task, config, roi=None):
        return original(probabilities, task=task, config=config.replace(**post), roi=roi)

    hook = (
        patched(postprocess, "labels_from_probabilities", labels_from_probabilities)
        if post
        else contextlib.nullcontext()
    )
    leftovers = (
        patched(blocks, "_label_leftovers", lambda labels, mask: labels.astype("int32"))
        if drop_unseeded
        else contextlib.nullcontext()
    )
    with hook, leftovers, contextlib.redirect_stdout(io.StringIO()) as printed:
        status = args.run(args)
    if status:
        raise RuntimeError(f"predict exited with {status}: {printed.getvalue()}")
    return [out / f"{Path(p).stem}_labels.tif" for p in test_images]
