"""Distributed prediction on a dask cluster (``napari-unet-loop predict ... --dask SCHEDULER``).

The engine predicts a Zarr volume block by block on any cluster that ``dask.distributed`` reaches
(a ``LocalCluster``, or SLURM/LSF/PBS through ``dask-jobqueue``), with results identical to the
single-process path: semantic labels bit for bit, instance labels up to renumbering.

One module per job; ``core`` never imports this package, and only :mod:`.engine` and
:mod:`.cluster` import ``distributed``:

- :mod:`.grid`: the block grid, its faces and how it meets the input's Zarr chunks (pure).
- :mod:`.block_predict`: probabilities of one block from the slice's global tile grid (exact).
- :mod:`.stitch`: globally unique instance ids from per-block faces (pure numpy, union-find).
- :mod:`.model_cache`: one model per worker process, keyed by checkpoint and device.
- :mod:`.bookkeeping`: the per-block completion markers that make a run resumable.
- :mod:`.tasks`: what a worker runs (normalisation, predict a block, relabel a block).
- :mod:`.engine`: the dask graph, progress, failures; :mod:`.cluster`: reaching a scheduler.
- 3-D models (blocks in Z, Y and X, run here or on a cluster): :mod:`.volume_grid` (blocks
  and their 26 faces), :mod:`.volume_tasks` (one block), :mod:`.volume_run` (local loop, dask
  graph, face linking).
"""
