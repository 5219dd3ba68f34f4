"""Polygraphy in the export: the sanitised graphs are what is written, and every TensorRT plan is
compared with ONNX Runtime (here with a second ONNX Runtime standing in for TensorRT)."""

import json
import shutil
from dataclasses import asdict

import numpy as np
import onnx
import polygraphy
import pytest
from onnx import helper, numpy_helper
from polygraphy.comparator import IterationResult, RunResults

from ditto_triton.export import engine_compare as ec
from ditto_triton.export import engine_plan as ep
from ditto_triton.export import tensorrt_build
from ditto_triton.export.checkpoints import load_checkpoint
from ditto_triton.export.onnx_export import export_stage
from ditto_triton.export.onnx_sanitize import fold_model, sanitize_model
from ditto_triton.export.ort_runtime import ort_session
from ditto_triton.export.registry import STAGE_NETWORKS
from ditto_triton.export.sample_inputs import sample_inputs
from ditto_triton.face_models import FACE_MODELS
from ditto_triton.manifest import read_manifest
from ditto_triton.profiles import TINY
from ditto_triton.stages import DYNAMIC, STAGE_ORDER, stage_specs

SPECS = stage_specs(TINY)


def perturbed_copy(src, dst, offset: float) -> None:
    """`src` with `offset` added to its first output: a plan that computes something else."""
    model = onnx.load(str(src))
    output = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{name}_unperturbed" if name == output else name for name in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array(offset, np.float32), "perturbation"))
    model.graph.node.append(helper.make_node("Add", [f"{output}_unperturbed", "perturbation"], [output]))
    onnx.save(model, str(dst))


def run_results(reference: dict[str, np.ndarray], found: dict[str, np.ndarray]) -> RunResults:
    results = RunResults()
    results.append((ec.ORT_RUNNER, [IterationResult(reference, runner_name=ec.ORT_RUNNER)]))
    results.append((ec.TRT_RUNNER, [IterationResult(found, runner_name=ec.TRT_RUNNER)]))
    return results


# -- the tolerances (unit) ----------------------------------------------------------------------


def test_tolerance_table_covers_every_stage_by_its_precision():
    assert set(ec.COMPARE_TOLERANCES) == set(STAGE_ORDER) | set(FACE_MODELS)
    fp32, fp16 = ec.PRECISION_TOLERANCES["fp32"], ec.PRECISION_TOLERANCES["fp16"]
    assert fp32.atol < fp16.atol and fp32.rtol < fp16.rtol
    for stage, tolerance in ec.COMPARE_TOLERANCES.items():
        assert tolerance == ec.PRECISION_TOLERANCES[ep.precision(stage)], stage
    assert {s for s, t in ec.COMPARE_TOLERANCES.items() if t == fp32} == ep.FP32_STAGES
    assert json.loads(json.dumps({s: asdict(t) for s, t in ec.COMPARE_TOLERANCES.items()}))["lmdm"] == asdict(fp32)
    with pytest.raises(ep.EnginePlanError, match="no comparison tolerance"):
        ec.tolerance_for("not_a_stage")


def test_an_output_beyond_the_tolerance_fails_naming_stage_case_output_and_error():
    rng = np.random.default_rng(0)
    ref = {"pitch": rng.normal(size=(2, 66)).astype(np.float32), "kp": rng.normal(size=(2, 63)).astype(np.float32)}
    drift = {"pitch": ref["pitch"] + 1e-4, "kp": ref["kp"] + 2e-2}
    with pytest.raises(ec.EngineMismatch) as failed:
        ec.check_accuracy(
            "motion_extractor", run_results(ref, drift), ["batch=2"], ec.tolerance_for("motion_extractor")
        )
    message = str(failed.value)
    assert message.startswith("motion_extractor: tensorrt differs from onnxruntime")
    assert "output 'kp' (batch=2): max abs error 2.00e-02 (atol 5e-03)" in message
    assert "'pitch'" not in message and "--no-compare" in message
    # the same drift is within an fp16 stage's tolerance
    errors = ec.check_accuracy("decoder", run_results(ref, drift), ["batch=2"], ec.tolerance_for("decoder"))
    assert errors["batch=2"]["kp"]["max_abs"] == pytest.approx(2e-2, rel=1e-3)
    assert errors["batch=2"]["pitch"]["max_abs"] == pytest.approx(1e-4, rel=1e-2)


