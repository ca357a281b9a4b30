"""The "U-Net Fine-tune" dock in a real napari window (run under Xvfb: ``xvfb-run -a``).

A tiny session is built with the Session API (a two-slice stack of synthetic nuclei, both slices
reviewed) with a depth-2 U-Net registered as its first version. Checked: guidance without a
session or without reviews, the data summary counts and the validation hold-back (the trainer's
own split), pins, the request built from the settings, the plot's bounded redraws, and an
end-to-end run through the real trainer process (a version appears).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet.core.training.config import StepEvent, TrainConfig, ValidationEvent
from napari_unet.session import Session

pytestmark = pytest.mark.gui

SHAPE = (2, 64, 64)


def tiny_checkpoint(path):
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=3)
    return save_checkpoint(path, model, task="instances", tile_shape=(64, 64), overlap=8)


def nuclei_stack() -> tuple[np.ndarray, np.ndarray]:
    from napari_unet.core.synthetic import synthetic_nuclei

    pairs = [synthetic_nuclei(SHAPE[1:], seed=s) for s in (1, 2)]
    image = np.stack([np.asarray(i, dtype=np.float32) for i, _ in pairs])
    labels = np.stack([np.asarray(lab, dtype=np.uint16) for _, lab in pairs])
    return image, labels


@pytest.fixture
def session(tmp_path):
    """A session with a (2, 64, 64) stack, both slices reviewed, and version v001."""
    image, labels = nuclei_stack()
    session = Session.create(tmp_path / "loop.unet", name="loop")
    image_id = session.add_image("nuclei", axes="ZYX", image=image, task="instances")
    for s in range(SHAPE[0]):
        session.save_slice(
            image_id, s, labels=labels[s], snapshot=labels[s], reviewed=np.ones(SHAPE[1:], bool)
        )
    session.add_version(tiny_checkpoint(tmp_path / "tiny.pt"), name="tiny")
    session.labels = labels  # the ground truth, for the assertions
    session.image_id = image_id
    return session


class FakeClient:
    """A TrainerClient stand-in: records requests, has the client's signals."""

    def __init__(self) -> None:
        from qtpy.QtCore import QObject, Signal

        class Signals(QObject):
            step = Signal(object)
            validation = Signal(object)
            version = Signal(object)
            pool_changed = Signal(object)
            skipped = Signal(object)
            finished = Signal(object)
            failed = Signal(str)
            running_changed = Signal(bool)

        self.signals = Signals()
        names = ("step", "validation", "version", "pool_changed", "skipped", "finished", "failed")
        for name in names:
            setattr(self, name, getattr(self.signals, name))
        self.running_changed = self.signals.running_changed
        self.requests: list = []
        self.corrections: list = []
        self.request = None
        self.running = False

    def start(self, request) -> None:
        self.requests.append(request)
        self.request, self.running = request, True
        self.running_changed.emit(True)

    def stop(self) -> None:
        self.running = False
        self.running_changed.emit(False)

    def send_corrections(self, keys) -> None:
        self.corrections.append(list(keys))


@pytest.fixture
def make_panel(make_napari_viewer, qtbot):
    from napari_unet._widgets.finetune_panel import FinetunePanel
    from napari_unet._widgets.loop_state import LoopState

    def make(session=None, client=None):
        viewer = make_napari_viewer()
        if session is not None:
            LoopState.for_viewer(viewer).set_session(session)
        panel = FinetunePanel(viewer, client=client or FakeClient())
        viewer.window.add_dock_widget(panel, name="U-Net Fine-tune")
        return viewer, panel

    return make


def test_widget_builds_and_guides_without_session(make_napari_viewer, qtbot):
    from napari_unet._widgets import FinetuneWidget

    viewer = make_napari_viewer()
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="U-Net Fine-tune")
    panel = widget.finetune
    assert widget.panels[0] is panel
    assert "Create" in panel.guidance.text() and "session" in panel.guidance.text()
    assert not panel.guidance.isHidden()
    assert not panel.start_button.isEnabled()
    panel.start()  # refused with a sentence, no traceback
    assert not panel.client.running
    assert "session" in panel.message.text()


def test_nothing_reviewed_guidance(make_panel, tmp_path):
    empty = Session.create(tmp_path / "empty.unet")
    _, panel = make_panel(empty)
    assert panel.summary.empty
    assert "reviewed" in panel.guidance.text()
    assert not panel.start_button.isEnabled()


