"""Render a Triton model repository from an export directory (its `manifest.json` + ONNX files).

Every stage config is generated from `ditto_triton.stages.stage_specs(profile)`; model names are
stage names. Flavors:

- `python-ort`: python-backend models running ONNX Runtime on CPU (`backends/stage.py`); the
  embedded default, served by the pip `tritonserver` (see `server.py`).
- `onnxruntime`: Triton's onnxruntime backend (`platform: "onnxruntime_onnx"`, CUDA provider on
  GPU instances), NVIDIA's container.
- `tensorrt`: `platform: "tensorrt_plan"`; each stage's `model.plan` from an engines directory
  built by `ditto-trt-build` on the serving GPU, or a README.txt saying how to build it.
- `torch`: python-backend models running the PyTorch modules (`torch_runtime.py`): fp16 on CUDA,
  optional CUDA graphs; with instance kind cpu the same code runs here.

The GPU flavors serve the warp network with `warp_runner` (default `torch`: the 5-D GridSample has
no TensorRT layer and no CUDA kernel in the container's ONNX Runtime; see `gpu_flavors.py`). All
flavors get the `render_chain` and `extractors` ensembles and, with `include_services`, the
python `avatar_registry` and `orchestrator` models.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ditto_triton.ensembles import ENSEMBLES
from ditto_triton.export import engine_plan as ep
from ditto_triton.face_models import FACE_MODELS, REGISTRATION_DITTO
from ditto_triton.limits import DEFAULT_LIMITS
from ditto_triton.manifest import checkpoint_of, read_manifest
from ditto_triton.model_repository import gpu_flavors, pbtxt
from ditto_triton.model_repository.cpu_runners import cpu_runners
from ditto_triton.model_repository.ensemble_configs import chain_config
from ditto_triton.model_repository.service_configs import avatar_registry_config, orchestrator_config
from ditto_triton.model_repository.stage_runtime import StageParameters
from ditto_triton.model_repository.torch_parameters import TorchParameters
from ditto_triton.model_repository.warmup import add_zero_warmup
from ditto_triton.profiles import Profile, get_profile
from ditto_triton.protocol import AVATAR_REGISTRY
from ditto_triton.stages import StageSpec, stage_specs

log = logging.getLogger(__name__)

FLAVORS = ("python-ort", "onnxruntime", "tensorrt", "torch")
VERSION = "1"
MARKER = ".ditto_repository.json"
BACKENDS_PACKAGE = "ditto_triton.model_repository.backends"
# What runs one stage: ONNX Runtime in a python model (`ort`), Triton's onnxruntime or tensorrt
# backend, or the PyTorch module in a python model (`torch`, torch_runtime.py).
RUNNERS = ("ort", "onnxruntime", "tensorrt", "torch")
_NATIVE = {"python-ort": "ort", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "torch": "torch"}
# How long the dynamic batcher holds a request that has not filled a preferred batch. On the CPU
# flavor an idle stage starts at once (a single session's batch-1 LMDM step would otherwise wait
# the full delay, 400 times per 16 s clip); requests that queue while the stage is busy are still
# batched together. GPU flavors wait a little so that concurrent sessions' frames meet in one batch.
QUEUE_DELAY_US = {"python-ort": 0, "onnxruntime": 500, "tensorrt": 500, "torch": 500}

_DEFAULT_KIND = {
    "python-ort": pbtxt.KIND_CPU,
    "onnxruntime": pbtxt.KIND_GPU,
    "tensorrt": pbtxt.KIND_GPU,
    "torch": pbtxt.KIND_GPU,
}
_ARTIFACT = {"ort": "model.onnx", "onnxruntime": "model.onnx", "tensorrt": "model.plan", "torch": "model.pth"}


def parse_instance_kind(flavor: str, instance_kind: str | None) -> int:
    """`None` -> the flavor's default; "cpu"/"gpu" (or KIND_CPU/KIND_GPU) otherwise."""
    if instance_kind is None:
        return _DEFAULT_KIND[flavor]
    key = instance_kind.upper().removeprefix("KIND_")
    if key not in ("CPU", "GPU"):
        raise ValueError(f"instance_kind must be 'cpu' or 'gpu', not {instance_kind!r}")
    kind = pbtxt.KIND_CPU if key == "CPU" else pbtxt.KIND_GPU
    if flavor == "python-ort" and kind == pbtxt.KIND_GPU:
        raise ValueError("the python-ort flavor runs ONNX Runtime on CPU; use the onnxruntime flavor for GPUs")
    if flavor == "tensorrt" and kind == pbtxt.KIND_CPU:
        raise ValueError("TensorRT plans run on GPUs only; instance_kind 'cpu' is not possible for tensorrt")
    return kind


