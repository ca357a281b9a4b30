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

import hashlib
import os
import pickle
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.core.io.images import write_tiff

REPO = Path(__file__).resolve().parents[1]


# -- the user's files ------------------------------------------------------------------------
def _disc(shape: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) < radius**2


def _image(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ((labels > 0) * 150 + rng.integers(0, 60, labels.shape)).astype(np.uint16)


def _train_set(root: Path, name: str, labels: list[np.ndarray], **kwargs) -> Path:
    """``root/name/{images,labels}`` with one image per label array (same shape unless given)."""
    folder = root / name
    images = kwargs.get("images") or [_image(np.nan_to_num(lab).astype(np.int64)) for lab in labels]
    for sub in ("labels", "masks") if kwargs.get("masks") else ("labels",):
        (folder / sub).mkdir(parents=True)
    for i, (image, lab) in enumerate(zip(images, labels)):
        axes = "YX" if np.ndim(image) == 2 else None  # a 3-D image states no axes
        write_tiff(folder / "images" / f"im{i}.tif", image, axes=axes)
        tifffile.imwrite(folder / "labels" / f"im{i}.tif", lab)
    for i, mask in enumerate(kwargs.get("masks") or []):
        tifffile.imwrite(folder / "masks" / f"im{i}.tif", mask)
    return folder


def _tiny_checkpoint(path: Path, *, task: str = "semantic", out_channels: int = 2) -> Path:
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", in_channels=1, out_channels=out_channels, depth=2, base_channels=4)
    return save_checkpoint(path, model, task=task, tile_shape=(32, 32), overlap=4)


class _Evil:
    """Unpickling this runs ``touch MARKER``: a checkpoint must never be unpickled like that."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _build_user_files(root: Path) -> SimpleNamespace:
    """Every input the matrix uses, written once (read-only by convention)."""
    import torch

    w = SimpleNamespace(root=root)
    disc = _disc((48, 48), (22, 24), 10)
    img = _image(disc)
    w.img = write_tiff(root / "img.tif", img, axes="YX")
    w.png = root / "img.png"
    from skimage.io import imsave

    imsave(w.png, (img // 4).astype(np.uint8), check_contrast=False)
    # dtypes
    w.dtype = {}
    for name, array in {
        "bool": disc,
        "int8": (img // 4 - 60).astype(np.int8),
        "uint16": img,
        "uint32": img.astype(np.uint32) * 1000,
        "int64": img.astype(np.int64) - 100,
        "float16": img.astype(np.float16),
        "float64": img.astype(np.float64) / 7.0,
    }.items():
        w.dtype[name] = write_tiff(root / f"dtype_{name}.tif", array, axes="YX")
    w.dtype["complex"] = root / "dtype_complex.tif"
    tifffile.imwrite(w.dtype["complex"], img.astype(np.complex64))
    # axes
    w.ambiguous = root / "three_planes.tif"
    tifffile.imwrite(w.ambiguous, np.stack([img] * 3), photometric="minisblack", metadata=None)
    w.tzyx = write_tiff(root / "tzyx.tif", np.stack([[img[:32, :32]] * 2] * 2), axes="TZYX")
    # no axes stored (a stored one-channel C would be squeezed away): --axes says them
    w.tzcyx = write_tiff(root / "tzcyx.tif", np.stack([[img[None, :32, :32]] * 2] * 2))
    w.zero = root / "zero.tif"
    tifffile.imwrite(w.zero, np.zeros((0, 0), np.uint16))
    # damaged files
    good_tif, good_png = w.img.read_bytes(), w.png.read_bytes()
    w.trunc_tif = root / "truncated.tif"
    w.trunc_tif.write_bytes(good_tif[: len(good_tif) // 2])
    w.trunc_png = root / "truncated.png"
    w.trunc_png.write_bytes(good_png[: len(good_png) // 2])
    w.corrupt_png = root / "corrupt.png"
    w.corrupt_png.write_bytes(good_png[:8] + bytes(range(256)) * 4)
    w.corrupt_tif = root / "corrupt.tif"
    w.corrupt_tif.write_bytes(b"II*\0" + bytes(range(256)) * 4)
    w.empty = root / "empty.tif"
    w.empty.write_bytes(b"")
    w.no_images = root / "no_images"
    w.no_images.mkdir()
    (w.no_images / "notes.txt").write_text("not an image\n")
    w.missing = root / "does_not_exist.tif"
    # checkpoints
    w.tiny = _tiny_checkpoint(root / "tiny.pt")
    w.restoration = _tiny_checkpoint(root / "restore.pt", task="restoration", out_channels=1)
    w.text_pt = root / "notes.pt"
    w.text_pt.write_text("this is not a checkpoint\n")
    w.foreign = root / "foreign.pt"
    from napari_unet.core.models import build_model

    torch.save(build_model("unet", depth=2, base_channels=4).state_dict(), w.foreign)
    w.marker = root / "PWNED"
    w.evil = root / "evil.pt"
    torch.save({"model": _Evil(w.marker)}, w.evil)
    w.evil_raw = root / "evil_raw.pt"
    w.evil_raw.write_bytes(pickle.dumps(_Evil(w.marker)))
    w.bitflip = root / "bitflip.pt"
    data = bytearray(w.tiny.read_bytes())
    with zipfile.ZipFile(w.tiny) as archive:  # flip a byte inside the largest stored tensor
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2] ^= 1
    w.bitflip.write_bytes(bytes(data))
    # training sets
    shape = (48, 48)
    d1, d2 = _disc(shape, (20, 24), 10), _disc(shape, (26, 20), 9)
    w.train_ok = _train_set(root, "train_ok", [d1.astype(np.uint8), d2.astype(np.uint8)])
    w.train_70000 = _train_set(root, "train_70000", [d1 * np.uint32(70000), d2 * np.uint32(7)])
    instances = np.zeros((96, 96), np.uint32)
    for n in range(300):
        y, x = divmod(n, 20)
        instances[y * 6 + 2 : y * 6 + 5, (x * 4 + 1) % 96 : (x * 4 + 4) % 96 or 96] = n + 1
    w.train_instances = _train_set(root, "train_instances", [instances])
    nan = d1.astype(np.float32)
    nan[0, 0] = np.nan
    w.train_nan = _train_set(root, "train_nan", [nan], images=[_image(d1)])
    w.train_float = _train_set(root, "train_float", [d1 * np.float32(0.5)])
    w.train_negative = _train_set(root, "train_negative", [d1.astype(np.int16) - 1])
    w.train_empty = _train_set(root, "train_empty", [np.zeros(shape, np.uint8)] * 2)
    w.train_shape = _train_set(
        root, "train_shape", [d1[:40, :40].astype(np.uint8)], images=[_image(d1)]
    )
    w.train_count = _train_set(root, "train_count", [d1.astype(np.uint8)] * 2)
    (w.train_count / "labels" / "im1.tif").unlink()
    w.train_ignore = _train_set(
        root, "train_ignore", [d1.astype(np.uint8)], masks=[np.zeros(shape, np.uint8)]
    )
    small = _disc((12, 12), (6, 6), 4).astype(np.uint8)
    w.train_small = _train_set(root, "train_small", [small])
    w.train_ambiguous = _train_set(
        root, "train_ambiguous", [d1.astype(np.uint8)], images=[np.stack([_image(d1)] * 3)]
    )
    # evaluation
    w.pred = root / "pred"
    write_tiff(w.pred / "im0_labels.tif", d1.astype(np.uint8), axes="YX")
    w.truth = root / "truth"
    write_tiff(w.truth / "im0.tif", d1.astype(np.uint8), axes="YX")
    return w


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The user's files (built once per module)."""
    return _build_user_files(tmp_path_factory.mktemp("user-files"))


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


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
