"""One helper fits a start model to the data for ``train``, ``simulate`` and the Fine-tune
trainer (issue 17): a wider head for more classes, the channels adapted, one line saying what was
done; the start file is never changed; ``train`` leaves no fitted copy behind when it fails."""

from __future__ import annotations

import numpy as np
from test_start_channels import digest, tiny, train_argv, write_rgb_pairs

import napari_unet.cli.train as train_cli
from napari_unet.cli import main
from napari_unet.core.checkpoint.format import load_checkpoint, save_checkpoint
from napari_unet.core.checkpoint.start_fit import classes_needed, fit_start
from napari_unet.core.errors import UserInputError
from napari_unet.core.training.items import TrainingItem


def rgb_items(top_class: int, n: int = 2) -> list[TrainingItem]:
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        labels = np.zeros((16, 16), np.int32)
        labels[2:8, 2:8], labels[9:14, 9:14] = 1, top_class
        image = rng.random((3, 16, 16)).astype(np.float32)
        items.append(TrainingItem(image, labels, name=f"i{i}"))
    return items


def test_more_classes_and_rgb_images_give_one_fitted_copy_and_one_line(tmp_path):
    start = save_checkpoint(tmp_path / "start.pt", tiny(1, 2), task="semantic")
    before = digest(start)
    fitted = fit_start(start, rgb_items(3), tmp_path / "run")
    assert digest(start) == before
    assert fitted.info.out_channels == 4 and fitted.info.in_channels == 3
    assert fitted.channels_adapted and fitted.path == fitted.written[-1]
    assert [p.name for p in fitted.written] == ["start-4-classes.pt", "start-3-channels.pt"]
    model = load_checkpoint(fitted.path).model
    assert (model.in_channels, model.out_channels) == (3, 4)
    assert fitted.note == (
        "the labels use 4 classes and the start model has 2: it is fine-tuned with a new head; "
        "the start model takes 1 channel(s) and the images have 3: its first layer is adapted "
        "(the model file itself is not changed)"
    )


def test_a_fitting_start_is_used_as_it_is(tmp_path):
    start = save_checkpoint(tmp_path / "start.pt", tiny(3, 4), task="semantic")
    fitted = fit_start(start, rgb_items(3), tmp_path / "run")
    assert fitted.path == start and fitted.written == () and fitted.note == ""
    assert not (tmp_path / "run").exists()


def test_classes_needed_reads_class_ids_only_for_semantic_labels(tmp_path):
    binary = load_checkpoint(save_checkpoint(tmp_path / "b.pt", tiny(1, 1), task="binary")).info
    items = rgb_items(2)
    assert classes_needed(items, binary) == 3  # two classes on a binary model: a wider head
    assert classes_needed(items, binary, task="binary") is None  # foreground > 0
    assert classes_needed(rgb_items(1), binary) is None
    assert classes_needed(items, binary, label_map={2: 1}) is None
    assert classes_needed(items, binary, ignore_value=2) is None
    instances = load_checkpoint(save_checkpoint(tmp_path / "i.pt", tiny(1), task="instances"))
    assert classes_needed(items, instances.info) is None  # a fixed head


def refuse(*args, **kwargs):
    raise UserInputError("the data cannot be fingerprinted; fix them.")


def test_train_that_fails_after_fitting_leaves_no_fitted_copy(tmp_path, monkeypatch, capsys):
    """The adapted copy went into OUT.training/ before the run; a later failure removed only
    the folders training itself created, so the copy stayed behind."""
    images, labels = write_rgb_pairs(tmp_path / "data", grey=False, n=2)
    monkeypatch.setattr(train_cli, "data_fingerprint", refuse)
    out = tmp_path / "m.pt"
    assert main(train_argv(images, labels, "fluo-nuclei", out)) == 2
    assert "cannot be fingerprinted" in capsys.readouterr().err
    assert not (tmp_path / "m.training").exists() and not out.exists()


def test_an_earlier_runs_folder_is_kept_when_a_later_run_fails(tmp_path, monkeypatch):
    images, labels = write_rgb_pairs(tmp_path / "data", grey=False, n=2)
    earlier = tmp_path / "m.training"
    earlier.mkdir()
    (earlier / "best.pt").write_bytes(b"an earlier run's model")
    monkeypatch.setattr(train_cli, "data_fingerprint", refuse)
    assert main(train_argv(images, labels, "fluo-nuclei", tmp_path / "m.pt")) == 2
    assert (earlier / "best.pt").read_bytes() == b"an earlier run's model"


def test_a_failed_out_write_keeps_the_trained_model_it_names(tmp_path, monkeypatch, capsys):
    import napari_unet.core.checkpoint.stamp as stamp

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "m.pt"))

    images, labels = write_rgb_pairs(tmp_path / "data", grey=False, n=2)
    monkeypatch.setattr(stamp, "copy_with_provenance", read_only)
    assert main(train_argv(images, labels, "fluo-nuclei", tmp_path / "m.pt")) == 2
    assert "the trained model is kept in" in capsys.readouterr().err
    assert (tmp_path / "m.training" / "best.pt").is_file()


def test_a_widened_25d_start_model_stays_25d(tmp_path):
    """A 2.5-D model (3 input channels: R = 1) fine-tuned on more classes: the wider copy keeps
    ``context_slices``, so the dock's new items, its published version and simulate still feed
    each slice with its neighbours."""
    start = save_checkpoint(
        tmp_path / "start.pt", tiny(3, 2), task="semantic", provenance={"context_slices": 1}
    )
    fitted = fit_start(start, rgb_items(3), tmp_path / "run")  # 3 channels = the slice stack
    assert [p.name for p in fitted.written] == ["start-4-classes.pt"]
    assert fitted.info.context_slices == 1
    assert load_checkpoint(fitted.path).model.context_slices == 1
