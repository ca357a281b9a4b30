"""Issue 16 (points 3, 5, 7) and issue 19 (CLI): what the CLI shows while it works.

Progress (a tqdm bar on a terminal, progress lines elsewhere), ``-v``/``-q`` before or after the
subcommand, third-party debug noise held back, the training history CSV, help texts in plain
text, and "best" validation wording that names the start model.
"""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.io import imsave

from napari_unet.cli import SUBCOMMANDS, build_parser, main, verbosity

REPO = Path(__file__).resolve().parents[1]
PROGRESS = "napari_unet.progress"


def write_pairs(folder: Path, n: int = 3) -> None:
    """``n`` 48x48 PNG image/label pairs (a disc, labels 0/1)."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    yy, xx = np.mgrid[:48, :48]
    for i in range(n):
        labels = (((yy - 20 - i) ** 2 + (xx - 24) ** 2) < 100).astype(np.uint8)
        image = (labels * 150 + rng.integers(0, 60, labels.shape)).astype(np.uint8)
        imsave(folder / "images" / f"img{i}.png", image, check_contrast=False)
        imsave(folder / "labels" / f"img{i}.png", labels, check_contrast=False)


def train_argv(folder: Path, *extra: str, out: str = "m.pt") -> list[str]:
    return ["train", "--images", str(folder / "images"), "--labels", str(folder / "labels"),
            "--patch", "32", "--batch-size", "2", "--device", "cpu", "--val-fraction", "0.3",
            "--out", str(folder / out), *extra]  # fmt: skip


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == PROGRESS]


def read_history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- help texts (issue 16 point 7) ----------------------------------------------------------------
@pytest.mark.parametrize("command", ["", *SUBCOMMANDS])
def test_issue16_help_is_plain_text(command: str, capsys: pytest.CaptureFixture) -> None:
    """argparse prints help as it is: no reST double backticks or roles in any --help."""
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"] if command else ["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert text.strip()
    assert "``" not in text and ":mod:" not in text and ":func:" not in text, text


def test_issue16_predict_help_says_bf16_on_cpu(capsys: pytest.CaptureFixture) -> None:
    """core.device's policy: auto is bf16 autocast on a CPU with native bf16 units."""
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "bf16 on a CPU with native bf16 units" in text
    assert "fp32 elsewhere" in text


# -- -v / -q anywhere (issue 19) -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-v", "models"], 1),
        (["models", "-v"], 1),
        (["models", "--verbose", "--verbose"], 2),
        (["-v", "models", "-v"], 2),
        (["-q", "models"], -1),
        (["models", "-q"], -1),
        (["models", "--quiet"], -1),
        (["models"], 0),
    ],
)
def test_issue19_verbosity_before_or_after_the_subcommand(argv: list[str], expected: int) -> None:
    assert verbosity(build_parser().parse_args(argv)) == expected


