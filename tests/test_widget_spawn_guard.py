"""A user script that opens napari without a main guard, then starts a fine-tune.

The trainer is spawned, and spawn re-runs the parent's script: without the guard, a second
napari, a second session, then a crash. The parent refuses before spawning (an ``ast`` check of
the script), and a trainer that re-runs one anyway exits at once with a code the parent turns
into the same one sentence. Real scripts, run in a subprocess under Xvfb (``xvfb-run -a``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("napari")

from napari_unet._widgets.spawn_guard import UNGUARDED_MESSAGE, opens_napari_unguarded

pytestmark = pytest.mark.gui

#: The body of a script that opens napari and starts a fine-tune (through the client).
BODY = """
import sys
import napari
from qtpy.QtWidgets import QApplication
from napari_unet._widgets import FinetuneWidget
from napari_unet._widgets import trainer_client
from napari_unet.core.errors import UserInputError

def main(bypass_parent_check=False):
    if bypass_parent_check:  # as if the ast check missed it: the trainer must stop itself
        trainer_client.unguarded_main_script = lambda: None
    viewer = napari.Viewer(show=False)
    widget = FinetuneWidget(viewer)
    client = widget.finetune.client
    failures = []
    client.failed.connect(failures.append)
    request = {"session": sys.argv[1], "start_from": "fluo-nuclei", "device": "cpu"}
    try:
        client.start(request)
    except UserInputError as err:
        print("REFUSED:", err, flush=True)
        return
    import time
    deadline = time.monotonic() + 240
    while client.running and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    print("FAILED:", failures, flush=True)
"""


def run_script(tmp_path, source: str) -> subprocess.CompletedProcess:
    script = tmp_path / "my_analysis.py"
    script.write_text(textwrap.dedent(source))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NAPARI_UNET_CONFIG_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "no-session")],
        capture_output=True, text=True, timeout=420, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("source", "unguarded"),
    [
        ("import napari\nviewer = napari.Viewer()\nnapari.run()\n", True),
        ("from napari import Viewer\ndef main():\n    Viewer()\nmain()\n", True),
        ("import napari\nif __name__ == '__main__':\n    napari.Viewer()\n", False),
        ("import napari\ndef main():\n napari.run()\nif '__main__' == __name__:\n main()\n", False),
        ("import logging\nlogging.basicConfig()\nX = 3\n", False),
    ],
)  # fmt: skip
def test_the_ast_check(source: str, unguarded: bool) -> None:
    assert opens_napari_unguarded(source) is unguarded


def test_an_unguarded_script_is_refused_before_spawning(tmp_path) -> None:
    done = run_script(tmp_path, BODY + "\nmain()\n")
    assert f"REFUSED: my_analysis.py: {UNGUARDED_MESSAGE}" in done.stdout, done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_trainer_rerunning_the_script_exits_with_the_sentence(tmp_path) -> None:
    done = run_script(tmp_path, BODY + "\nmain(bypass_parent_check=True)\n")
    assert f"FAILED: [{UNGUARDED_MESSAGE!r}]" in done.stdout, (done.stdout, done.stderr[-3000:])
    assert "exit code -6" not in done.stdout + done.stderr


def test_a_guarded_script_spawns_the_trainer(tmp_path) -> None:
    done = run_script(tmp_path, BODY + "\nif __name__ == '__main__':\n    main()\n")
    assert "FAILED: [" in done.stdout, done.stderr[-3000:]
    failures = done.stdout.split("FAILED:", 1)[1]
    assert UNGUARDED_MESSAGE not in failures and "unexpectedly" not in failures  # the trainer
    # itself ran and said what is wrong with this request (there is no session folder)
    assert "no-session" in failures or "session" in failures.lower(), failures
