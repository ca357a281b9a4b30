"""Model cards of the built-in models: the card dict stored in the checkpoint, and MODEL_CARDS.md.

Used by ``scripts/train_builtin.py``; the card records the data, split, recipe, every training
phase (command, steps, seconds, machine) and the validation scores measured by
``napari-unet-loop evaluate``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

import torch
from builtin_recipes import MODEL_CONFIG, RECIPES

from napari_unet.core.checkpoint.format import BUILTIN_DIR


def machine() -> dict:
    """CPU model, cores, torch version and date of this run."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def resumed_phases(before: dict, resume: Path) -> list[dict]:
    """The training phases of a resumed run: the shipped card's phases, then this command.

    The last phase of ``before`` gets its own seconds and steps (the card's totals minus the
    earlier phases); this run's command names the previous run folder generically, since a
    temporary folder means nothing to a reader.
    """
    training = before["training"]
    phases = [dict(p) for p in training.get("phases") or [{"command": before["recipe"]["command"]}]]
    done_seconds = sum(p.get("seconds", 0.0) for p in phases[:-1])
    done_steps = sum(p.get("steps", 0) for p in phases[:-1])
    phases[-1].update(
        seconds=round(training["seconds"] - done_seconds, 1),
        steps=training["steps"] - done_steps,
        machine=training["machine"],
    )
    argv = ["<previous run folder>/latest.pt" if a == str(resume) else a for a in sys.argv[1:]]
    return [*phases, {"command": "python scripts/train_builtin.py " + " ".join(argv)}]


def generic_fold_command(command: str) -> str:
    """A calibration fold's command without this machine's paths (``--out <fold>.pt``)."""
    words, out, skip = command.split(), [], False
    for word in words:
        if skip:
            skip = False
            continue
        if word in ("--out", "--data"):
            skip = True
            if word == "--out":
                out += ["--out", "<fold>.pt"]
            continue
        out.append(word)
    return " ".join(out)


def _reproduce_command(name: str, phases, calibration) -> tuple[str, dict | None]:
    """``(the card's command that reproduces model name, the calibration fold or None)``."""
    command = " && ".join(p["command"] for p in phases or []) or (
        "python scripts/train_builtin.py " + " ".join(sys.argv[1:])
    )
    fold = (calibration or {}).get("fold")
    if fold:  # the calibration fold, then the operating point chosen with it
        command += (
            f" && {generic_fold_command(fold['command'])} && python scripts/train_builtin.py "
            f"{name} --card-only --tune --calibrate-with <fold>.pt"
        )
    return command, fold


def _validation(recipe: dict, result: dict, with_tta: dict | None) -> dict:
    """The card's ``validation`` section: ``evaluate``'s ``result`` and the ``--tta`` means."""
    keys = list(recipe["targets_to_meet"])
    reported = [*keys, *recipe.get("also_reported", ())]
    mean = result["mean"]
    return {
        "measured_with": "napari-unet-loop predict + napari-unet-loop evaluate",
        "task": recipe["task"],
        "label_map": recipe["label_map"] and {str(k): v for k, v in recipe["label_map"].items()},
        "mean": {k: mean.get(k) for k in sorted(mean)},
        "per_image": [
            {"name": r["name"], **{k: r.get(k) for k in keys}} for r in result["per_image"]
        ],
        "targets": recipe["targets_to_meet"],
        "also_reported": reported[len(keys) :],
        "with_tta": {
            mode: {k: scores.get(k) for k in reported} for mode, scores in (with_tta or {}).items()
        },
    }


def _with_this_phase(phases, seconds: float, steps: int, host: dict):
    """``phases`` with this run's (the last, still without ``steps``) filled in: the totals
    minus the earlier phases'."""
    if phases and "steps" not in phases[-1]:  # this run's phase: the totals minus the earlier ones
        last = {
            "seconds": round(seconds - sum(p.get("seconds", 0.0) for p in phases[:-1]), 1),
            "steps": steps - sum(p.get("steps", 0) for p in phases[:-1]),
            "machine": host,
        }
        phases = [*phases[:-1], {**phases[-1], **last}]
    return phases


