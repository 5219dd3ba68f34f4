"""ONNX export of every tiny stage: names, dynamic batch, parity with PyTorch, manifest."""

import json

import numpy as np
import pytest

from ditto_triton.export.checkpoints import load_checkpoint
from ditto_triton.export.cli import main as cli_main
from ditto_triton.export.onnx_io import check_onnx_io
from ditto_triton.export.ort_runtime import ort_session
from ditto_triton.export.parity import TOLERANCE, compare
from ditto_triton.export.pipeline import ExportOptions, ParityError, export_all
from ditto_triton.export.registry import STAGE_NETWORKS
from ditto_triton.export.sample_inputs import sample_inputs
from ditto_triton.manifest import read_manifest, sha256_file
from ditto_triton.profiles import TINY
from ditto_triton.stages import STAGE_ORDER, stage_specs

SPECS = stage_specs(TINY)


@pytest.fixture(scope="module")
def exported(tiny_export):
    return tiny_export


def test_manifest_lists_every_stage_with_its_file(exported):
    manifest = read_manifest(exported)
    assert manifest["profile"] == "tiny" and manifest["opset"] >= 20
    assert list(manifest["stages"]) == list(STAGE_ORDER)
    for name, entry in manifest["stages"].items():
        path = exported / entry["file"]
        assert entry["file"] == SPECS[name].onnx_file
        assert entry["sha256"] == sha256_file(path)
        assert [i["name"] for i in entry["inputs"]] == SPECS[name].input_names
        assert [o["name"] for o in entry["outputs"]] == SPECS[name].output_names
        assert entry["weights"]["kind"] == "synthetic"
        check_onnx_io(path, SPECS[name])


def test_recorded_parity_is_within_tolerance(exported):
    for name, entry in read_manifest(exported)["stages"].items():
        cases = entry["parity"]
        if SPECS[name].batch_dynamic:
            assert "batch=2" in cases, name
        for case, errors in cases.items():
            assert set(errors) == set(SPECS[name].output_names)
            assert max(errors.values()) <= TOLERANCE, (name, case, errors)


@pytest.mark.parametrize("name", [n for n in STAGE_ORDER if SPECS[n].checkpoint_file])
def test_onnx_equals_the_checkpoint_at_an_unseen_batch(exported, name):
    """Rebuild the network from the written checkpoint and compare at batch 3 (export traced batch 1)."""
    net, spec = STAGE_NETWORKS[name], SPECS[name]
    module = net.build(TINY)
    load_checkpoint(
        net.state_module(module), exported / "synthetic_weights" / "models" / spec.checkpoint_file, net.nesting
    )
    module.eval()
    net.prepare_export(module)
    inputs = sample_inputs(spec, batch=3, seed=123)
    errors = compare(module, ort_session(exported / spec.onnx_file), spec.input_names, inputs)
    assert max(errors.values()) <= TOLERANCE, errors


def test_hubert_follows_the_window_length(exported):
    session = ort_session(exported / "hubert.onnx")
    for samples, frames in ((6480, 20), (6480 + 3200, 30)):
        x = sample_inputs(SPECS["hubert"], samples=samples)
        (out,) = session.run(None, x)
        assert out.shape == (frames, TINY.hubert.hidden_size)


def test_released_layout_directory_gives_the_same_graph(exported, tmp_path):
    """Pointing --weights at a ditto_pytorch-style directory reproduces the synthetic export bit for bit."""
    weights = exported / "synthetic_weights"
    assert cli_main(["--profile", "tiny", "--weights", str(weights), "--out", str(tmp_path), "--no-parity"]) == 0
    ours, theirs = read_manifest(tmp_path)["stages"], read_manifest(exported)["stages"]
    for name in STAGE_ORDER:
        assert ours[name]["weights"]["kind"] == "checkpoint", name
        assert ours[name]["sha256"] == theirs[name]["sha256"], name


def test_parity_failure_stops_the_export(tmp_path):
    with pytest.raises(ParityError, match="stitch_network: ONNX Runtime differs"):
        export_all(ExportOptions(profile=TINY, out=tmp_path, stages=("stitch_network",), tolerance=-1.0))


def test_cli_reports_a_missing_weights_file(tmp_path, capsys):
    (tmp_path / "w" / "models").mkdir(parents=True)
    code = cli_main(["--weights", str(tmp_path / "w"), "--out", str(tmp_path / "o"), "--stages", "decoder"])
    assert code == 2
    assert "decoder.pth: checkpoint file not found" in capsys.readouterr().err.replace("\n", "")


def test_cli_writes_timing(tmp_path):
    assert cli_main(["--out", str(tmp_path), "--stages", "stitch_network", "--timing", "2"]) == 0
    entry = json.loads((tmp_path / "manifest.json").read_text())["stages"]["stitch_network"]
    assert entry["timing"]["ort_ms"] > 0 and entry["timing"]["torch_ms"] > 0
    assert np.isfinite(entry["params"])
