"""Settings travel as types: every config in a torch-free module, re-exported where it was."""

from __future__ import annotations

import subprocess
import sys

import pytest

CONFIG_MODULES = (
    "napari_unet.core.config",
    "napari_unet.core.inference.config",
    "napari_unet.core.inference.normalization",
    "napari_unet.core.postprocess.config",
    "napari_unet.core.training.config",
    "napari_unet.core.training.events",
    "napari_unet.core.training.targets",
    "napari_unet.trainer.events",
)


@pytest.mark.parametrize("module", CONFIG_MODULES)
def test_config_module_does_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert out == "False"


def test_torch_modules_re_export_the_configs() -> None:
    from napari_unet.core import inference, training
    from napari_unet.core.inference import config as inference_config
    from napari_unet.core.inference import prediction
    from napari_unet.core.training import augment, config, losses, schedule

    assert prediction.PredictConfig is inference_config.PredictConfig is inference.PredictConfig
    assert prediction.TTA_MODES is inference_config.TTA_MODES
    assert losses.LossConfig is config.LossConfig is training.LossConfig
    assert augment.AugmentConfig is config.AugmentConfig is training.AugmentConfig
    assert schedule.SCHEDULES is config.SCHEDULES is training.SCHEDULES


def test_train_config_round_trips_with_its_nested_configs() -> None:
    from napari_unet.core.training.config import AugmentConfig, LossConfig, TrainConfig

    config = TrainConfig(
        steps=7, loss=LossConfig(ce=0.5, dice=1.0), augment=AugmentConfig(strength=0.2)
    )
    again = TrainConfig.from_dict(config.to_dict())
    assert again == config
    assert isinstance(again.loss, LossConfig) and isinstance(again.augment, AugmentConfig)


def _request(**changes):
    from napari_unet.core.training.config import LossConfig, TrainConfig
    from napari_unet.trainer.events import FinetuneRequest

    train = TrainConfig(steps=3, lr=5e-4, loss=LossConfig(dice=0.5))
    return FinetuneRequest(session="/tmp/s", start_from="v001", train_config=train, **changes)


def test_finetune_request_holds_a_train_config_and_pickles() -> None:
    import pickle

    from napari_unet.core.training.config import TrainConfig
    from napari_unet.trainer.events import FinetuneRequest

    request = _request(keep_learning=True)
    assert isinstance(request.train_config, TrainConfig)
    again = pickle.loads(pickle.dumps(request))
    assert again == request and isinstance(again.train_config, TrainConfig)
    assert again.train_config.loss.dice == 0.5
    # the plain-data form (JSON, the old dict) comes back as the type
    assert FinetuneRequest.from_dict(request.to_dict()) == request
    assert _request().replace(train_config=request.train_config.to_dict()) == _request()


def test_finetune_request_refuses_what_is_not_a_train_config() -> None:
    with pytest.raises(ValueError, match="TrainConfig"):
        _request().replace(train_config=[("steps", 3)])


def test_postprocess_choice_overrides_three_fields_and_keeps_the_models_others() -> None:
    from types import SimpleNamespace

    from napari_unet._widgets.predict_worker import PostprocessChoice
    from napari_unet.core.checkpoint.format import CheckpointInfo

    stored = {"threshold": 0.3, "foreground_class": [1, 2], "min_size": 9}
    info = SimpleNamespace(task="semantic", provenance={"postprocess": stored})
    info.postprocess_config = lambda **o: CheckpointInfo.postprocess_config(info, **o)
    config = PostprocessChoice(output="instances", threshold=0.6, min_size=4).apply(info)
    assert (config.output, config.threshold, config.min_size) == ("instances", 0.6, 4)
    assert config.foreground_class == (1, 2)
    with pytest.raises(ValueError, match="output"):
        PostprocessChoice(output="blobs")
