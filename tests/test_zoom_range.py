"""Issue 17: the augmentation's zoom range is a setting shown in the fingerprint line and stored in
the checkpoint: 0.9-1.1x by default, ``train --zoom`` wins, and a fine-tune keeps the range its
start model was trained with (train, simulate, the Fine-tune dock)."""

from __future__ import annotations

import json
import queue

import numpy as np
import pytest
from skimage import measure
from skimage.io import imsave
from trainer_kill_helper import make_session, request, review_slice

from napari_unet.cli import main
from napari_unet.core.checkpoint.format import (
    builtin_checkpoints,
    load_checkpoint,
    read_checkpoint_info,
)
from napari_unet.core.checkpoint.new_model import NewModelConfig, new_checkpoint
from napari_unet.core.training.fingerprint import ZOOM, fingerprint
from napari_unet.core.training.items import TrainingItem
from napari_unet.session import Session
from napari_unet.trainer.events import TrainerFinished
from napari_unet.trainer.process import run_trainer

WIDE = [0.67, 1.5]


def _items(n: int = 2, side: int = 64) -> list[TrainingItem]:
    """``n`` images with two labelled discs each."""
    yy, xx = np.mgrid[:side, :side]
    items = []
    for i in range(n):
        labels = np.zeros((side, side), np.int32)
        labels[(yy - 16) ** 2 + (xx - 16 - i) ** 2 <= 49] = 1
        labels[(yy - 44) ** 2 + (xx - 40) ** 2 <= 64] = 2
        items.append(TrainingItem(image=(labels > 0).astype(np.float32)[None], labels=labels))
    return items


def _zoom_of(path) -> list[float]:
    return list(load_checkpoint(path).info.provenance["train_config"]["augment"]["affine_scale"])


def test_the_fingerprint_says_which_range_and_why():
    kw = dict(task="instances", size_multiple=16, receptive_field=200)
    default = fingerprint(_items(), **kw)
    assert default.zoom == ZOOM == (0.9, 1.1) and default.describe().endswith("zoom 0.9-1.1x")
    kept = fingerprint(_items(), start_zoom=(0.67, 1.5), **kw)
    assert kept.zoom == (0.67, 1.5)
    assert kept.describe().endswith("zoom 0.67-1.5x (as the start model was trained)")
    given = fingerprint(_items(), zoom=(0.8, 1.25), start_zoom=(0.67, 1.5), **kw)
    assert given.zoom == (0.8, 1.25) and given.describe().endswith("zoom 0.8-1.25x (as given)")
    assert given.to_dict()["zoom"] == (0.8, 1.25)


def test_untrained_and_trained_zoom_read_from_a_checkpoint(tmp_path):
    scratch = new_checkpoint(NewModelConfig(task="instances"), tmp_path / "new.pt")
    info = read_checkpoint_info(scratch)
    assert info.untrained and info.trained_zoom is None
    builtin = read_checkpoint_info(builtin_checkpoints()["fluo-nuclei"])
    assert not builtin.untrained and builtin.trained_zoom == ZOOM
    from_builtin = NewModelConfig(task="instances", start="fluo-nuclei")
    started = new_checkpoint(from_builtin, tmp_path / "b.pt")
    assert not read_checkpoint_info(started).untrained, "weights from a built-in: not from scratch"


def test_a_new_model_adapted_to_rgb_images_is_still_new(tmp_path):
    from napari_unet.core.checkpoint.channels import adapt_channels

    grey = new_checkpoint(NewModelConfig(task="instances", in_channels=1), tmp_path / "g.pt")
    rgb = read_checkpoint_info(adapt_channels(grey, 3, tmp_path / "rgb.pt"))
    assert rgb.in_channels == 3 and rgb.untrained