def stage_runners(
    flavor: str,
    manifest: Mapping[str, Any],
    kind: int,
    warp_runner: str | None,
    cpu_runner_choice: str | Mapping[str, str] | None = None,
) -> dict[str, str]:
    """{stage: runner} for a flavor. The python-ort flavor follows `cpu_runner_choice` (`cpu_runners.py`:
    ONNX Runtime everywhere by default). The GPU flavors serve the warp network with `warp_runner`; the
    torch flavor serves a stage that has no PyTorch weights (Ditto's HuBERT ships as ONNX only)
    with ONNX Runtime: Triton's onnxruntime backend on GPUs, the python-ort model on CPU (where
    HuBERT always does: see below)."""
    if flavor == "python-ort":
        return cpu_runners(cpu_runner_choice, manifest)
    if cpu_runner_choice not in (None, "ort"):
        raise ValueError(f"cpu_runners applies to the python-ort flavor, not {flavor!r}")
    runners = {}
    for name, entry in manifest["stages"].items():
        runner = _NATIVE[flavor]
        if name == ep.WARP_STAGE and warp_runner == "torch":
            runner = "torch"
        no_weights = entry.get("weights", {}).get("kind") not in ("synthetic", "checkpoint")
        # HuBERT's module comes from transformers, which imports `ssl`; the pip tritonserver's python
        # stub cannot load this interpreter's _ssl (undefined _PyModule_Add), so on CPU it stays on ORT.
        if runner == "torch" and (no_weights or (name == "hubert" and kind == pbtxt.KIND_CPU)):
            runner = "onnxruntime" if kind == pbtxt.KIND_GPU else "ort"
        runners[name] = runner
    return runners


