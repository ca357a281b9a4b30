"""Does a restoration (denoising) U-Net restore real data? PSNR before and after, side by side.

A small padded U-Net (task ``restoration``) is trained for a few hundred steps on noisy copies of a
crop of a real shared image (ISBI 2012 EM by default; ``--data dsb2018`` for fluorescent nuclei),
input the noisy copy, target the clean image scaled to [0, 1]. It then restores a held-out noisy
copy of a *different* image of the same set through the normal prediction path
(``core.inference.prediction.predict``, tiled) and the PSNR of the noisy and of the restored image
against the clean one are reported, with their difference (the gain, in dB).

    python benchmarks/bench_restore.py --quick --json restore.json

Writes one flat JSON record: ``psnr_noisy_db``, ``psnr_restored_db``, ``gain_db``, the settings,
the training seconds and the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.evaluation.restoration import noisy_copy, psnr
from napari_unet.core.io.images import read_image

logger = logging.getLogger("bench_restore")

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
#: (folder of images, train image, held-out image) per data set.
SETS = {"isbi": ("isbi2012/images", "00.png", "20.png"), "dsb2018": ("dsb2018_fluo/images", 0, 1)}


@dataclasses.dataclass(frozen=True)
class RestoreSetup:
    """One experiment: data, noise, model size and training budget."""

    data: str = "isbi"
    crop: int = 192
    sigma: float = 0.2
    copies: int = 4
    steps: int = 300
    patch: int = 64
    batch_size: int = 8
    base_channels: int = 16
    depth: int = 3
    lr: float = 1e-2
    seed: int = 0


def clean_images(setup: RestoreSetup, root: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """The train and held-out clean crops, ``(crop, crop)`` float32 scaled to [0, 1]."""
    folder, train, held = SETS[setup.data]
    files = sorted((root / folder).iterdir())
    pick = [f if isinstance(f, str) else files[f].name for f in (train, held)]
    crops = []
    for name in pick:
        image = np.asarray(read_image(root / folder / name).image, dtype=np.float32)
        if image.ndim == 3:  # an RGB(A) nuclei picture: its mean intensity
            image = image[..., :3].mean(axis=-1)
        image = image[: setup.crop, : setup.crop]
        low, high = float(image.min()), float(image.max())
        crops.append((image - low) / max(high - low, 1e-6))
    return crops[0], crops[1]


def train_denoiser(clean: np.ndarray, setup: RestoreSetup, folder: Path) -> tuple[Path, float]:
    """Train on ``setup.copies`` noisy copies of ``clean`` (Y, X); returns (best.pt, seconds)."""
    import torch

    from napari_unet.core.inference.normalization import NormalizationConfig, normalize
    from napari_unet.core.models import build_model
    from napari_unet.core.training import TrainConfig, TrainingItem, train
    from napari_unet.core.training.config import AugmentConfig

    norm = NormalizationConfig()
    items = [
        TrainingItem(
            image=normalize(noisy_copy(clean, setup.sigma, setup.seed + i)[None], norm),
            labels=clean[None].astype(np.float32),
            annotated_mask=np.ones(clean.shape, bool),
            name=f"copy{i}",
        )
        for i in range(setup.copies)
    ]
    torch.manual_seed(setup.seed)  # the initial weights too: one seed, one result
    model = build_model(
        "unet", in_channels=1, out_channels=1, depth=setup.depth, base_channels=setup.base_channels
    )
    config = TrainConfig(
        task="restoration",
        steps=setup.steps,
        batch_size=setup.batch_size,
        patch_shape=(setup.patch, setup.patch),
        lr=setup.lr,
        amp=False,
        bf16_cpu=False,  # fp32: the figures do not depend on the CPU's bf16 support
        val_fraction=0.0,
        augment=AugmentConfig(elastic=False, noise_std=0.0, probability=0.0),
        normalization=norm,
        device="auto",
        seed=setup.seed,
        checkpoint_dir=str(folder),
    )
    start = time.perf_counter()
    result = train(model, items, config)
    return Path(result.best_path), time.perf_counter() - start


def restore(checkpoint: Path, noisy: np.ndarray) -> np.ndarray:
    """The restored ``(Y, X)`` image of ``noisy`` through the normal tiled prediction."""
    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.core.inference.prediction import PredictConfig, predict

    loaded = load_checkpoint(checkpoint)
    restored = predict(
        loaded.model,
        noisy,
        "YX",
        task="restoration",
        normalization=loaded.info.normalization_config(),
        config=PredictConfig(tile_shape=(128, 128), overlap=16, precision="fp32"),
    )
    return np.asarray(restored[0], dtype=np.float32)


def run_experiment(setup: RestoreSetup) -> dict[str, Any]:
    """Train, restore the held-out noisy copy, and score both: a flat record."""
    train_clean, held_clean = clean_images(setup)
    held_noisy = noisy_copy(held_clean, setup.sigma, setup.seed + 1000)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint, seconds = train_denoiser(train_clean, setup, Path(folder))
        restored = restore(checkpoint, held_noisy)
    noisy_db = psnr(held_clean, held_noisy)
    restored_db = psnr(held_clean, restored)
    return {
        **dataclasses.asdict(setup),
        "psnr_noisy_db": round(noisy_db, 3),
        "psnr_restored_db": round(restored_db, 3),
        "gain_db": round(restored_db - noisy_db, 3),
        "train_seconds": round(seconds, 2),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute on CPU)")
    parser.add_argument("--data", choices=sorted(SETS), default="isbi")
    parser.add_argument("--sigma", type=float, default=0.2, help="noise std on [0, 1] images")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="noise, weights and sampling seed")
    parser.add_argument("--json", type=Path, default=None, help="write the record here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and (optionally) write the JSON."""
    from _bench_common import machine_info

    from napari_unet.core.device import get_device

    args = parse_args(argv)
    setup = RestoreSetup(data=args.data, sigma=args.sigma, seed=args.seed)
    if args.quick:
        setup = dataclasses.replace(setup, crop=128, steps=150, base_channels=8, depth=2)
    if args.steps is not None:
        setup = dataclasses.replace(setup, steps=args.steps)
    record = {"mode": "quick" if args.quick else "full", **run_experiment(setup)}
    record.update(
        {
            f"machine_{k}": v
            for k, v in machine_info(get_device("auto")).items()
            if not isinstance(v, dict)
        }
    )
    print(f"{'':10s}{'PSNR (dB)':>10s}")
    print(f"{'noisy':10s}{record['psnr_noisy_db']:10.2f}")
    print(f"{'restored':10s}{record['psnr_restored_db']:10.2f}   gain {record['gain_db']:+.2f} dB")
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