def _write(folder, n: int = 2) -> None:
    for kind in ("images", "labels"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(_items(n)):
        image = (item.image[0] * 2000 + 500).astype(np.uint16)
        imsave(folder / "images" / f"i{i}.png", image, check_contrast=False)
        imsave(folder / "labels" / f"i{i}.png", item.labels.astype(np.uint8), check_contrast=False)


def _train(folder, out, *extra: str) -> list[str]:
    return ["train", "--images", str(folder / "images"), "--labels", str(folder / "labels"),
            "--task", "instances", "--steps", "2", "--device", "cpu", "--val-fraction", "0",
            "--out", str(out), *extra]  # fmt: skip


def test_train_zoom_wins_is_shown_and_fine_tunes_keep_it(tmp_path, caplog):
    _write(tmp_path)
    caplog.set_level("INFO")
    plain = tmp_path / "plain.pt"
    assert main(_train(tmp_path, plain, "--model", "unet")) == 0
    assert _zoom_of(plain) == list(ZOOM)
    wide = tmp_path / "wide.pt"
    assert main(_train(tmp_path, wide, "--model", "unet", "--zoom", "0.67,1.5")) == 0
    assert _zoom_of(wide) == WIDE and "zoom 0.67-1.5x (as given)" in caplog.text
    tuned = tmp_path / "tuned.pt"
    assert main(_train(tmp_path, tuned, "--model", str(wide))) == 0
    assert _zoom_of(tuned) == WIDE, "a fine-tune keeps the range its start was trained with"
    assert "zoom 0.67-1.5x (as the start model was trained)" in caplog.text
    builtin = tmp_path / "builtin.pt"
    assert main(_train(tmp_path, builtin, "--model", "fluo-nuclei")) == 0
    assert _zoom_of(builtin) == list(ZOOM)


@pytest.mark.parametrize("text", ["2,1", "0,1", "1", "a,b"])
def test_train_refuses_a_bad_zoom(tmp_path, capsys, text):
    _write(tmp_path)
    with pytest.raises(SystemExit):
        main(_train(tmp_path, tmp_path / "m.pt", "--model", "unet", "--zoom", text))
    assert "expected LOW,HIGH with 0 < LOW <= HIGH" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_simulate_from_a_checkpoint_keeps_its_zoom(tmp_path):
    _write(tmp_path, n=5)
    wide = tmp_path / "wide.pt"
    assert main(_train(tmp_path, wide, "--model", "unet", "--zoom", "0.67,1.5")) == 0
    out = tmp_path / "sim.json"
    argv = ["simulate", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
            "--task", "instances", "--init", str(wide), "--rounds", "1", "--per-round", "2",
            "--steps-per-round", "1", "--eval-images", "2", "--device", "cpu", "--threads", "1",
            "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    config = json.loads(out.read_text(encoding="utf-8"))["config"]["simulate"]
    assert config["train"]["augment"]["affine_scale"] == WIDE


def test_the_fine_tune_dock_keeps_the_start_models_zoom_and_says_so(tmp_path):
    _write(tmp_path / "data")
    wide = tmp_path / "wide.pt"
    assert main(_train(tmp_path / "data", wide, "--model", "unet", "--zoom", "0.67,1.5")) == 0
    folder = tmp_path / "session"
    session, image_id, labels = make_session(folder, labels_task="instances", review=False)
    review_slice(session, image_id, 0, measure.label(labels[0]).astype(np.uint16))
    events: queue.Queue = queue.Queue()
    run_trainer(request(folder, wide, train={"steps": 2, "val_fraction": 0.0}).to_dict(), events,
                queue.Queue())  # fmt: skip
    seen = []
    while not events.empty():
        seen.append(events.get())
    assert isinstance(seen[-1], TrainerFinished), seen[-1]
    pool = next(e for e in seen if type(e).__name__ == "PoolChanged")
    assert "zoom 0.67-1.5x (as the start model was trained)" in pool.fingerprint
    (version,) = Session.open(folder).versions()
    assert _zoom_of(Session.open(folder).version_path(version.id)) == WIDE