def preferred_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two from 2 up to, and including, `max_batch_size`."""
    sizes = [b for b in (2**i for i in range(1, 16)) if b < max_batch_size]
    return sizes + [max_batch_size] if max_batch_size > 1 else []


def default_ort_threads() -> int:
    """Intra-op threads per ONNX Runtime stage: the cores this process may run on (its CPU affinity, as
    `taskset` or a container's cpuset gives it), at most 4. Idle workers do not spin (`ort_allow_spinning`)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cores or 1))


def stage_config(
    spec: StageSpec,
    flavor: str,
    *,
    kind: int,
    max_batch_size: int,
    ort_threads: int | None = None,
    runner: str | None = None,
    profile: str = "tiny",
    cuda_graphs: bool = False,
    queue_delay_us: int | None = None,
    flush_denormals: bool = True,
) -> pbtxt.ModelConfig:
    """One stage's config, run by `runner` (default: the flavor's own). Batch-dynamic stages get
    `max_batch_size` and dynamic batching; the others (HuBERT) are unbatched (max_batch_size 0,
    full dims). torch stages on GPU run in Ditto's precision split (fp16 except motion, LMDM, HuBERT).
    `flush_denormals`: the ort runner's (off for Ditto's face models, which run as in Ditto)."""
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; choose one of {FLAVORS}")
    runner = runner or _NATIVE[flavor]
    if runner not in RUNNERS:
        raise ValueError(f"unknown runner {runner!r}; choose one of {RUNNERS}")
    if spec.batch_dynamic and max_batch_size < 1:
        raise ValueError(f"{spec.name}: max_batch_size must be >= 1 (got {max_batch_size})")
    batched = spec.batch_dynamic
    config = pbtxt.ModelConfig(name=spec.name, max_batch_size=max_batch_size if batched else 0)
    config.input.extend(pbtxt.spec_input(t, batched) for t in spec.inputs)
    config.output.extend(pbtxt.spec_output(t, batched) for t in spec.outputs)
    if batched:
        config.dynamic_batching.preferred_batch_size.extend(preferred_batch_sizes(max_batch_size))
        delay = QUEUE_DELAY_US[flavor] if queue_delay_us is None else queue_delay_us
        config.dynamic_batching.max_queue_delay_microseconds = delay
    config.instance_group.append(pbtxt.instance_group(kind, 1))
    if runner == "ort":
        config.backend = "python"
        threads = default_ort_threads() if ort_threads is None else ort_threads
        params = StageParameters(onnx_file=_ARTIFACT[runner], intra_op_threads=threads, flush_denormals=flush_denormals)
        pbtxt.set_parameters(config, params.as_config())
    elif runner == "torch":
        config.backend = "python"
        pbtxt.set_parameters(config, _torch_parameters(spec, kind, profile, cuda_graphs).as_config())
    elif runner == "onnxruntime":
        config.platform = "onnxruntime_onnx"
    else:
        config.platform = "tensorrt_plan"
        trt_params: dict[str, object] = {"precision": ep.precision(spec.name)}
        if spec.name == ep.WARP_STAGE:
            trt_params["required_plugin"] = ep.GRID_PLUGIN
        pbtxt.set_parameters(config, trt_params)
    add_zero_warmup(config)
    return config


def _torch_parameters(spec: StageSpec, kind: int, profile: str, cuda_graphs: bool) -> TorchParameters:
    """On GPU: Ditto's precision for the stage, CUDA graphs if asked (batched stages only); on CPU fp32."""
    on_gpu = kind == pbtxt.KIND_GPU
    return TorchParameters(
        profile=profile,
        checkpoint_file=_ARTIFACT["torch"],
        device="cuda" if on_gpu else "cpu",
        precision=ep.precision(spec.name) if on_gpu else "fp32",
        cuda_graphs=cuda_graphs and on_gpu and spec.batch_dynamic,
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _shim(module: str, what: str) -> str:
    doc = f'"""{what}: the implementation lives in {module}."""'
    return f"{doc}\n\nfrom {module} import TritonPythonModel  # noqa: F401\n"


def _check_manifest_stage(name: str, entry: Mapping[str, Any] | None, spec: StageSpec, export_dir: Path) -> Path:
    if entry is None:
        raise ValueError(f"{export_dir}: the manifest has no stage {name!r}; re-run `ditto-export` for every stage")
    for kind, tensors in (("inputs", spec.inputs), ("outputs", spec.outputs)):
        wanted = [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in tensors]
        if entry.get(kind) != wanted:
            raise ValueError(
                f"{export_dir}: stage {name!r} {kind} in the manifest {entry.get(kind)} differ from the stage "
                f"spec {wanted}; the export is stale, re-run `ditto-export`"
            )
    path = export_dir / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX file of stage {name!r} listed in the manifest is missing")
    return path


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists():
        if (out_dir / MARKER).is_file():
            shutil.rmtree(out_dir)
        elif any(out_dir.iterdir()):
            raise FileExistsError(
                f"{out_dir}: exists, is not empty and was not rendered by ditto-serve (no {MARKER}); "
                "choose another directory or empty it"
            )
    out_dir.mkdir(parents=True, exist_ok=True)


def render_repository(
    export_dir: Path,
    out_dir: Path,
    flavor: str,
    *,
    instance_kind: str | None = None,
    include_services: bool = True,
    max_batch_size: int = DEFAULT_LIMITS.max_batch_size,
    ort_threads: int | None = None,
    max_sessions: int = DEFAULT_LIMITS.max_sessions,
    idle_timeout_s: float = DEFAULT_LIMITS.idle_timeout_s,
    warp_runner: str | None = None,
    engines_dir: Path | None = None,
    cuda_graphs: bool = False,
    queue_delay_us: int | None = None,
    cpu_runner_choice: str | Mapping[str, str] | None = None,
) -> Path:
    """Write a complete model repository for `flavor` into `out_dir` and return it.

    `out_dir` is replaced if an earlier render made it; any other non-empty directory is refused.
    Each stage gets its artifact hard-linked (copied across file systems) into `<stage>/1/`:
    `model.onnx` (ort, onnxruntime), `model.pth` (torch: the checkpoint the export was made from),
    `model.plan` (tensorrt, from `engines_dir`; without it a README.txt says how to build it);
    Ditto's face models when the export has them. `queue_delay_us` overrides the batching delay;
    `cpu_runner_choice` picks the python-ort flavor's runner per stage (`cpu_runners.py`).
    """
    _check_flavor(flavor, engines_dir)
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    kind = parse_instance_kind(flavor, instance_kind)
    warp_runner = gpu_flavors.check_warp_runner(flavor, warp_runner)
    manifest = read_manifest(export_dir)
    profile = get_profile(manifest["profile"])
    specs = stage_specs(profile)
    runners = stage_runners(flavor, manifest, kind, warp_runner, cpu_runner_choice)
    builds, plans = _plans(flavor, export_dir, engines_dir, max_batch_size, warp_runner)
    artifacts = {**_stage_artifacts(export_dir, manifest, specs, runners), **plans}
    _prepare_out_dir(out_dir)
    shared = dict(kind=kind, max_batch_size=max_batch_size, ort_threads=ort_threads, profile=profile.name)
    tuning = dict(cuda_graphs=cuda_graphs, queue_delay_us=queue_delay_us)
    for name, spec in specs.items():
        config = stage_config(spec, flavor, **shared, **tuning, runner=runners[name])
        _write_stage_model(out_dir, config, runners[name], artifacts.get(name), builds.get(name))
    ensembles = _write_ensemble_models(out_dir, specs, max_batch_size)
    registration = manifest.get("registration")
    face_models = _write_face_models(out_dir, export_dir, registration, flavor, kind, ort_threads, builds, plans)
    limits = dict(max_sessions=max_sessions, idle_timeout_s=idle_timeout_s)
    services = _write_service_models(out_dir, profile, export_dir, registration, **limits) if include_services else []
    _write_marker(
        out_dir,
        flavor=flavor,
        profile=profile.name,
        export_dir=str(export_dir.resolve()),
        stages=list(specs),
        runners=runners,
        warp_runner=warp_runner,
        plans=str(Path(engines_dir).resolve()) if engines_dir is not None else None,
        ensembles=ensembles,
        services=services,
        face_models=face_models,
    )
    log.info("rendered %s repository (%s profile) in %s", flavor, profile.name, out_dir)
    return out_dir


def _check_flavor(flavor: str, engines_dir: Path | None) -> None:
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; choose one of {FLAVORS}")
    if engines_dir is not None and flavor != "tensorrt":
        raise ValueError(f"engines_dir is for the tensorrt flavor, not {flavor!r}")


def _stage_artifacts(
    export_dir: Path, manifest: Mapping[str, Any], specs: Mapping[str, StageSpec], runners: Mapping[str, str]
) -> dict[str, Path]:
    """{stage: file} the export provides: its ONNX file (ort, onnxruntime) or checkpoint (torch).
    Every stage's manifest entry is checked against its spec first."""
    sources = {
        name: _check_manifest_stage(name, manifest["stages"].get(name), spec, export_dir)
        for name, spec in specs.items()
    }
    artifacts = {name: sources[name] for name, runner in runners.items() if runner in ("ort", "onnxruntime")}
    artifacts.update(
        {
            name: checkpoint_of(manifest["stages"][name], export_dir)
            for name, runner in runners.items()
            if runner == "torch"
        }
    )
    return artifacts


def _plans(
    flavor: str, export_dir: Path, engines_dir: Path | None, max_batch_size: int, warp_runner: str | None
) -> tuple[dict[str, ep.EngineBuild], dict[str, Path]]:
    """({stage: how ditto-trt-build makes its plan} for the tensorrt flavor, {stage: plan} already
    built in `engines_dir`)."""
    builds, engines = {}, {}
    if flavor == "tensorrt":
        builds = {
            b.stage: b for b in ep.plan_builds(export_dir, max_batch_size=max_batch_size, warp_runner=warp_runner)
        }
    if engines_dir is not None:
        engines = ep.read_engines(engines_dir, export_dir, max_batch_size=max_batch_size, warp_runner=warp_runner)
    return builds, engines


def _write_stage_model(
    out_dir: Path, config: pbtxt.ModelConfig, runner: str, artifact: Path | None, build: ep.EngineBuild | None
) -> None:
    """One stage's config and `1/`: its artifact, or a README.txt saying how to build its plan
    (`build`), and for the python runners the model.py shim."""
    model_dir = out_dir / config.name
    version_dir = model_dir / VERSION
    version_dir.mkdir(parents=True)
    pbtxt.write_config(config, model_dir)
    if artifact is not None:
        _link_or_copy(artifact, version_dir / _ARTIFACT[runner])
    else:
        (version_dir / "README.txt").write_text(gpu_flavors.plan_readme(build))
    if runner in ("ort", "torch"):
        (version_dir / "model.py").write_text(_shim(f"{BACKENDS_PACKAGE}.stage", f"{runner} stage {config.name}"))


def _write_ensemble_models(out_dir: Path, specs: Mapping[str, StageSpec], max_batch_size: int) -> list[str]:
    """The declared ensembles (`ditto_triton.ensembles`), each with an empty `1/`; returns their names."""
    configs = [chain_config(chain, specs, max_batch_size) for chain in ENSEMBLES]
    for config in configs:
        pbtxt.write_config(config, out_dir / config.name)
        (out_dir / config.name / VERSION).mkdir()
    return [c.name for c in configs]


def _write_face_models(
    out_dir: Path,
    export_dir: Path,
    registration: Mapping[str, Any] | None,
    flavor: str,
    kind: int,
    ort_threads: int | None,
    builds: Mapping[str, ep.EngineBuild],
    plans: Mapping[str, Path],
) -> list[str]:
    """Ditto's face models of an export with a `registration` entry, as unbatched stage models: the
    python-ort runner on CPU, fp16 TensorRT plans in the tensorrt flavor (as Ditto's TensorRT
    configuration; a README.txt until they are built), Triton's onnxruntime backend otherwise."""
    if registration is None:
        return []
    runner = {"tensorrt": "tensorrt"}.get(flavor, "ort" if kind == pbtxt.KIND_CPU else "onnxruntime")
    for name, model in registration["models"].items():
        spec = FACE_MODELS[name].spec
        config = stage_config(
            spec, flavor, kind=kind, max_batch_size=0, ort_threads=ort_threads, runner=runner, flush_denormals=False
        )
        artifact = plans.get(name) if runner == "tensorrt" else Path(export_dir) / model["file"]
        _write_stage_model(out_dir, config, runner, artifact, builds.get(name))
    return list(registration["models"])


def _write_service_models(
    out_dir: Path,
    profile: Profile,
    export_dir: Path,
    registration: Mapping[str, Any] | None,
    *,
    max_sessions: int,
    idle_timeout_s: float,
) -> list[str]:
    """The python service models, avatar_registry (with face_landmarker.task when the export has it)
    and orchestrator; returns their names."""
    ditto = {"registration": REGISTRATION_DITTO, "eyes": registration["eyes"]} if registration else {}
    configs = [
        avatar_registry_config(profile, **ditto),
        orchestrator_config(profile, max_sessions=max_sessions, idle_timeout_s=idle_timeout_s),
    ]
    for config in configs:
        version_dir = out_dir / config.name / VERSION
        version_dir.mkdir(parents=True)
        pbtxt.write_config(config, out_dir / config.name)
        module = f"{BACKENDS_PACKAGE}.{config.name}"
        (version_dir / "model.py").write_text(_shim(module, f"service model {config.name}"))
        if config.name == AVATAR_REGISTRY and registration and "task_file" in registration:
            _link_or_copy(Path(export_dir) / registration["task_file"], version_dir / registration["task_file"])
    return [c.name for c in configs]


def _write_marker(out_dir: Path, **marker: object) -> None:
    """The marker that says ditto-serve rendered `out_dir` (so a later render may replace it) and from what."""
    (out_dir / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