def test_data_summary_counts_and_validation(make_panel, session, monkeypatch):
    from napari_unet._widgets.data_summary import SummaryCache

    _, panel = make_panel(session)
    summary = panel.summary
    n_objects = sum(len(np.unique(s[s > 0])) for s in session.labels)
    assert (summary.images, summary.slices) == (1, 2)
    assert summary.pixels == 2 * 64 * 64
    assert summary.objects == n_objects
    assert summary.tiles == 2 and summary.val_tiles == 1  # at least one tile, one left to train
    assert summary.val_pixels == 64 * 64 and summary.train_pixels == 64 * 64
    assert panel.guidance.isHidden() and panel.start_button.isEnabled()
    assert "1 tile(s) of 2" in panel.data_label.text()
    # the trainer's own split agrees
    from napari_unet.trainer.data import ValidationPlan, to_items

    items = to_items(session.training_items(), None)
    plan = ValidationPlan(fraction=0.1, tile=128, seed=0, pins=[])
    _, val = plan.split(items)
    assert sum(int(v.mask.sum()) for v in val) == summary.val_pixels
    # cached: an unchanged session reads no slice again
    cache = panel.cache
    calls = []
    monkeypatch.setattr(cache, "_count", lambda *a: calls.append(a) or SummaryCache._count(*a))
    assert cache.summary(session) == summary
    assert not calls
    session.save_slice(session.image_id, 1, reviewed=np.zeros(SHAPE[1:], bool))
    assert cache.summary(session).slices == 1 and len(calls) == 0  # slice 1 is no longer used
    session.save_slice(session.image_id, 1, reviewed=np.ones(SHAPE[1:], bool))
    assert cache.summary(session) == summary and len(calls) == 1


def test_pins_slice_and_rectangle(make_panel, session, qtbot):
    viewer, panel = make_panel(session)
    tag = {
        "role": "labels",
        "image_layer": "nuclei",
        "task": "instances",
        "output": "instances",
        "model": "test",
        "snapshot": session.labels.copy(),
        "reviewed": np.ones(SHAPE, bool),
        "predicted": [0, 1],
        "session_image_id": session.image_id,
    }
    viewer.add_labels(session.labels.copy(), name="nuclei labels", metadata={"napari_unet": tag})
    viewer.dims.set_current_step(0, 1)
    panel.pin_slice()
    assert session.validation_pins() == [
        {"image_id": session.image_id, "slice_index": 1, "rect": None}
    ]
    assert panel.summary.pinned_pixels == 64 * 64 and panel.summary.val_tiles == 0
    panel.pin_rectangles()  # nothing drawn: opens the regions layer
    shapes = viewer.layers["validation regions"]
    assert shapes.mode == "add_rectangle"
    shapes.add_rectangles(np.array([[0, 10, 20], [0, 10, 40], [0, 30, 40], [0, 30, 20]]))
    panel.pin_rectangles()
    assert {"image_id": session.image_id, "slice_index": 0, "rect": [10, 20, 31, 41]} in (
        session.validation_pins()
    )
    assert len(shapes.data) == 0
    assert panel.summary.pinned_pixels == 64 * 64 + 21 * 21


def test_request_from_settings(make_panel, session, qtbot):
    _, panel = make_panel(session)
    form = panel.form
    assert form.start_key() == "version:v001"  # the newest version is the default
    assert form.lr.text() == "0.0001" and form.fields["strength"].value == 0.5
    assert form.budget_kind.currentData() == "minutes" and form.budget.value() == 5
    form.budget_kind.setCurrentIndex(form.budget_kind.findData("steps"))
    form.budget.setValue(300)
    form.lr.setText("0.0005")
    form.fields["strength"].value = 0.2  # the slider (a magicgui FloatSlider)
    form.freeze.setChecked(True)
    form.dice.setValue(0.5)
    form.patch.setValue(128)
    form.batch.setValue(2)
    form.threads.setValue(1)
    budgeted = panel.build_request().train_config
    assert budgeted.steps == 300 and budgeted.minutes is None
    assert budgeted.schedule == "cosine"
    form.keep_learning.setChecked(True)
    assert "keep-learning" in panel.start_button.text()
    assert not form.budget.isEnabled() and not form.budget_kind.isEnabled()
    request = panel.build_request()
    train = request.train_config
    assert request.session == str(session.root) and request.start_from == "v001"
    assert request.keep_learning and request.num_threads == 1
    # keep learning runs until Stop: no step budget, a day's cap, no decay to follow
    assert train.steps is None and train.minutes == 24 * 60
    assert train.schedule == "constant"
    assert train.lr == pytest.approx(5e-4) and train.freeze_encoder
    assert train.augment.strength == pytest.approx(0.2)
    assert train.loss.ce == 1.0 and train.loss.dice == 0.5
    assert train.patch_shape == (128, 128) and train.batch_size == 2
    assert train.val_every == 20 and train.val_tile == 128
    assert train.checkpoint_dir.startswith(str(session.root / "runs"))
    panel.start()
    assert panel.client.requests and not panel.start_button.isEnabled()
    assert panel.stop_button.isEnabled()
    # keep learning: a review saved while training is sent to the trainer
    panel.loop.publish_reviewed(session.image_id, [1])
    assert panel.client.corrections == [[(session.image_id, 1)]]
    form.ce.setValue(0)
    form.dice.setValue(0)
    with pytest.raises(Exception, match="loss weights"):
        panel.build_request()


