"""Distributed prediction benchmark: ``predict --dask`` with 1 and 2 local workers vs one process.

Usage::

    python benchmarks/bench_distributed.py [--quick] [--json OUT]

Writes a synthetic nuclei volume (full: 16 x 1024^2, ``--quick``: 8 x 512^2, uint16, OME-Zarr
chunks one slice deep) and predicts instance labels with the built-in ``fluo-nuclei`` model three
ways in the same run: the single-process Zarr path (``predict`` without ``--dask``), and
``--dask`` on a ``LocalCluster`` of 1 and of 2 worker processes (one thread each), blocks of one
whole slice. Reported: seconds and megapixels per second of each, the ratios to the single
process, whether the objects match the single process up to renumbering, and each worker's peak
resident memory (``ru_maxrss`` read inside the worker). Cluster start-up and the workers' first
imports (torch, scipy: paid once per worker in a long run) are not timed; model loading is.
Every torch uses one thread (``OMP_NUM_THREADS=1``), so 2 workers can at best be 2x one process
on a machine with 2 free cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODES = {"full": {"depth": 16, "side": 1024}, "quick": {"depth": 8, "side": 512}}


class _Bar:
    def update(self, *_):
        pass


def write_volume(path: Path, depth: int, side: int) -> Path:
    import zarr

    from napari_unet.core.io.zarr_io import ngff_attributes
    from napari_unet.core.synthetic import synthetic_nuclei

    planes = [synthetic_nuclei((side, side), seed=z, n_nuclei=side // 8)[0] for z in range(depth)]
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.attrs.update(ngff_attributes("ZYX", path.name))
    group.create_array("0", data=np.stack(planes), chunks=(1, side, side))
    return path


def make_job(out: Path, side: int, scheduler: str | None):
    from napari_unet.cli.predict import _Job
    from napari_unet.core.checkpoint.format import load_checkpoint, resolve_checkpoint
    from napari_unet.core.inference.prediction import PredictConfig

    loaded = load_checkpoint(resolve_checkpoint("fluo-nuclei"))
    args = argparse.Namespace(
        model="fluo-nuclei",
        out=out,
        axes=None,
        device="cpu",
        output="labels",
        slices=None,
        dask=scheduler,
        dask_block=(1, side, side),
    )
    config = PredictConfig(device="cpu", batch_size=4)
    return _Job(args, loaded, config, loaded.info.postprocess_config(), None)


def _warm_up() -> None:
    import napari_unet.core.postprocess.labels
    import napari_unet.distributed.tasks  # noqa: F401  (torch, scipy, skimage, zarr)


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def same_objects(a: np.ndarray, b: np.ndarray) -> bool:
    if not np.array_equal(a > 0, b > 0):
        return False
    for pa, pb in zip(a, b):
        pairs = np.unique(np.stack([pa.ravel(), pb.ravel()]), axis=1)
        if not len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1])):
            return False
    return True


def run(mode: str) -> dict:
    import distributed

    from napari_unet.cli.predict_dask import predict_dask
    from napari_unet.cli.predict_zarr import predict_zarr
    from napari_unet.core.io.zarr_io import open_zarr

    depth, side = MODES[mode]["depth"], MODES[mode]["side"]
    megapixels = depth * side * side / 1e6
    results: dict = {"mode": mode, "volume": f"{depth} x {side} x {side}", "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = write_volume(folder / "vol.zarr", depth, side)
        job = make_job(folder / "single", side, None)
        tic = time.perf_counter()
        predict_zarr(job, image, "vol", _Bar())
        single_s = time.perf_counter() - tic
        reference = np.asarray(open_zarr(folder / "single" / "vol_labels.zarr").array[...])
        results["rows"]["single process"] = {
            "seconds": single_s,
            "mpx_per_s": megapixels / single_s,
        }
        for workers in (1, 2):
            cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=40,
            )
            client = distributed.Client(cluster)
            try:
                import napari_unet.cli.predict_dask as glue

                glue._CLIENTS[f"bench{workers}"] = client
                job = make_job(folder / f"dask{workers}", side, f"bench{workers}")
                client.run(_warm_up)  # imports only: a long run pays them once per worker
                tic = time.perf_counter()
                predict_dask(job, image, "vol", _Bar())
                seconds = time.perf_counter() - tic
                peaks = sorted(client.run(peak_rss_mb).values())
            finally:
                client.close()
                cluster.close()
            labels = np.asarray(open_zarr(folder / f"dask{workers}" / "vol_labels.zarr").array[...])
            results["rows"][f"dask, {workers} worker(s)"] = {
                "seconds": seconds,
                "mpx_per_s": megapixels / seconds,
                "speed_vs_single": single_s / seconds,
                "same_objects": same_objects(labels, reference),
                "worker_peak_rss_mb": [round(p) for p in peaks],
            }
    results["cpu_count"] = os.cpu_count()
    results["date"] = time.strftime("%Y-%m-%d")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small volume (8 x 512^2)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = run("quick" if args.quick else "full")
    print(f"volume {results['volume']}, {results['cpu_count']} logical cores, {results['date']}")
    print("| path | seconds | Mpx/s | vs single | same objects | worker peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for name, row in results["rows"].items():
        print(
            f"| {name} | {row['seconds']:.1f} | {row['mpx_per_s']:.2f} | "
            f"{row.get('speed_vs_single', 1.0):.2f}x | {row.get('same_objects', '-')} | "
            f"{row.get('worker_peak_rss_mb', '-')} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
