"""Every path that turns a distance model's probabilities into instances seeds the watershed as
the checkpoint's post-processing says (``seeds: "distance"``), and predictions that run at the
same time on one loaded model do not change each other's output (issue 17, session 10).

The model: a tiny U-Net with the distance head whose class output is foreground everywhere
(interior seeds: one object per slice) and whose distance map has several maxima (distance
seeds: several objects), so the two seedings give different labels.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint.format import load_checkpoint, save_checkpoint
from napari_unet.core.inference.prediction import PredictConfig
from napari_unet.core.models import build_model

CONFIG = PredictConfig(tile_shape=(32, 32), device="cpu", batch_size=1)


def image(seed: int = 3, shape=(32, 32)) -> np.ndarray:
    """(Y, X) uint16 noise."""
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(np.uint16)


@pytest.fixture(scope="module")
def distance_model(tmp_path_factory):
    """The path of the distance model's checkpoint (its stored seeds: ``"distance"``)."""
    from test_distance_aux import distance_split_net

    net = distance_split_net()
    path = tmp_path_factory.mktemp("model") / "distance.pt"
    save_checkpoint(path, net, task="instances")
    assert load_checkpoint(path).info.postprocess_config().seeds == "distance"
    return path


def reference_labels(path, pixels: np.ndarray) -> np.ndarray:
    """(Y, X) labels as the in-memory ``predict`` path makes them (it always honoured the
    seeds): the distance channel predicted along, the checkpoint's post-processing."""
    from napari_unet.core.inference.prediction import predict
    from napari_unet.core.models.aux import labelling_net
    from napari_unet.core.postprocess.labels import labels_from_probabilities

    loaded = load_checkpoint(path)
    post = loaded.info.postprocess_config()
    probabilities = predict(
        labelling_net(loaded.model, post), pixels, "YX", task="instances",
        normalization=loaded.info.normalization_config(), config=CONFIG,
    )  # fmt: skip
    assert probabilities.shape[0] == 4
    return labels_from_probabilities(probabilities, task="instances", config=post)