@pytest.mark.parametrize("position", ["before", "after"])
def test_issue19_v_after_the_subcommand_sets_the_levels(
    position: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-v`` in either position: napari_unet at DEBUG, PIL & co. held at WARNING."""
    import napari_unet.cli.models as models

    seen = {}

    def fake_run(args):
        seen["napari_unet"] = logging.getLogger("napari_unet").getEffectiveLevel()
        seen["PIL"] = logging.getLogger("PIL.PngImagePlugin").getEffectiveLevel()
        seen["matplotlib"] = logging.getLogger("matplotlib.font_manager").getEffectiveLevel()
        return 0

    monkeypatch.setattr(models, "run", fake_run)
    argv = ["-v", "models"] if position == "before" else ["models", "-v"]
    assert main(argv) == 0
    assert seen == {
        "napari_unet": logging.DEBUG,
        "PIL": logging.WARNING,
        "matplotlib": logging.WARNING,
    }
    # and the levels are put back after the command
    assert logging.getLogger("napari_unet").level == logging.NOTSET


def test_issue16_levels_per_verbosity() -> None:
    from napari_unet.cli._progress import verbosity_levels

    assert verbosity_levels(0)[PROGRESS] == logging.INFO
    assert "napari_unet" not in verbosity_levels(0)  # other napari_unet INFO stays quiet
    assert verbosity_levels(1)["urllib3"] == logging.WARNING
    assert verbosity_levels(2)[""] == logging.DEBUG and "PIL" not in verbosity_levels(2)
    assert verbosity_levels(-1)[PROGRESS] == logging.ERROR


def _subprocess(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, "-m", "napari_unet", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_issue16_train_in_a_log_file_shows_progress_lines_by_default(tmp_path: Path) -> None:
    """A real run with stderr in a pipe (a cluster log): progress lines, no bar, no noise."""
    write_pairs(tmp_path)
    done = _subprocess(train_argv(tmp_path, "--steps", "4", "--val-every", "2", "--log-every", "2"))
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(line.startswith("step 2/4  loss ") for line in lines), done.stderr
    assert any(line.startswith("step 4/4  val ") for line in lines), done.stderr
    assert not any(line.startswith(("DEBUG", "INFO")) for line in lines), done.stderr
    assert "%|" not in done.stderr  # no tqdm bar in a log file
    assert "trained 4 steps" in done.stdout


def test_issue19_train_v_after_the_subcommand_without_third_party_noise(tmp_path: Path) -> None:
    """``train ... -v``: napari_unet's debug lines, none of PIL's (it logs every PNG chunk)."""
    write_pairs(tmp_path, n=2)
    done = _subprocess([*train_argv(tmp_path, "--steps", "1", "--val-fraction", "0"), "-v"])
    assert done.returncode == 0, done.stderr
    assert "DEBUG napari_unet." in done.stderr
    noisy = [line for line in done.stderr.splitlines() if " PIL." in line or "matplotlib" in line]
    assert not noisy, noisy


# -- train progress (issue 16 points 3 and 5) ----------------------------------------------------
def test_issue16_train_draws_a_tqdm_bar_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_unet.cli import _progress

    monkeypatch.setattr(_progress, "on_terminal", lambda: True)
    write_pairs(tmp_path)
    assert main(train_argv(tmp_path, "--steps", "3")) == 0
    err = capsys.readouterr().err
    assert "train: 100%|" in err and "3/3" in err, err


def test_issue16_train_progress_lines_without_a_terminal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off a terminal a line every LINE_INTERVAL_S seconds: step/budget, loss, lr, time left."""
    from napari_unet.cli import _progress, train_progress

    class EveryOther:
        """A line every second step, as if each step took 5 s of a 10 s interval."""

        def __init__(self, seconds: float) -> None:
            assert seconds == _progress.LINE_INTERVAL_S
            self.calls = 0

        def __call__(self) -> bool:
            self.calls += 1
            return self.calls % 2 == 0

    monkeypatch.setattr(_progress, "on_terminal", lambda: False)
    monkeypatch.setattr(train_progress, "Every", EveryOther)
    write_pairs(tmp_path)
    with caplog.at_level(logging.INFO, logger=PROGRESS):
        assert main(train_argv(tmp_path, "--steps", "6", "--val-every", "3")) == 0
    lines = progress_lines(caplog)
    steps = [line for line in lines if "loss" in line]
    assert [line.split("  loss")[0] for line in steps] == ["step 2/6", "step 4/6", "step 6/6"]
    assert any(line.endswith(" left") for line in steps), lines
    validations = [line.split("  val")[0] for line in lines if "  val " in line]
    assert validations == ["step 3/6", "step 6/6"], lines


@pytest.mark.parametrize(
    ("score", "improved", "start", "note"),
    [
        (0.8, True, None, " (best)"),
        (0.8, False, None, ""),
        (0.82, True, 0.89, " (best so far; start model 0.8900)"),
        (0.91, True, 0.89, " (best; above the start model's 0.8900)"),
        (0.82, False, 0.89, ""),
    ],
)
def test_issue16_point5_best_names_the_start_model(score, improved, start, note) -> None:
    from napari_unet.cli.train_progress import validation_note

    assert validation_note(score, improved, start) == note


def test_issue16_point5_fine_tune_lines_compare_with_the_start_model(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fine-tune scores the start model on the same tiles first and names it beside "best"."""
    from napari_unet.cli import _progress

    monkeypatch.setattr(_progress, "on_terminal", lambda: False)
    write_pairs(tmp_path)
    assert main(train_argv(tmp_path, "--steps", "2", "--task", "binary")) == 0
    capsys.readouterr()
    caplog.clear()
    start = tmp_path / "m.pt"
    with caplog.at_level(logging.INFO, logger=PROGRESS):
        argv = train_argv(tmp_path, "--steps", "2", "--model", str(start), "--lr", "0.5")
        assert main([*argv[:-2], "--out", str(tmp_path / "tuned.pt")]) == 0
    lines = [line for line in progress_lines(caplog) if not line.startswith("data: ")]
    assert lines[0].startswith("start model: val "), lines
    start_score = float(lines[0].split()[-1])
    val = [line for line in lines if "  val " in line]
    assert val and all(f"start model {start_score:.4f}" in line or "above the start model" in line
                       for line in val if "best" in line), lines  # fmt: skip
    out = capsys.readouterr().out
    tuned_best = float(out.split("score ")[1].split(",")[0])
    if tuned_best <= start_score:  # lr 0.5 wrecks the model: the run says the start was better
        assert f"the start model scored {start_score:.4f}" in out, out


# -- history CSV (issue 19) ----------------------------------------------------------------------
def test_issue19_history_csv_beside_the_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_pairs(tmp_path)
    argv = train_argv(tmp_path, "--steps", "6", "--val-every", "3", "--log-every", "2")
    assert main(argv) == 0
    history = tmp_path / "m.history.csv"
    assert f"history: {history}" in capsys.readouterr().out
    rows = read_history(history)
    assert [int(r["step"]) for r in rows] == [2, 3, 4, 6]
    assert list(rows[0])[:4] == ["step", "seconds", "lr", "train_loss"]
    assert {"val_score", "val_loss"} <= set(rows[0])
    for row in rows:
        assert float(row["seconds"]) >= 0 and float(row["lr"]) > 0
        assert np.isfinite(float(row["train_loss"]))
    assert [bool(r["val_score"]) for r in rows] == [False, True, False, True]
    assert 0.0 <= float(rows[-1]["val_score"]) <= 1.0
    assert not list(tmp_path.glob(".*tmp*")), "a temporary file was left behind"


def test_issue19_history_is_written_while_training_and_kept_when_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a validation the history is on disk at once: a run killed later keeps it."""
    import napari_unet.core.training.loop as train
    from napari_unet.core.training.config import StepEvent

    real = train.iter_train
    history = tmp_path / "m.history.csv"
    seen_on_disk = []

    def killed_at_step_5(*args, **kwargs):
        for event in real(*args, **kwargs):
            yield event
            if isinstance(event, StepEvent) and event.step == 5:
                seen_on_disk.append(read_history(history) if history.exists() else [])
                raise KeyboardInterrupt  # Ctrl-C (a SIGKILL leaves the file as seen above)

    monkeypatch.setattr(train, "iter_train", killed_at_step_5)
    write_pairs(tmp_path)
    argv = train_argv(tmp_path, "--steps", "8", "--val-every", "3", "--log-every", "1")
    assert main(argv) == 130
    on_disk = seen_on_disk[0]
    assert [int(r["step"]) for r in on_disk][:3] == [1, 2, 3] and on_disk[2]["val_score"]
    kept = read_history(history)
    assert [int(r["step"]) for r in kept] == [1, 2, 3, 4, 5]


def test_issue19_history_continues_on_resume(tmp_path: Path) -> None:
    write_pairs(tmp_path)
    base = ["--val-every", "2", "--log-every", "2"]
    assert main(train_argv(tmp_path, "--steps", "4", *base)) == 0
    latest = tmp_path / "m.training" / "latest.pt"
    assert main(train_argv(tmp_path, "--steps", "6", "--resume", str(latest), *base)) == 0
    rows = read_history(tmp_path / "m.history.csv")
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    assert all(r["val_score"] for r in rows)


def test_issue19_a_failed_run_leaves_no_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import napari_unet.core.training.loop as train

    real = train.iter_train

    def disk_full(*args, **kwargs):
        events = real(*args, **kwargs)
        for _ in range(3):
            yield next(events)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train, "iter_train", disk_full)
    write_pairs(tmp_path)
    assert main(train_argv(tmp_path, "--steps", "8", "--val-every", "2")) == 2
    assert not (tmp_path / "m.history.csv").exists()
