"""Issue 15: every bad input the CLI can be given, as a matrix.

Each row runs one command (in-process through :func:`napari_unet.cli.main`; a representative
subset also as a real ``python -m napari_unet`` subprocess) and asserts:

* the exit status (2 for bad flags and unusable inputs, 1 for a ``predict`` file that failed,
  0 where the input is in fact fine, e.g. an uint32 image);
* stderr holds one sentence-like line: no ``Traceback``, no temporary-file name (argparse's
  usage block after a flag error either);
* every file the user gave is byte-identical afterwards (hashed before and after), and nothing
  was left beside them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from napari_unet.cli import main
from tests.bad_input_files import _build_user_files, _hashes

REPO = Path(__file__).resolve().parents[1]


# -- the user's files (tests/bad_input_files.py) ----------------------------------------
@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The user's files (built once per module)."""
    return _build_user_files(tmp_path_factory.mktemp("user-files"))


# -- the matrix ------------------------------------------------------------------------------
Argv = Callable[[SimpleNamespace, Path], list]


@dataclass(frozen=True)
class Row:
    """One command and what it must do."""

    id: str
    argv: Argv
    status: int
    marks: tuple = ()
    fixture: str | None = None  # "tiny_disk" / "readonly_dir": ``out`` is that folder
    subprocess: bool = False
    stdout: str = ""  # a piece of text the successful run prints
    message: str = field(default="")  # a piece of text the one error line must hold


def _predict(image: str, *extra: str, model: str = "tiny") -> Argv:
    def argv(w: SimpleNamespace, out: Path) -> list:
        source = getattr(w, image) if not image.startswith("dtype:") else w.dtype[image[6:]]
        chosen = getattr(w, model) if hasattr(w, model) else model
        return ["predict", source, "--model", chosen, "--out", out / "pred", *extra]

    return argv


def _train(dataset: str, *extra: str) -> Argv:
    def argv(w: SimpleNamespace, out: Path) -> list:
        folder = getattr(w, dataset)
        masks = ["--masks", folder / "masks"] if (folder / "masks").is_dir() else []
        return [
            "train",
            "--images",
            folder / "images",
            "--labels",
            folder / "labels",
            *masks,
            "--steps",
            "1",
            "--patch",
            "16",
            "--batch-size",
            "1",
            "--device",
            "cpu",
            "--out",
            out / "model.pt",
            *extra,
        ]

    return argv


def _evaluate(*extra: str) -> Argv:
    def argv(w: SimpleNamespace, out: Path) -> list:
        return ["evaluate", "--pred", w.pred, "--truth", w.truth, "--task", "binary", *extra]

    return argv


def _export(model: str, *extra: str) -> Argv:
    def argv(w: SimpleNamespace, out: Path) -> list:
        chosen = getattr(w, model) if hasattr(w, model) else model
        return [
            "export",
            chosen,
            "--out",
            out / "model.zip",
            "--no-torchscript",
            "--test-size",
            "32",
            *extra,
        ]

    return argv


def _simulate(*extra: str) -> Argv:
    def argv(w: SimpleNamespace, out: Path) -> list:
        return [
            "simulate",
            "--images",
            w.train_ok / "images",
            "--labels",
            w.train_ok / "labels",
            "--task",
            "binary",
            "--per-round",
            "1",
            "--json",
            out / "rounds.json",
            *extra,
        ]

    return argv


def _raw(*args: str) -> Argv:
    return lambda w, out: list(args)


