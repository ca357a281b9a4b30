"""The human-readable parts of a bioimage.io package: README (model card, lineage) and cover."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import numpy as np

from napari_unet.core.checkpoint.format import LoadedModel

__all__ = ["cover_png", "plain", "readme_text"]

#: What each task's output channels mean, for the README.
OUTPUT_MEANING = {
    "binary": "one channel: the foreground probability (sigmoid)",
    "semantic": "one probability per class (softmax over channels); the labels are the argmax",
    "instances": "background / interior / boundary probabilities (softmax over channels); "
    "napari-unet-loop turns them into instances by seeded watershed",
    "restoration": "the restored image (no activation)",
}


def plain(value: object) -> object:
    """``value`` as JSON/YAML-safe data (tuples become lists, unknown objects strings)."""
    return json.loads(json.dumps(value, default=str))


def readme_text(loaded: LoadedModel, name: str, lineage: Sequence[dict]) -> str:
    """Markdown documentation: what the model does, its card, its lineage, how to run it."""
    info = loaded.info
    provenance = info.provenance
    card = provenance.get("card") or {}
    lines = [
        f"# {name}",
        "",
        info.description or f"A U-Net ({info.arch}) for {info.task} segmentation.",
        "",
        "Exported by napari-unet-loop (`pip install napari-unet-loop`; `napari-unet-loop "
        "export`), a napari plugin that fine-tunes U-Nets on your corrections.",
        "",
        "## Inputs and outputs",
        "",
        f"- Input: 2-D image with {info.in_channels} channel(s), any size the network accepts "
        "(see the input axes in rdf.yaml); normalised by the package's preprocessing.",
        f"- Output: {OUTPUT_MEANING[info.task]}.",
    ]
    if info.class_names and info.task != "restoration":
        lines.append(f"- Classes: {', '.join(info.class_names)}.")
    postprocess = provenance.get("postprocess")
    if postprocess:
        lines.append(
            "- Post-processing defaults in napari-unet-loop (not part of this format): "
            f"`{json.dumps(plain(postprocess))}`."
        )
    lines += ["", "## Lineage", ""]
    parent = provenance.get("parent") or (lineage[-1].get("parent") if lineage else None)
    lines.append(f"- Fine-tuned from: `{parent}`." if parent else "- Trained from scratch.")
    for entry in lineage:
        metrics = ", ".join(
            f"{k} {v:.4g}"
            for k, v in (entry.get("metrics") or {}).items()
            if isinstance(v, (int, float))
        )
        lines.append(
            f"- Version `{entry.get('id')}` ({entry.get('name', '')}): parent "
            f"`{entry.get('parent')}`, {entry.get('steps', '?')} steps"
            + (f", {metrics}" if metrics else "")
        )
    lines += ["", "## Validation", "", *_validation_lines(card, lineage)]
    if card:
        lines += ["", "## Model card", ""]
        for key in ("data", "split", "intended_use", "limitations"):
            value = card.get(key)
            if value:
                text = value if isinstance(value, str) else json.dumps(plain(value))
                lines.append(f"- **{key}**: {text[:2000]}")
    lines += [
        "",
        "## Run it",
        "",
        "- napari-unet-loop: `napari-unet-loop predict IMAGE --model <the .pt checkpoint>`.",
        "- bioimageio.core: `bioimageio predict <this package> ...`; the TorchScript weights "
        "need only PyTorch, the state-dict weights need `pip install napari-unet-loop`.",
        "",
    ]
    return "\n".join(lines)


def _validation_lines(card: dict, lineage: Sequence[dict]) -> list[str]:
    """Where the model was scored on data it was not trained on, and what it scored."""
    validation = card.get("validation") or {}
    if validation.get("mean"):
        scores = ", ".join(
            f"{k} {v:.4f}" for k, v in validation["mean"].items() if isinstance(v, (int, float))
        )
        files = ", ".join(card.get("validation_files") or [])
        how = validation.get("measured_with", "napari-unet-loop evaluate")
        return [f"Mean over the validation images ({files}), measured with {how}: {scores}."]
    for entry in lineage:
        metrics = {
            k: v for k, v in (entry.get("metrics") or {}).items() if isinstance(v, (int, float))
        }
        if metrics:
            scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            return [
                f"On the tiles held back from fine-tuning in its napari-unet-loop session "
                f"(version `{entry.get('id')}`): {scores}. Check it on your own images before use."
            ]
    return ["No score on held-out data is recorded for this model; check it on your own images."]


def _crop_to(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The centre of ``image`` (Y, X, ...) with spatial ``shape``."""
    top, left = ((a - b) // 2 for a, b in zip(image.shape[:2], shape[:2]))
    return image[top : top + shape[0], left : left + shape[1]]


def cover_png(image: np.ndarray, output: np.ndarray, task: str) -> bytes:
    """A 2:1 PNG: the normalised test input (C, Y, X) left, the prediction (K, Y, X) right."""
    from matplotlib import colormaps
    from matplotlib.image import imsave

    gray = image[0]
    lo, hi = np.percentile(gray, (1, 99))
    gray = np.clip((gray - lo) / (hi - lo + 1e-6), 0, 1)
    left = np.repeat(gray[..., None], 3, axis=-1)
    if task == "restoration":
        pred = output[0]
        lo, hi = np.percentile(pred, (1, 99))
        right = np.repeat(np.clip((pred - lo) / (hi - lo + 1e-6), 0, 1)[..., None], 3, axis=-1)
    elif task == "binary":
        right = colormaps["magma"](output[0])[..., :3]
    else:  # classes >= 1 in colour over the dimmed image
        classes = np.argmax(output, axis=0)
        colour = colormaps["tab10"]((classes - 1) % 10)[..., :3]
        dim = 0.5 * _crop_to(left, classes.shape)
        right = np.where(classes[..., None] >= 1, 0.3 * dim + 0.7 * colour, dim)
    if right.shape != left.shape:  # valid-convolution nets: centre the smaller output
        pad = [
            ((a - b) // 2, a - b - (a - b) // 2) for a, b in zip(left.shape[:2], right.shape[:2])
        ]
        right = np.pad(right, [*pad, (0, 0)])
    buffer = io.BytesIO()
    imsave(buffer, np.concatenate([left, right], axis=1), format="png")
    return buffer.getvalue()
