"""Rendering the Triton model repository (four flavors), parsing it back, and validation catching
broken configs. Fast: no server."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ditto_triton.export.engine_plan import FP32_STAGES as TRT_FP32_STAGES
from ditto_triton.model_repository import pbtxt
from ditto_triton.model_repository.pbtxt import mc
from ditto_triton.model_repository.render import FLAVORS, MARKER, render_repository, stage_config, stage_runners
from ditto_triton.model_repository.service_configs import avatar_registry_config, orchestrator_config
from ditto_triton.model_repository.validate import RepositoryError, validate_repository
from ditto_triton.profiles import TINY
from ditto_triton.stages import STAGE_ORDER, stage_specs

SPECS = stage_specs(TINY)
ENSEMBLES = ("render_chain", "extractors")


@pytest.fixture(scope="module", params=FLAVORS)
def rendered(request, tiny_export, tmp_path_factory):
    flavor = request.param
    repo = render_repository(tiny_export, tmp_path_factory.mktemp(flavor) / "repo", flavor, include_services=False)
    return flavor, repo


def _runner(flavor: str, stage: str) -> str:
    """What serves each stage by default: the flavor's own backend; the GPU flavors' warp network
    and every torch stage run PyTorch (on GPU instances, the torch flavor's default)."""
    if flavor == "python-ort":
        return "ort"
    if flavor == "torch" or stage == "warp_network":
        return "torch"
    return flavor


def test_render_layout_and_validation(rendered, tiny_export):
    flavor, repo = rendered
    models = sorted(p.name for p in repo.iterdir() if p.is_dir())
    assert models == sorted([*STAGE_ORDER, *ENSEMBLES])
    validate_repository(repo, tiny_export)
    manifest = json.loads((tiny_export / "manifest.json").read_text())
    for stage in STAGE_ORDER:
        version = repo / stage / "1"
        runner = _runner(flavor, stage)
        if runner == "tensorrt":
            assert "model.plan" in (version / "README.txt").read_text()
        elif runner == "torch":
            checkpoint = manifest["stages"][stage]["weights"]["checkpoint"]
            assert (version / "model.pth").read_bytes() == open(checkpoint, "rb").read()
        else:
            assert (version / "model.onnx").read_bytes() == (tiny_export / SPECS[stage].onnx_file).read_bytes()
        shim = version / "model.py"
        if runner in ("ort", "torch"):
            assert "from ditto_triton.model_repository.backends.stage import TritonPythonModel" in shim.read_text()
            assert len([line for line in shim.read_text().splitlines() if line]) == 2
        else:
            assert not shim.exists()
    marker = json.loads((repo / MARKER).read_text())
    assert marker["flavor"] == flavor and marker["runners"] == {s: _runner(flavor, s) for s in STAGE_ORDER}


def test_every_config_parses_back_to_what_was_rendered(rendered):
    flavor, repo = rendered
    kind = pbtxt.KIND_CPU if flavor == "python-ort" else pbtxt.KIND_GPU
    for stage, spec in SPECS.items():
        parsed = pbtxt.read_config(repo / stage)
        assert parsed.name == stage
        assert parsed.instance_group[0].kind == kind
        expected = stage_config(spec, flavor, kind=kind, max_batch_size=8, runner=_runner(flavor, stage))
        assert parsed == expected
        assert pbtxt.names(parsed.input) == spec.input_names
        assert pbtxt.names(parsed.output) == spec.output_names
    for ensemble in ENSEMBLES:
        assert pbtxt.read_config(repo / ensemble).platform == "ensemble"


def test_flavor_specifics(rendered):
    flavor, repo = rendered
    config = {stage: pbtxt.read_config(repo / stage) for stage in STAGE_ORDER}
    natives = {s: c for s, c in config.items() if _runner(flavor, s) != "torch"}
    for stage, c in config.items():
        if _runner(flavor, stage) == "torch":
            params = pbtxt.get_parameters(c)
            assert c.backend == "python" and params["runner"] == "torch" and params["device"] == "cuda"
            assert params["precision"] == ("fp32" if stage in TRT_FP32_STAGES else "fp16"), stage
            assert params["profile"] == "tiny" and params["checkpoint_file"] == "model.pth"
    if flavor == "python-ort":
        assert all(c.backend == "python" and not c.platform for c in config.values())
        params = pbtxt.get_parameters(config["decoder"])
        assert params["onnx_file"] == "model.onnx" and int(params["ort_intra_op_threads"]) >= 1
    elif flavor == "onnxruntime":
        assert all(c.platform == "onnxruntime_onnx" for c in natives.values()) and "warp_network" not in natives
    elif flavor == "tensorrt":
        assert all(c.platform == "tensorrt_plan" for c in natives.values()) and "warp_network" not in natives
        for stage, c in natives.items():
            want = "fp32" if stage in TRT_FP32_STAGES else "fp16"
            assert pbtxt.get_parameters(c)["precision"] == want, stage
    else:
        assert not natives


def test_warp_runner_choices(tiny_export, tmp_path):
    plugin = render_repository(tiny_export, tmp_path / "p", "tensorrt", include_services=False, warp_runner="plugin")
    warp = pbtxt.read_config(plugin / "warp_network")
    assert warp.platform == "tensorrt_plan" and pbtxt.get_parameters(warp)["required_plugin"] == "GridSample3D"
    assert "GridSample3D" in (plugin / "warp_network" / "1" / "README.txt").read_text()
    validate_repository(plugin, tiny_export)
    ort = render_repository(
        tiny_export, tmp_path / "o", "onnxruntime", include_services=False, warp_runner="onnxruntime"
    )
    assert pbtxt.read_config(ort / "warp_network").platform == "onnxruntime_onnx"
    for flavor, runner in (("tensorrt", "onnxruntime"), ("onnxruntime", "plugin"), ("python-ort", "torch")):
        with pytest.raises(ValueError, match="warp"):
            render_repository(tiny_export, tmp_path / "x", flavor, warp_runner=runner)
    cpu = render_repository(tiny_export, tmp_path / "c", "torch", include_services=False, instance_kind="cpu")
    params = pbtxt.get_parameters(pbtxt.read_config(cpu / "decoder"))
    assert params["device"] == "cpu" and params["precision"] == "fp32" and params["cuda_graphs"] == "false"
    # HuBERT's module needs transformers, whose ssl import the pip tritonserver's stub cannot load.
    assert pbtxt.read_config(cpu / "hubert").parameters["onnx_file"].string_value == "model.onnx"
    graphs = render_repository(tiny_export, tmp_path / "g", "torch", include_services=False, cuda_graphs=True)
    assert pbtxt.get_parameters(pbtxt.read_config(graphs / "decoder"))["cuda_graphs"] == "true"
    assert pbtxt.get_parameters(pbtxt.read_config(graphs / "hubert"))["cuda_graphs"] == "false"  # dynamic length


def test_stages_without_pytorch_weights_use_onnx_runtime(tiny_export):
    manifest = json.loads((tiny_export / "manifest.json").read_text())
    manifest["stages"]["hubert"]["weights"] = {"kind": "onnx", "path": "hubert_streaming_fix_kv.onnx", "sha256": "0"}
    assert stage_runners("torch", manifest, pbtxt.KIND_GPU, None)["hubert"] == "onnxruntime"
    assert stage_runners("torch", manifest, pbtxt.KIND_CPU, None)["hubert"] == "ort"
    assert stage_runners("torch", manifest, pbtxt.KIND_GPU, None)["decoder"] == "torch"


def test_batching_settings():
    configs = {s: stage_config(spec, "python-ort", kind=pbtxt.KIND_CPU, max_batch_size=8) for s, spec in SPECS.items()}
    for stage, spec in SPECS.items():
        c = configs[stage]
        if spec.batch_dynamic:
            assert c.max_batch_size == 8 and c.HasField("dynamic_batching"), stage
            assert list(c.dynamic_batching.preferred_batch_size) == [2, 4, 8]
            assert c.dynamic_batching.max_queue_delay_microseconds == 0  # CPU: an idle stage starts at once
            for tensor, t in zip(c.input, spec.inputs):
                assert pbtxt.full_shape(c, tensor, as_model=True) == t.shape
        else:
            assert c.max_batch_size == 0 and not c.HasField("dynamic_batching"), stage
    for flavor in ("onnxruntime", "tensorrt", "torch"):
        gpu = stage_config(SPECS["decoder"], flavor, kind=pbtxt.KIND_GPU, max_batch_size=8)
        assert 0 < gpu.dynamic_batching.max_queue_delay_microseconds <= 10_000  # waits to batch many sessions
    hubert = configs["hubert"]
    assert list(hubert.input[0].dims) == [1, -1]
    assert list(hubert.output[0].dims) == [-1, TINY.hubert.hidden_size]
    time_cond = configs["lmdm"].input[3]
    assert time_cond.name == "time_cond" and time_cond.data_type == mc.TYPE_INT64
    assert list(time_cond.dims) == [1] and time_cond.HasField("reshape") and list(time_cond.reshape.shape) == []
    weight = configs["lmdm"].input[4]
    assert weight.name == "guidance_weight" and weight.data_type == mc.TYPE_FP32
    assert list(weight.dims) == [1] and list(weight.reshape.shape) == []
    assert list(configs["warp_network"].input[0].dims) == list(TINY.appearance.feature_shape)


def test_render_chain_ensemble_wiring(rendered):
    _, repo = rendered
    chain = pbtxt.read_config(repo / "render_chain")
    assert pbtxt.names(chain.input) == ["feature_3d", "kp_source", "kp_driving"]
    assert pbtxt.names(chain.output) == ["output"]
    steps = {s.model_name: s for s in chain.ensemble_scheduling.step}
    assert list(steps) == ["stitch_network", "warp_network", "decoder"]
    assert steps["warp_network"].input_map["kp_driving"] == steps["stitch_network"].output_map["out"]
    assert steps["decoder"].input_map["feature"] == steps["warp_network"].output_map["out"]
    extractors = pbtxt.read_config(repo / "extractors")
    assert pbtxt.names(extractors.output) == ["pred", "pitch", "yaw", "roll", "t", "exp", "scale", "kp"]


def _edit(repo, model, edit):
    config = pbtxt.read_config(repo / model)
    edit(config)
    pbtxt.write_config(config, repo / model)


@pytest.mark.parametrize(
    ("model", "edit", "words"),
    [
        ("decoder", lambda c: setattr(c.input[0], "name", "features"), ["decoder", "features", "feature"]),
        ("warp_network", lambda c: c.input[1].dims.__setitem__(0, 20), ["warp_network", "kp_source", "20", "21"]),
        ("lmdm", lambda c: c.input[3].ClearField("reshape"), ["lmdm", "time_cond"]),
        ("stitch_network", lambda c: setattr(c.output[0], "data_type", mc.TYPE_FP16), ["stitch_network", "FP16"]),
        ("hubert", lambda c: setattr(c, "max_batch_size", 4), ["hubert", "input_values"]),
        ("motion_extractor", lambda c: c.output.pop(), ["motion_extractor", "kp"]),
        (
            "render_chain",
            lambda c: c.ensemble_scheduling.step[1].input_map.__setitem__("kp_driving", "kp_driving"),
            ["render_chain", "stitch_network"],
        ),
        (
            "render_chain",
            lambda c: c.ensemble_scheduling.step[2].input_map.__setitem__("features", "warped_feature"),
            ["render_chain", "decoder", "features"],
        ),
        ("extractors", lambda c: setattr(c, "max_batch_size", 16), ["extractors", "max_batch_size"]),
    ],
    ids=[
        "renamed-input",
        "wrong-dim",
        "lost-reshape",
        "wrong-dtype",
        "batched-hubert",
        "missing-output",
        "unused-step-output",
        "ensemble-unknown-input",
        "ensemble-batch-too-big",
    ],
)
def test_validate_catches_broken_configs(tiny_export, tmp_path_factory, model, edit, words):
    repo = render_repository(tiny_export, tmp_path_factory.mktemp("ok") / "repo", "python-ort", include_services=False)
    _edit(repo, model, edit)
    with pytest.raises(RepositoryError) as err:
        validate_repository(repo, tiny_export)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


@pytest.mark.parametrize("flavor", ["python-ort", "onnxruntime"])  # tensorrt repositories hold no ONNX file
def test_validate_catches_a_swapped_onnx_file_and_a_missing_model(flavor, tiny_export, tmp_path):
    broken = render_repository(tiny_export, tmp_path / "repo", flavor, include_services=False)
    target = broken / "decoder" / "1" / "model.onnx"
    target.unlink()
    shutil.copy(tiny_export / "stitch_network.onnx", target)
    shutil.rmtree(broken / "hubert")
    with pytest.raises(RepositoryError) as err:
        validate_repository(broken, tiny_export)
    assert "decoder" in str(err.value) and "sha256" in str(err.value)
    assert "hubert: exported stage has no model" in str(err.value)


def test_service_configs_follow_the_contract(tiny_export, tmp_path):
    repo = render_repository(tiny_export, tmp_path / "repo", "python-ort", include_services=True, max_sessions=4)
    validate_repository(repo, tiny_export)
    registry = pbtxt.read_config(repo / "avatar_registry")
    assert registry == avatar_registry_config(TINY)
    assert registry.max_batch_size == 0 and all(t.optional for t in registry.input)
    outputs = {t.name: list(t.dims) for t in registry.output}
    assert outputs["f_s"] == [-1, *TINY.appearance.feature_shape]  # one row per source frame
    motion_width = sum(math.prod(t.shape[1:]) for t in SPECS["motion_extractor"].outputs)
    assert outputs["motion_info"] == [-1, 328] == [-1, motion_width]
    assert outputs["source_rgb"] == [-1, -1, -1, 3] and outputs["crop_to_source"] == [-1, 3, 3]
    assert [t.name for t in registry.input] == ["image", "video", "avatar_file", "avatar_id", "options"]
    orch = pbtxt.read_config(repo / "orchestrator")
    assert orch == orchestrator_config(TINY, max_sessions=4)
    # 4 sessions admitted; twice as many batcher slots so that a fifth START reaches the model and
    # is refused at once instead of waiting in Triton's backlog
    assert pbtxt.get_parameters(orch)["max_sessions"] == "4"
    assert orch.model_transaction_policy.decoupled and orch.max_batch_size == 8
    assert orch.sequence_batching.oldest.max_candidate_sequences == 8
    assert orch.sequence_batching.max_sequence_idle_microseconds == 60_000_000
    controls = {c.name: c.control[0] for c in orch.sequence_batching.control_input}
    assert controls["CORRID"].data_type == mc.TYPE_UINT64
    assert list(controls["START"].bool_false_true) == [False, True]
    assert controls["END"].kind == mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_END
    assert pbtxt.get_parameters(orch)["idle_timeout_s"] == "60"
    for name in ("avatar_registry", "orchestrator"):
        assert f"backends.{name} import TritonPythonModel" in (repo / name / "1" / "model.py").read_text()


def test_render_refuses_a_foreign_directory_and_replaces_its_own(tiny_export, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        render_repository(tiny_export, foreign, "python-ort", include_services=False)
    repo = render_repository(tiny_export, tmp_path / "repo", "python-ort", include_services=True)
    render_repository(tiny_export, repo, "onnxruntime", include_services=False)
    assert not (repo / "orchestrator").exists()
    assert pbtxt.read_config(repo / "decoder").platform == "onnxruntime_onnx"


def test_render_rejects_bad_arguments_and_stale_exports(tiny_export, tmp_path):
    with pytest.raises(ValueError, match="flavor"):
        render_repository(tiny_export, tmp_path / "a", "tflite")
    with pytest.raises(ValueError, match="CPU"):
        render_repository(tiny_export, tmp_path / "b", "python-ort", instance_kind="gpu")
    with pytest.raises(ValueError, match="GPU"):
        render_repository(tiny_export, tmp_path / "c", "tensorrt", instance_kind="cpu")
    stale = tmp_path / "stale"
    stale.mkdir()
    manifest = json.loads((tiny_export / "manifest.json").read_text())
    manifest["stages"]["decoder"]["inputs"][0]["name"] = "feat"
    (stale / "manifest.json").write_text(json.dumps(manifest))
    for stage in manifest["stages"].values():
        os.symlink(tiny_export / stage["file"], stale / stage["file"])
    with pytest.raises(ValueError, match="stale"):
        render_repository(stale, tmp_path / "d", "python-ort")
    with pytest.raises(FileNotFoundError, match="ditto-export"):
        render_repository(tmp_path / "nothing", tmp_path / "e", "python-ort")


def test_dtype_helpers_round_trip():
    for name in ("float32", "float16", "int64", "int32", "uint8", "bool", "float64", "int16", "uint64"):
        value = pbtxt.triton_dtype(name)
        assert pbtxt.numpy_dtype(value) == np.dtype(name)
        assert pbtxt.numpy_dtype(pbtxt.data_type_name(value)) == np.dtype(name)
    assert pbtxt.triton_dtype(np.float32) == mc.TYPE_FP32
    assert pbtxt.triton_dtype(np.dtype(object)) == pbtxt.triton_dtype(bytes) == mc.TYPE_STRING
    with pytest.raises(ValueError, match="complex64"):
        pbtxt.triton_dtype("complex64")
    with pytest.raises(ValueError, match="TYPE_NOPE"):
        pbtxt.numpy_dtype("TYPE_NOPE")


def test_parse_errors_name_the_file(tmp_path):
    (tmp_path / "config.pbtxt").write_text('name: "x"\nmax_batch_size: "eight"\n')
    with pytest.raises(ValueError, match="config.pbtxt"):
        pbtxt.read_config(tmp_path)


def test_rendering_and_validation_do_not_import_torch(tiny_export, tmp_path):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ditto_triton.model_repository.render import render_repository\n"
        "from ditto_triton.model_repository.validate import validate_repository\n"
        f"repo = render_repository(Path({str(tiny_export)!r}), Path({str(tmp_path / 'r')!r}), 'python-ort')\n"
        f"validate_repository(repo, Path({str(tiny_export)!r}))\n"
        "import ditto_triton.model_repository.server, ditto_triton.model_repository.serve\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ditto_serve_render_only(tiny_export, tmp_path, capsys):
    from ditto_triton.model_repository import serve

    assert serve.main(["--export", str(tmp_path / "none"), "--render-only"]) == 2
    assert "ditto-export --profile tiny" in capsys.readouterr().err
    repo = tmp_path / "trt"
    assert serve.main(["--export", str(tiny_export), "--flavor", "tensorrt", "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "docker run" in out and "nvcr.io/nvidia/tritonserver:" in out and f"{repo.resolve()}:/models" in out
    assert (repo / "decoder" / "1" / "README.txt").is_file() and (repo / "warp_network" / "1" / "model.pth").is_file()
    assert "first build every stage's model.plan" in out
    plugin = tmp_path / "plugin"
    assert (
        serve.main(
            ["--export", str(tiny_export), "--flavor", "tensorrt", "--repo", str(plugin), "--warp-runner", "plugin"]
        )
        == 0
    )
    assert "--backend-config=tensorrt,plugins=/opt/ditto/plugins/libgrid_sample_3d_plugin.so" in capsys.readouterr().out
    assert (
        serve.main(
            ["--export", str(tiny_export), "--flavor", "python-ort", "--repo", str(plugin), "--warp-runner", "plugin"]
        )
        == 2
    )
    assert "warp_runner" in capsys.readouterr().err
    assert serve.main(["--export", str(tiny_export), "--repo", str(repo), "--render-only", "--no-services"]) == 0
    assert pbtxt.read_config(repo / "decoder").backend == "python"


def test_the_committed_repositories_match_a_fresh_render(tiny_export):
    """model_repository/tiny/<flavor>/ is what ditto-serve renders, byte for byte (`make model-repository`)."""
    from ditto_triton.model_repository.committed import COMMITTED_ROOT, committed_files, differences

    assert all(committed_files(flavor) for flavor in FLAVORS), f"{COMMITTED_ROOT}: a flavor is missing"
    assert differences(tiny_export) == [], "run `make model-repository` and commit the result"


def test_every_network_model_warms_up_at_load(rendered):
    """Each stage config carries one zero-filled batch-1 request with concrete dims (model_warmup)."""
    _, repo = rendered
    for spec in SPECS.values():
        config = pbtxt.read_config(repo / spec.name)
        (warmup,) = config.model_warmup
        assert warmup.batch_size == 1 and set(warmup.inputs) == set(pbtxt.names(config.input))
        assert all(-1 not in w.dims and w.zero_data for w in warmup.inputs.values())


def test_only_this_projects_networks_flush_denormals():
    """Stage models flush denormals (the warp's heatmaps underflow); Ditto's face models run as in Ditto."""
    root = Path(__file__).resolve().parent.parent / "model_repository" / "tiny" / "python-ort"
    for model_dir in sorted(p for p in root.iterdir() if (p / "config.pbtxt").is_file()):
        parameters = pbtxt.read_config(model_dir).parameters
        if "ort_flush_denormals" in parameters:
            flush = parameters["ort_flush_denormals"].string_value == "true"
            assert flush == (model_dir.name in SPECS), model_dir.name
    assert any(p.name.startswith("face_") for p in root.iterdir())
