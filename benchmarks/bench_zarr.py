"""Volume benchmark: ``predict`` on an OME-Zarr volume (streamed) against the same volume as a TIFF.

Usage::

    python benchmarks/bench_zarr.py [--quick] [--json OUT] [--keep DIR]

Writes a synthetic EM volume (``--depth`` slices of ``--side``^2 uint8; full: 16 x 2048^2,
``--quick``: 6 x 1024^2) once as OME-Zarr (chunks 1 x 512 x 512) and once as an ImageJ TIFF, then
runs ``napari-unet-loop predict`` with the built-in ``em-membranes`` model on each, every run in a
fresh interpreter, one after the other. Reported per path: peak resident memory of the run
(``ru_maxrss``), seconds, and whether the two label volumes are identical. The TIFF path holds the
whole volume, its probabilities and labels in memory; the Zarr path one slice at a time, so its
peak should not grow with ``--depth``.

``--model3d``: the same comparison for a 3-D model (a small untrained ``unet3d``, since the
memory does not depend on the weights; full: 64 x 1024^2, ``--quick``: 32 x 768^2): the TIFF is
predicted whole in memory, the OME-Zarr volume streamed block by block in Z/Y/X (64x256x256
blocks, the volume's global 3-D tile grid, so the labels are identical).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import Row, format_table, machine_info

MODES = {"full": {"depth": 16, "side": 2048}, "quick": {"depth": 6, "side": 1024}}
MODES_3D = {"full": {"depth": 64, "side": 1024}, "quick": {"depth": 32, "side": 768}}

#: Runs the CLI in this fresh interpreter and prints its peak RSS (MB) and seconds as JSON.
CHILD = """
import json, resource, sys, time
from napari_unet.cli import main
start = time.perf_counter()
status = main(sys.argv[1:])
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
seconds = time.perf_counter() - start
print(json.dumps({"status": status, "peak_rss_mb": peak_mb, "seconds": seconds}))
"""


def write_volume(folder: Path, depth: int, side: int) -> tuple[Path, Path]:
    """The same synthetic EM volume as ``vol.ome.zarr`` and ``vol.tif`` in ``folder``."""
    import zarr

    from napari_unet.core.io.images import write_tiff
    from napari_unet.core.io.zarr_io import ngff_attributes
    from napari_unet.core.synthetic import synthetic_em

    tile = np.asarray(synthetic_em((512, 512), seed=0)[0], dtype=np.float32)
    tile = (255 * (tile - tile.min()) / max(float(np.ptp(tile)), 1e-6)).astype(np.uint8)
    reps = -(-side // 512)
    plane = np.tile(tile, (reps, reps))[:side, :side]
    volume = np.stack([np.roll(plane, 37 * z, axis=1) for z in range(depth)])
    group = zarr.open_group(store=str(folder / "vol.ome.zarr"), mode="w", zarr_format=2)
    group.attrs.update(ngff_attributes("ZYX", "vol"))
    array = group.create_array("0", shape=volume.shape, chunks=(1, 512, 512), dtype=np.uint8)
    array[...] = volume
    write_tiff(folder / "vol.tif", volume, axes="ZYX")
    return folder / "vol.ome.zarr", folder / "vol.tif"


def model_3d(folder: Path) -> Path:
    """A small untrained ``unet3d`` checkpoint (seed 0) in ``folder``."""
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    net = build_model("unet3d", depth=2, base_channels=4, padding="same", out_channels=2)
    return save_checkpoint(folder / "unet3d.pt", net.eval(), task="semantic")


def run_child(source: Path, out: Path, model: str = "em-membranes") -> dict[str, Any]:
    argv = [str(source), "--model", model, "--out", str(out), "--device", "cpu"]
    command = [sys.executable, "-c", CHILD, "predict", *argv]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"predict {source.name} failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from napari_unet.core.io.images import read_image
    from napari_unet.core.io.zarr_io import open_zarr

    mode = (MODES_3D if args.model3d else MODES)["quick" if args.quick else "full"]
    depth, side = args.depth or mode["depth"], args.side or mode["side"]
    with tempfile.TemporaryDirectory(prefix="bench-zarr-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        zarr_in, tiff_in = write_volume(folder, depth, side)
        model = str(model_3d(folder)) if args.model3d else "em-membranes"
        zarr_run = run_child(zarr_in, folder / "out_zarr", model)
        tiff_run = run_child(tiff_in, folder / "out_tiff", model)
        zarr_labels = np.asarray(open_zarr(folder / "out_zarr" / "vol_labels.zarr").array[...])
        tiff_labels = read_image(folder / "out_tiff" / "vol_labels.tif").image
        identical = bool(np.array_equal(zarr_labels, tiff_labels))
    return {
        "mode": "quick" if args.quick else "full",
        "model": "unet3d (3-D, streamed in 3-D blocks)" if args.model3d else "em-membranes (2-D)",
        "volume": [depth, side, side],
        "volume_mb": depth * side * side / 2**20,
        "peak_rss_mb_zarr": zarr_run["peak_rss_mb"],
        "peak_rss_mb_tiff": tiff_run["peak_rss_mb"],
        "rss_ratio_tiff_over_zarr": tiff_run["peak_rss_mb"] / zarr_run["peak_rss_mb"],
        "seconds_zarr": zarr_run["seconds"],
        "seconds_tiff": tiff_run["seconds"],
        "labels_identical": identical,
        "machine": machine_info(torch.device("cpu"))["machine"],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python benchmarks/bench_zarr.py " + " ".join(sys.argv[1:]),
    }


def table(results: dict[str, Any]) -> str:
    same = results["labels_identical"]
    rows = [
        Row("model", results.get("model", "em-membranes (2-D)")),
        Row("volume (Z, Y, X) uint8", "x".join(map(str, results["volume"]))),
        Row("peak RSS, OME-Zarr streamed (MB)", results["peak_rss_mb_zarr"]),
        Row("peak RSS, TIFF in memory (MB)", results["peak_rss_mb_tiff"]),
        Row("seconds, OME-Zarr", results["seconds_zarr"]),
        Row("seconds, TIFF", results["seconds_tiff"]),
        Row("labels identical", same, "True", same),
    ]
    return format_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 x 1024^2 instead of 16 x 2048^2")
    parser.add_argument("--depth", type=int, help="slices (overrides the mode)")
    parser.add_argument("--side", type=int, help="slice side (overrides the mode)")
    parser.add_argument("--model3d", action="store_true", help="a 3-D model (unet3d) instead")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--keep", type=Path, help="keep the volumes and outputs in this folder")
    args = parser.parse_args(argv)
    results = benchmark(args)
    print(table(results))
    print(f"\n{results['machine']}; {results['date']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0 if results["labels_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