def test_plot_receives_events_and_redraws_rarely(make_panel, session, qtbot):
    from napari_unet._widgets.training_plot import MAX_POINTS, Series

    _, panel = make_panel(session)
    panel.start()
    plot = panel.plot
    qtbot.wait(400)
    before = plot.draws
    t0 = time.monotonic()
    for step in range(1, 101):
        panel.client.step.emit(StepEvent(step, 1.0 / step, 1e-4, 10.0, step * 0.01))
        if step % 20 == 0:
            panel.client.validation.emit(ValidationEvent(step, {"score": step / 100}, True))
        qtbot.wait(10)
    while time.monotonic() - t0 < 1.0:
        qtbot.wait(20)
    elapsed = time.monotonic() - t0
    draws = plot.draws - before
    assert 1 <= draws <= elapsed / 0.3 + 2, (draws, elapsed)
    assert len(plot.loss) == 100 and len(plot.score) == 5
    assert plot.loss.y[-1] < plot.loss.y[0]  # smoothed, but decreasing
    assert "step 100" in panel.timing.text() and "left" in panel.timing.text()
    panel.client.version.emit(_version("v002", 100))
    assert plot.versions == [(100, "v002")]
    assert "v002" in panel.status.text()
    idle = plot.draws
    qtbot.wait(700)
    assert plot.draws - idle <= 1  # nothing new: no redraw beyond the pending one
    series = Series()
    for i in range(5 * MAX_POINTS):
        series.append(i, i)
    assert len(series) <= MAX_POINTS
    assert np.all(np.diff(series.x) > 0) and series.x[-1] == 5 * MAX_POINTS - 1


def _version(version_id, step):
    from napari_unet.trainer.events import VersionPublished

    return VersionPublished(version_id, "x.pt", {"score": 0.5}, step)


def test_the_dock_says_why_a_version_is_not_published_with_both_scores(make_panel, session):
    """The trainer's ``VersionSkipped`` (through the real client's dispatch) reaches the status
    line in the metric's terms; a published version says its held-back score against the
    parent's."""
    from napari_unet._widgets.trainer_client import TrainerClient
    from napari_unet.trainer.events import TrainerFinished, VersionPublished
    from napari_unet.trainer.guard import VersionSkipped

    _, panel = make_panel(session)
    panel.start()
    client = TrainerClient()
    client.skipped.connect(panel.on_skipped)
    message = "version not published: held-back AP@0.5 0.610 < parent 0.650"
    client._dispatch(VersionSkipped(40, 0.61, 0.65, message))
    assert panel.status.text() == (
        "Step 40: Version not published: held-back AP@0.5 0.610 < parent 0.650; "
        "the start model stays."
    )
    metrics = {"score": 0.5, "held_back_score": 0.7, "held_back_metric": "AP@0.5",
               "parent_held_back_score": 0.65}  # fmt: skip
    panel.client.version.emit(VersionPublished("v002", "x.pt", metrics, 60))
    assert panel.status.text().endswith(" Held-back AP@0.5 0.700 > parent 0.650.")
    chosen = {"threshold": 0.9, "interior_threshold": 0.5, "min_size": 20, "unseeded": "drop"}
    panel.client.version.emit(
        VersionPublished("v002", "x.pt", {**metrics, "operating_point": chosen}, 60)
    )
    assert panel.status.text().endswith(
        " Held-back AP@0.5 0.700 > parent 0.650; post-processing threshold 0.9, seeds 0.5, "
        "min size 20, unseeded drop."
    )
    panel.client.skipped.emit(VersionSkipped(80, 0.6, 0.65, message))
    assert panel.status.text().endswith("; v002 stays.")
    panel.client.stop()
    panel.start()  # a new run that publishes nothing: the end says why, in the same terms
    panel.client.validation.emit(ValidationEvent(0, {"score": 0.5}, False))
    panel.client.validation.emit(ValidationEvent(40, {"score": 0.9}, True))  # pixels: better
    panel.client.skipped.emit(VersionSkipped(40, 0.61, 0.65, message))
    panel.client.finished.emit(TrainerFinished("steps", 40, None))
    assert panel.status.text() == (  # one sentence: what happened, why, and what stays
        "Finished (step budget used) after 40 steps: no version published (step 40: held-back "
        "AP@0.5 0.610 < parent 0.650); the start model stays."
    ), panel.status.text()


