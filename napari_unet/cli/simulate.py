"""``napari-unet-loop simulate``: the human-in-the-loop experiment on a labelled folder.

Each round predicts the next ``--per-round`` images with the current model, "corrects" them from
the ground truth, fine-tunes for ``--minutes`` (or ``--steps-per-round``) on everything corrected
so far, and scores images that are never corrected (``--eval-images``, held out up front by a
seeded permutation). Round 0 scores the initial model. Writes ``{"rounds": [...], "config":
{...}}`` to ``--json`` and, with ``--plot``, the accuracy against corrected images and minutes.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_unet.cli import simulate_context, train_width
from napari_unet.cli.simulate_report import machine_description, plot_curves, show_event
from napari_unet.cli.train import _non_negative_int, _positive_float, _positive_int

if TYPE_CHECKING:
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.models import SegmentationNet
    from napari_unet.core.postprocess.config import PostprocessConfig
    from napari_unet.core.simulation.experiment import SimulateConfig
    from napari_unet.core.training.items import TrainingItem
    from napari_unet.core.training.targets import LabelMap

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``simulate``."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate rounds of correcting and fine-tuning on a labelled folder",
        description=(
            "Each round predicts the next --per-round images with the current model, "
            '"corrects" them from the ground truth, fine-tunes for --minutes (or '
            "--steps-per-round) on everything corrected so far, and scores images that are "
            "never corrected (--eval-images, held out up front by a seeded permutation). Round 0 "
            "scores the initial model. Writes the rounds and the settings to --json and, with "
            "--plot, the accuracy against corrected images and minutes. A line per round goes to "
            "stdout and, every 10 s, a progress line to stderr (-q: none)."
        ),
    )
    add = parser.add_argument
    add("--images", required=True, type=Path, help="folder of images (TIFF/PNG)")
    add("--labels", required=True, type=Path, help="folder of ground truth with the same stems")
    add("--task", required=True, choices=("semantic", "binary", "instances"))
    add("--init", help="checkpoint or built-in model to start from (default: a new model)")
    add("--model", default="unet", help="architecture of a new model, or a built-in model (unet)")
    add("--depth", type=_positive_int, help="depth of a new model (architecture default)")
    add("--base-channels", type=_positive_int, help="width of a new model (architecture default)")
    add("--rounds", required=True, type=_non_negative_int, help="correction rounds after round 0")
    add("--per-round", required=True, type=_positive_int, help="images corrected per round")
    add("--minutes", type=_positive_float, help="training minutes per round")
    add("--steps-per-round", type=_positive_int, help="training steps per round")
    add("--eval-images", type=_positive_int, help="held-out images (default: 1/4 of the rest)")
    add("--label-map", help="truth value mapping SRC:DST,... (ISBI 2012: 0:1,255:0)")
    add("--seed", type=int, default=0, help="random seed (0)")
    add("--patch", type=_positive_int, help="output patch side (default: from the data, <= 256)")
    add("--batch-size", type=_positive_int, help="patches per step (default: from the data, 4+)")
    add("--lr", type=_positive_float, default=1e-3, help="learning rate (1e-3)")
    add("--tile", type=_positive_int, default=512, help="prediction tile side (512)")
    add("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    add("--threads", type=_positive_int, help="torch CPU threads")
    add("--work-dir", type=Path, help="keep each round's checkpoints here (default: temporary)")
    add("--json", required=True, type=Path, help="where to write the rounds (JSON)")
    simulate_context.add_arguments(parser)  # --context-slices: 2.5-D
    train_width.add_downscale_argument(parser)  # --downscale auto|K
    add("--plot", type=Path, help="where to write the curves (PNG)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the experiment, write the JSON (and plot); returns the exit status."""
    from napari_unet.cli._progress import LINE_INTERVAL_S, Every
    from napari_unet.core.atomic import atomic_write_json
    from napari_unet.core.checkpoint.format import read_checkpoint_info
    from napari_unet.core.generators import run_to_end
    from napari_unet.core.models import list_architectures
    from napari_unet.core.simulation.experiment import iter_simulate
    from napari_unet.core.training.downscale import with_downscale
    from napari_unet.core.training.targets import parse_label_map

    _check_outputs(args)
    label_map = parse_label_map(args.label_map) if args.label_map else None
    path = _start_path(args)
    start = read_checkpoint_info(path) if path else None  # read once: the model and the zoom
    model, items, normalization, postprocess = _start_model(args, label_map, path, start)
    data = _checked_data(args, model, items, label_map, start)
    model = with_downscale(model, data.downscale)  # the scale the objects ask for (1: as is)
    config = _simulate_config(args, label_map, normalization, data, start)
    show = functools.partial(show_event, task=args.task, due=Every(LINE_INTERVAL_S))
    events = iter_simulate(
        model,
        items,
        config,
        work_dir=str(args.work_dir) if args.work_dir else None,
        start_trained=bool(args.init) or args.model not in list_architectures(),
        postprocess=postprocess,
    )
    result = run_to_end(events, show)
    summary = result.to_dict(_run_description(args, config, model, len(items)))
    atomic_write_json(args.json, summary)
    print(f"wrote {args.json}")
    if args.plot:
        plot_curves(summary, args.plot, title=f"{args.images.parent.name} ({args.task})")
        print(f"wrote {args.plot}")
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unwritable outputs before any work; apply ``--threads``."""
    import torch

    from napari_unet.cli._output import check_output_file, existing_folder, probe_folder

    check_output_file(args.json, what="the JSON file", flag="--json", suffix=".json")
    if args.plot:
        check_output_file(args.plot, what="the plot", flag="--plot", suffix=".png")
    if args.work_dir:
        probe_folder(existing_folder(args.work_dir), what="the round checkpoints")
    if args.threads:
        torch.set_num_threads(args.threads)


def _start_model(
    args: argparse.Namespace, label_map: LabelMap | None, path: Path | None, info: Any
) -> tuple[SegmentationNet, list[TrainingItem], NormalizationConfig, PostprocessConfig | None]:
    """``(start model, the labelled images, their normalisation, its own post-processing)``:
    the checkpoint at ``path`` (``--init`` or the built-in ``--model``; ``info``: its
    description) with its stored post-processing, else (None) a new ``--model`` built for the
    data (post-processing None: the defaults)."""
    from napari_unet.cli.train import load_pairs
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.simulation.experiment import new_model_for

    normalization = info.normalization_config() if info else NormalizationConfig()
    items, radius = simulate_context.context_items_for(args, info, normalization)
    if items is None:
        items = load_pairs(args.images, args.labels, task=args.task, normalization=normalization)
    if path is not None:
        model, items, postprocess = _fitted_start(path, items, args.task, label_map)
        return model, items, normalization, postprocess
    extra = {"depth": args.depth, "base_channels": args.base_channels}
    model = new_model_for(
        args.model,
        items,
        args.task,
        label_map=label_map,
        seed=args.seed,
        **{k: v for k, v in extra.items() if v is not None},
    )
    model.context_slices = radius
    return model, items, normalization, None


def _start_path(args: argparse.Namespace) -> Path | None:
    """The start checkpoint: ``--init``, or the built-in ``--model`` (as ``predict --model``);
    None for a new model."""
    from napari_unet.core.checkpoint.format import builtin_checkpoints, resolve_checkpoint

    init = args.init
    if init is None and args.model in builtin_checkpoints():
        init = args.model
    return resolve_checkpoint(init) if init else None


def _fitted_start(
    path: Path, items: list, task: str, label_map: LabelMap | None
) -> tuple[SegmentationNet, list[TrainingItem], PostprocessConfig]:
    """The checkpoint at ``path`` loaded and fitted to ``items`` (``core.checkpoint.start_fit``:
    a wider head, the channels adapted; the fitted copy lives in a temporary folder only while
    it is loaded), the items as it takes them, and its stored post-processing."""
    import tempfile

    from napari_unet.cli._progress import PROGRESS
    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.core.checkpoint.start_fit import fit_start
    from napari_unet.core.simulation.versions import checkpoint_postprocess

    with tempfile.TemporaryDirectory(prefix="napari-unet-start-") as folder:
        fitted = fit_start(path, items, folder, task=task, label_map=label_map)
        if fitted.note:
            PROGRESS.info("%s", fitted.note)
        loaded = load_checkpoint(fitted.path)
        return loaded.model, fitted.items, checkpoint_postprocess(loaded.info, task)


def _checked_data(
    args: argparse.Namespace,
    model: SegmentationNet,
    items: list,
    label_map: LabelMap | None,
    start: Any = None,
) -> Any:
    """Refuse bad labels before any round (``core.training.preflight``) and return the data
    fingerprint (patch, batch and zoom range chosen from the data and the ``start`` checkpoint's
    description, None for a new model; ``--patch``/``--batch-size`` win)."""
    from napari_unet.cli._progress import PROGRESS
    from napari_unet.core.training import downscale as scale
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.core.training.fingerprint import fingerprint, net_geometry
    from napari_unet.core.training.preflight import preflight

    patch = (args.patch, args.patch) if args.patch else None
    preflight(items, task=args.task, label_map=label_map, patch_shape=patch)
    multiple, field = net_geometry(model.arch, model.config)
    scale.check_factor(args.downscale, model.arch)
    defaults = TrainConfig()
    data = fingerprint(
        items,
        task=args.task,
        size_multiple=multiple,
        receptive_field=field,
        default_patch=defaults.patch_shape,
        default_batch=defaults.batch_size,
        patch_shape=patch,
        batch_size=args.batch_size,
        label_map=label_map,
        start_zoom=start.trained_zoom if start is not None else None,
        downscale=args.downscale,
        can_downscale=model.arch in scale.ARCHS,
        start_downscale=scale.downscale_of(model.config),
    )
    (logger.warning if data.scale_warning else PROGRESS.info)("%s", data.describe())
    return data


def _simulate_config(
    args: argparse.Namespace,
    label_map: LabelMap | None,
    normalization: NormalizationConfig,
    data: Any,
    start: Any = None,
) -> SimulateConfig:
    """The experiment's settings from the command line (``start``: the start checkpoint's info,
    whose class weighting a fine-tune keeps)."""
    from napari_unet.core.inference.prediction import PredictConfig
    from napari_unet.core.simulation.experiment import SimulateConfig
    from napari_unet.core.training.balance import with_start_balance
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.core.training.gaps import with_gap_rule
    from napari_unet.core.training.loss_augment_config import AugmentConfig
    from napari_unet.core.training.targets import TargetConfig

    return SimulateConfig(
        task=args.task,
        rounds=args.rounds,
        per_round=args.per_round,
        minutes=args.minutes,
        steps_per_round=args.steps_per_round,
        eval_images=args.eval_images,
        seed=args.seed,
        label_map=tuple(label_map.items()) if label_map else None,
        train=TrainConfig(
            task=args.task,
            batch_size=data.batch_size,
            patch_shape=data.patch_shape,
            lr=args.lr,
            augment=AugmentConfig(affine_scale=data.zoom),
            targets=with_start_balance(
                with_gap_rule(TargetConfig(task=args.task), data.gap_share), start
            ),
            val_fraction=0.0,
            normalization=normalization,
            device=args.device,
        ),
        predict=PredictConfig(tile_shape=(args.tile, args.tile), device=args.device),
        flat_copies=args.flat_copies,
    )


def _run_description(
    args: argparse.Namespace, config: SimulateConfig, model: SegmentationNet, n_images: int
) -> dict[str, Any]:
    """What the JSON says about the run besides its rounds: command, settings, model, machine."""
    return {
        "command": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "run"
        },
        "simulate": config.to_dict(),
        "model": {"arch": model.arch, **model.config},
        "n_images": n_images,
        "machine": machine_description(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