ROWS: list[Row] = [
    # -- point 4, 5, 7 (predict side): fixed on dl-predict --------------------------------
    Row("point5_tzyx", _predict("tzyx", "--axes", "TZYX"), 0),
    Row("point5_tzcyx", _predict("tzcyx", "--axes", "TZCYX"), 0),
    Row("point7_zero_size_image", _predict("zero"), 1),
    Row("point7_tile_0", _predict("img", "--tile", "0"), 2),
    Row("point7_overlap_negative", _predict("img", "--overlap", "-1"), 2),
    Row("point7_overlap_too_large", _predict("img", "--tile", "32", "--overlap", "40"), 2),
    # -- point 6: train ------------------------------------------------------------------------
    Row("point6_label_70000", _train("train_70000"), 2, subprocess=True, message="70000"),
    # issue 16 point 4: without --task, instance masks train an instance model (said on stderr)
    Row("point6_instances_default", _train("train_instances"), 0, stdout="trained"),
    Row(
        "point6_instances_as_classes",
        _train("train_instances", "--task", "semantic"),
        2,
        message="--task instances",
    ),
    Row("point6_val_fraction_1.5", _train("train_ok", "--val-fraction", "1.5"), 2, subprocess=True),
    Row("point6_val_fraction_negative", _train("train_ok", "--val-fraction", "-0.1"), 2),
    Row("point6_val_fraction_nan", _train("train_ok", "--val-fraction", "nan"), 2),
    Row(
        "point6_train_readonly_out",
        _train("train_ok"),
        2,
        fixture="readonly_dir",
        subprocess=False,
        message="read-only",
    ),
    Row("point6_train_full_disk", _train("train_ok"), 2, fixture="tiny_disk", message="space"),
    Row(
        "point6_evaluate_json_readonly",
        _evaluate("--json", "{out}/m.json"),
        2,
        fixture="readonly_dir",
        message="read-only",
    ),
    Row(
        "point6_evaluate_json_full_disk",
        _evaluate("--json", "{out}/m.json"),
        2,
        fixture="tiny_disk",
        message="space",
    ),
    Row(
        "point6_predict_readonly_out",
        _predict("img"),
        2,
        fixture="readonly_dir",
        message="read-only",
    ),
    Row(
        "point6_predict_full_disk",
        _predict("img"),
        1,
        fixture="tiny_disk",
        message="space",
    ),
    Row("export_readonly_out", _export("tiny"), 2, fixture="readonly_dir", message="read-only"),
    Row("export_full_disk", _export("tiny"), 2, fixture="tiny_disk", message="space"),
    Row("simulate_json_readonly", _simulate("--rounds", "0"), 2, fixture="readonly_dir"),
    # -- train: bad training data ----------------------------------------------------------
    Row("train_ok", _train("train_ok"), 0, stdout="trained 1 steps"),
    Row("train_labels_all_background", _train("train_empty"), 2),
    Row("train_all_ignore_mask", _train("train_ignore"), 2),
    Row("train_shape_mismatch", _train("train_shape"), 2),
    Row("train_image_without_labels", _train("train_count"), 2),
    Row("train_labels_nan", _train("train_nan"), 2, message="hold NaN values; "),
    Row("train_labels_float", _train("train_float"), 2),
    Row("train_labels_negative", _train("train_negative"), 2),
    Row(
        "train_image_20x_smaller_than_patch",
        _train("train_small", "--patch", "256"),
        2,  # issue 17: an explicit patch 20x wider than the images is refused
        message="is 21x wider than image",
    ),
    Row("train_ambiguous_axes", _train("train_ambiguous"), 2),
    Row(
        "train_no_images",
        lambda w, out: [
            "train",
            "--images",
            w.no_images,
            "--labels",
            w.no_images,
            "--out",
            out / "m.pt",
        ],
        2,
    ),
    Row(
        "train_missing_folder",
        lambda w, out: [
            "train",
            "--images",
            w.missing,
            "--labels",
            w.missing,
            "--out",
            out / "m.pt",
        ],
        2,
        subprocess=True,
    ),
    Row("train_text_checkpoint", _train("train_ok", "--model", "{text_pt}"), 2),
    Row("train_foreign_checkpoint", _train("train_ok", "--model", "{foreign}"), 2),
    Row("train_malicious_checkpoint", _train("train_ok", "--model", "{evil}"), 2),
    Row(
        "train_bitflipped_checkpoint",
        _train("train_ok", "--model", "{bitflip}"),
        2,
        message="is damaged (a checksum does not match): copy it again",
    ),
    Row(
        "train_checkpoint_other_task",
        _train("train_ok", "--model", "{restoration}", "--task", "semantic"),
        2,
    ),
    Row("train_unknown_architecture", _train("train_ok", "--model", "resnet9000"), 2),
    Row("train_resume_text", _train("train_ok", "--resume", "{text_pt}"), 2),
    Row("train_unknown_device", _train("train_ok", "--device", "tpu"), 2),
    Row("train_cuda_without_gpu", _train("train_ok", "--device", "cuda"), 2),
    Row("train_minutes_negative", _train("train_ok", "--minutes", "-1"), 2),
    Row(
        "train_steps_0",
        _raw("train", "--images", "a", "--labels", "b", "--out", "c", "--steps", "0"),
        2,
    ),
    Row("train_bad_label_map", _train("train_ok", "--label-map", "1-2"), 2),
    Row(
        "train_out_is_a_folder", lambda w, out: [*_train("train_ok")(w, out)[:-2], "--out", out], 2
    ),
    # -- predict: dtypes ---------------------------------------------------------------------
    *(
        Row(f"predict_dtype_{name}", _predict(f"dtype:{name}"), 0, stdout="1 ok")
        for name in ("bool", "int8", "uint16", "uint32", "int64", "float16", "float64")
    ),
    Row("predict_dtype_complex", _predict("dtype:complex"), 1, message="complex"),
    # -- predict: axes -----------------------------------------------------------------------
    Row("predict_axes_bad_letter", _predict("img", "--axes", "QX"), 1),
    Row("predict_axes_repeated", _predict("img", "--axes", "YY"), 1),
    Row("predict_axes_wrong_count", _predict("img", "--axes", "ZYX"), 1),
    Row("predict_axes_ambiguous", _predict("ambiguous"), 1, subprocess=True, message="--axes"),
    # -- predict: damaged files and paths --------------------------------------------------------
    Row("predict_truncated_tiff", _predict("trunc_tif"), 1),
    Row("predict_truncated_png", _predict("trunc_png"), 1),
    Row("predict_corrupt_tiff", _predict("corrupt_tif"), 1),
    Row("predict_corrupt_png", _predict("corrupt_png"), 1),
    Row("predict_empty_file", _predict("empty"), 1),
    Row("predict_folder_without_images", _predict("no_images"), 2),
    Row("predict_missing_path", _predict("missing"), 1),
    # -- predict: checkpoints ----------------------------------------------------------------
    Row("predict_unknown_model", _predict("img", model="no-such-model"), 2),
    Row("predict_text_checkpoint", _predict("img", model="text_pt"), 2),
    Row("predict_foreign_checkpoint", _predict("img", model="foreign"), 2),
    Row("predict_malicious_checkpoint", _predict("img", model="evil"), 2, subprocess=True),
    Row("predict_malicious_raw_pickle", _predict("img", model="evil_raw"), 2),
    Row(
        "predict_bitflipped_checkpoint",
        _predict("img", model="bitflip"),
        2,
        message="is damaged (a checksum does not match): copy it again",
    ),
    # -- predict: bad flags ------------------------------------------------------------------
    Row("predict_unknown_device", _predict("img", "--device", "tpu"), 2),
    Row("predict_cuda_without_gpu", _predict("img", "--device", "cuda"), 2),
    Row("predict_tta_bogus", _predict("img", "--tta", "bogus"), 2),
    Row("predict_labels_bogus", _predict("img", "--labels", "bogus"), 2),
    Row("predict_slices_backwards", _predict("img", "--slices", "5:2"), 1),
    Row("predict_threshold_2", _predict("img", "--threshold", "2"), 2),
    Row("predict_batch_size_0", _predict("img", "--batch-size", "0"), 2),
    # -- evaluate ----------------------------------------------------------------------------
    Row("evaluate_ok", _evaluate(), 0, stdout="mean"),
    Row(
        "evaluate_missing_pred",
        lambda w, out: ["evaluate", "--pred", w.missing, "--truth", w.truth, "--task", "binary"],
        2,
    ),
    Row(
        "evaluate_empty_folders",
        lambda w, out: [
            "evaluate",
            "--pred",
            w.no_images,
            "--truth",
            w.no_images,
            "--task",
            "binary",
        ],
        2,
    ),
    Row(
        "evaluate_task_bogus",
        lambda w, out: ["evaluate", "--pred", w.pred, "--truth", w.truth, "--task", "bogus"],
        2,
    ),
    Row("evaluate_bad_label_map", _evaluate("--label-map", "a:b"), 2),
    Row("evaluate_json_is_a_folder", _evaluate("--json", "{out}"), 2),
    # -- export, simulate, models ----------------------------------------------------------
    Row("export_foreign_checkpoint", _export("foreign"), 2),
    Row("export_malicious_checkpoint", _export("evil"), 2),
    Row("export_missing_sample", _export("tiny", "--sample", "{missing}"), 2),
    Row("export_test_size_0", _export("tiny", "--test-size", "0"), 2),
    Row("simulate_rounds_negative", _simulate("--rounds", "-1"), 2),
    Row("simulate_per_round_0", _simulate("--rounds", "1", "--per-round", "0"), 2),
    Row("models_unknown_flag", _raw("models", "--bogus"), 2),
    Row("unknown_subcommand", _raw("frobnicate"), 2),
]


