"""One-line descriptions of a chosen operating point, for the log, the CLI and the dock
(:mod:`~napari_unet.core.training.operating_point` chooses it; these only read its report)."""

from __future__ import annotations

from typing import Any


def describe_operating_point(report: dict[str, Any]) -> str:
    """One line from :meth:`OperatingPoint.report` (e.g. ``provenance["operating_point"]``);
    a binary/semantic model's report (no ``ap50``) gets its own line (:func:`describe_semantic`)."""
    if "ap50" not in report:
        return describe_semantic(report)
    top = report.get("ap50_best")
    best = f", best {top:.3f}" if top is not None and top != report["ap50"] else ""
    iou = report.get("foreground_iou")
    iou = "" if iou is None else f", foreground IoU {iou:.3f}"
    return (
        f"operating point chosen on {report['n_tiles']} held-back tile(s) "
        f"({report['n_true']} objects): {settings_text(report['settings'])} "
        f"(AP@0.5 {report['ap50']:.3f}{best}{iou}; the inherited setting "
        f"{report['ap50_before']:.3f})"
    )


def settings_text(settings: dict[str, Any]) -> str:
    """``threshold 0.9, seeds 0.5, min size 20, unseeded drop, holes filled`` from an operating
    point's ``settings()`` (a binary/semantic model's: ``threshold 0.6, min size 20``)."""
    parts = [f"threshold {settings['threshold']:g}"]
    seeds = settings.get("distance_threshold", settings.get("interior_threshold"))
    if seeds is not None:
        parts.append(f"seeds {seeds:g}")
    parts.append(f"min size {settings['min_size']}")
    if "unseeded" in settings:
        parts.append(f"unseeded {settings['unseeded']}")
    if settings.get("fill_holes"):
        parts.append("holes filled")
    return ", ".join(parts)


def describe_semantic(report: dict[str, Any]) -> str:
    """One line from a binary/2-class semantic model's report (``operating_point_semantic``)."""
    metric = "rand_error" if "rand_error" in report else "iou"
    name = "Rand error" if metric == "rand_error" else "class-1 IoU"
    what = "membranes" if metric == "rand_error" else "foreground"
    return (
        f"operating point chosen on {report['n_tiles']} held-back tile(s) ({what}): "
        f"{settings_text(report['settings'])} ({name} {report[metric]:.3f}; the inherited "
        f"setting {report[metric + '_before']:.3f})"
    )