def test_failure_is_a_message(make_panel, session, qtbot):
    _, panel = make_panel(session)
    panel.client.failed.emit("The trainer crashed: boom; your session is intact.")
    assert not panel.message.isHidden() and "boom" in panel.message.text()


@pytest.mark.slow
def test_end_to_end_real_trainer(make_panel, session, qtbot):
    client_module = pytest.importorskip("napari_unet._widgets.trainer_client")
    pytest.importorskip("napari_unet.trainer.process")
    _, panel = make_panel(session, client=client_module.TrainerClient())
    versions = []
    panel.loop.version_added.connect(versions.append)
    form = panel.form
    form.budget_kind.setCurrentIndex(form.budget_kind.findData("steps"))
    form.budget.setValue(40)
    form.patch.setValue(64)
    form.batch.setValue(2)
    form.threads.setValue(1)
    form.device.setCurrentText("cpu")
    form.lr.setText("0.003")
    ends = []
    panel.client.finished.connect(ends.append)
    panel.client.failed.connect(ends.append)
    panel.start()
    qtbot.waitUntil(lambda: bool(ends) and not panel.client.running, timeout=120_000)
    assert not isinstance(ends[0], str), ends[0]
    assert len(panel.plot.loss) >= 1 and len(panel.plot.score) >= 1
    assert versions and versions[-1] in {v.id for v in session.versions()}
    qtbot.waitUntil(lambda: panel.form.start_key() == f"version:{versions[-1]}", timeout=5000)
    assert panel.start_button.isEnabled() and "Finished" in panel.status.text()


def test_timing_line_counts_down_a_budget_but_not_keep_learning():
    from types import SimpleNamespace

    from napari_unet._widgets.finetune_request import timing_text

    step = StepEvent(50, 0.3, 1e-4, 8.0, 60.0)
    started = time.monotonic() - 60.0
    budgeted = SimpleNamespace(keep_learning=False, train_config=TrainConfig(minutes=5.0))
    text = timing_text(started, step, time.monotonic(), budgeted, running=True)
    assert "about 4 min" in text and text.endswith("step 50")
    forever = SimpleNamespace(keep_learning=True, train_config=TrainConfig(minutes=1440.0))
    text = timing_text(started, step, time.monotonic(), forever, running=True)
    assert "until Stop" in text and "left" not in text


def test_the_plot_summary_names_the_pixel_score_last_and_best(qtbot):
    """The summary's score is the pixel validation score (last and best): a version is published
    on its held-back AP@0.5 or IoU against its parent, so "best" alone read as the publication's
    score next to "version not published: held-back AP@0.5 0.610 < parent 0.650"."""
    from napari_unet._widgets.training_plot import TrainingPlot

    plot = TrainingPlot()
    qtbot.addWidget(plot)
    plot.add_step(10, 0.5)
    plot.add_validation(10, 0.82)
    plot.add_validation(20, 0.79)
    assert "pixel val. score 0.790 (best 0.820)" in plot._summary_text()


def test_a_new_model_loaded_as_a_file_learns_at_the_scratch_rate(make_panel, session, qtbot):
    """A new, untrained checkpoint chosen with Load… (not made in the New model section) gets
    the from-scratch learning rate, as one made there does; a trained one keeps 1e-4."""
    from napari_unet.core.checkpoint.new_model import NewModelConfig, new_checkpoint
    from napari_unet.core.config import LR_FINETUNE, LR_SCRATCH

    _, panel = make_panel(session)
    new = new_checkpoint(NewModelConfig(task="instances"), session.root / "new.pt")
    panel.form.select_file(str(tiny_checkpoint(session.root / "trained.pt")))
    qtbot.waitUntil(lambda: len(panel._tasks) >= 1, timeout=10_000)
    assert float(panel.form.lr.text()) == LR_FINETUNE
    panel.form.select_file(str(new))
    qtbot.waitUntil(lambda: float(panel.form.lr.text()) == LR_SCRATCH, timeout=10_000)
    assert f"learning rate {LR_SCRATCH:g}" in panel.start_line.text()


def test_a_rate_typed_by_hand_is_named_in_the_start_line(make_panel, session, qtbot):
    _, panel = make_panel(session)
    qtbot.waitUntil(lambda: bool(panel.start_line.text()), timeout=10_000)
    assert "You set" not in panel.start_line.text()
    panel.form.lr.clear()
    qtbot.keyClicks(panel.form.lr, "3e-4")
    assert panel.start_line.text().endswith("You set 0.0003, which is used.")
