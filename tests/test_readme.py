"""The README's set-up commands are the ones CI runs, and its links point at real files."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = _bash_blocks(readme)
    test_commands = [b for b in blocks if "pytest" in b]
    assert len(test_commands) == 1, "the README must have exactly one test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_commands[0] in ci.splitlines()


def test_readme_has_the_main_job_command_and_no_placeholders() -> None:
    readme = (ROOT / "README.md").read_text()
    assert any("napari-unet-loop gui" in b for b in _bash_blocks(readme))
    for placeholder in ("BUILTIN_TABLE", "BENCH_TABLES", "CURVES", "TODO"):
        assert placeholder not in readme


def test_readme_images_and_links_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if target.startswith("http"):
            continue
        assert (ROOT / target).exists(), target


def test_readme_installs_the_cpu_build_of_torch() -> None:
    """A plain ``pip install torch`` on Linux pulls the CUDA build (several GB): the README's
    commands take the CPU index and say how to check which build is installed."""
    readme = (ROOT / "README.md").read_text()
    installs = [b for b in _bash_blocks(readme) if "pip install" in b and "-e " in b]
    assert installs, "the README has no install command"
    for block in installs:
        assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in block
    assert "torch.cuda.is_available()" in readme