def test_nan_missing_and_misshapen_outputs_fail():
    ref = {"out": np.ones((1, 21, 3), np.float32), "extra": np.zeros((1, 3), np.float32)}
    nan = {"out": np.full((1, 21, 3), np.nan, np.float32), "extra": ref["extra"]}
    with pytest.raises(ec.EngineMismatch, match="output 'out' \\(fixed shape\\): max abs error nan"):
        ec.check_accuracy("stitch_network", run_results(ref, nan), ["fixed shape"], ec.tolerance_for("stitch_network"))
    with pytest.raises(ec.EngineMismatch, match="output 'extra' \\(fixed shape\\): missing"):
        ec.check_accuracy(
            "stitch_network", run_results(ref, {"out": ref["out"]}), ["fixed shape"], ec.tolerance_for("stitch_network")
        )
    wrong_shape = {"out": np.ones((2, 21, 3), np.float32), "extra": ref["extra"]}
    with pytest.raises(ec.EngineMismatch, match="output 'out' \\(fixed shape\\): shape \\(2, 21, 3\\), expected"):
        ec.check_accuracy(
            "stitch_network", run_results(ref, wrong_shape), ["fixed shape"], ec.tolerance_for("stitch_network")
        )


# -- the sanitised export (integration: the tiny export) ----------------------------------------


def test_written_graphs_are_sanitised_and_keep_their_dynamic_axes(tiny_export):
    manifest = read_manifest(tiny_export)
    assert manifest["versions"]["polygraphy"] == polygraphy.__version__
    for name, entry in manifest["stages"].items():
        model = onnx.load(str(tiny_export / entry["file"]))
        record = entry["sanitized"]
        assert (record["tool"], record["version"], record["fold_shapes"]) == (
            "polygraphy",
            polygraphy.__version__,
            False,
        )
        assert len(model.graph.node) == record["nodes_after"] < record["nodes_before"], name
        assert not [n for n in model.graph.node if n.op_type == "Constant"], name
        assert len(fold_model(model).graph.node) == len(model.graph.node), f"{name}: foldable constants remain"
        for value, tensor in zip(model.graph.input, SPECS[name].inputs):
            dims = value.type.tensor_type.shape.dim
            symbolic = [i for i, d in enumerate(dims) if not d.HasField("dim_value")]
            assert symbolic == [i for i, d in enumerate(tensor.shape) if d == DYNAMIC], (name, tensor.name)
        assert set(entry["parity"]) >= ({"batch=2"} if SPECS[name].batch_dynamic else {"samples=9680"})


@pytest.mark.integration
def test_the_written_graph_is_the_sanitised_raw_export(tiny_export, tmp_path):
    """Export the stitch network again without the sanitiser: sanitising that gives the written file."""
    net, spec = STAGE_NETWORKS["stitch_network"], SPECS["stitch_network"]
    module = net.build(TINY)
    load_checkpoint(
        net.state_module(module), tiny_export / "synthetic_weights" / "models" / spec.checkpoint_file, net.nesting
    )
    module.eval()
    net.prepare_export(module)
    raw_path = tmp_path / "raw.onnx"
    assert export_stage(module, spec, sample_inputs(spec, seed=0), raw_path, sanitize=False) is None
    raw = onnx.load(str(raw_path))
    assert any(n.op_type == "Constant" for n in raw.graph.node)
    raw_nodes = len(raw.graph.node)
    sanitised, record = sanitize_model(raw)
    assert record["nodes_before"] == raw_nodes > record["nodes_after"] == len(sanitised.graph.node)
    assert sanitised.SerializeToString() == onnx.load(str(tiny_export / spec.onnx_file)).SerializeToString()
    for batch in (1, 2):
        x = sample_inputs(spec, batch=batch, seed=batch)
        found = ort_session(tiny_export / spec.onnx_file).run(None, x)
        np.testing.assert_array_equal(found[0], ort_session(raw_path).run(None, x)[0])


# -- the comparator's ONNX Runtime side (integration) -------------------------------------------


def builds_of(export_dir, warp_runner="torch"):
    return {b.stage: b for b in ep.plan_builds(export_dir, max_batch_size=8, warp_runner=warp_runner)}


def test_every_planned_build_gets_the_tolerance_of_its_precision(tiny_export):
    for build in builds_of(tiny_export, "plugin").values():
        assert ec.tolerance_for(build.stage) == ec.PRECISION_TOLERANCES[build.precision], build.stage


@pytest.mark.parametrize("stage", ["motion_extractor", "hubert"])
def test_the_onnx_runtime_runner_gives_the_outputs_the_comparison_uses(tiny_export, stage):
    build, spec = builds_of(tiny_export)[stage], SPECS[stage]
    cases = ec.compare_cases(spec, build)
    expected = ["batch=1", "batch=8"] if spec.batch_dynamic else ["samples=3240", "samples=12960"]
    assert [label for label, _ in cases] == expected
    results = ec.run_cases([ec.ort_runner(build.onnx, threads=2)], cases)
    [(runner, iterations)] = list(results.items())
    assert runner == ec.ORT_RUNNER and len(iterations) == 2
    session = ort_session(build.onnx)
    for (_, feed), outputs in zip(cases, iterations):
        assert list(outputs.keys()) == spec.output_names
        for name, value in zip(spec.output_names, session.run(None, feed)):
            assert np.isfinite(outputs[name]).all()
            np.testing.assert_array_equal(outputs[name], value)


