"""One ``predict`` run's shared settings (:class:`_Job`) and the prediction of one input file.

:meth:`_Job.process` sends a Zarr input to :mod:`napari_unet.cli.predict_zarr`, a ``--dask`` run
to :mod:`napari_unet.cli.predict_dask`, and predicts a TIFF/PNG in memory itself: read, predict,
then write the labels (and measurements), probabilities or restored image. Re-exported by
:mod:`napari_unet.cli.predict`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from napari_unet.cli._progress import FileProgress
from napari_unet.cli.predict_context import check_context_input, stream_context_tiff
from napari_unet.cli.predict_dask import predict_dask
from napari_unet.cli.predict_measure import measure_labels, measurements_target
from napari_unet.cli.predict_zarr import predict_zarr, write_output


def info_arch(loaded: Any) -> str:
    """The architecture name of a loaded checkpoint, for messages."""
    return getattr(loaded.model, "arch", "") or "this model"


class _Job:
    """Everything shared by the files of one run; ``process`` does one file."""

    def __init__(self, args, loaded, predict_config, post_config, roi) -> None:
        from napari_unet.core.io.marks import PredictionMark

        self.args, self.loaded = args, loaded
        self.predict_config, self.post_config, self.roi = predict_config, post_config, roi
        #: what marks the labels written as this model's prediction (see core.io.marks)
        self.mark = PredictionMark(
            model=loaded.info.name or Path(str(args.model)).stem,
            task=loaded.info.task,
            output=post_config.output,
        )

    def targets(self, stem: str, suffix: str) -> dict[str, Path]:
        """The output paths this run writes for ``stem`` by kind (``.tif`` or ``.zarr``)."""
        out, output = self.args.out, self.args.output
        if self.loaded.info.task == "restoration":
            kinds = ["restored"]
        else:
            kinds = [k for k in ("labels", "probabilities") if output in (k, "both")]
        return {kind: out / f"{stem}_{kind}{suffix}" for kind in kinds}

    def labels(self, probabilities: Any, path: Path | None = None) -> Any:
        """Labels of ``probabilities``: plane by plane for 2-D models, in 3-D (with the
        model's voxel size) for 3-D ones."""
        from napari_unet.core.postprocess.labels import labels_from_probabilities
        from napari_unet.core.postprocess.volume import volume_labels

        model, task = self.loaded.model, self.loaded.info.task
        if getattr(model, "spatial_dims", 2) != 3:
            return labels_from_probabilities(
                probabilities, task=task, config=self.post_config, roi=self.roi
            )
        spacing = self.voxel_size(path)
        return volume_labels(
            probabilities, task=task, config=self.post_config, spacing=spacing, roi=self.roi
        )

    def voxel_size(self, path: Path | None = None) -> tuple[float, ...]:
        """The voxel size of 3-D instances: ``--pixel-size`` (one or Z,Y,X values), else the
        input's OME/ImageJ metadata, else the model's ``voxel_size`` (``unet3d_aniso``), else
        isotropic."""
        from napari_unet.core.io.voxel import read_voxel_size
        from napari_unet.core.models.pooling import model_voxel_size

        size = getattr(self.args, "pixel_size", None)
        if size is not None and len(size) in (1, 3):
            return tuple(size) * (3 if len(size) == 1 else 1)
        found = read_voxel_size(path) if path is not None else None
        if found is not None:
            return found
        return model_voxel_size(self.loaded.model)

    def process(self, path: Path, stem: str, bar: FileProgress) -> str:
        """Predict one file, write its outputs and return its summary line."""
        check_context_input(self.loaded, path, getattr(self.args, "dask", None))  # 2.5-D
        from napari_unet.core.errors import UserInputError
        from napari_unet.core.io.zarr_io import is_zarr

        volumetric = getattr(self.loaded.model, "spatial_dims", 2) == 3
        if volumetric and (getattr(self.args, "dask", None) or is_zarr(path)):
            from napari_unet.cli.predict_volume import predict_volume_stream

            return predict_volume_stream(self, path, stem, bar)  # block by block in 3-D
        if getattr(self.args, "dask", None):
            return predict_dask(self, path, stem, bar)
        if is_zarr(path):
            return predict_zarr(self, path, stem, bar)
        if stream_context_tiff(self, path):  # 2.5-D: slice by slice with the neighbours
            return predict_zarr(self, path, stem, bar)
        if self.args.slices is not None:
            raise UserInputError("--slices applies to Zarr inputs only; this is a single file.")
        if volumetric:
            from napari_unet.cli.volume_checks import stream_if_too_large

            if stream_if_too_large(path, int(self.loaded.model.out_channels)):
                from napari_unet.cli.predict_volume import predict_volume_stream

                return predict_volume_stream(self, path, stem, bar)
        return self._process_file(path, stem, bar)

    def _process_file(self, path: Path, stem: str, bar: FileProgress) -> str:
        """Predict one TIFF/PNG image read into memory; write its outputs; its summary line."""
        from napari_unet.core.checkpoint.channels import one_channel_if_grey
        from napari_unet.core.generators import run_to_end
        from napari_unet.core.inference.prediction import iter_predict
        from napari_unet.core.io.images import read_image
        from napari_unet.core.io.marks import check_overwritable
        from napari_unet.core.models.aux import labelling_net

        tic = time.perf_counter()
        info = self.loaded.info
        targets = self.targets(stem, ".tif")
        measurements = measurements_target(self, stem)
        for target in [*targets.values(), measurements]:  # the user's files are never replaced
            if target is not None:
                check_overwritable(target)
        data = read_image(path)
        image, axes = one_channel_if_grey(
            data.image, self._axes(data), self.loaded.info.in_channels
        )
        spatial_axes = "".join(a for a in axes if a in "TZS") + "YX"
        # distance seeds: the model's distance channel rides along until the labels are made
        net = labelling_net(self.loaded.model, self.post_config if "labels" in targets else None)
        generator = iter_predict(
            net,
            image,
            axes,
            task=info.task,
            normalization=info.normalization_config(),
            config=self.predict_config,
        )
        probabilities = run_to_end(generator, lambda p: bar.update(path.name, p.fraction))
        if "restored" in targets:
            written, detail = self._write_restored(targets, probabilities, spatial_axes)
        else:
            written, detail = self._write_segmentation(
                targets, probabilities, spatial_axes, measurements, image, axes, path
            )
        seconds = time.perf_counter() - tic
        return f"ok {path} -> {', '.join(written)} ({detail}, {seconds:.1f} s)"

    def _axes(self, data: Any) -> str:
        """``--axes`` checked against the image, else its stated or safely guessed axes."""
        from napari_unet.core.io.axes import check_axes, guess_axes

        if self.args.axes:
            return check_axes(self.args.axes, data.image.shape)
        return guess_axes(data.image.shape, metadata_axes=data.axes)

    def _write_restored(
        self, targets: dict[str, Path], probabilities: Any, spatial_axes: str
    ) -> tuple[list[str], str]:
        """Write a restoration model's output (C, *spatial); ``(written, detail)``."""
        import numpy as np

        from napari_unet.core.io.images import write_tiff
        from napari_unet.core.io.marks import output_tag

        restored = probabilities.astype(np.float32, copy=False)
        restored_axes = "C" + spatial_axes
        if restored.shape[0] == 1:
            restored, restored_axes = restored[0], spatial_axes
        tag = output_tag("restored", self.mark.model)
        written = [
            write_output(
                targets["restored"],
                lambda t: write_tiff(t, restored, axes=restored_axes, software=tag),
            )
        ]
        return written, f"restored {restored.shape}"

    def _write_segmentation(
        self,
        targets: dict[str, Path],
        probabilities: Any,
        spatial_axes: str,
        measurements: Path | None,
        image: Any,
        axes: str,
        path: Path | None = None,
    ) -> tuple[list[str], str]:
        """Write the labels (and their measurements) and/or probabilities; ``(written, detail)``.
        ``path``: the input file, whose metadata may give the voxel size of 3-D instances."""
        import numpy as np

        from napari_unet.core.io.images import write_labels, write_tiff
        from napari_unet.core.io.marks import output_tag, software_tag
        from napari_unet.core.models.aux import classes_only

        written: list[str] = []
        detail = f"probabilities {probabilities.shape}"
        if "labels" in targets:
            labels = self.labels(probabilities, path)
            probabilities = classes_only(probabilities, self.loaded.model)
            software = software_tag(self.mark)
            written.append(
                write_output(
                    targets["labels"],
                    lambda t: write_labels(t, labels, axes=spatial_axes, software=software),
                )
            )
            count = int(labels.max()) if labels.size else 0
            kind = "objects" if self.post_config.output == "instances" else "max class"
            detail = f"labels {labels.shape} {labels.dtype}, {kind} {count}"
            if measurements is not None:
                written.append(
                    measure_labels(self, measurements, labels, image, axes, probabilities)
                )
        if "probabilities" in targets:
            halves = probabilities.astype(np.float16, copy=False)
            tag = output_tag("probabilities", self.mark.model)
            written.append(
                write_output(
                    targets["probabilities"],
                    lambda t: write_tiff(t, halves, axes="C" + spatial_axes, software=tag),
                )
            )
        return written, detail
