"""The distance auxiliary output of instance models (issue 17): targets, training, checkpoint,
distance-seeded watershed, and old checkpoints unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint.format import builtin_checkpoints, load_checkpoint
from napari_unet.core.inference.normalization import NormalizationConfig
from napari_unet.core.inference.prediction import PredictConfig, predict
from napari_unet.core.models import build_model
from napari_unet.core.models.aux import has_distance_aux, with_distance
from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.postprocess.labels import labels_from_probabilities
from napari_unet.core.training.augment import AugmentConfig
from napari_unet.core.training.aux import distance_from_classes, distance_target
from napari_unet.core.training.config import LossConfig
from napari_unet.core.training.instance_classes import instances_to_classes
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import TrainConfig, train

CENTRES = ((24, 18), (24, 38))  # radius 10: the discs touch along x = 28


def distance_split_net():
    """A 1-level distance model that calls every pixel foreground and whose distance map has
    several maxima: how its foreground is split depends only on the seeds used."""
    torch.manual_seed(0)
    net = build_model("unet", depth=1, base_channels=4, out_channels=3, aux="distance")
    with torch.no_grad():
        net.outc.bias.copy_(torch.tensor([-4.0, 2.0, 0.0]))
        net.aux_head.weight.mul_(500.0)
        net.aux_head.bias.fill_(-2.6)
    return net


def touching_discs(shape=(48, 56), radius=10) -> np.ndarray:
    """(Y, X) int32 instance ids 1 and 2 of two discs touching along a vertical line."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for index, (cy, cx) in enumerate(CENTRES, start=1):
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2) & (labels == 0)] = index
    return labels


def test_distance_target_peaks_at_the_centres_of_touching_discs():
    labels = touching_discs()
    target = distance_target(labels)
    assert target.dtype == np.float32 and target.shape == labels.shape
    assert np.all(target[labels == 0] == 0)
    assert target.min(initial=1, where=labels > 0) > 0 and target.max() == 1
    for index, centre in enumerate(CENTRES, start=1):
        peak = np.unravel_index(np.argmax(np.where(labels == index, target, -1)), labels.shape)
        assert np.hypot(*np.subtract(peak, centre)) <= 1.5
        assert target[centre] >= 0.9
    # the contact line is a rim of both discs: low, not a ridge
    assert target[CENTRES[0][0], 27:30].max() < 0.2


def test_distance_from_the_class_map_peaks_at_the_centres_too():
    classes = instances_to_classes(touching_discs(), boundary_width=2).astype(np.int64)
    classes[:4] = -1  # ignored rows learn nothing and carry no distance
    target = distance_from_classes(classes[None])[0]
    assert np.all(target[classes != 1] == 0)
    for centre in CENTRES:
        assert target[centre] >= 0.85


def _two_disc_probabilities(with_distance: bool) -> np.ndarray:
    """A model that sees one interior blob over both discs, and (optionally) their distance."""
    labels = touching_discs()
    inside = (labels > 0).astype(np.float32)
    channels = [1 - inside, inside, np.zeros_like(inside)]
    if with_distance:
        channels.append(distance_target(labels))
    return np.stack(channels)


def test_distance_seeds_split_touching_discs_that_interior_seeds_merge():
    labels = touching_discs()
    config = PostprocessConfig(output="instances", seeds="distance")
    merged = labels_from_probabilities(
        _two_disc_probabilities(False), task="instances", config=config
    )
    assert merged.max() == 1  # no distance channel: interior seeds, one blob
    split = labels_from_probabilities(
        _two_disc_probabilities(True), task="instances", config=config
    )
    assert split.max() == 2
    for index in (1, 2):
        found = np.bincount(split[labels == index]).argmax()
        overlap = (split == found) & (labels == index)
        assert overlap.sum() / ((split == found) | (labels == index)).sum() > 0.9
    interior = labels_from_probabilities(
        _two_disc_probabilities(True), task="instances", config=config.replace(seeds="interior")
    )
    assert interior.max() == 1
    semantic = labels_from_probabilities(
        _two_disc_probabilities(True), task="instances", config=PostprocessConfig()
    )
    assert semantic.max() == 1  # class ids of the 3 classes; the distance is no class


