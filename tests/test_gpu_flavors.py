"""The GPU path around TensorRT, checked without TensorRT, a GPU or Docker: what the plan build
makes and caches, plans wired into a tensorrt repository, the ONNX rewrite for the GridSample3D
plugin, ditto-trt-build's dry run, the container entrypoint's steps, and the Dockerfile and compose
file parsing to what the code expects."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import onnx
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from ditto_triton.export import engine_plan as ep
from ditto_triton.export import tensorrt_build
from ditto_triton.model_repository import container, gpu_flavors
from ditto_triton.model_repository.render import render_repository
from ditto_triton.model_repository.validate import RepositoryError, validate_repository
from ditto_triton.stages import STAGE_ORDER

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
GPU = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


def test_plan_builds_follow_dittos_precision_split_and_batch_profiles(tiny_export):
    builds = {b.stage: b for b in ep.plan_builds(tiny_export, max_batch_size=8)}
    assert list(builds) == [s for s in STAGE_ORDER if s != "warp_network"]  # warp: the PyTorch runner
    for stage, build in builds.items():
        assert build.precision == ("fp32" if stage in ("motion_extractor", "lmdm", "hubert") else "fp16"), stage
        assert build.onnx.is_file() and build.plugin is None
    assert builds["decoder"].shapes["feature"] == ((1, 16, 16, 16), (4, 16, 16, 16), (8, 16, 16, 16))
    assert builds["lmdm"].shapes["time_cond"] == ((1,), (4,), (8,))
    assert builds["hubert"].shapes["input_values"] == ((1, 3240), (1, 6480), (1, 12960))  # Ditto's own profile
    assert builds["hubert"].max_batch_size == 0 and builds["decoder"].max_batch_size == 8
    plugin = ep.plan_builds(tiny_export, max_batch_size=4, warp_runner="plugin")
    warp = next(b for b in plugin if b.stage == "warp_network")
    assert warp.plugin == "GridSample3D" and warp.fp32_layers == ("GridSample",) and warp.precision == "fp16"
    assert warp.shapes["feature_3d"][2][0] == 4
    with pytest.raises(ep.EnginePlanError, match="warp_runner"):
        ep.plan_builds(tiny_export, warp_runner="onnxruntime")
    with pytest.raises(ep.EnginePlanError, match="max_batch_size"):
        ep.plan_builds(tiny_export, max_batch_size=0)


def test_cache_names_change_with_everything_a_plan_depends_on(tiny_export):
    build = ep.plan_builds(tiny_export)[0]
    name = build.cache_name("10.7.0", GPU)
    assert re.fullmatch(r"appearance_extractor-[0-9a-f]{16}\.plan", name)
    assert build.cache_name("10.7.0", dict(GPU)) == name
    others = {
        build.cache_name("10.8.0", GPU),
        build.cache_name("10.7.0", {**GPU, "name": "NVIDIA H200", "compute_capability": "9.0"}),
        build.cache_name("10.7.0", {**GPU, "compute_capability": "8.9"}),
        ep.EngineBuild(**{**build.__dict__, "onnx_sha256": "0" * 64}).cache_name("10.7.0", GPU),
        ep.EngineBuild(**{**build.__dict__, "precision": "fp32"}).cache_name("10.7.0", GPU),
        ep.plan_builds(tiny_export, max_batch_size=16)[0].cache_name("10.7.0", GPU),
    }
    assert name not in others and len(others) == 6


def fake_engines(export_dir: Path, engines_dir: Path, *, max_batch_size: int = 8, warp_runner: str = "torch") -> dict:
    """An engines directory as ditto-trt-build writes it, with stand-in plan bytes."""
    engines_dir.mkdir(parents=True, exist_ok=True)
    engines = {}
    for build in ep.plan_builds(export_dir, max_batch_size=max_batch_size, warp_runner=warp_runner):
        plan = build.cache_name("10.7.0", GPU)
        (engines_dir / plan).write_bytes(f"plan of {build.stage}".encode())
        engines[build.stage] = ep.engine_record(build, plan, 1.0)
    record = {"tensorrt": "10.7.0", "gpu": GPU, "max_batch_size": max_batch_size, "engines": engines}
    ep.write_engines_manifest(engines_dir, record)
    return record


def test_tensorrt_repository_takes_its_plans_from_the_engines_directory(tiny_export, tmp_path):
    engines = tmp_path / "engines"
    fake_engines(tiny_export, engines)
    repo = render_repository(tiny_export, tmp_path / "repo", "tensorrt", include_services=False, engines_dir=engines)
    validate_repository(repo, tiny_export)
    for stage in STAGE_ORDER:
        version = repo / stage / "1"
        if stage == "warp_network":
            assert (version / "model.pth").is_file() and not (version / "model.plan").exists()
        else:
            assert (version / "model.plan").read_bytes() == f"plan of {stage}".encode()
            assert not (version / "README.txt").exists()
    assert json.loads((repo / ".ditto_repository.json").read_text())["plans"] == str(engines.resolve())
    # a missing plan file is reported as soon as the repository is validated
    (repo / "decoder" / "1" / "model.plan").unlink()
    with pytest.raises(RepositoryError, match="decoder: .* neither model.plan nor the README.txt"):
        validate_repository(repo, tiny_export)


def test_plans_of_another_export_or_batch_size_are_refused(tiny_export, tmp_path):
    engines = tmp_path / "engines"
    record = fake_engines(tiny_export, engines)
    with pytest.raises(ep.EnginePlanError, match="rebuild with --max-batch-size 4"):
        render_repository(tiny_export, tmp_path / "a", "tensorrt", engines_dir=engines, max_batch_size=4)
    with pytest.raises(ep.EnginePlanError, match="no plan for stage 'warp_network'"):
        render_repository(tiny_export, tmp_path / "b", "tensorrt", engines_dir=engines, warp_runner="plugin")
    record["engines"]["lmdm"]["onnx_sha256"] = "f" * 64
    ep.write_engines_manifest(engines, record)
    with pytest.raises(ep.EnginePlanError, match="lmdm plan was built from another ONNX file"):
        render_repository(tiny_export, tmp_path / "c", "tensorrt", engines_dir=engines)
    (engines / ep.ENGINES_MANIFEST).unlink()
    with pytest.raises(ep.EnginePlanError, match="ditto-trt-build"):
        render_repository(tiny_export, tmp_path / "d", "tensorrt", engines_dir=engines)
    with pytest.raises(ValueError, match="tensorrt flavor"):
        render_repository(tiny_export, tmp_path / "e", "onnxruntime", engines_dir=engines)


def test_a_torch_stage_must_hold_the_exported_checkpoint(tiny_export, tmp_path):
    repo = render_repository(tiny_export, tmp_path / "repo", "torch", include_services=False)
    validate_repository(repo, tiny_export)
    target = repo / "decoder" / "1" / "model.pth"
    target.unlink()
    shutil.copy(repo / "stitch_network" / "1" / "model.pth", target)
    with pytest.raises(RepositoryError, match="decoder: .* not the checkpoint the export was made from"):
        validate_repository(repo, tiny_export)


def test_gridsample_nodes_are_handed_to_the_plugin(tiny_export, tmp_path):
    src = tiny_export / "warp_network.onnx"
    dst = tmp_path / "warp_plugin.onnx"
    assert ep.gridsample_for_plugin(src, dst) == 2  # Ditto's two 5-D grid samples
    before, after = onnx.load(str(src)).graph, onnx.load(str(dst)).graph
    assert [n.op_type for n in after.node].count("GridSample") == 0
    plugin_nodes = [n for n in after.node if n.op_type == "GridSample3D"]
    originals = [n for n in before.node if n.op_type == "GridSample"]
    assert [(n.name, list(n.input), list(n.output)) for n in plugin_nodes] == [
        (n.name, list(n.input), list(n.output)) for n in originals
    ]
    for node in plugin_nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"interpolation_mode": 0, "padding_mode": 0, "align_corners": 0}
    assert len(after.node) == len(before.node)
    with pytest.raises(ep.EnginePlanError, match="no GridSample"):
        ep.gridsample_for_plugin(tiny_export / "decoder.onnx", tmp_path / "x.onnx")


def test_trt_build_dry_run_lists_every_plan_and_a_real_run_needs_tensorrt(tiny_export, tmp_path, capsys):
    assert tensorrt_build.main(["--export", str(tiny_export), "--engines", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"6 plan(s) for {tiny_export}")
    for stage in STAGE_ORDER:
        assert f"  {stage}: " in out
    assert "decoder: decoder.onnx -> fp16; feature min 1x16x16x16 opt 4x16x16x16 max 8x16x16x16" in out
    assert "lmdm: lmdm_v0.4_hubert.onnx -> fp32" in out and "warp_network: no plan, served by the PyTorch runner" in out
    args = ["--export", str(tiny_export), "--engines", str(tmp_path), "--dry-run", "--warp-runner", "plugin"]
    assert tensorrt_build.main(args) == 0
    assert (
        "warp_network: warp_network.onnx -> fp16, plugin GridSample3D, fp32 layers *GridSample*"
        in capsys.readouterr().out
    )
    assert tensorrt_build.main(args[:-3] + ["--warp-runner", "plugin"]) == 2
    assert "--plugin" in capsys.readouterr().err
    assert tensorrt_build.main(args[:-3]) == 2  # this machine has no TensorRT
    assert "TensorRT Python API is needed" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_plans_are_only_built_with_the_servers_tensorrt(tmp_path):
    assert tensorrt_build.server_tensorrt_version((tmp_path,)) is None
    for name in ("libnvinfer.so", "libnvinfer.so.10", "libnvinfer.so.10.7.0"):
        (tmp_path / name).touch()
    assert tensorrt_build.server_tensorrt_version((tmp_path,)) == "10.7.0"
    tensorrt_build.check_same_tensorrt("10.7.0.post1", "10.7.0")
    tensorrt_build.check_same_tensorrt("10.7.0", None)
    with pytest.raises(tensorrt_build.EngineBuildError, match="tensorrt-cu12==10.7.0"):
        tensorrt_build.check_same_tensorrt("10.8.0", "10.7.0")


def test_container_entrypoint_steps(tmp_path, tiny_export, capsys):
    settings = container.Settings.from_env({"DITTO_CACHE": str(tmp_path)})
    assert (settings.flavor, settings.profile, settings.weights) == ("tensorrt", "full", "synthetic")
    steps = container.steps(settings, export_ready=False, server_args=["--log-verbose=1"])
    assert [s[0] for s in steps] == ["ditto-export", "ditto-trt-build", "ditto-serve", container.TRITONSERVER]
    assert steps[1][-2:] == ["--warp-runner", "torch"] and "--engines" in steps[2]
    assert steps[3] == [container.TRITONSERVER, f"--model-repository={settings.repo_dir}", "--log-verbose=1"]
    plugin = container.Settings.from_env({"DITTO_CACHE": str(tmp_path), "DITTO_WARP_RUNNER": "plugin"})
    steps = container.steps(plugin, export_ready=True, server_args=[])
    assert [s[0] for s in steps] == ["ditto-trt-build", "ditto-serve", container.TRITONSERVER]
    assert steps[0][-2:] == ["--plugin", "/opt/ditto/plugins/libgrid_sample_3d_plugin.so"]
    assert steps[2][-1] == "--backend-config=tensorrt,plugins=/opt/ditto/plugins/libgrid_sample_3d_plugin.so"
    torch_flavor = container.Settings.from_env(
        {"DITTO_FLAVOR": "torch", "DITTO_CUDA_GRAPHS": "true", "DITTO_PROFILE": "tiny"}
    )
    steps = container.steps(torch_flavor, export_ready=True, server_args=[])
    assert [s[0] for s in steps] == ["ditto-serve", container.TRITONSERVER] and steps[0][-1] == "--cuda-graphs"
    for env, words in (
        ({"DITTO_FLAVOR": "python-ort"}, "DITTO_FLAVOR"),
        ({"DITTO_PROFILE": "huge"}, "DITTO_PROFILE"),
        ({"DITTO_FLAVOR": "onnxruntime", "DITTO_WARP_RUNNER": "plugin"}, "warp"),
        ({"DITTO_MAX_BATCH_SIZE": "eight"}, "DITTO_MAX"),
        ({"DITTO_CUDA_GRAPHS": "maybe"}, "DITTO_CUDA_GRAPHS"),
    ):
        with pytest.raises(ValueError, match=words):
            container.Settings.from_env(env)
    # an export already in the cache is reused
    cache = tmp_path / "cache"
    shutil.copytree(tiny_export, cache / "export" / "tiny")
    ready = container.Settings.from_env({"DITTO_CACHE": str(cache), "DITTO_PROFILE": "tiny"})
    assert container.export_ready(ready) and not container.export_ready(settings)


def test_container_dry_run_prints_the_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DITTO_CACHE", str(tmp_path))
    monkeypatch.setenv("DITTO_FLAVOR", "onnxruntime")
    assert container.main(["--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["ditto-export", "ditto-serve", container.TRITONSERVER]
    monkeypatch.setenv("DITTO_FLAVOR", "tflite")
    assert container.main(["--dry-run"]) == 2
    assert "DITTO_FLAVOR" in capsys.readouterr().err


def test_dockerfile_builds_the_plugin_and_installs_the_package(tmp_path):
    parser = DockerfileParser(path=str(tmp_path / "Dockerfile"))
    parser.content = (DEPLOY / "Dockerfile").read_text()
    assert parser.baseimage == gpu_flavors.TRITON_IMAGE  # the serving stage, ARGs substituted
    froms = [i["value"] for i in parser.structure if i["instruction"] == "FROM"]
    assert froms == [
        "nvcr.io/nvidia/tensorrt:${NGC_RELEASE}-py3 AS grid-sample-plugin",
        "nvcr.io/nvidia/tritonserver:${NGC_RELEASE}-py3",
    ]
    args = dict(
        a.split("=", 1) for i in parser.structure if i["instruction"] == "ARG" for a in [i["value"]] if "=" in a
    )
    assert args["NGC_RELEASE"] == gpu_flavors.NGC_RELEASE
    assert re.fullmatch(r"[0-9a-f]{40}", args["GRID_SAMPLE_PLUGIN_COMMIT"])  # the plugin source is pinned
    assert "90" in args["CUDA_ARCHITECTURES"].strip('"').split(";")  # Hopper
    assert args["TENSORRT_PY_VERSION"].count(".") == 2
    copies = [i["value"].split() for i in parser.structure if i["instruction"] == "COPY"]
    sources = {src for c in copies if not c[0].startswith("--from") for src in c[:-1]}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dirs = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    top_level = {d.split("/")[0] for d in package_dirs}
    assert top_level <= sources and all((ROOT / s).exists() for s in sources)
    plugin_copy = next(c for c in copies if c[0] == "--from=grid-sample-plugin")
    assert plugin_copy[-1].rstrip("/") == gpu_flavors.PLUGIN_DIR
    assert plugin_copy[1].endswith(ep.GRID_PLUGIN_LIBRARY)
    entry = json.loads(next(i["value"] for i in parser.structure if i["instruction"] == "ENTRYPOINT"))
    assert entry == ["ditto-container"] and "ditto-container" in pyproject["project"]["scripts"]
    assert "ditto-trt-build" in pyproject["project"]["scripts"]
    run = " ".join(i["value"] for i in parser.structure if i["instruction"] == "RUN")
    assert '".[export,container]"' in run and "--constraint requirements.lock" in run
    assert "container" in pyproject["project"]["optional-dependencies"]
    env = parser.envs
    assert env["DITTO_FLAVOR"] == "tensorrt" and env["DITTO_CACHE"] == "/cache"
    assert (ROOT / ".dockerignore").read_text().split().count(".venv") == 1


def test_compose_serves_the_image_on_a_gpu_with_a_cache_volume():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    service = compose["services"]["ditto"]
    assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile"
    ).resolve()
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert any(v.endswith(":/cache") for v in service["volumes"]) and "ditto-cache" in compose["volumes"]
    assert sorted(p.split(":")[1] for p in service["ports"]) == ["8000", "8001", "8002", "8003"]
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])  # loopback unless the operator opens it
    env = service["environment"]
    settings = container.Settings.from_env({k: str(v) for k, v in env.items()})
    assert settings.flavor == env["DITTO_FLAVOR"] and settings.warp_runner == env["DITTO_WARP_RUNNER"]
    # docker compose stop: SIGTERM, the drain, then 30 s for tritonserver to exit before SIGKILL
    assert service["stop_grace_period"] == f"{settings.drain_timeout_s + 30:.0f}s"