def test_a_perturbed_graph_fails_the_comparison_and_an_equal_one_passes(tiny_export, tmp_path):
    build = builds_of(tiny_export)["stitch_network"]
    cases = ec.compare_cases(SPECS["stitch_network"], build)
    tolerance = ec.tolerance_for("stitch_network")
    reference = ec.ort_runner(build.onnx, threads=2)
    perturbed_copy(build.onnx, tmp_path / "within.onnx", tolerance.atol / 10)
    perturbed_copy(build.onnx, tmp_path / "beyond.onnx", tolerance.atol * 2)
    stand_in = lambda path: ec.OnnxrtRunner(ort_session(path), name=ec.TRT_RUNNER)  # noqa: E731
    record = ec.compare_runners("stitch_network", [reference, stand_in(tmp_path / "within.onnx")], cases, tolerance)
    assert record["atol"] == tolerance.atol and record["tool"] == f"polygraphy {polygraphy.__version__}"
    assert set(record["errors"]) == {"batch=1", "batch=8"}
    assert record["errors"]["batch=8"]["out"]["max_abs"] == pytest.approx(tolerance.atol / 10, rel=1e-3)
    with pytest.raises(ec.EngineMismatch) as failed:
        ec.compare_runners("stitch_network", [reference, stand_in(tmp_path / "beyond.onnx")], cases, tolerance)
    assert f"output 'out' (batch=1): max abs error {tolerance.atol * 2:.2e} (atol {tolerance.atol:.0e})" in str(
        failed.value
    )


# -- the comparison inside ditto-trt-build, ONNX Runtime standing in for TensorRT (integration) ---


@pytest.fixture
def fake_tensorrt(monkeypatch, tiny_export):
    """ditto-trt-build with every TensorRT call replaced: a "plan" is an ONNX file (the decoder's
    perturbed when `perturb` is set) and the TrtRunner is an OnnxrtRunner on it."""
    state = {"perturb": False}

    def build_plan(build, out, *, plugin_library):
        if state["perturb"] and build.stage == "decoder":
            perturbed_copy(build.onnx, out, 1.0)
        else:
            shutil.copyfile(build.onnx, out)

    monkeypatch.setattr(tensorrt_build, "tensorrt_version", lambda: "10.7.0")
    monkeypatch.setattr(tensorrt_build, "server_tensorrt_version", lambda: None)
    monkeypatch.setattr(tensorrt_build, "init_plugins", lambda build, library: None)
    monkeypatch.setattr(tensorrt_build, "build_plan", build_plan)
    monkeypatch.setattr(ep, "gpu_identity", lambda device=0: {"name": "stand-in", "compute_capability": "9.0"})
    monkeypatch.setattr(ec, "trt_runner", lambda plan: ec.OnnxrtRunner(ort_session(plan), name=ec.TRT_RUNNER))
    return state


def test_trt_build_keeps_only_plans_that_match_onnx_runtime(tiny_export, tmp_path, fake_tensorrt, capsys):
    args = ["--export", str(tiny_export), "--engines", str(tmp_path), "--max-batch-size", "2"]
    fake_tensorrt["perturb"] = True
    assert tensorrt_build.main(args) == 2
    err = capsys.readouterr().err
    assert "ditto-trt-build: decoder: tensorrt differs from onnxruntime" in err
    assert "output 'output' (batch=1): max abs error 1.00e+00 (atol 5e-02)" in err
    assert not list(tmp_path.glob("decoder-*"))  # the failed plan is not cached

    assert tensorrt_build.main([*args, "--no-compare"]) == 0
    engines = json.loads((tmp_path / ep.ENGINES_MANIFEST).read_text())
    assert engines["compared_with_onnxruntime"] is False
    assert all(e["comparison"] is None for e in engines["engines"].values())

    # a build with the comparison checks the cached plans that were never compared, and drops a bad one
    fake_tensorrt["perturb"] = False
    assert tensorrt_build.main(args) == 2
    assert "decoder: tensorrt differs from onnxruntime" in capsys.readouterr().err
    assert not list(tmp_path.glob("decoder-*"))
    assert tensorrt_build.main(args) == 0
    engines = json.loads((tmp_path / ep.ENGINES_MANIFEST).read_text())["engines"]
    assert list(engines) == [s for s in STAGE_ORDER if s != ep.WARP_STAGE]
    for stage, entry in engines.items():
        comparison = entry["comparison"]
        assert asdict(ec.tolerance_for(stage)) == {k: comparison[k] for k in ("atol", "rtol")}
        cases = {"batch=1", "batch=2"} if SPECS[stage].batch_dynamic else {"samples=3240", "samples=12960"}
        assert set(comparison["errors"]) == cases
        assert max(e["max_abs"] for out in comparison["errors"].values() for e in out.values()) <= 1e-5