def build_card(
    name,
    train_files,
    val,
    config,
    seconds,
    steps,
    result,
    host,
    calibration,
    postprocess,
    phases,
    with_tta=None,
):
    """The model card stored in ``provenance["card"]``.

    ``result``: ``evaluate``'s JSON for the validation split with default settings; ``with_tta``:
    ``{mode: mean scores}`` of the same split predicted with ``--tta mode`` (an option, not the
    default; the operating point is the same).
    """
    recipe = RECIPES[name]
    command, fold = _reproduce_command(name, phases, calibration)
    phases = _with_this_phase(phases, seconds, steps, host)
    return {
        "name": name,
        "description": recipe["description"],
        "data": recipe["data"],
        "split": recipe["split"],
        "training_files": train_files,
        "validation_files": val,
        "recipe": {
            "architecture": "unet",
            "model_config": MODEL_CONFIG,
            "train_config": config.to_dict(),
            "selection": "final weights after a fixed budget (no validation-based selection)",
            "command": command,
        },
        "training": {
            "seconds": round(seconds, 1),
            "steps": steps,
            "machine": host,
            "phases": phases,
            "note": phases
            and f"{len(phases)} phases; each later phase resumes the previous run's latest.pt "
            "with a longer --minutes budget (the cosine schedule restarts where the longer budget "
            "puts it and decays to 0); the operating point is chosen on the training split"
            + (" (on training files a calibration fold left out)" if fold else ""),
        },
        "postprocess": postprocess,
        "calibration": calibration,
        "validation": _validation(recipe, result, with_tta),
        "published_anchors": recipe["anchors"],
        "intended_use": recipe["intended_use"],
        "limitations": recipe["limitations"],
    }


def _card_lines(name: str, path: Path, card: dict) -> list[str]:
    """The Markdown section of one built-in model (``path``: its checkpoint) from its ``card``."""
    validation, training = card["validation"], card["training"]
    shown = [*validation["targets"], *validation.get("also_reported", ())]
    mean = {k: validation["mean"][k] for k in shown if validation["mean"].get(k) is not None}
    tta = validation.get("with_tta") or {}
    return [
        f"## {name}",
        "",
        card["description"],
        "",
        f"- Data: {card['data']['name']}. Source: {card['data']['source']}.",
        f"- Licence: {card['data']['licence']}.",
        f"- Split: {card['split']}; validation files: {', '.join(card['validation_files'])}.",
        f"- Architecture: unet {json.dumps(card['recipe']['model_config'])}, "
        f"{path.stat().st_size / 1e6:.1f} MB (float16 weights).",
        f"- Training: {training['steps']} steps in {training['seconds'] / 60:.1f} min on "
        f"{training['machine']['cpu']} ({training['machine']['cores']} cores, torch "
        f"{training['machine']['torch']}, {training['machine']['date']}).",
        f"- Reproduce: `{card['recipe']['command']}`.",
        f"- Validation ({validation['measured_with']}): "
        + ", ".join(f"{k} = {v:.4f}" for k, v in mean.items())
        + f"; targets {json.dumps(validation['targets'])}.",
        *(
            [
                "- With test-time augmentation (`predict --tta`, not the default): "
                + "; ".join(
                    f"{mode}: " + ", ".join(f"{k} = {v:.4f}" for k, v in scores.items())
                    for mode, scores in tta.items()
                )
                + "."
            ]
            if tta
            else []
        ),
        f"- Published anchor (splits differ): {json.dumps(card['published_anchors'])}.",
        f"- Post-processing defaults: {json.dumps(card['postprocess'])}.",
        *(
            [f"- Operating point: {card['calibration']['how']}."]
            if card.get("calibration", {}).get("how")
            else []
        ),
        f"- Intended use: {card['intended_use']}.",
        f"- Limitations: {card['limitations']}.",
        "",
    ]


def write_cards_markdown() -> Path:
    """Write ``builtin_models/MODEL_CARDS.md`` from the cards stored in the shipped checkpoints."""
    from napari_unet.core.checkpoint.format import builtin_checkpoints, read_checkpoint_info

    lines = [
        "# Built-in models",
        "",
        "Generated by `scripts/train_builtin.py` from the cards "
        "stored in the checkpoints (`napari-unet-loop models --json` shows the same).",
        "",
    ]
    for name, path in builtin_checkpoints().items():
        card = read_checkpoint_info(path).provenance.get("card") or {}
        if not card:
            continue
        lines += _card_lines(name, path, card)
    out = BUILTIN_DIR / "MODEL_CARDS.md"
    out.write_text("\n".join(lines))
    return out
