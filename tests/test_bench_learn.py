"""Smoke test of benchmarks/bench_learn.py on tiny synthetic nuclei, seconds per run."""

from __future__ import annotations

import json


def test_smoke_run_writes_the_report_and_the_plain_loop_learns(load_benchmark, tmp_path) -> None:
    bench = load_benchmark("bench_learn")
    out = tmp_path / "learn.json"
    assert bench.main(["--smoke", "--json", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"summary", "runs", "sets", "budget", "machine"} <= set(result)
    assert result["sets"]["synthetic"]["draws"]["3:0"] == result["runs"][0]["train_images"]
    runs = {r["method"]: r for r in result["runs"]}
    assert set(runs) == {"recipe", "plain", "rf"}
    for run in runs.values():
        assert {"ap50", "ap75", "iou"} <= set(run["metrics"]), run["method"]
        assert not set(run["train_images"]) & set(run["test_images"])
    assert runs["recipe"]["steps"] > 0 and runs["plain"]["steps"] > 0
    assert {"plain_post", "last_checkpoint"} <= set(runs["recipe"]["evals"])
    assert runs["recipe"]["command"].startswith("napari-unet-loop train")
    # the curve starts at the untrained net (fraction 0); the plain loop must beat it
    untrained, trained = runs["plain"]["curve"][0], runs["plain"]["curve"][-1]
    assert untrained["fraction"] == 0.0 and untrained["steps"] == 0
    assert trained["metrics"]["iou"] > untrained["metrics"]["iou"] + 0.2
    assert trained["metrics"]["ap50"] > untrained["metrics"]["ap50"]
    rows = {(r["method"], r["variant"]) for r in result["summary"]}
    assert {("recipe", "default"), ("plain", "default"), ("rf", "default")} <= rows
    assert all("ap50_mean" in r and "ap50_std" in r for r in result["summary"])
    partial = out.with_suffix(".partial.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(partial) == len(result["runs"])  # every finished run, as it finished


def _record(seed: int, ap50: float, method: str = "recipe") -> dict:
    metrics = {"ap50": ap50, "ap75": ap50 / 2, "iou": 0.8, "n_pred": 10, "n_true": 12}
    curve = [{"fraction": f, "minutes": 2 * f, "steps": int(60 * f), "metrics": metrics}
             for f in (0.5, 1.0)]  # fmt: skip
    return {"set": "synthetic", "k": 3, "seed": seed, "method": method, "variant": "default",
            "membranes": False, "steps": 60, "cpu_s": 120.0, "metrics": metrics,
            "curve": curve}  # fmt: skip


def test_merge_pools_runs_of_json_and_partial_files(load_benchmark, tmp_path) -> None:
    """Runs of separate commands, one of them stopped (.partial.jsonl), give one summary."""
    load_benchmark("bench_learn")
    merge_learn = load_benchmark("merge_learn")
    whole = tmp_path / "a.json"
    whole.write_text(json.dumps({"command": "python benchmarks/bench_learn.py --plan 3:0",
                                 "runs": [_record(0, 0.6), _record(0, 0.5, "plain")]}))  # fmt: skip
    stopped = tmp_path / "b.partial.jsonl"
    stopped.write_text(json.dumps(_record(1, 0.8)) + "\n")
    out = tmp_path / "merged.json"
    assert merge_learn.main([str(out), str(whole), str(stopped)]) == 0
    merged = json.loads(out.read_text(encoding="utf-8"))
    assert len(merged["runs"]) == 3 and len(merged["sources"]) == 2
    recipe = next(r for r in merged["summary"] if r["method"] == "recipe")
    assert recipe["n"] == 2 and abs(recipe["ap50_mean"] - 0.7) < 1e-9
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_fluo_draw_is_the_issue_s_and_nested(load_benchmark) -> None:
    load_benchmark("bench_learn")
    from _learn_data import shared_sets

    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        import pytest

        pytest.skip("../shared/data is not present")
    sets = shared_sets(SHARED_DATA)
    fluo = sets["dsb2018_fluo"]
    assert fluo.choose(3, 0) == ("040", "041", "043")
    assert fluo.test == ("034", "039", "044", "049", "059")
    for data in sets.values():
        for seed in (0, 1, 2):
            assert data.choose(10, seed)[:3] == data.choose(3, seed)
            assert not set(data.choose(10, seed)) & set(data.test)


def test_every_ablation_and_eval_is_a_valid_setting(load_benchmark) -> None:
    """Each ``--ablations`` TrainConfig edit builds a valid config, each CLI flag parses (a typo
    would only surface after minutes of training in a benchmark run)."""
    load_benchmark("bench_learn")
    from _learn_runs import ABLATIONS, EVALS

    from napari_unet.cli import build_parser
    from napari_unet.core.training.config import TrainConfig

    base = TrainConfig(task="semantic", minutes=1)
    for name, variant in ABLATIONS.items():
        edits = variant.get("train", {})
        config = base.replace(**{k: getattr(base, k).replace(**v) if isinstance(v, dict) else v
                                 for k, v in edits.items()})  # fmt: skip
        assert isinstance(config, TrainConfig), name
        argv = ["train", "--images", "i", "--labels", "l", "--out", "o.pt", *variant.get("cli", ())]
        build_parser().parse_args(argv)
    for extra in EVALS.values():
        argv = ["predict", "x.tif", "--model", "m.pt", "--out", "o", *extra.get("cli", ())]
        build_parser().parse_args(argv)
    assert ABLATIONS["no_grad_clip"]["train"] == {"grad_clip": None}
    assert EVALS["predict_fp32"]["cli"] == ["--precision", "fp32"]


def test_a_zoomed_set_enlarges_images_and_labels_and_keeps_the_draws(load_benchmark, tmp_path):
    """``--sets SET_xN``: the same images N times larger (the scale issue's stand-in for whole
    cells), same test images and draws; labels keep their ids (nearest neighbour)."""
    import imageio.v3 as iio
    import numpy as np

    load_benchmark("bench_learn")
    from _learn_data import synthetic_set, zoomed_sets

    base = synthetic_set(tmp_path / "base", n=5, side=40)
    zoomed = zoomed_sets({"synthetic": base}, ["synthetic_x3", "other_x2"], tmp_path / "z")
    assert list(zoomed) == ["synthetic_x3"]
    big = zoomed["synthetic_x3"]
    assert big.test == base.test and big.choose(2, 1) == base.choose(2, 1)
    stem = base.test[0]
    small_labels = iio.imread(base.labels(stem))
    labels = iio.imread(big.labels(stem))
    np.testing.assert_array_equal(labels[::3, ::3], small_labels)
    assert labels.shape == (120, 120) and iio.imread(big.image(stem)).shape == (120, 120)


def test_isbi_cells_are_the_connected_regions_between_membranes(load_benchmark, tmp_path):
    """``--sets isbi2012_cells``: ISBI 2012 scored as instances, one id per 4-connected region of
    cell interior, membranes background; same test slices and draws as ``isbi2012``."""
    import imageio.v3 as iio
    import numpy as np

    load_benchmark("bench_learn")
    from _learn_data import LearnSet, isbi_cells_set

    for sub in ("images", "labels"):
        (tmp_path / "isbi" / sub).mkdir(parents=True)
    membrane = np.full((12, 12), 255, np.uint8)
    membrane[:, 5] = 0  # a vertical membrane: two cells...
    membrane[8, 6:] = 0  # ...the right one cut in two by a horizontal membrane
    membrane[2, 2] = 0  # a speck of membrane inside the left cell: still one cell
    for stem in ("00", "01", "02"):
        iio.imwrite(tmp_path / "isbi" / "images" / f"{stem}.png", membrane // 2)
        iio.imwrite(tmp_path / "isbi" / "labels" / f"{stem}.png", membrane)
    base = LearnSet("isbi2012", str(tmp_path / "isbi"), test=("02",), pool=("00", "01"),
                    membranes=True)  # fmt: skip
    cells = isbi_cells_set(base, tmp_path / "cells")
    assert cells.name == "isbi2012_cells" and not cells.membranes
    assert cells.choose(2, 1) == base.choose(2, 1) and cells.test == base.test
    labels = iio.imread(cells.labels("02"))
    assert labels.dtype == np.uint16 and len(np.unique(labels[labels > 0])) == 3
    np.testing.assert_array_equal(labels == 0, membrane == 0)
    assert labels[0, 0] == labels[11, 0] != labels[0, 11] != labels[11, 11]
    np.testing.assert_array_equal(iio.imread(cells.image("02")), membrane // 2)