def _items() -> list[TrainingItem]:
    rng = np.random.default_rng(0)
    labels = np.zeros((64, 64), np.int32)
    labels[8:56, 4:60] = touching_discs((48, 56))
    image = ((labels > 0) + rng.normal(0, 0.3, labels.shape)).astype(np.float32)[None]
    return [TrainingItem(image, labels, name="discs")]


@pytest.mark.parametrize("distance_weight", [1.0, 0.0])
def test_a_model_with_the_distance_head_trains_and_round_trips(tmp_path, distance_weight):
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=8, out_channels=3, aux="distance")
    before = model.aux_head.weight.detach().clone()
    config = TrainConfig(
        task="instances", steps=3, batch_size=2, patch_shape=(32, 32), val_fraction=0.0,
        val_every=3, augment=AugmentConfig(strength=0.0), device="cpu",
        checkpoint_dir=str(tmp_path / "run"), loss=LossConfig(distance=distance_weight),
    )  # fmt: skip
    result = train(model, _items(), config)
    loaded = load_checkpoint(result.best_path)
    assert has_distance_aux(loaded.model) and loaded.info.model_config["aux"] == "distance"
    assert loaded.info.postprocess_config().seeds == "distance"
    moved = not torch.equal(loaded.model.aux_head.weight.detach(), before)
    assert moved == (distance_weight > 0)  # the head learns from its own loss only
    image = _items()[0].image
    kwargs = dict(task="instances", normalization=NormalizationConfig(mode="none"),
                  config=PredictConfig(tile_shape=(64, 64), device="cpu"))  # fmt: skip
    classes = predict(loaded.model, image, "CYX", **kwargs)
    assert classes.shape == (3, 64, 64)  # what the GUI and export see: the classes
    np.testing.assert_allclose(classes.sum(axis=0), 1, atol=1e-3)
    both = predict(with_distance(loaded.model), image, "CYX", **kwargs)
    assert loaded.model.out_channels == 3 and not loaded.model.emit_aux
    assert both.shape == (4, 64, 64) and both[3].min() >= 0 and both[3].max() <= 1
    np.testing.assert_allclose(both[:3], classes, atol=1e-5)


def test_old_checkpoints_have_no_head_and_predict_as_before():
    loaded = load_checkpoint(builtin_checkpoints()["fluo-nuclei"])
    assert "aux" not in loaded.info.model_config and not has_distance_aux(loaded.model)
    assert "aux_head" not in dict(loaded.model.named_modules())
    assert loaded.info.postprocess_config().seeds == "interior"
    rng = np.random.default_rng(1)
    image = rng.random((loaded.info.in_channels, 64, 64)).astype(np.float32)
    kwargs = dict(task="instances", normalization=NormalizationConfig(mode="none"),
                  config=PredictConfig(tile_shape=(64, 64), device="cpu"))  # fmt: skip
    plain = predict(loaded.model, image, "CYX", **kwargs)
    net = with_distance(loaded.model)
    again = predict(net, image, "CYX", **kwargs)
    assert net is loaded.model and plain.shape[0] == 3
    np.testing.assert_array_equal(plain, again)


def _write_instance_pairs(folder) -> list[str]:
    """Two 64x64 images of touching discs with their instance labels; ``train`` arguments."""
    from skimage.io import imsave

    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    for name, item in zip(("a", "b"), _items() * 2):
        image = np.clip(item.image[0] * 100 + 50, 0, 255).astype(np.uint8)
        imsave(folder / "images" / f"{name}.png", image, check_contrast=False)
        imsave(folder / "labels" / f"{name}.tif", item.labels.astype(np.uint16))
    return ["train", "--images", str(folder / "images"), "--labels", str(folder / "labels"),
            "--steps", "2", "--patch", "32", "--batch-size", "2", "--device", "cpu"]  # fmt: skip


