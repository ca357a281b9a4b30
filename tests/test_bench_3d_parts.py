"""benchmarks/bench_3d.py's protocol pieces: the embryo stacks' empty end slices (issue 20)."""

from __future__ import annotations

import numpy as np


def _stack() -> tuple[np.ndarray, np.ndarray]:
    """(6, 32, 32) uint16: background noise; slices 1-4 hold a bright square (the object)."""
    rng = np.random.default_rng(0)
    image = rng.normal(100, 5, (6, 32, 32))
    labels = np.zeros(image.shape, np.uint16)
    labels[1:5, 8:20, 8:20] = 1
    image[labels > 0] += 400
    return image.clip(0).astype(np.uint16), labels


def test_stack_normalisation_keeps_an_empty_end_slice_dark(load_benchmark):
    parts = load_benchmark("_bench_3d_parts")
    image, labels = _stack()
    own = parts.slice_items(image, labels, (0, 2), "v")
    joint = parts.slice_items(image, labels, (0, 2), "v", joint=True)
    # alone, the empty slice's noise is stretched to the range an object has in slice 2
    assert own[0].image.max() > 0.8 * own[1].image.max()
    assert joint[0].image.max() < 0.2 * joint[1].image.max()
    np.testing.assert_allclose(joint[1].image[0], parts.stack_normalized(image)[2])
    volume = parts.volume_item(image, labels, parts.slice_mask(image.shape, (2,)), "v")
    np.testing.assert_allclose(volume.image[0], parts.stack_normalized(image))


def test_the_25d_arm_has_flat_copies_unless_told_not_to(load_benchmark):
    bench = load_benchmark("bench_3d")
    assert bench._parser().parse_args([]).flat_25d is True  # as train --context-slices
    assert bench._parser().parse_args(["--flat-25d"]).flat_25d is True  # old command lines
    assert bench._parser().parse_args(["--no-flat-25d"]).flat_25d is False
    assert bench.run_embryo.__module__ == "_bench_3d_runs"  # moved, still importable here


def test_the_25d_arm_reverses_its_neighbours_and_every_arm_gets_the_same_variants(load_benchmark):
    bench = load_benchmark("bench_3d")
    evals = load_benchmark("_bench_3d_evals")
    args = bench._parser().parse_args([])
    assert args.flip_context_25d is True  # as every 2.5-D training does
    assert bench._parser().parse_args(["--no-flip-context-25d"]).flip_context_25d is False
    wanted = args.isbi_evals.split(",")
    assert evals.variants_for("2d", wanted) == ["none", "flips"]  # no Z to reverse in 2-D
    assert evals.variants_for("25d", wanted) == evals.variants_for("3d", wanted) == wanted
    assert evals.default_variant("2d") == evals.default_variant("25d") == "none"  # z_flip off
