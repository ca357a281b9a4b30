"""Settings forms generated from the config dataclasses (magicgui widgets in Qt form rows)."""

from __future__ import annotations

import dataclasses

import pytest

from napari_unet.core.config import Config, setting
from napari_unet.core.inference.config import PredictConfig


@dataclasses.dataclass(frozen=True)
class Demo(Config):
    steps: int = setting(10, "Steps", tooltip="How many", min=1, max=100, order=2)
    rate: float = setting(0.5, "Rate", min=0.0, max=1.0, step=0.1, advanced=True)
    side: tuple[int, int] = setting((64, 64), "Side", min=8, max=512, suffix=" px", square=True)
    mode: str = setting("a", "Mode", choices=(("a", "Mode A"), ("b", "Mode B")), order=1)
    on: bool = setting(False, "Switch it on")
    hidden: str = "not shown"


def test_a_new_setting_is_one_field(qtbot) -> None:
    from qtpy.QtWidgets import QFormLayout, QWidget

    from napari_unet._widgets.collapsible import CollapsibleForm
    from napari_unet._widgets.config_form import ConfigWidgets, add_rows

    fields = ConfigWidgets(Demo, {"steps": 20})
    assert list(fields.fields) == ["steps", "rate", "side", "mode", "on"]  # not "hidden"
    assert fields["steps"].native.toolTip() == "How many"
    assert fields["side"].native.text() == "64 px" and fields["on"].native.text() == "Switch it on"
    assert fields["mode"].native.currentText() == "Mode A"
    holder = QWidget()
    qtbot.addWidget(holder)
    form, advanced = QFormLayout(holder), CollapsibleForm()
    add_rows(form, advanced, [fields])
    labels = [form.itemAt(i, QFormLayout.ItemRole.LabelRole) for i in range(form.rowCount())]
    texts = [item.widget().text() if item is not None else "" for item in labels]
    assert texts == ["Side", "", "Mode", "Steps"]  # by order; the check box labels itself
    assert advanced.rows.rowCount() == 1  # Rate
    fields["mode"].native.setCurrentIndex(1)
    fields["side"].value = 128
    fields["rate"].value = 5.0  # beyond the maximum: clamped, as a Qt spin box would
    config = fields.apply(Demo())
    assert config == Demo(steps=20, rate=1.0, side=(128, 128), mode="b")
    fields.show(Demo(steps=3, on=True))
    assert fields.values()["steps"] == 3 and fields["on"].native.isChecked()


def test_predict_form_round_trips_a_predict_config(qtbot) -> None:
    from napari_unet._widgets.predict_form import PredictForm
    from napari_unet._widgets.predict_worker import PostprocessChoice

    form = PredictForm()
    qtbot.addWidget(form)
    shown = [f.name for f in dataclasses.fields(PredictConfig) if "label" in f.metadata]
    assert set(shown) <= set(form.fields)
    form.set_devices(["cpu", "cuda"])
    wanted = PredictConfig(tile_shape=(256, 256), overlap=16, batch_size=2, device="cuda")
    form.predict_fields.show(wanted.replace(tta="flips"))
    assert form.predict_settings() == wanted.replace(tta="flips")
    assert form.tile.value() == 256 and form.tta.currentData() == "flips"
    form.set_model_defaults(task="instances", tile_shape=(64, 64), overlap=500)
    settings = form.predict_settings()
    assert settings.tile_shape == (64, 64) and settings.overlap == 32  # kept below the tile
    assert form.postprocess_settings() == PostprocessChoice(output="instances")
    assert form.options().scope == "slice" == form.scope_key()


def test_a_3d_checkpoint_without_an_overlap_gets_the_one_prediction_would_take(qtbot) -> None:
    """A 3-D model trained by the training loop stores no overlap: the form must not keep its
    2-D default of 32, which a 32-deep tile refuses (the Segment dock failed on such a model)."""
    from napari_unet._widgets.predict_form import PredictForm
    from napari_unet.core.inference.geometry import tile_overlap

    form = PredictForm()
    qtbot.addWidget(form)
    form.set_model_defaults(task="instances", tile_shape=(32, 128, 128), overlap=None)
    expected = tile_overlap(PredictConfig(tile_shape=(32, 128, 128)), margin=0)
    assert form.predict_settings().overlap == expected == 8


def test_average_with_z_reversed_only_for_models_with_z(qtbot) -> None:
    from napari_unet._widgets.predict_form import PredictForm

    form = PredictForm()
    qtbot.addWidget(form)
    box = form.fields["z_flip"].native
    assert not box.isEnabled()  # no model read yet
    for context, dims, enabled in ((0, 3, True), (0, 2, False), (2, 2, True)):
        form.show_z_flip(context_slices=context, spatial_dims=dims)
        assert box.isEnabled() is enabled and "2x the time" in box.toolTip()
        assert ("the chosen model is 2-D" in box.toolTip()) is not enabled


def test_finetune_form_gives_typed_settings(qtbot) -> None:
    from napari_unet._widgets.finetune_form import FinetuneForm
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.trainer.events import FinetuneRequest

    form = FinetuneForm()
    qtbot.addWidget(form)
    form.set_devices(["cpu", "cuda"])
    form.device.setCurrentText("cuda")
    form.set_devices(["cpu", "cuda", "mps"])  # the choice stays
    form.threads.setValue(2)
    form.lr.setText("not a number")
    train = form.train_settings(TrainConfig(task="binary"))
    assert train.task == "binary" and train.lr == pytest.approx(1e-4)  # the fine-tuning default
    assert train.minutes == 5.0 and train.steps is None and train.augment.strength == 0.5
    request = form.request_settings(
        FinetuneRequest(session="s", start_from="v1", train_config=train)
    )
    assert (request.device, request.num_threads) == ("cuda", 2)
    assert (request.train_config.device, request.train_config.num_threads) == ("cuda", 2)
    for name in ("ce", "dice", "jaccard"):
        form.fields[name].value = 0.0
    assert form.loss_total() == 0
    with pytest.raises(ValueError, match="loss weights"):
        form.train_settings()
