"""Render a Triton model repository from an export directory (its `manifest.json` + ONNX files).

Every stage config is generated from `ditto_triton.stages.stage_specs(profile)`; model names are
stage names. Flavors:

- `python-ort`: python-backend models running ONNX Runtime on CPU (`backends/stage_ort.py`); the
  embedded default, served by the pip `tritonserver` (see `server.py`).
- `onnxruntime`: Triton's onnxruntime backend (`platform: "onnxruntime_onnx"`), NVIDIA's container.
- `tensorrt`: `platform: "tensorrt_plan"`; only configs and a README.txt per stage saying how its
  `model.plan` is built on the serving GPU (see `gpu_flavors.py`).

All flavors get the `render_chain` and `extractors` ensembles and, with `include_services`, the
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

from ditto_triton.ensembles.extractors import extractors_config
from ditto_triton.ensembles.render_chain import render_chain_config
from ditto_triton.export.manifest import read_manifest
from ditto_triton.model_repository import gpu_flavors, pbtxt
from ditto_triton.model_repository.service_configs import avatar_registry_config, orchestrator_config
from ditto_triton.model_repository.stage_runtime import StageParameters
from ditto_triton.profiles import get_profile
from ditto_triton.stages import StageSpec, stage_specs

log = logging.getLogger(__name__)

FLAVORS = ("python-ort", "onnxruntime", "tensorrt")
VERSION = "1"
MARKER = ".ditto_repository.json"
BACKENDS_PACKAGE = "ditto_triton.model_repository.backends"
# How long the dynamic batcher holds a request that has not filled a preferred batch. On the CPU
# flavor an idle stage starts at once (a single session's batch-1 LMDM step would otherwise wait
# the full delay, 400 times per 16 s clip); requests that queue while the stage is busy are still
# batched together. GPU flavors wait a little to batch the per-frame stages of many sessions.
QUEUE_DELAY_US = {"python-ort": 0, "onnxruntime": 500, "tensorrt": 500}

_DEFAULT_KIND = {"python-ort": pbtxt.KIND_CPU, "onnxruntime": pbtxt.KIND_GPU, "tensorrt": pbtxt.KIND_GPU}
_ARTIFACT = {"python-ort": "model.onnx", "onnxruntime": "model.onnx", "tensorrt": "model.plan"}


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


def preferred_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two from 2 up to, and including, `max_batch_size`."""
    sizes = [b for b in (2**i for i in range(1, 16)) if b < max_batch_size]
    return sizes + [max_batch_size] if max_batch_size > 1 else []


def default_ort_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def stage_config(
    spec: StageSpec, flavor: str, *, kind: int, max_batch_size: int, ort_threads: int | None = None
) -> pbtxt.ModelConfig:
    """One stage's config. Batch-dynamic stages get `max_batch_size` and dynamic batching;
    the others (HuBERT) are unbatched (max_batch_size 0, full dims)."""
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; choose one of {FLAVORS}")
    if spec.batch_dynamic and max_batch_size < 1:
        raise ValueError(f"{spec.name}: max_batch_size must be >= 1 (got {max_batch_size})")
    batched = spec.batch_dynamic
    config = pbtxt.ModelConfig(name=spec.name, max_batch_size=max_batch_size if batched else 0)
    config.input.extend(pbtxt.spec_input(t, batched) for t in spec.inputs)
    config.output.extend(pbtxt.spec_output(t, batched) for t in spec.outputs)
    if batched:
        config.dynamic_batching.preferred_batch_size.extend(preferred_batch_sizes(max_batch_size))
        config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US[flavor]
    config.instance_group.append(pbtxt.instance_group(kind, 1))
    if flavor == "python-ort":
        config.backend = "python"
        threads = default_ort_threads() if ort_threads is None else ort_threads
        params = StageParameters(onnx_file=_ARTIFACT[flavor], intra_op_threads=threads)
        pbtxt.set_parameters(config, params.as_config())
    elif flavor == "onnxruntime":
        config.platform = "onnxruntime_onnx"
    else:
        config.platform = "tensorrt_plan"
        trt_params: dict[str, object] = {"precision": gpu_flavors.trt_precision(spec.name)}
        if spec.name in gpu_flavors.TRT_PLUGIN_STAGES:
            trt_params["required_plugin"] = gpu_flavors.TRT_PLUGIN_STAGES[spec.name]
        pbtxt.set_parameters(config, trt_params)
    return config


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _shim(module: str, what: str) -> str:
    doc = f'"""{what}: the implementation lives in {module}."""'
    return f"{doc}\nfrom {module} import TritonPythonModel  # noqa: F401\n"


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
    max_batch_size: int = 8,
    ort_threads: int | None = None,
    max_sessions: int = 16,
    idle_timeout_s: float = 60.0,
) -> Path:
    """Write a complete model repository for `flavor` into `out_dir` and return it.

    `out_dir` is replaced if an earlier render made it; any other non-empty directory is refused.
    python-ort/onnxruntime stages get their ONNX file hard-linked (copied across file systems) to
    `<stage>/1/model.onnx`; tensorrt stages get a README.txt instead of the plan.
    """
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; choose one of {FLAVORS}")
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    kind = parse_instance_kind(flavor, instance_kind)
    manifest = read_manifest(export_dir)
    profile = get_profile(manifest["profile"])
    specs = stage_specs(profile)
    sources = {
        name: _check_manifest_stage(name, manifest["stages"].get(name), spec, export_dir)
        for name, spec in specs.items()
    }
    _prepare_out_dir(out_dir)

    for name, spec in specs.items():
        config = stage_config(spec, flavor, kind=kind, max_batch_size=max_batch_size, ort_threads=ort_threads)
        model_dir = out_dir / name
        version_dir = model_dir / VERSION
        version_dir.mkdir(parents=True)
        pbtxt.write_config(config, model_dir)
        if flavor == "tensorrt":
            readme = gpu_flavors.plan_readme(spec, profile, sources[name].name, max_batch_size)
            (version_dir / "README.txt").write_text(readme)
        else:
            _link_or_copy(sources[name], version_dir / _ARTIFACT[flavor])
        if flavor == "python-ort":
            (version_dir / "model.py").write_text(_shim(f"{BACKENDS_PACKAGE}.stage_ort", f"python-ort stage {name}"))

    ensembles = [render_chain_config(specs, max_batch_size), extractors_config(specs, max_batch_size)]
    for config in ensembles:
        pbtxt.write_config(config, out_dir / config.name)
        (out_dir / config.name / VERSION).mkdir()

    services = []
    if include_services:
        services = [
            avatar_registry_config(profile),
            orchestrator_config(profile, max_sessions=max_sessions, idle_timeout_s=idle_timeout_s),
        ]
        for config in services:
            version_dir = out_dir / config.name / VERSION
            version_dir.mkdir(parents=True)
            pbtxt.write_config(config, out_dir / config.name)
            module = f"{BACKENDS_PACKAGE}.{config.name}"
            (version_dir / "model.py").write_text(_shim(module, f"service model {config.name}"))

    marker = {
        "flavor": flavor,
        "profile": profile.name,
        "export_dir": str(export_dir.resolve()),
        "stages": list(specs),
        "ensembles": [c.name for c in ensembles],
        "services": [c.name for c in services],
    }
    (out_dir / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    log.info("rendered %s repository (%s profile) in %s", flavor, profile.name, out_dir)
    return out_dir
