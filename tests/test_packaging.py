"""The distribution the napari hub installs: a wheel with the built-in weights, the licence and
metadata, and no hard dependency on napari (so ``pip install napari-unet-loop`` works headless)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # stale build/lib files would enter the wheel
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = out.glob("napari_unet_loop-*.whl")
    return path


@pytest.mark.slow
def test_wheel_ships_the_builtin_models_manifest_and_licence(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("napari_unet/builtin_models/")}
    expected = {
        p.name
        for p in (ROOT / "napari_unet" / "builtin_models").iterdir()
        if p.suffix in {".pt", ".json"}
    }
    assert expected and expected <= shipped
    assert "napari_unet/napari.yaml" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


@pytest.mark.slow
def test_wheel_metadata_spdx_licence_urls_and_napari_optional(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (meta_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(archive.read(meta_name).decode())
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert "Framework :: napari" in meta.get_all("Classifier")
    assert any(url.startswith("Source Code,") for url in meta.get_all("Project-URL"))
    requires = meta.get_all("Requires-Dist")
    hard = [r for r in requires if "extra ==" not in r]
    assert not [r for r in hard if r.split()[0].startswith("napari")], hard
    assert any(r.startswith("napari[all]") and 'extra == "gui"' in r for r in requires)
    assert meta["Description-Content-Type"] == "text/markdown"


def test_gui_without_napari_says_what_to_install(monkeypatch, capsys) -> None:
    """``pip install napari-unet-loop`` has no napari: ``gui`` says how to get it, in one line."""
    from napari_unet.cli import main

    monkeypatch.setitem(sys.modules, "napari", None)  # import napari -> ImportError
    assert main(["gui", "--no-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "napari-unet-loop[all]" in err and "\n" not in err and "Traceback" not in err


#: Where the README's absolute links into this repository point (PyPI and the hub render the
#: README away from the repository, so a relative link or image there is dead).
REPO_URLS = (
    "https://raw.githubusercontent.com/napari-unet-loop/napari-unet-loop/main/",
    "https://github.com/napari-unet-loop/napari-unet-loop/blob/main/",
)


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    import re

    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_and_images_work_on_pypi_and_the_hub() -> None:
    """Every link and image is absolute (into this repo: to a file that exists) or an anchor of
    one of the README's own headings; images are absolute (PyPI shows no relative image)."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    headings = {_slug(line.lstrip("#")) for line in prose.splitlines() if line.startswith("#")}
    targets = re.findall(r"(!?)\[[^\]]*\]\(([^)\s]+)[^)]*\)", prose)
    targets += [("!", src) for src in re.findall(r"<img[^>]+src=\"([^\"]+)\"", prose)]
    assert len(targets) > 10
    bad = []
    for image, target in targets:
        if target.startswith("#") and not image:
            ok = target[1:] in headings
        elif target.startswith(REPO_URLS):
            path = target.split("/main/", 1)[1].split("#")[0]
            ok = (ROOT / path).is_file()
        else:
            ok = target.startswith("https://")
        if not ok:
            bad.append(target)
    assert bad == [], "make these absolute (REPO_URLS + a path that exists) or fix the anchor"
