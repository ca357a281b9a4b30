"""Issue 17 (learn-guard): the dataset fingerprint, bad input refused before training, and never
publishing a model worse than its parent (train, simulate, the Fine-tune trainer)."""

from __future__ import annotations

import queue

import numpy as np
import pytest
from skimage.io import imsave
from trainer_kill_helper import discs, make_session, request, review_slice, start_model

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import load_checkpoint
from napari_unet.core.errors import TrainingDataError
from napari_unet.core.training.fingerprint import fingerprint, net_geometry
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.preflight import preflight
from napari_unet.session import Session
from napari_unet.trainer.events import TrainerFailed, TrainerFinished, VersionPublished
from napari_unet.trainer.guard import VersionSkipped
from napari_unet.trainer.process import run_trainer


def _disc_items(n: int, side: int, radius: int = 6) -> list[TrainingItem]:
    """``n`` (1, side, side) images with three discs of ``radius`` each (instance ids 1..3)."""
    yy, xx = np.mgrid[:side, :side]
    items = []
    for i in range(n):
        labels = np.zeros((side, side), np.int32)
        for k, (cy, cx) in enumerate(
            [(side // 4, side // 4), (side // 2, side // 2 + i), (3 * side // 4, side // 4)]
        ):
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k + 1
        image = (labels > 0).astype(np.float32)[None]
        items.append(TrainingItem(image=image, labels=labels, name=f"img{i}"))
    return items


# ---------------------------------------------------------------- 1. the dataset fingerprint
def test_fingerprint_fits_the_patch_to_small_images_and_keeps_explicit_settings():
    items = _disc_items(3, 64)
    multiple, field = net_geometry("unet", {"depth": 4})
    assert (multiple, field) == (16, 200)
    data = fingerprint(items, task="instances", size_multiple=multiple, receptive_field=field)
    assert data.patch_shape == (64, 64) and data.patch_reduced
    assert data.batch_size == 16, "the batch grows to keep the pixels per step (capped at 4x)"
    assert data.n_objects == 9 and data.object_diameter == pytest.approx(2 * np.sqrt(113 / np.pi))
    assert not data.scale_warning
    line = data.describe()
    assert "\n" not in line and "3 image(s) of median 64x64 px" in line
    assert "patch 64x64 (reduced to fit the images), batch 16" in line
    # odd sizes round up to the net's divisor, never past the default
    odd = fingerprint(_disc_items(2, 50), task="binary", size_multiple=16, receptive_field=field)
    assert odd.patch_shape == (64, 64)
    big = fingerprint(_disc_items(1, 600), task="binary", size_multiple=16, receptive_field=field)
    assert big.patch_shape == (256, 256) and big.batch_size == 4 and not big.patch_reduced
    given = fingerprint(
        items, task="binary", size_multiple=16, receptive_field=field, patch_shape=(32, 32),
        batch_size=2,
    )  # fmt: skip
    assert given.patch_shape == (32, 32) and given.batch_size == 2 and not given.patch_reduced


def test_fingerprint_warns_when_objects_are_far_larger_than_the_receptive_field():
    items = _disc_items(1, 400, radius=60)  # 120 px objects, a depth-2 net sees 44 px
    multiple, field = net_geometry("unet", {"depth": 2})
    data = fingerprint(items, task="instances", size_multiple=multiple, receptive_field=field)
    assert data.object_diameter > 100
    assert data.scale_warning.startswith("Objects (120 px across) are large for the net's")
    assert data.describe().endswith(data.scale_warning)


def test_fingerprint_on_real_dsb2018_images_of_varying_sizes(shared_data):
    from napari_unet.cli.train import load_pairs

    folder = shared_data / "dsb2018_fluo"
    items = load_pairs(folder / "images", folder / "labels", task="instances")[::5]
    shapes = {item.spatial_shape for item in items}
    assert len(shapes) > 1, "the shared set has images of several sizes"
    data = fingerprint(items, task="instances", size_multiple=16, receptive_field=200)
    assert data.n_images == 12 and data.channels == items[0].image.shape[0]
    assert all(s % 16 == 0 and 32 <= s <= 256 for s in data.patch_shape)
    assert data.patch_shape[0] <= -(-data.median_shape[0] // 16) * 16, "never far bigger"
    assert 4 < data.object_diameter < 60 and not data.scale_warning  # nuclei, a few px to tens
    assert dict(data.class_fractions)[1] < 0.5, "nuclei cover less than half the pixels"


# ---------------------------------------------------------------- 2. bad input, via the CLI
def _write(tmp_path, labels_of, n: int = 2, side: int = 48, masks_of=None) -> None:
    for kind in ("images", "labels", "masks"):
        (tmp_path / kind).mkdir(exist_ok=True)
    for i, item in enumerate(_disc_items(n, side)):
        image = (item.image[0] * 2000 + 500).astype(np.uint16)
        imsave(tmp_path / "images" / f"img{i}.png", image, check_contrast=False)
        labels = labels_of(item.labels).astype(np.uint8)
        imsave(tmp_path / "labels" / f"img{i}.png", labels, check_contrast=False)
        if masks_of is not None:
            mask = masks_of(item.labels).astype(np.uint8) * 255
            imsave(tmp_path / "masks" / f"img{i}.png", mask, check_contrast=False)


def _train(tmp_path, *extra: str) -> list[str]:
    return ["train", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
            "--steps", "2", "--device", "cpu", "--out", str(tmp_path / "m.pt"), *extra]  # fmt: skip


def _refused(capsys, argv, expected: str, tmp_path) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.training").exists()


def test_cli_refuses_too_few_annotated_pixels(tmp_path, capsys):
    def tiny(labels):
        mask = np.zeros(labels.shape, bool)
        mask[10:14, 10:14] = True  # 16 pixels per image, 32 in all
        return mask

    _write(tmp_path, lambda y: (y > 0) * 1, masks_of=tiny)
    argv = _train(tmp_path, "--task", "binary", "--masks", str(tmp_path / "masks"))
    _refused(capsys, argv, "only 32 pixel(s) of the labels are annotated, too few", tmp_path)


def test_cli_refuses_one_class_only(tmp_path, capsys):
    _write(tmp_path, lambda y: np.zeros_like(y))
    argv = _train(tmp_path, "--task", "binary")
    _refused(capsys, argv, "Only background is annotated in the labels", tmp_path)


def test_cli_refuses_a_foreground_mask_trained_as_instances(tmp_path, capsys):
    _write(tmp_path, lambda y: (y > 0) * 255)
    argv = _train(tmp_path, "--task", "instances")
    _refused(capsys, argv, "a single id per image covering 3 separate objects", tmp_path)


def test_cli_widens_a_semantic_checkpoint_with_fewer_classes_than_the_labels(tmp_path, caplog):
    """As in the Fine-tune dock: more classes than the start model get a new head, not a refusal;
    the start model's file is not changed."""
    semantic = start_model(tmp_path / "semantic.pt", task="semantic", out_channels=2)
    before = semantic.read_bytes()
    _write(tmp_path, lambda y: y)  # classes 0..3 for a 2-class model
    with caplog.at_level("INFO"):
        assert main(_train(tmp_path, "--model", str(semantic), "--val-fraction", "0")) == 0
    assert any("fine-tuned with a new head" in r.getMessage() for r in caplog.records)
    trained = load_checkpoint(tmp_path / "m.pt")
    assert trained.info.task == "semantic" and trained.info.out_channels == 4
    assert semantic.read_bytes() == before


def test_cli_refuses_an_absurd_explicit_patch_and_fits_a_default_one(tmp_path, capsys, caplog):
    _write(tmp_path, lambda y: (y > 0) * 1)
    argv = _train(tmp_path, "--task", "binary", "--patch", "1024")
    _refused(capsys, argv, "the patch (1024x1024 px) is 21x wider than image 'img0'", tmp_path)
    # without --patch the patch is chosen from the data, said, and stored in the checkpoint
    with caplog.at_level("INFO"):
        assert main(_train(tmp_path, "--task", "binary", "--val-fraction", "0")) == 0
    (said,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data:")]
    assert "data: 2 image(s) of median 48x48 px" in said and "patch 48x48 (reduced" in said
    provenance = load_checkpoint(tmp_path / "m.pt").info.provenance
    assert provenance["fingerprint"]["patch_shape"] == [48, 48]
    assert provenance["train_config"]["patch_shape"] == [48, 48]


def test_preflight_accepts_good_data_and_real_instance_labels(shared_data):
    from napari_unet.cli.train import load_pairs

    folder = shared_data / "dsb2018_fluo"
    items = load_pairs(folder / "images", folder / "labels", task="instances")[:3]
    preflight(items, task="instances")
    preflight(_disc_items(2, 48), task="binary", patch_shape=(256, 256))  # 5x: fine
    with pytest.raises(TrainingDataError, match="single id per image"):
        binary = [TrainingItem(i.image, (i.labels > 0) * 1, name=i.name) for i in items]
        preflight(binary, task="instances")


# ---------------------------------------------------------------- 2. bad input, via the trainer
def _run_inline(req) -> list:
    events = queue.Queue()
    run_trainer(req.to_dict(), events, queue.Queue())
    return [events.get_nowait() for _ in range(events.qsize())]


def test_trainer_refuses_too_few_reviewed_pixels_before_any_step(tmp_path):
    start = start_model(tmp_path / "start.pt")
    folder = tmp_path / "session"
    session, image_id, labels = make_session(folder, review=False)
    reviewed, tiny = np.zeros(labels[0].shape, bool), np.zeros_like(labels[0])
    reviewed[:5, :5], tiny[1:4, 1:4] = True, 1  # a 3x3 object in a 5x5 reviewed corner
    session.save_slice(image_id, 0, labels=tiny, reviewed=reviewed)
    events = _run_inline(request(folder, start))
    assert isinstance(events[-1], TrainerFailed)
    assert events[-1].message.startswith("only 25 pixel(s) of the reviewed regions are annotated")
    assert not [e for e in events if type(e).__name__ == "StepEvent"], "refused before any step"
    assert not Session.open(folder).versions()


def test_trainer_shows_the_fingerprint_and_stores_it_in_the_version(tmp_path):
    start = start_model(tmp_path / "start.pt")
    folder = tmp_path / "session"
    make_session(folder)
    events = _run_inline(request(folder, start, train={"steps": 2, "val_fraction": 0.0,
                                                       "patch_shape": [256, 256]}))  # fmt: skip
    assert isinstance(events[-1], TrainerFinished), events[-1]
    pool = next(e for e in events if type(e).__name__ == "PoolChanged")
    assert "1 image(s) of median 64x64 px" in pool.fingerprint
    assert "patch 64x64 (reduced" in pool.fingerprint, "the dock's 256 px patch fits the slice"
    (version,) = Session.open(folder).versions()
    assert version.data["fingerprint"] == pool.fingerprint
    stored = load_checkpoint(Session.open(folder).version_path(version.id)).info.provenance
    assert stored["fingerprint"]["patch_shape"] == [64, 64]
    from napari_unet._widgets.finetune_request import pool_text

    assert pool_text(pool).splitlines()[1].startswith("Data: 1 image(s)")


# ---------------------------------------------------------------- 3. never worse than the parent
def _trained_version(tmp_path):
    """A session whose version v001 segments the discs well (trained from a tiny model)."""
    start = start_model(tmp_path / "start.pt")
    folder = tmp_path / "session"
    session, image_id, labels = make_session(folder, n_slices=2)
    review_slice(session, image_id, 1, labels[1])
    train = {"steps": 60, "lr": 0.01, "val_fraction": 0.0, "val_every": 60}
    events = _run_inline(request(folder, start, train=train))
    assert isinstance(events[-1], TrainerFinished), events[-1]
    return folder, Session.open(folder).versions()[0].id


def _parent_held_back(folder, start, train: dict):
    """The parent's score on the run's held-back tiles with its own stored post-processing,
    computed here as the trainer must (its split, its prediction settings)."""
    from napari_unet.core.checkpoint.format import read_checkpoint_info
    from napari_unet.core.inference.config import PredictConfig
    from napari_unet.core.simulation.versions import Version, checkpoint_postprocess, held_back
    from napari_unet.trainer.data import ValidationPlan, to_items

    config = request(folder, start, train=train).train_config.replace(task="binary")
    info = read_checkpoint_info(start)
    items = to_items(Session.open(folder).training_items(), info.normalization_config())
    plan = ValidationPlan(fraction=config.val_fraction, tile=config.val_tile, seed=config.seed,
                          pins=[])  # fmt: skip
    _, val = plan.split(items)
    own = checkpoint_postprocess(info, "binary")
    predict = PredictConfig(tile_shape=info.tile_shape or (512, 512), overlap=info.overlap,
                            device="cpu")  # fmt: skip
    return held_back(Version(load_checkpoint(start).model, own), val, config, predict)


def test_trainer_never_publishes_a_fine_tune_worse_than_its_parent(tmp_path):
    """The parent is scored with its own stored post-processing on the held-back tiles (not the
    pixel validation score of step 0), as simulate scores it, and the message says the metric."""
    folder, parent = _trained_version(tmp_path)
    train = {"steps": 6, "lr": 5.0, "val_every": 2, "val_fraction": 0.5}  # lr huge: worse
    events = _run_inline(request(folder, parent, train=train))
    assert isinstance(events[-1], TrainerFinished), events[-1]
    baseline = next(e for e in events if type(e).__name__ == "ValidationEvent")
    assert baseline.step == 0, "the start model's pixel scores still start the curve"
    assert not [e for e in events if isinstance(e, VersionPublished)]
    skipped = [e for e in events if isinstance(e, VersionSkipped)]
    expected = _parent_held_back(folder, Session.open(folder).version_path(parent), train)
    assert expected.metric == "foreground IoU" and expected.value > 0.3
    assert skipped and skipped[-1].parent_score == pytest.approx(expected.value)
    assert skipped[-1].parent_score != pytest.approx(baseline.metrics["score"]), "not pixels"
    assert skipped[-1].message.startswith("version not published: held-back foreground IoU ")
    assert skipped[-1].message.endswith(f"< parent {expected.value:.3f}")
    assert [v.id for v in Session.open(folder).versions()] == [parent]


def test_trainer_publishes_a_child_that_beats_its_parent_with_its_retuned_settings(tmp_path):
    """A parent whose stored settings drop every object (min size 5000 px) scores 0 on the
    held-back tiles; its child, trained with a learning rate too small to change a pixel (the
    old pixel guard refused it: same score as the parent), gets its settings re-tuned there,
    beats the parent and is published with those settings stored in it."""
    from napari_unet.core.checkpoint.stamp import copy_with_provenance

    folder, trained = _trained_version(tmp_path)
    start = tmp_path / "drops_all.pt"
    copy_with_provenance(Session.open(folder).version_path(trained), start,
                         {"postprocess": {"min_size": 5000}})  # fmt: skip
    train = {"steps": 2, "lr": 1e-9, "val_every": 2, "val_fraction": 0.5}
    assert _parent_held_back(folder, start, train).value == 0.0
    events = _run_inline(request(folder, start, train=train))
    assert isinstance(events[-1], TrainerFinished), events[-1]
    assert not [e for e in events if isinstance(e, VersionSkipped)]
    (published,) = [e for e in events if isinstance(e, VersionPublished)]
    metrics = published.metrics
    assert metrics["held_back_metric"] == "foreground IoU"
    assert metrics["parent_held_back_score"] == 0 and metrics["held_back_score"] > 0.3
    info = load_checkpoint(published.path).info
    own = info.postprocess_config()
    assert own.min_size < 5000, "the re-tuned settings are stored in the version"
    assert info.provenance["operating_point"]["settings"]["min_size"] == own.min_size
    assert metrics["operating_point"] == info.provenance["operating_point"]["settings"]
    version = Session.open(folder).versions()[-1]  # the dock's table shows the settings
    assert version.id == published.version_id
    assert version.metrics["operating_point"]["min_size"] == own.min_size


def test_simulate_keeps_a_trained_parent_when_the_fine_tune_is_worse(tmp_path):
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.inference.prediction import PredictConfig
    from napari_unet.core.simulation.experiment import SimulateConfig, simulate
    from napari_unet.core.training.config import TrainConfig

    folder, parent = _trained_version(tmp_path)
    model = load_checkpoint(Session.open(folder).version_path(parent)).model
    items = []
    for seed in range(10, 16):
        image, labels = discs(seed)
        items.append(
            TrainingItem(normalize(image[None].astype(np.float32)), labels, name=f"d{seed}")
        )
    config = SimulateConfig(
        task="binary",
        rounds=1,
        per_round=3,
        steps_per_round=6,
        eval_images=2,
        train=TrainConfig(
            task="binary",
            lr=5.0,
            batch_size=2,
            patch_shape=(32, 32),
            val_fraction=0.0,
            val_tile=32,
            val_every=2,
            amp=False,
            channels_last=False,
            device="cpu",
        ),
        predict=PredictConfig(tile_shape=(64, 64), device="cpu"),
    )
    result = simulate(model, items, config, work_dir=str(tmp_path / "work"), start_trained=True)
    first, second = result.rounds
    assert second.note.startswith("version not published: held-back foreground IoU "), second.note
    assert second.metrics == pytest.approx(first.metrics, nan_ok=True), "the parent went on"


def test_keep_learning_rescores_the_parent_on_the_new_held_back_tiles(tmp_path, monkeypatch):
    """Corrections during training change the held-back tiles: the parent is scored again on
    them (before, the comparison was dropped and any best model was published)."""
    from napari_unet.trainer.process import Trainer

    folder, parent = _trained_version(tmp_path)
    session = Session.open(folder)
    image_id = session.images()[0].id
    scores = []
    rescore = Trainer._rescore_parent
    monkeypatch.setattr(
        Trainer, "_rescore_parent", lambda self, *a: scores.append(rescore(self, *a)) or scores[-1]
    )
    control = queue.Queue()
    control.put(("corrections", [(image_id, 1)]))
    events = queue.Queue()
    train = {"steps": 6, "lr": 5.0, "val_every": 2, "val_fraction": 0.5}
    run_trainer(request(folder, parent, keep_learning=True, train=train).to_dict(), events, control)
    sent = [events.get_nowait() for _ in range(events.qsize())]
    assert isinstance(sent[-1], TrainerFinished), sent[-1]
    assert scores and isinstance(scores[0], float), "the parent was scored on the new tiles"
    assert not [e for e in sent if isinstance(e, VersionPublished)]
    assert [e for e in sent if isinstance(e, VersionSkipped)][-1].parent_score == scores[-1]


def test_simulate_refuses_bad_labels_before_any_round(tmp_path, capsys):
    _write(tmp_path, lambda y: (y > 0) * 255, n=3)
    argv = ["simulate", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
            "--task", "instances", "--rounds", "1", "--per-round", "1", "--steps-per-round", "1",
            "--device", "cpu", "--json", str(tmp_path / "s.json")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a single id per image covering 3 separate" in err, err
    assert not (tmp_path / "s.json").exists()


def test_a_stop_before_the_first_validation_publishes_nothing_unscored(tmp_path):
    """Stopped before any validation, the model was never compared with its parent: kept out."""
    start = start_model(tmp_path / "start.pt")
    folder = tmp_path / "session"
    make_session(folder)
    control = queue.Queue()

    class Events(queue.Queue):
        def put(self, event, *args, **kwargs):  # the user presses Stop after the first step
            if type(event).__name__ == "StepEvent":
                control.put("stop")
            super().put(event, *args, **kwargs)

    events = Events()
    train = {"steps": 100_000, "val_every": 100_000}
    run_trainer(request(folder, start, train=train).to_dict(), events, control)
    sent = [events.get_nowait() for _ in range(events.qsize())]
    assert isinstance(sent[-1], TrainerFinished) and sent[-1].reason == "stopped", sent[-1]
    assert sent[-1].steps > 0 and not [e for e in sent if isinstance(e, VersionPublished)]
    (skipped,) = [e for e in sent if isinstance(e, VersionSkipped)]
    assert skipped.message.startswith("version not published: not scored on the held-back tiles")
    assert not Session.open(folder).versions()