def same_objects(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to renumbering (a one-to-one map between the ids)."""
    pairs = np.unique(np.stack([np.ravel(a), np.ravel(b)]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def _args(path, scheduler) -> argparse.Namespace:
    return argparse.Namespace(
        model=str(path), out=None, axes=None, device="cpu", output="both", slices=None,
        dask=scheduler, dask_block=(1, 32, 32),
    )  # fmt: skip


def test_the_reference_splits_what_interior_seeds_merge(distance_model):
    from napari_unet.core.inference.prediction import predict
    from napari_unet.core.postprocess.labels import labels_from_probabilities

    labels = reference_labels(distance_model, image())
    assert labels.max() > 2
    loaded = load_checkpoint(distance_model)
    classes = predict(loaded.model, image(), "YX", task="instances", config=CONFIG,
                      normalization=loaded.info.normalization_config())  # fmt: skip
    config = loaded.info.postprocess_config(seeds="interior")
    assert labels_from_probabilities(classes, task="instances", config=config).max() == 1


def test_the_versions_panel_labels_a_distance_model_with_its_distance_seeds(distance_model):
    """The Fine-tune dock's version comparison (``run_slice_job``) made interior-seeded
    labels of a distance model: one object where ``predict`` finds several."""
    from napari_unet._widgets.version_jobs import SliceJob, run_slice_job
    from napari_unet.core.generators import run_to_end

    pixels = image()
    job = SliceJob(
        checkpoints=(str(distance_model),), image=pixels[None, None], slices=(0,),
        predict=CONFIG, labels=True,
    )  # fmt: skip
    result = run_to_end(run_slice_job(job))
    assert result.probabilities[0].shape == (3, 1, 32, 32)  # the classes only
    expected = reference_labels(distance_model, pixels)
    assert result.labels[0][0].max() == expected.max() > 2
    same_objects(result.labels[0][0], expected)


def test_predict_dask_seeds_a_distance_model_as_in_memory(distance_model, tmp_path):
    """``predict --dask`` (blocks on a cluster; here an in-process one) made interior-seeded
    instances of a distance model; the Zarr path (one process) and in memory did not."""
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("zarr")
    import zarr

    from napari_unet.cli.predict import _Job
    from napari_unet.cli.predict_dask import predict_dask
    from napari_unet.core.io.zarr_io import ngff_attributes, open_zarr

    planes = np.stack([image(3), image(4)])
    group = zarr.open_group(str(tmp_path / "vol.zarr"), mode="w", zarr_format=2)
    group.attrs.update(ngff_attributes("ZYX", "vol.zarr"))
    group.create_array("0", data=planes, chunks=(1, 32, 32))
    loaded = load_checkpoint(distance_model)
    args = _args(distance_model, "in-process")
    args.out = tmp_path / "out"
    job = _Job(args, loaded, CONFIG, loaded.info.postprocess_config(), None)
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"
    ) as client:
        import napari_unet.cli.predict_dask as module

        original = module._client
        module._client = lambda _: client
        try:
            predict_dask(job, tmp_path / "vol.zarr", "vol", _Bar())
        finally:
            module._client = original
    labels = np.asarray(open_zarr(tmp_path / "out" / "vol_labels.zarr").array[...])
    probabilities = open_zarr(tmp_path / "out" / "vol_probabilities.zarr").array
    assert probabilities.shape == (3, 2, 32, 32)  # the classes only
    for plane, pixels in zip(labels, planes):
        expected = reference_labels(distance_model, pixels)
        assert expected.max() > 2
        same_objects(plane, expected)


class _Bar:
    def update(self, *_):
        pass


def test_two_predictions_at_once_on_one_model_do_not_change_each_other(distance_model):
    """The GUI runs predictions as generators in workers: while one (distance seeds) is between
    two batches, the versions panel predicts with the same loaded model. The model was switched
    to emit the distance channel for the whole first job, so the second got 4 channels."""
    from napari_unet._widgets.postprocess_choice import PostprocessChoice
    from napari_unet._widgets.predict_worker import JobProgress, PredictJob, run_prediction
    from napari_unet._widgets.version_jobs import SliceJob, run_slice_job
    from napari_unet.core.generators import run_to_end

    loaded = load_checkpoint(distance_model)
    pixels = image()
    predict_job = PredictJob(
        checkpoint=str(distance_model), image=pixels, axes="YX", slices=(0,), predict=CONFIG,
        postprocess=PostprocessChoice(output="instances"), loaded=loaded,
    )  # fmt: skip
    first = run_prediction(predict_job)
    step = next(first)
    while not (isinstance(step, JobProgress) and step.stage == "predicting"):
        step = next(first)  # now suspended in the middle of its prediction
    path = str(distance_model)
    slice_job = SliceJob(checkpoints=(path,), image=pixels[None, None], slices=(0,),
                         predict=CONFIG, loaded={path: loaded})  # fmt: skip
    second = run_to_end(run_slice_job(slice_job))
    assert second.probabilities[0].shape == (3, 1, 32, 32)
    alone = run_to_end(run_slice_job(slice_job))
    np.testing.assert_array_equal(second.probabilities[0], alone.probabilities[0])
    result = run_to_end(first)
    assert loaded.model.out_channels == 3 and not loaded.model.emit_aux
    expected = reference_labels(distance_model, pixels)
    assert result.labels[0].max() == expected.max() > 2
    same_objects(result.labels[0], expected)


def test_the_distance_view_shares_the_weights_and_leaves_the_model_alone():
    from napari_unet.core.models.aux import classes_only, labelling_net, with_distance
    from napari_unet.core.postprocess.config import PostprocessConfig

    torch.manual_seed(0)
    model = build_model("unet", depth=1, base_channels=4, out_channels=3, aux="distance").eval()
    view = with_distance(model)
    assert view is not model and view.aux_head is model.aux_head
    assert all(a is b for a, b in zip(view.parameters(), model.parameters(), strict=True))
    x = torch.zeros(1, 1, 16, 16)
    with torch.no_grad():
        both, classes = view(x), model(x)
    assert both.shape[1] == 4 and view.out_channels == 4
    assert classes.shape[1] == 3 and model.out_channels == 3 and not model.emit_aux
    torch.testing.assert_close(both[:, :3], classes)
    assert classes_only(both[0], model).shape[0] == 3  # (K + 1, Y, X) -> (K, Y, X)
    distance = PostprocessConfig(output="instances", seeds="distance")
    assert labelling_net(model, distance).out_channels == 4
    for other in (None, distance.replace(seeds="interior"), distance.replace(output="semantic")):
        assert labelling_net(model, other) is model
    plain = build_model("unet", depth=1, base_channels=4, out_channels=3)
    assert labelling_net(plain, distance) is plain


def test_simulate_labels_a_distance_start_model_with_its_distance_seeds(distance_model):
    """``simulate`` (``core.simulation.parts.predict_labels``) labelled every model with the
    default post-processing, interior seeds included; now with the model's own."""
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.simulation.config import SimulateConfig
    from napari_unet.core.simulation.parts import predict_labels
    from napari_unet.core.simulation.versions import checkpoint_postprocess

    loaded = load_checkpoint(distance_model)
    own = checkpoint_postprocess(loaded.info, "instances")
    assert own.seeds == "distance" and own.output == "instances"
    pixels = image()
    normalised = normalize(pixels[None].astype(np.float32), loaded.info.normalization_config())
    labels = predict_labels(loaded.model, normalised, SimulateConfig(task="instances",
                            predict=CONFIG), own)  # fmt: skip
    expected = reference_labels(distance_model, pixels)
    assert labels.max() == expected.max() > 2
    same_objects(labels, expected)
