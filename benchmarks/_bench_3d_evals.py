"""How ``bench_3d.py`` scores its ISBI models: prediction variants and membrane -> regions.

Prediction variants (``--isbi-evals``), the same for every arm where they apply:

- ``none``: one pass (``tta none``, ``z_flip`` off);
- ``z``: with Z reversed and averaged (``PredictConfig.z_flip``: a 2.5-D model's neighbour
  slices swapped, a 3-D tile flipped in Z); a 2-D model has no Z to reverse (not run for it);
- ``flips``: the 4 flips averaged (``tta flips``), every arm;
- ``flips_z``: both (8 passes; 2.5-D and 3-D only).

Regions for the Rand error, the same for every arm: ``cc`` (connected components of the
non-membrane pixels, each predicted membrane pixel its own region: the protocol of the earlier
figures) and ``ws`` (the same components grown through the predicted membranes by a watershed
on the membrane probability, so every pixel joins a region:
``em_region_scores(fill_membranes=True)``).
"""

from __future__ import annotations

import numpy as np

#: ``variant -> (tta, z_flip)``.
VARIANTS = {"none": ("none", False), "z": ("none", True), "flips": ("flips", False)}
VARIANTS["flips_z"] = ("flips", True)


def variants_for(arm: str, wanted: list[str]) -> list[str]:
    """The variants of ``wanted`` that apply to ``arm`` (no Z reversal for the 2-D arm)."""
    return [v for v in wanted if arm != "2d" or not VARIANTS[v][1]]


def default_variant(arm: str) -> str:
    """The variant the product's ``predict`` runs by default for ``arm`` (``--tta none``)."""
    from napari_unet.core.inference.config import Z_FLIP_DEFAULT

    return "z" if Z_FLIP_DEFAULT and arm != "2d" else "none"


def membrane_scores(probability: np.ndarray, membrane: np.ndarray) -> dict[str, float]:
    """Mean over the ``(Z, Y, X)`` slices of membrane IoU (``p >= 0.5``) and the ISBI Rand
    error of the regions between membranes, ``cc`` and ``ws`` (module docstring)."""
    from napari_unet.core.evaluation.metrics import em_region_scores, iou

    ious, cc, ws = [], [], []
    for prob, truth in zip(probability, membrane):
        ious.append(iou(prob >= 0.5, truth))
        cc.append(em_region_scores(prob, truth)["rand_error"])
        ws.append(em_region_scores(prob, truth, fill_membranes=True)["rand_error"])
    return {
        "membrane_iou": float(np.mean(ious)),
        "rand_error": float(np.mean(cc)),
        "rand_error_ws": float(np.mean(ws)),
    }


def evaluate_arm(model, arm: str, image, membrane, test, args, predict) -> dict[str, dict]:
    """``{variant: scores}`` of ``model`` on slices ``test`` for each of ``args.isbi_evals``
    (and the product default) that applies to ``arm``; ``predict(model, image, tta, z_flip)``
    gives ``(Z, Y, X)`` membrane probabilities."""
    wanted = list(dict.fromkeys([default_variant(arm), *args.isbi_evals.split(",")]))
    out = {}
    for variant in variants_for(arm, wanted):
        tta, z_flip = VARIANTS[variant]
        probability = predict(model, image, tta, z_flip)
        out[variant] = membrane_scores(probability[test], membrane[test])
    return out