def _expand(argv: list, w: SimpleNamespace, out: Path) -> list[str]:
    """Arguments as text, with ``{name}`` replaced by the user file of that name (or ``out``)."""
    names = {**vars(w), "out": out}

    def one(value: object) -> str:
        text = str(value)
        return re.sub(r"\{(\w+)\}", lambda m: str(names[m.group(1)]), text)

    return [one(a) for a in argv]


_TEMP_NAME = re.compile(r"\.tmp\b|tmp[a-z0-9_]{6,}|\.[\w.-]+\.\w{8}\b")


def error_lines(stderr: str) -> list[str]:
    """The non-empty lines of ``stderr`` (a flag error prints no usage block either)."""
    return [line for line in stderr.splitlines() if line.strip()]


def check_one_sentence(stderr: str, message: str = "") -> None:
    """One line, no traceback, no temporary-file name, and ``message`` in it."""
    assert "Traceback" not in stderr, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert not _TEMP_NAME.search(lines[0]), lines[0]
    assert message in lines[0], lines[0]


def _run(argv: list[str], *, in_subprocess: bool, capsys: pytest.CaptureFixture):
    if in_subprocess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
        done = subprocess.run(
            [sys.executable, "-m", "napari_unet", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        return done.returncode, done.stdout, done.stderr
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse
        status = stop.code if isinstance(stop.code, int) else 1
        if not isinstance(stop.code, int) and stop.code:
            print(stop.code, file=sys.stderr)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _params() -> list:
    params = []
    for row in ROWS:
        params.append(pytest.param(row, False, id=row.id, marks=row.marks))
        if row.subprocess:
            params.append(pytest.param(row, True, id=f"{row.id}-subprocess", marks=row.marks))
    return params


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--device cuda`` rows mean 'a machine without a GPU', also where one is present."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(("row", "in_subprocess"), _params())
def test_bad_input_matrix(
    row: Row,
    in_subprocess: bool,
    user: SimpleNamespace,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture,
    no_gpu: None,
) -> None:
    if row.fixture:
        out = request.getfixturevalue(row.fixture)
    else:
        out = tmp_path / "out"
        out.mkdir()
    before_out = _hashes(out) if out.is_dir() else {}
    before = _hashes(user.root)
    argv = _expand(row.argv(user, out), user, out)

    status, stdout, stderr = _run(argv, in_subprocess=in_subprocess, capsys=capsys)

    assert status == row.status, f"exit {status}\nstdout: {stdout}\nstderr: {stderr}"
    if status != 0:
        check_one_sentence(stderr, row.message)
    else:
        assert row.stdout in stdout, stdout
    assert _hashes(user.root) == before, "a user file changed or appeared"
    assert not user.marker.exists(), "unpickling a checkpoint ran code"
    if row.fixture:  # the unwritable folder holds exactly what it held before
        assert _hashes(out) == before_out
        assert sorted(p.name for p in out.iterdir()) == sorted(before_out), list(out.iterdir())


# -- flag errors: one line from every parser ---------------------------------------------------
_FLAG_ERRORS = [
    ([], ["--bogus"]),
    ([], ["frobnicate"]),
    *[([sub], [sub, "--bogus"]) for sub in ("predict", "models", "train", "evaluate")],
    *[([sub], [sub, "--bogus"]) for sub in ("simulate", "export", "gui")],
    (["train"], ["train", "--steps", "1"]),  # required arguments missing
    (["evaluate"], ["evaluate", "--pred", "p"]),
    (["export"], ["export"]),
    (["simulate"], ["simulate", "--rounds", "x"]),
    (["predict"], ["predict", "a.tif"]),
    (["predict"], ["predict", "a.tif", "--model", "m", "--out", "o", "--bogus"]),  # after a sub
]


@pytest.mark.parametrize(("sub", "argv"), _FLAG_ERRORS, ids=lambda v: " ".join(v) or "-")
def test_a_flag_error_is_one_line_naming_the_subcommand(
    sub: list[str], argv: list[str], capsys: pytest.CaptureFixture
) -> None:
    """``napari-unet-loop SUB: error: ...; see --help.`` and exit 2, no usage block."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    prog = " ".join(["napari-unet-loop", *sub])
    assert re.fullmatch(rf"{prog}: error: [^\n]+; see --help\.\n", captured.err), captured.err
