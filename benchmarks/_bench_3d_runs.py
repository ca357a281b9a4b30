"""The embryo and block parts of ``bench_3d.py``: 3-D instance AP@0.5 against 2-D slices
stitched in Z, and seconds and peak memory of predicting a 512 x 512 x 32 block."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from _bench_3d_models import _models, _predict
from _bench_3d_parts import (
    EMBRYO_SLICES,
    EMBRYO_VOXEL,
    embryo_volume,
    isbi_volume,
    slice_items,
    slice_mask,
    stitch_z,
    train_budget,
    volume_item,
)
from _bench_common import current_rss_mb

logger = logging.getLogger("bench_3d")
#: Embryo objects below this many voxels are dropped (a tenth of stack 00's smallest nucleus).
EMBRYO_MIN_VOXELS = 100


def _embryo_scores(
    model, image, truth, *, volumetric: bool, device: str, joint: bool, postprocess=None
) -> dict:
    """AP@0.5 (the issue's figure), AP@0.3, foreground IoU and object counts of one arm on one
    test stack (16 or 8 nuclei: AP@0.5 turns on objects whose IoU sits near 0.5, so the others
    say whether an arm finds the nuclei at all); ``postprocess``: the run's re-tuned settings
    (``provenance["postprocess"]``), else the defaults."""
    from napari_unet.core.evaluation.instances import average_precision
    from napari_unet.core.postprocess.config import PostprocessConfig
    from napari_unet.core.postprocess.labels import labels_from_probabilities
    from napari_unet.core.postprocess.volume import volume_labels

    probabilities = _predict(model, image, "instances", device, joint=joint)
    config = PostprocessConfig(output="instances").replace(**(postprocess or {}))
    if volumetric:
        labels = volume_labels(probabilities, task="instances", config=config, spacing=EMBRYO_VOXEL)
    else:
        per_slice = labels_from_probabilities(probabilities, task="instances", config=config)
        labels = stitch_z(np.asarray(per_slice))
    sizes = np.bincount(labels.ravel())
    labels = np.where(sizes[labels] < EMBRYO_MIN_VOXELS, 0, labels)  # specks, both models alike
    ap = average_precision(labels, truth, thresholds=(0.3, 0.5))
    found, true = labels > 0, truth > 0
    return {
        "ap50": float(ap[0.5]),
        "ap30": float(ap[0.3]),
        "fg_iou": float(np.count_nonzero(found & true) / max(np.count_nonzero(found | true), 1)),
        "n_pred": int(len(np.unique(labels)) - 1),
        "n_true": int(len(np.unique(truth)) - 1),
    }


def run_embryo(args) -> dict:
    pairs = [("00", "01")] if args.quick else [("00", "01"), ("01", "00")]
    budget = 60 * args.embryo_cpu_minutes
    aps, details = {"2d": [], "3d": []}, {"2d": [], "3d": []}
    for train_name, test_name in pairs:
        image, truth = embryo_volume(train_name)
        slices = EMBRYO_SLICES[train_name]
        net2d, net3d = _models(3, EMBRYO_VOXEL, 3, args.seed)
        tuned = args.embryo_protocol == "tuned"
        common = dict(task="instances", cpu_s=budget, batch=2, seed=args.seed, device=args.device,
                      cosine=args.embryo_schedule == "cosine" or tuned, tuned=tuned)  # fmt: skip
        t2 = train_budget(
            net2d,
            slice_items(image, truth, slices, train_name, joint=args.embryo_norm == "stack"),
            patch=(96, 96),
            **common,
        )
        item = volume_item(image, truth, slice_mask(image.shape, slices), train_name)
        t3 = train_budget(net3d, [item], patch=(8, 64, 64), **common)
        test_image, test_truth = embryo_volume(test_name)
        for key, trained in (("2d", t2), ("3d", t3)):
            scores = _embryo_scores(
                trained.model,
                test_image,
                test_truth,
                volumetric=key == "3d",
                device=args.device,
                joint=key == "3d" or args.embryo_norm == "stack",
                postprocess=trained.postprocess,
            )
            aps[key].append(scores["ap50"])
            details[key].append({**scores, "steps": trained.steps,
                                 "operating_point": trained.operating_point})  # fmt: skip
            logger.info("embryo %s->%s %s: %s (%d steps)", train_name, test_name, key, scores,
                        trained.steps)  # fmt: skip
    return {
        "embryo_pairs": [f"{a}->{b}" for a, b in pairs],
        "embryo_normalization_2d": args.embryo_norm,
        "embryo_schedule": "cosine" if args.embryo_protocol == "tuned" else args.embryo_schedule,
        "embryo_protocol": args.embryo_protocol,
        "embryo_min_object_voxels": EMBRYO_MIN_VOXELS,
        "embryo_ap50_2d": float(np.mean(aps["2d"])),
        "embryo_ap50_3d": float(np.mean(aps["3d"])),
        "embryo_ap50_2d_each": aps["2d"],
        "embryo_ap50_3d_each": aps["3d"],
        "embryo_scores_2d_each": details["2d"],
        "embryo_scores_3d_each": details["3d"],
    }


def _peak_rss_during(fn) -> tuple[float, float]:
    """``(seconds, peak resident memory above the start in MiB)`` of ``fn()``, RSS polled every
    5 ms in a thread (the kernel's high-water mark cannot be reset without privileges)."""
    import threading

    base, peak, done = current_rss_mb(), [0.0], threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], current_rss_mb())
            time.sleep(0.005)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    tick = time.perf_counter()
    try:
        fn()
    finally:
        seconds = time.perf_counter() - tick
        done.set()
        watcher.join()
    return seconds, max(peak[0], current_rss_mb()) - base


def run_block(models, args) -> dict:
    """Seconds and peak memory of predicting one 32 x 512 x 512 block with each model."""
    image, _ = isbi_volume()
    block = np.pad(image, ((1, 1), (0, 0), (0, 0)), mode="reflect")  # 32 slices
    result = {"block_shape": list(block.shape)}
    for key, model in models.items():
        _predict(model, block[:4], "binary", args.device)  # warm-up (allocations, kernels)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        seconds, peak = _peak_rss_during(lambda m=model: _predict(m, block, "binary", args.device))
        result[f"block_seconds_{key}"] = round(seconds, 2)
        result[f"block_peak_rss_mb_{key}"] = round(peak, 1)
        if args.device.startswith("cuda"):
            result[f"block_peak_gpu_mb_{key}"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result
