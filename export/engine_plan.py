"""What the TensorRT build makes from an export, decided without TensorRT: one `EngineBuild` per
stage (ONNX file, precision, optimization-profile shapes, plugin), the cache file name of each
engine, the engines manifest, and the ONNX rewrite that hands the warp network's 5-D GridSamples
to the GridSample3D plugin.

`tensorrt_build.py` turns these into plans with the TensorRT Python API; `--dry-run` prints them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx
from onnx import helper

from ditto_triton.face_models import FACE_MODELS
from ditto_triton.manifest import read_manifest, sha256_file
from ditto_triton.profiles import Profile, get_profile
from ditto_triton.stages import STAGE_ORDER, StageSpec, stage_specs

ENGINES_MANIFEST = "engines.json"
FORMAT_VERSION = 1

# Ditto's converter keeps these in fp32 and builds every other engine in fp16 (reference §9).
FP32_STAGES = frozenset({"motion_extractor", "lmdm", "hubert"})
# TensorRT has no 5-D GridSample (reference export-probe §5): the warp network needs a plugin.
WARP_STAGE = "warp_network"
GRID_PLUGIN = "GridSample3D"
GRID_PLUGIN_LIBRARY = "libgrid_sample_3d_plugin.so"
# How the warp network is served in the tensorrt flavor: the PyTorch runner (CUDA 5-D GridSample,
# no plugin to build) or a TensorRT plan with the GridSample3D plugin.
WARP_RUNNERS = ("torch", "plugin")

Shape = tuple[int, ...]


class EnginePlanError(ValueError):
    """The export or the engines directory cannot give what the build or the repository needs."""


def precision(stage: str) -> str:
    return "fp32" if stage in FP32_STAGES else "fp16"


@dataclass(frozen=True)
class EngineBuild:
    """One plan to build. `shapes`: input -> (min, opt, max) of its optimization profile."""

    stage: str
    onnx: Path
    onnx_sha256: str
    precision: str
    shapes: dict[str, tuple[Shape, Shape, Shape]]
    max_batch_size: int
    plugin: str | None = None
    fp32_layers: tuple[str, ...] = field(default=())  # layer-name substrings pinned to fp32 in an fp16 build

    def cache_name(self, tensorrt_version: str, gpu: dict[str, str]) -> str:
        """`<stage>-<key>.plan`; the key covers everything the plan depends on, so a cache volume
        can hold plans of several exports, GPUs and TensorRT versions side by side."""
        identity = {
            "onnx_sha256": self.onnx_sha256,
            "precision": self.precision,
            "shapes": {k: [list(s) for s in v] for k, v in self.shapes.items()},
            "plugin": self.plugin,
            "fp32_layers": list(self.fp32_layers),
            "tensorrt": tensorrt_version,
            "gpu": gpu.get("name"),
            "compute_capability": gpu.get("compute_capability"),
        }
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        return f"{self.stage}-{key}.plan"

    def describe(self) -> str:
        shapes = "; ".join(
            f"{name} min {_fmt(lo)} opt {_fmt(opt)} max {_fmt(hi)}" for name, (lo, opt, hi) in self.shapes.items()
        )
        extra = f", plugin {self.plugin}, fp32 layers *{'*, *'.join(self.fp32_layers)}*" if self.plugin else ""
        return f"{self.stage}: {self.onnx.name} -> {self.precision}{extra}; {shapes}"


def _fmt(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def profile_shapes(spec: StageSpec, profile: Profile, max_batch_size: int) -> dict[str, tuple[Shape, Shape, Shape]]:
    """Batch-dynamic stages: batch 1 / max÷2 / max. HuBERT (unbatched): audio windows of ½, 1 and
    2 × 6480 samples, Ditto's own profile."""
    if spec.batch_dynamic:
        batches = (1, max(1, max_batch_size // 2), max_batch_size)
        return {t.name: tuple(t.example_shape(batch=b) for b in batches) for t in spec.inputs}
    window = profile.hubert.window_samples
    return {
        t.name: tuple(t.example_shape(dynamic_length=n) for n in (window // 2, window, window * 2)) for t in spec.inputs
    }


def trt_stages(warp_runner: str) -> list[str]:
    if warp_runner not in WARP_RUNNERS:
        raise EnginePlanError(f"warp_runner must be one of {WARP_RUNNERS}, not {warp_runner!r}")
    return [s for s in STAGE_ORDER if not (s == WARP_STAGE and warp_runner == "torch")]


def plan_builds(export_dir: Path, *, max_batch_size: int = 8, warp_runner: str = "torch") -> list[EngineBuild]:
    """Every plan the tensorrt flavor needs for this export, in stage order."""
    if max_batch_size < 1:
        raise EnginePlanError(f"max_batch_size must be >= 1, not {max_batch_size}")
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    profile = get_profile(manifest["profile"])
    specs = stage_specs(profile)
    builds = []
    for stage in trt_stages(warp_runner):
        entry = manifest["stages"].get(stage)
        if entry is None:
            raise EnginePlanError(f"{export_dir}: the manifest has no stage {stage!r}; export every stage first")
        plugin = GRID_PLUGIN if stage == WARP_STAGE else None
        builds.append(
            EngineBuild(
                stage=stage,
                onnx=export_dir / entry["file"],
                onnx_sha256=entry["sha256"],
                precision=precision(stage),
                shapes=profile_shapes(specs[stage], profile, max_batch_size),
                max_batch_size=max_batch_size if specs[stage].batch_dynamic else 0,
                plugin=plugin,
                fp32_layers=("GridSample",) if plugin else (),
            )
        )
    return builds + face_model_builds(export_dir, manifest)


def face_model_builds(export_dir: Path, manifest: dict[str, Any]) -> list[EngineBuild]:
    """Ditto's face models of an export with Ditto's registration: fixed-shape, unbatched fp16 plans
    (Ditto's TensorRT configuration builds them in fp16 too)."""
    registration = manifest.get("registration")
    if registration is None:
        return []
    builds = []
    for name, model in registration["models"].items():
        onnx_file = Path(export_dir) / model["file"]
        shapes = {t.name: (t.shape, t.shape, t.shape) for t in FACE_MODELS[name].spec.inputs}
        builds.append(EngineBuild(name, onnx_file, sha256_file(onnx_file), "fp16", shapes, max_batch_size=0))
    return builds


def gpu_identity(device: int = 0) -> dict[str, str]:
    """Name, compute capability and driver of GPU `device`, from nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        raise EnginePlanError("nvidia-smi not found: TensorRT plans are built on the GPU that serves them")
    fields = "name,compute_cap,driver_version,memory.total"
    text = subprocess.run(
        ["nvidia-smi", f"--id={device}", f"--query-gpu={fields}", "--format=csv,noheader"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    name, cc, driver, memory = (part.strip() for part in text.split(","))
    return {"name": name, "compute_capability": cc, "driver": driver, "memory": memory}


def write_engines_manifest(engines_dir: Path, record: dict[str, Any]) -> Path:
    path = Path(engines_dir) / ENGINES_MANIFEST
    path.write_text(json.dumps({"format_version": FORMAT_VERSION, **record}, indent=2) + "\n")
    return path


def engine_record(build: EngineBuild, plan: str, build_s: float | None) -> dict[str, Any]:
    record = asdict(build)
    record.update(onnx=str(build.onnx), plan=plan, build_s=build_s)
    record["shapes"] = {k: [list(s) for s in v] for k, v in build.shapes.items()}
    record["fp32_layers"] = list(build.fp32_layers)
    return record


def read_engines(engines_dir: Path, export_dir: Path, *, max_batch_size: int, warp_runner: str) -> dict[str, Path]:
    """{stage: plan path} from an engines directory, checked against the export and the repository
    settings (ONNX sha256, batch size, which stages): a plan of another export is refused."""
    engines_dir = Path(engines_dir)
    path = engines_dir / ENGINES_MANIFEST
    if not path.is_file():
        raise EnginePlanError(f"{engines_dir}: no {ENGINES_MANIFEST}; build the plans with ditto-trt-build first")
    record = json.loads(path.read_text())
    engines = record.get("engines", {})
    out: dict[str, Path] = {}
    for build in plan_builds(export_dir, max_batch_size=max_batch_size, warp_runner=warp_runner):
        entry = engines.get(build.stage)
        if entry is None:
            raise EnginePlanError(f"{path}: no plan for stage {build.stage!r}")
        if entry["onnx_sha256"] != build.onnx_sha256:
            raise EnginePlanError(f"{path}: the {build.stage} plan was built from another ONNX file; rebuild the plans")
        if entry["max_batch_size"] != build.max_batch_size:
            raise EnginePlanError(
                f"{path}: the {build.stage} plan allows batch {entry['max_batch_size']}, the repository wants "
                f"{build.max_batch_size}; rebuild with --max-batch-size {max_batch_size}"
            )
        plan = engines_dir / entry["plan"]
        if not plan.is_file():
            raise EnginePlanError(f"{plan}: plan listed in {ENGINES_MANIFEST} is missing")
        out[build.stage] = plan
    return out


def gridsample_for_plugin(src: Path, dst: Path) -> int:
    """Copy the warp network's ONNX with every 5-D `GridSample` node replaced by the plugin's custom
    `GridSample3D` node (attributes as ints: trilinear 0, zeros 0, align_corners 0, Ditto's settings),
    which the TensorRT ONNX parser maps to the plugin registered under that name. Returns the count."""
    model = onnx.load(str(src))
    modes = {"linear": 0, "bilinear": 0}
    paddings = {"zeros": 0}
    count = 0
    nodes = []
    for node in model.graph.node:
        if node.op_type != "GridSample":
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get("mode", b"linear").decode()
        padding = attrs.get("padding_mode", b"zeros").decode()
        if mode not in modes or padding not in paddings:
            raise EnginePlanError(
                f"{src}: GridSample {node.name!r} mode {mode!r}/{padding!r} has no GridSample3D equivalent"
            )
        nodes.append(
            helper.make_node(
                GRID_PLUGIN,
                list(node.input),
                list(node.output),
                name=node.name,
                interpolation_mode=modes[mode],
                padding_mode=paddings[padding],
                align_corners=int(attrs.get("align_corners", 0)),
            )
        )
        count += 1
    if count == 0:
        raise EnginePlanError(f"{src}: no GridSample node to hand to the {GRID_PLUGIN} plugin")
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(dst))
    return count
