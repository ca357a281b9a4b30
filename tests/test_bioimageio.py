"""bioimage.io export: the package is a valid model description, its test output is what the
network computes, bioimageio.core runs it, and bad input gets a message, never a half file."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from napari_unet.cli import main as cli_main
from napari_unet.core.checkpoint.bioimageio_export import (
    ONNX_OPSET,
    BioimageioExportConfig,
    export_bioimageio,
    scale_range,
)
from napari_unet.core.checkpoint.format import load_checkpoint, save_checkpoint
from napari_unet.core.errors import ChannelMismatchError, UserInputError
from napari_unet.core.models import build_model
from napari_unet.core.models.export import ProbabilityNet

CASES = {  # arch, settings, task, input channels
    "unet-semantic": ("unet", {"depth": 2, "base_channels": 4, "out_channels": 3}, "semantic", 1),
    "original-binary": ("unet_original", {"depth": 2, "base_channels": 4}, "binary", 1),
    "unetpp-instances": ("unetpp", {"depth": 2, "base_channels": 4}, "instances", 2),
    "unet-restoration": ("unet", {"depth": 2, "base_channels": 4}, "restoration", 1),
}


def _checkpoint(tmp_path: Path, case: str, **provenance) -> Path:
    arch, settings, task, channels = CASES[case]
    out = {"binary": 1, "instances": 3, "restoration": 1}.get(task, settings.get("out_channels"))
    settings = {**settings, "in_channels": channels, "out_channels": out}
    torch.manual_seed(0)
    model = build_model(arch, **settings)
    path = tmp_path / f"{case}.pt"
    normalization = {"mode": "percentile", "low": 2.0, "high": 99.0}
    return save_checkpoint(
        path, model, task=task, normalization=normalization, provenance=provenance
    )


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data))


@pytest.mark.parametrize("case", sorted(CASES))
def test_package_reproduces_the_network_and_states_its_geometry(case, tmp_path, rng) -> None:
    loaded = load_checkpoint(_checkpoint(tmp_path, case))
    channels = loaded.info.in_channels
    sample = rng.uniform(0, 4000, size=(channels, 120, 100)).astype(np.uint16)
    path = export_bioimageio(loaded, tmp_path / "out" / "model", sample=sample)
    assert path.name == "model.zip"
    files = _members(path)
    rdf = yaml.safe_load(files["rdf.yaml"])
    for member in ("README.md", "cover.png", "test_input.npy", "test_output.npy", "weights.pt"):
        assert member in files
    state = rdf["weights"]["pytorch_state_dict"]
    assert state["sha256"] == hashlib.sha256(files["weights.pt"]).hexdigest()
    kwargs = state["architecture"]["kwargs"]
    net = ProbabilityNet(**kwargs)
    net.load_state_dict(torch.load(io.BytesIO(files["weights.pt"]), weights_only=True))
    net.eval()
    raw = _npy(files["test_input.npy"])
    assert raw.shape[:2] == (1, channels) and raw.shape[2] == raw.shape[3] <= 100
    step = rdf["inputs"][0]["axes"][2]["size"]
    assert (raw.shape[2] - step["min"]) % step["step"] == 0
    # the package's preprocessing (scale_range 2-99 %) then the net gives the stored output
    assert rdf["inputs"][0]["preprocessing"][1]["kwargs"]["min_percentile"] == 2.0
    with torch.no_grad():
        expected = net(torch.from_numpy(scale_range(raw, 2.0, 99.0))).numpy()
    output = _npy(files["test_output.npy"])
    np.testing.assert_allclose(output, expected, atol=1e-5)
    margin = loaded.model.margin
    assert output.shape[2:] == (raw.shape[2] - 2 * margin,) * 2
    assert rdf["outputs"][0]["axes"][2]["size"]["offset"] == -2 * margin
    assert len(rdf["outputs"][0]["axes"][1]["channel_names"]) == loaded.info.out_channels
    if loaded.info.task in ("semantic", "instances"):
        np.testing.assert_allclose(output.sum(axis=1), 1.0, atol=1e-5)  # softmax built in
    if "weights_torchscript.pt" in files:  # needs nothing but PyTorch
        scripted = torch.jit.load(io.BytesIO(files["weights_torchscript.pt"]))
        with torch.no_grad():
            traced = scripted(torch.from_numpy(scale_range(raw, 2.0, 99.0))).numpy()
        np.testing.assert_allclose(traced, expected, atol=1e-5)
    assert "weights.onnx" in files  # listed with its opset, checked against the state dict
    onnx_entry = rdf["weights"]["onnx"]
    assert onnx_entry["sha256"] == hashlib.sha256(files["weights.onnx"]).hexdigest()
    assert (
        onnx_entry["opset_version"] == ONNX_OPSET and onnx_entry["parent"] == "pytorch_state_dict"
    )
    try:
        import onnxruntime
    except ImportError:
        return  # the ONNX run is checked by test_bioimageio_core_runs_each_weight_format
    session = onnxruntime.InferenceSession(
        files["weights.onnx"], providers=["CPUExecutionProvider"]
    )
    (run,) = session.run(None, {"input": scale_range(raw, 2.0, 99.0)})
    np.testing.assert_allclose(run, expected, atol=1e-4)


def test_lineage_and_card_reach_the_readme_and_config(tmp_path) -> None:
    checkpoint = _checkpoint(tmp_path, "unet-semantic", parent="em-membranes")
    lineage = [
        {"id": "v002", "name": "second", "parent": "v001", "steps": 40, "metrics": {"score": 0.8}},
        {"id": "v001", "name": "first", "parent": "em-membranes", "steps": 20, "metrics": {}},
    ]
    path = export_bioimageio(
        load_checkpoint(checkpoint),
        tmp_path / "m.zip",
        lineage=lineage,
        config=BioimageioExportConfig(name="my EM model", authors=("A. Biologist",)),
    )
    files = _members(path)
    rdf = yaml.safe_load(files["rdf.yaml"])
    assert rdf["name"] == "my EM model" and rdf["authors"] == [{"name": "A. Biologist"}]
    ours = rdf["config"]["napari-unet-loop"]
    assert ours["parent"] == "em-membranes" and [e["id"] for e in ours["lineage"]] == [
        "v002",
        "v001",
    ]
    readme = files["README.md"].decode()
    assert "Fine-tuned from: `em-membranes`" in readme and "Version `v002`" in readme
    assert "score 0.8000" in readme  # the held-back score is the validation section


def test_package_is_a_valid_bioimageio_description(tmp_path) -> None:
    spec = pytest.importorskip("bioimageio.spec")
    loaded = load_checkpoint(_checkpoint(tmp_path, "original-binary"))
    path = export_bioimageio(loaded, tmp_path / "m.zip")
    description = spec.load_description(path)
    summary = description.validation_summary
    assert summary.status == "valid-format", summary.format()


@pytest.fixture(scope="module")
def semantic_package(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("package")
    loaded = load_checkpoint(_checkpoint(folder, "unet-semantic"))
    return export_bioimageio(loaded, folder / "m.zip", config=BioimageioExportConfig(test_size=64))


@pytest.mark.parametrize("weight_format", ["pytorch_state_dict", "torchscript", "onnx"])
def test_bioimageio_core_runs_each_weight_format(semantic_package, weight_format) -> None:
    core = pytest.importorskip("bioimageio.core")
    if weight_format == "onnx":
        pytest.importorskip(
            "onnxruntime", reason="onnxruntime is not installed: the ONNX weights cannot run here"
        )
    rdf = yaml.safe_load(_members(semantic_package)["rdf.yaml"])
    assert weight_format in rdf["weights"]
    summary = core.test_model(semantic_package, weight_format=weight_format)
    failed = [d.name for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    assert any(weight_format in d.name for d in summary.details)  # that format really ran


def test_the_package_with_onnx_weights_is_valid_without_onnxruntime(tmp_path, monkeypatch) -> None:
    import builtins

    spec = pytest.importorskip("bioimageio.spec")
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    loaded = load_checkpoint(_checkpoint(tmp_path, "unet-semantic"))
    path = export_bioimageio(
        loaded, tmp_path / "m.zip", config=BioimageioExportConfig(test_size=64)
    )
    files = _members(path)
    assert "weights.onnx" in files  # exported unrun; the format check still passes
    summary = spec.load_description(path).validation_summary
    assert summary.status == "valid-format", summary.format()


def test_bad_sample_and_unwritable_target_give_messages_and_no_file(tmp_path) -> None:
    loaded = load_checkpoint(_checkpoint(tmp_path, "unet-semantic"))
    with pytest.raises(UserInputError, match=r"\(C, Y, X\) with C = 1"):
        export_bioimageio(loaded, tmp_path / "a.zip", sample=np.zeros((3, 64, 64)))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserInputError, match="could not write"):
        export_bioimageio(loaded, blocker / "m.zip")
    assert not (tmp_path / "a.zip").exists() and list(tmp_path.glob("*.zip")) == []


def test_predict_cli_takes_a_package_as_its_model(tmp_path) -> None:
    import tifffile

    package = export_bioimageio(
        load_checkpoint(_checkpoint(tmp_path, "unet-semantic")), tmp_path / "m.zip"
    )
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((32, 32), np.uint8))
    argv = ["predict", str(tmp_path / "img.tif"), "--model", str(package)]
    assert cli_main([*argv, "--out", str(tmp_path / "out")]) == 0
    assert tifffile.imread(tmp_path / "out" / "img_labels.tif").shape == (32, 32)


def test_cli_exports_a_builtin_with_a_sample(tmp_path, capsys) -> None:
    image = np.random.default_rng(0).uniform(0, 255, (3, 96, 80)).astype(np.uint8)
    import tifffile

    tifffile.imwrite(tmp_path / "stack.tif", image, photometric="minisblack")
    out = tmp_path / "em.zip"
    argv = ["export", "em-membranes", "--out", str(out), "--sample", str(tmp_path / "stack.tif")]
    argv += ["--axes", "ZYX", "--no-torchscript", "--no-onnx", "--author", "Me"]
    assert cli_main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)
    files = _members(out)
    assert "weights_torchscript.pt" not in files and "weights.onnx" not in files
    assert set(yaml.safe_load(files["rdf.yaml"])["weights"]) == {"pytorch_state_dict"}
    raw = _npy(files["test_input.npy"])
    np.testing.assert_array_equal(raw[0, 0], image[1, 8:88, :80].astype(np.float32))  # middle
    rdf = yaml.safe_load(files["rdf.yaml"])
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == ["interior", "membrane"]
    assert "## Validation" in files["README.md"].decode()
    assert cli_main([*argv, "--axes", "CYX"]) == 2  # three channels for a one-channel model
    assert "channel" in capsys.readouterr().err


def test_nan_in_the_sample_never_reaches_the_test_tensors(tmp_path) -> None:
    loaded = load_checkpoint(_checkpoint(tmp_path, "unet-semantic"))
    sample = np.random.default_rng(0).uniform(0, 1, (1, 40, 40)).astype(np.float32)
    sample[0, :5] = np.nan
    sample[0, 10, 10] = np.inf
    files = _members(export_bioimageio(loaded, tmp_path / "m.zip", sample=sample))
    for member in ("test_input.npy", "test_output.npy"):
        assert np.isfinite(_npy(files[member])).all(), member


def test_model_names_follow_the_bioimageio_rules() -> None:
    from napari_unet.core.checkpoint.bioimageio_export import model_name

    assert model_name("m") == "m U-Net"
    assert model_name("v003: nuclei/membranes #2") == "v003 nuclei membranes 2"
    assert len(model_name("x" * 200)) == 64


def test_channel_mismatch_is_the_axes_error_users_know() -> None:
    from napari_unet.core.checkpoint.bioimageio_export import sample_slice

    with pytest.raises(ChannelMismatchError):
        sample_slice(np.zeros((3, 32, 32)), "CYX", 1)
    assert sample_slice(np.zeros((5, 2, 32, 32)), "ZCYX", 2).shape == (2, 32, 32)


def test_a_package_we_exported_opens_as_a_checkpoint_and_predicts_the_same(tmp_path) -> None:
    from napari_unet.core.checkpoint.format import read_checkpoint_info
    from napari_unet.core.inference.prediction import PredictConfig, predict

    original = load_checkpoint(_checkpoint(tmp_path, "unetpp-instances", parent="fluo-nuclei"))
    path = export_bioimageio(original, tmp_path / "shared.zip", config=BioimageioExportConfig())
    info = read_checkpoint_info(path)
    assert (info.arch, info.task, info.in_channels) == ("unetpp", "instances", 2)
    assert info.provenance["parent"] == "fluo-nuclei"
    assert info.provenance["bioimageio_package"]["file"] == str(path)
    opened = load_checkpoint(path)
    assert opened.info.normalization == original.info.normalization
    image = np.random.default_rng(1).uniform(0, 255, (2, 48, 40)).astype(np.float32)
    config = PredictConfig(device="cpu")
    expected = predict(original.model, image, "CYX", task="instances", config=config)
    got = predict(opened.model, image, "CYX", task="instances", config=config)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_packages_from_other_tools_and_damaged_ones_are_refused(tmp_path) -> None:
    from napari_unet.core.errors import CheckpointError

    good = export_bioimageio(
        load_checkpoint(_checkpoint(tmp_path, "unet-semantic")), tmp_path / "good.zip"
    )
    files = _members(good)
    rdf = yaml.safe_load(files["rdf.yaml"])
    foreign = dict(rdf, config={}, name="StarDist nuclei")
    _write_zip(tmp_path / "foreign.zip", {**files, "rdf.yaml": yaml.safe_dump(foreign).encode()})
    with pytest.raises(CheckpointError, match=r"from another tool.*bioimageio\.core"):
        load_checkpoint(tmp_path / "foreign.zip")
    weights = bytearray(files["weights.pt"])
    weights[-100] ^= 0xFF
    _write_zip(tmp_path / "flipped.zip", {**files, "weights.pt": bytes(weights)})
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(tmp_path / "flipped.zip")
    del files["weights.pt"]
    _write_zip(tmp_path / "missing.zip", files)
    with pytest.raises(CheckpointError, match="lacks its weights"):
        load_checkpoint(tmp_path / "missing.zip")


def _write_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def test_a_flipped_normalisation_is_exported_as_scale_linear_and_runs_in_bioimageio_core(
    tmp_path,
) -> None:
    """A model trained on flipped intensities (``NormalizationConfig.invert``) exports the flip as
    the last preprocessing step, so other tools feed it as napari-unet-loop does."""
    core = pytest.importorskip("bioimageio.core")
    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=3)
    normalization = {"mode": "percentile", "low": 2.0, "high": 99.0, "invert": True}
    checkpoint = save_checkpoint(
        tmp_path / "flipped.pt", model, task="semantic", normalization=normalization
    )
    loaded = load_checkpoint(checkpoint)
    path = export_bioimageio(
        loaded, tmp_path / "m.zip", config=BioimageioExportConfig(test_size=64)
    )
    members = _members(path)
    rdf = yaml.safe_load(members["rdf.yaml"])
    steps = rdf["inputs"][0]["preprocessing"]
    assert steps[-1] == {"id": "scale_linear", "kwargs": {"gain": -1.0, "offset": 1.0}}
    net = ProbabilityNet(**rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"])
    net.load_state_dict(torch.load(io.BytesIO(members["weights.pt"]), weights_only=True))
    raw = _npy(members["test_input.npy"])
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(1.0 - scale_range(raw, 2.0, 99.0))).numpy()
    stored = _npy(members["test_output.npy"])
    np.testing.assert_allclose(stored, expected, atol=1e-5)
    summary = core.test_model(path, weight_format="pytorch_state_dict")
    assert summary.status == "passed", [d.name for d in summary.details if d.status != "passed"]
