"""The variants of ``bench_learn.py``: recipe ablations (``--ablations``) and extra scorings of a
trained recipe run (``--evals``)."""

from __future__ import annotations

from typing import Any

#: Recipe variants with ONE factor moved toward the plain loop (``--ablations``).
#: ``cli``: extra train flags; ``train``: TrainConfig fields (a dict edits a nested config);
#: ``model``: constructor settings of the new model.
FLIPS_ONLY = {"elastic": False, "affine_scale": (1.0, 1.0), "affine_rotation_deg": 0.0,
              "gamma": (1.0, 1.0), "brightness": 0.0, "contrast": 0.0, "noise_std": 0.0,
              "blur_sigma": (0.0, 0.0)}  # fmt: skip
ABLATIONS: dict[str, dict[str, Any]] = {
    "small_net": {"factor": "model size: depth 4, base 16 (the plain loop's; default base 32)",
                  "model": {"depth": 4, "base_channels": 16}},
    "shallow_net": {"factor": "model size: depth 3, base 16", "model": {"depth": 3,
                    "base_channels": 16}},
    "patch128": {"factor": "patch 128 (default 256)", "cli": ["--patch", "128"]},
    "no_class_balance": {"factor": "loss weights: inverse-frequency class balancing off (w_c = 1)",
                         "train": {"targets": {"class_balance": False}}},
    "no_border_weights": {"factor": "border weight map off", "train": {"targets":
                          {"border_weights": False}}},
    "no_elastic": {"factor": "elastic deformation off", "train": {"augment": {"elastic": False}}},
    "flips_only": {"factor": "augmentation = rot90/flips only (as the plain loop)",
                   "train": {"augment": FLIPS_ONLY}},
    "constant_lr": {"factor": "LR schedule constant (default cosine)",
                    "train": {"schedule": "constant"}},
    "no_val_holdout": {"factor": "no held-back validation tiles (--val-fraction 0): all tiles "
                       "trained, final model kept", "cli": ["--val-fraction", "0"]},
    "fp32": {"factor": "fp32 training (default bf16 autocast on this CPU)",
             "train": {"bf16_cpu": False}},
    "boundary_width1": {"factor": "boundary class 1 px wide (default 2)",
                        "train": {"targets": {"boundary_width": 1}}},
    "class_balance_on": {"factor": "loss weights: inverse-frequency class balancing on",
                         "train": {"targets": {"class_balance": True}}},
    "sqrt_class_balance": {"factor": "loss weights: square root of the inverse-frequency class "
                           "weights", "train": {"targets": {"class_balance": "sqrt"}}},
    "lr3e-3_warmup": {"factor": "learning rate 3e-3 (1e-3) with 6 warm-up steps, cosine",
                      "train": {"lr": 3e-3, "warmup_steps": 6}},
    "patch128_batch16": {"factor": "patch 128, batch 16 (256, 4: same pixels per step)",
                         "cli": ["--patch", "128", "--batch-size", "16"]},
    "no_downscale": {"factor": "scale: full resolution whatever the objects' size (train "
                     "--downscale 1; default: seen k times smaller when the corrected objects "
                     "are wider than half the receptive field)", "cli": ["--downscale", "1"]},
    "downscale2": {"factor": "scale: the net sees the images 2x smaller (train --downscale 2)",
                   "cli": ["--downscale", "2"]},
    "downscale3": {"factor": "scale: the net sees the images 3x smaller (train --downscale 3)",
                   "cli": ["--downscale", "3"]},
    "downscale4": {"factor": "scale: the net sees the images 4x smaller (train --downscale 4)",
                   "cli": ["--downscale", "4"]},
    "downscale5": {"factor": "scale: the net sees the images 5x smaller (train --downscale 5)",
                   "cli": ["--downscale", "5"]},
    "downscale6": {"factor": "scale: the net sees the images 6x smaller (train --downscale 6)",
                   "cli": ["--downscale", "6"]},
    "base32": {"factor": "model size: base 32 whatever the budget buys (train --base-channels 32; "
               "default: base 16 when a CPU budget buys fewer than 100 steps of 32)",
               "cli": ["--base-channels", "32"]},
    "wide_net": {"factor": "model size: depth 4, base 48 (default base 32)",
                 "model": {"depth": 4, "base_channels": 48}},
    "no_grad_clip": {"factor": "gradient clipping off (default norm 1.0; the plain loop has none)",
                     "train": {"grad_clip": None}},
    "scale_wide": {"factor": "zoom augmentation 0.67-1.5x (default 0.9-1.1x): nuclei of other "
                   "sizes than the corrected images'", "train": {"augment": {"affine_scale":
                   (0.67, 1.5)}}},
    "finetune_fluo_scale_wide": {"factor": "start from the built-in fluo-nuclei, zoom "
                                 "augmentation 0.67-1.5x", "cli": ["--model", "fluo-nuclei"],
                                 "train": {"augment": {"affine_scale": (0.67, 1.5)}}},
    "finetune_fluo": {"factor": "start from the built-in fluo-nuclei (train --model fluo-nuclei, "
                      "lr 1e-3)", "cli": ["--model", "fluo-nuclei"]},
    "finetune_generalist": {"factor": "start from the built-in nuclei-generalist (fluorescence, "
                            "grey bright-field and EM regions pooled; train --model "
                            "nuclei-generalist, lr 1e-3; not shipped: train it with "
                            "scripts/train_builtin.py nuclei-generalist into builtin_models/)",
                            "cli": ["--model", "nuclei-generalist"]},
    "distance_aux": {"factor": "distance auxiliary head (train --aux distance): per-object "
                     "normalised distance learnt next to the 3 classes; watershed seeded by its "
                     "maxima (seeds 'distance') instead of the interior probability",
                     "cli": ["--aux", "distance"]},
    "finetune_fluo_no_invert": {"factor": "start from the built-in fluo-nuclei with the images "
                                "as they are (train --model fluo-nuclei --invert no; default: "
                                "flipped when the start model scores higher that way)",
                                "cli": ["--model", "fluo-nuclei", "--invert", "no"]},
    "finetune_fluo_lr1e-4": {"factor": "start from the built-in fluo-nuclei, lr 1e-4",
                             "cli": ["--model", "fluo-nuclei", "--lr", "1e-4"]},
    "finetune_fluo_freeze": {"factor": "start from the built-in fluo-nuclei, encoder frozen "
                             "(train --model fluo-nuclei --freeze-encoder: the decoder learns)",
                             "cli": ["--model", "fluo-nuclei", "--freeze-encoder"]},
    "ssl": {"factor": "self-supervised pre-training, 25 % of the budget, on the K images + the "
            "pool's others (no test image)", "unlabelled": "pool", "cli": ["--pretrain-fraction",
            "0.25"]},
    "skeleton_recall": {"factor": "Skeleton Recall loss term on (weight 1; tubed skeleton of the "
                        "true foreground classes)", "train": {"loss": {"skeleton_recall": 1.0}}},
    "skeleton_recall_auto": {"factor": "Skeleton Recall loss term auto (on for membrane-like "
                             "labels: train --skeleton-recall auto)",
                             "train": {"loss": {"skeleton_recall": None}}},
    "finetune_fluo_sqrt": {"factor": "start from the built-in fluo-nuclei, loss weights: square "
                           "root of the inverse-frequency class weights",
                           "cli": ["--model", "fluo-nuclei"],
                           "train": {"targets": {"class_balance": "sqrt"}}},
    "keep_best": {"factor": "publish the validation-best weights (train --keep best; default: "
                  "the final weights)", "cli": ["--keep", "best"]},
}  # fmt: skip
#: Extra scorings of a trained recipe run, no retraining (``--evals``).
EVALS: dict[str, dict[str, Any]] = {
    "plain_post": {"factor": "the plain loop's post-processing on the recipe's probabilities",
                   "cli": ["--output", "both"], "plain_post": True},
    "last_checkpoint": {"factor": "last weights (latest.pt) instead of the published model (the "
                        "same weights unless --keep best)",
                        "checkpoint": "latest"},
    "tta": {"factor": "test-time augmentation: the 8 flips and rotations averaged (predict --tta "
            "dihedral)", "cli": ["--tta", "dihedral"]},
    "predict_fp32": {"factor": "prediction in fp32 (default: bf16 autocast on this CPU)",
                     "cli": ["--precision", "fp32"]},
    "fill_holes": {"factor": "post-processing: holes filled", "post": {"fill_holes": True}},
    "interior_0.3": {"factor": "post-processing: interior (seed) threshold 0.3 (0.5)",
                     "post": {"interior_threshold": 0.3}},
    "interior_0.7": {"factor": "post-processing: interior (seed) threshold 0.7 (0.5)",
                     "post": {"interior_threshold": 0.7}},
    "threshold_0.3": {"factor": "post-processing: foreground threshold 0.3 (0.5)",
                      "cli": ["--threshold", "0.3"]},
    "threshold_0.7": {"factor": "post-processing: foreground threshold 0.7 (0.5)",
                      "cli": ["--threshold", "0.7"]},
    "drop_unseeded": {"factor": "post-processing: foreground no interior seed reaches is dropped "
                      "(default: each such region becomes an object)", "drop_unseeded": True},
    "min_size_20": {"factor": "post-processing: objects < 20 px removed (0)",
                    "cli": ["--min-size", "20"]},
    "interior_seeds": {"factor": "post-processing: interior seeds (the 3-class watershed) "
                       "instead of a distance head's", "post": {"seeds": "interior"}},
    "untuned": {"factor": "post-processing: the defaults a from-scratch model had before the "
                "operating point was tuned (threshold 0.5, seeds 0.5, min size 0, unseeded "
                "object)", "post": {"threshold": 0.5, "interior_threshold": 0.5, "min_size": 0,
                                    "unseeded": "object"}},
    "untuned_membranes": {"factor": "post-processing: threshold 0.5, min size 0 as flags (the "
                          "membrane setting before it was tuned; argmax)",
                          "cli": ["--threshold", "0.5", "--min-size", "0"]},
}  # fmt: skip
