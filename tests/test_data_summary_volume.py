"""The Fine-tune dock's data summary for a 3-D model holds back what its trainer holds back (one
volume per image, split by Y/X tile through Z or by Z plane), and the user's pins are held back
from a 3-D model's training too (they were trained on before)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet._widgets.data_summary import SummaryCache
from napari_unet.core.inference.normalization import NormalizationConfig
from napari_unet.session import Session
from napari_unet.trainer.data import PINNED_SUFFIX, ValidationPlan
from napari_unet.trainer.volume import volume_items

TILE, FRACTION = 128, 0.1


def _session(folder, shape, annotated, seed: int = 0) -> tuple[Session, str]:
    """A Z-stack with random instance labels on the ``annotated`` slices, all reviewed."""
    rng = np.random.default_rng(seed)
    session = Session.create(folder)
    image = rng.integers(0, 1000, shape).astype(np.uint16)
    image_id = session.add_image("stack", axes="ZYX", image=image, task="instances")
    for z in annotated:
        labels = np.zeros(shape[1:], np.uint16)
        for k, (y, x) in enumerate(np.ndindex(-(-shape[1] // TILE), -(-shape[2] // TILE))):
            y0, x0, ids = y * TILE, x * TILE, 100 * z + 2 * k  # ids unique in the volume
            labels[y0 + 4 : y0 + 20, x0 + 4 : x0 + 20] = ids + 1  # two objects in each tile
            labels[y0 + 30 : y0 + 50, x0 + 30 : x0 + 50] = ids + 2
        session.save_slice(image_id, z, labels=labels, reviewed=np.ones(shape[1:], bool))
    return session, image_id


def _trainer_split(session: Session, pins=()) -> tuple[list, list]:
    items = volume_items(session, session.training_items(), NormalizationConfig())
    plan = ValidationPlan(fraction=FRACTION, tile=TILE, seed=0, pins=list(pins))
    return plan.split(items)


@pytest.mark.parametrize(
    ("shape", "annotated", "unit"),
    [
        ((12, 64, 64), (1, 4, 7, 10), "slice"),  # fits one tile: split by plane
        ((6, 200, 300), (0, 2, 5), "tile"),  # Y/X tiles through all of Z
    ],
)
def test_the_summary_holds_back_what_a_3d_trainer_holds_back(tmp_path, shape, annotated, unit):
    session, _ = _session(tmp_path / "s", shape, annotated)
    summary = SummaryCache().summary(session, fraction=FRACTION, tile=TILE, volumetric=True)
    train, val = _trainer_split(session)
    held = sum(int(item.mask.sum()) for item in val)
    assert held > 0 and summary.val_pixels == held
    assert summary.train_pixels == sum(int(item.mask.sum()) for item in train)
    assert summary.unit == unit and summary.val_tiles >= 1
    assert f"{summary.val_tiles} {unit}(s) of {summary.tiles}" in summary.lines()[1]
    if unit == "slice":  # whole annotated planes held back, one of the four
        assert summary.tiles == len(annotated) and held % (shape[1] * shape[2]) == 0
    else:  # 2 x 2 Y/X tiles through Z (the 44-column sliver at the right folded into its
        # neighbour), where a 2-D model's split sees 4 per annotated slice
        assert summary.tiles == 4
        assert SummaryCache().summary(session, fraction=FRACTION, tile=TILE).tiles == 12


def test_a_pinned_slice_is_held_back_from_a_3d_model_and_counted(tmp_path):
    session, image_id = _session(tmp_path / "s", (12, 64, 64), (1, 4, 7, 10))
    pins = [
        {"image_id": image_id, "slice_index": 4, "rect": None},
        {"image_id": image_id, "slice_index": 7, "rect": [0, 0, 16, 32]},
    ]
    for pin in pins:
        session.pin_validation(pin["image_id"], pin["slice_index"], pin["rect"])
    train, val = _trainer_split(session, session.validation_pins())
    (pinned,) = [v for v in val if v.name.endswith(PINNED_SUFFIX)]
    assert pinned.mask[4].all() and pinned.mask[7, :16, :32].all()
    assert int(pinned.mask.sum()) == 64 * 64 + 16 * 32
    (trained,) = train
    assert not (trained.mask & pinned.mask).any(), "pinned voxels are never trained on"
    summary = SummaryCache().summary(session, fraction=FRACTION, tile=TILE, volumetric=True)
    assert summary.pinned_pixels == 64 * 64 + 16 * 32
    assert summary.val_pixels == sum(int(v.mask.sum()) for v in val)


def test_a_3d_fine_tune_with_a_pinned_slice_validates_on_it(tmp_path):
    import queue

    import torch
    from trainer_kill_helper import request

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model
    from napari_unet.trainer.events import PoolChanged, TrainerFinished
    from napari_unet.trainer.process import run_trainer

    session, image_id = _session(tmp_path / "s", (12, 64, 64), (1, 4, 7))
    session.pin_validation(image_id, 4)
    torch.manual_seed(0)
    model = build_model("unet3d_aniso", depth=1, base_channels=4, out_channels=3)
    start = save_checkpoint(tmp_path / "start3d.pt", model, task="instances")
    train = {
        "steps": 2,
        "patch_shape": [32, 32],
        "batch_size": 1,
        "val_every": 2,
        "val_fraction": 0.1,
        "val_tile": TILE,
    }
    events: queue.Queue = queue.Queue()
    run_trainer(request(tmp_path / "s", start, train=train).to_dict(), events, queue.Queue())
    seen = [events.get_nowait() for _ in range(events.qsize())]
    assert isinstance(seen[-1], TrainerFinished), seen[-1]
    pool = next(e for e in seen if isinstance(e, PoolChanged))
    summary = SummaryCache().summary(session, fraction=0.1, tile=TILE, volumetric=True)
    assert summary.pinned_pixels == 64 * 64
    assert pool.validation_pixels == summary.val_pixels, "the dock said what the trainer held"
    assert [type(e).__name__ for e in seen].count("ValidationEvent") >= 1