def test_cli_train_aux_distance_then_predict_keeps_class_probabilities(tmp_path, capsys):
    import tifffile

    from napari_unet.cli import main

    argv = _write_instance_pairs(tmp_path)
    out = tmp_path / "aux.pt"
    argv += ["--task", "instances", "--model", "unet", "--aux", "distance", "--out", str(out)]
    assert main(argv) == 0
    assert load_checkpoint(out).info.model_config["aux"] == "distance"
    image = tmp_path / "images" / "a.png"
    predicted = tmp_path / "predicted"
    argv = ["predict", str(image), "--model", str(out), "--out", str(predicted), "--output",
            "both", "--labels", "instances", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert tifffile.imread(predicted / "a_probabilities.tif").shape == (3, 64, 64)
    assert tifffile.imread(predicted / "a_labels.tif").shape == (64, 64)


@pytest.mark.parametrize("extra", [["--task", "semantic", "--model", "unet"], ["--task",
                                   "instances", "--model", "unet_original"]])  # fmt: skip
def test_cli_train_aux_distance_elsewhere_is_refused_in_one_sentence(tmp_path, capsys, extra):
    from napari_unet.cli import main

    argv = _write_instance_pairs(tmp_path)
    argv += [*extra, "--aux", "distance", "--out", str(tmp_path / "x.pt")]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "--aux distance adds a head to a new instance model" in err
    assert "Traceback" not in err and not (tmp_path / "x.pt").exists()


def test_a_model_without_the_head_writes_no_aux_setting():
    """Checkpoints of plain U-Nets keep the settings older releases accept (no ``aux`` key)."""
    from napari_unet.core.models.registry import build_model

    assert "aux" not in build_model("unet", in_channels=1, out_channels=3).config
    assert build_model("unet", in_channels=1, out_channels=3, aux="distance").config["aux"] == (
        "distance"
    )


def test_a_data_parallel_run_trains_the_distance_head_too(tmp_path, monkeypatch):
    """``train --nproc N --aux distance``: the head the checkpoint's seeds come from learns
    (one rank here), as in a one-process run."""
    import socket

    from napari_unet.core.training.distributed import RankInfo
    from napari_unet.core.training.distributed_loop import iter_train_distributed

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=8, out_channels=3, aux="distance")
    before = model.aux_head.weight.detach().clone()
    config = TrainConfig(
        task="instances", steps=3, batch_size=2, patch_shape=(32, 32), val_fraction=0.0,
        val_every=3, augment=AugmentConfig(strength=0.0), device="cpu",
        checkpoint_dir=str(tmp_path / "run"),
    )  # fmt: skip
    list(iter_train_distributed(model, _items(), config, RankInfo(0, 1)))
    loaded = load_checkpoint(tmp_path / "run" / "best.pt")
    assert loaded.info.postprocess_config().seeds == "distance"
    assert not torch.equal(loaded.model.aux_head.weight.detach(), before)


def test_a_zarr_stack_is_labelled_with_the_distance_seeds_as_in_memory(tmp_path):
    """``predict`` of a distance model on a Zarr stack (streamed slice by slice) seeds the
    watershed from the distance head, as the same stack read into memory does."""
    pytest.importorskip("zarr")
    import tifffile
    from test_context25d_stream import in_memory, run_predict, stack, write_zarr, zarr_output

    from napari_unet.core.checkpoint.format import save_checkpoint

    net = distance_split_net()
    model = save_checkpoint(tmp_path / "m.pt", net, task="instances")
    volume = stack()
    _, labels = in_memory(tmp_path, model, volume)
    assert max(len(np.unique(plane)) for plane in labels) > 1  # distance seeds split it
    assert run_predict(write_zarr(tmp_path / "vol.zarr", volume), model, tmp_path / "zs") == 0
    streamed = zarr_output(tmp_path / "zs" / "vol_labels.zarr")
    for plane, memory in zip(streamed, labels):  # the same objects (ids may count per slice)
        pairs = np.unique(np.stack([plane.ravel(), memory.ravel()]), axis=1)
        assert len(pairs[0]) == len(np.unique(plane)) == len(np.unique(memory))
    probabilities = zarr_output(tmp_path / "zs" / "vol_probabilities.zarr")
    assert probabilities.shape[0] == 3  # the classes only, as in memory
    assert tifffile.imread(tmp_path / "memory" / "vol_probabilities.tif").shape == (
        probabilities.shape
    )
