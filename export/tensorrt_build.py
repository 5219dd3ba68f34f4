"""`ditto-trt-build`: build the tensorrt flavor's plans from an export with the TensorRT Python API.

    ditto-trt-build --export /export --engines /cache/engines              # on the serving GPU
    ditto-trt-build --export out/export/tiny --engines out/engines --dry-run  # anywhere: what it would build

One plan per stage with a dynamic-batch optimization profile (batch 1 / max÷2 / max; HuBERT: 3240 /
6480 / 12960 samples), fp16 except motion extractor, LMDM and HuBERT (fp32, as Ditto). Plans are
cached in the engines directory under a key of ONNX sha256, precision, shapes, TensorRT version and
GPU, so a restart with the same export reuses them; `engines.json` records the TensorRT version,
the GPU and every plan. Every plan is then checked against ONNX Runtime with Polygraphy's
Comparator (`engine_compare.py`, per-stage tolerances; `--no-compare` skips it): a plan that fails
is not cached and the build stops. The warp network is built only with `--warp-runner plugin` (its 5-D
GridSamples rewritten to GridSample3D plugin nodes, pinned to fp32); by default the tensorrt flavor
serves it with the PyTorch runner instead.

Only the dry run runs on the project's machines: TensorRT is not installable there (see README).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ditto_triton.export import engine_compare as ec
from ditto_triton.export import engine_plan as ep
from ditto_triton.limits import DEFAULT_LIMITS
from ditto_triton.manifest import read_manifest
from ditto_triton.profiles import Profile, get_profile

log = logging.getLogger(__name__)


class EngineBuildError(RuntimeError):
    """TensorRT refused the network or could not build it."""


LIB_DIRS = (Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"), Path("/usr/local/tensorrt/lib"))


def tensorrt_version() -> str:
    import tensorrt as trt

    return trt.__version__


def server_tensorrt_version(lib_dirs: tuple[Path, ...] = LIB_DIRS) -> str | None:
    """The TensorRT that tritonserver's tensorrt backend links (from `libnvinfer.so.X.Y.Z`), if found."""
    found = sorted(p.name for d in lib_dirs if d.is_dir() for p in d.glob("libnvinfer.so.*.*.*"))
    return found[-1].removeprefix("libnvinfer.so.") if found else None


def check_same_tensorrt(builder: str, server: str | None) -> None:
    """Plans only load in the TensorRT that built them: the Python API must match the server's."""
    if server is not None and builder.split(".")[:3] != server.split(".")[:3]:
        raise EngineBuildError(
            f"the TensorRT Python API is {builder} but the server's libnvinfer is {server}; install the "
            f"matching tensorrt wheel (pip install tensorrt-cu12=={'.'.join(server.split('.')[:3])})"
        )


_loaded_plugin_libraries: set[str] = set()


def init_plugins(build: ep.EngineBuild, plugin_library: Path | None) -> None:
    """Register TensorRT's own plugins and, for a plugin build, the plugin library (once per process):
    building and deserializing a plan both look plugins up in this process-wide registry."""
    import tensorrt as trt

    trt.init_libnvinfer_plugins(trt.Logger(trt.Logger.WARNING), "")
    if build.plugin is None:
        return
    if plugin_library is None or not Path(plugin_library).is_file():
        raise EngineBuildError(
            f"{build.stage}: the {build.plugin} plugin library is needed (--plugin {ep.GRID_PLUGIN_LIBRARY})"
        )
    if str(plugin_library) not in _loaded_plugin_libraries:
        trt.get_plugin_registry().load_library(str(plugin_library))
        _loaded_plugin_libraries.add(str(plugin_library))


def build_plan(build: ep.EngineBuild, out: Path, *, plugin_library: Path | None, workspace_gib: int = 8) -> None:
    """Parse the ONNX file and write a serialized plan to `out` (TensorRT 10 Python API)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    init_plugins(build, plugin_library)
    builder = trt.Builder(logger)
    onnx_path = build.onnx
    scratch = None
    if build.plugin is not None:
        scratch = tempfile.TemporaryDirectory()
        onnx_path = Path(scratch.name) / build.onnx.name
        ep.gridsample_for_plugin(build.onnx, onnx_path)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{build.stage}: TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gib << 30)
    config.builder_optimization_level = 5  # Ditto's converter setting
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in build.shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if build.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if build.fp32_layers:
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if any(part in layer.name for part in build.fp32_layers):
                layer.precision = trt.float32
                for k in range(layer.num_outputs):
                    layer.set_output_type(k, trt.float32)
    serialized = builder.build_serialized_network(network, config)
    if scratch is not None:
        scratch.cleanup()
    if serialized is None:
        raise EngineBuildError(f"{build.stage}: TensorRT failed to build the plan (see the log above)")
    out.write_bytes(bytes(serialized))


def recorded_comparisons(engines_dir: Path) -> dict[str, Any]:
    """{plan file: its comparison} from the engines manifest already there (plans cached earlier)."""
    path = Path(engines_dir) / ep.ENGINES_MANIFEST
    if not path.is_file():
        return {}
    engines = json.loads(path.read_text()).get("engines", {})
    return {entry["plan"]: entry.get("comparison") for entry in engines.values() if entry.get("comparison")}


def checked_plan(
    build: ep.EngineBuild, plan: Path, profile: Profile, *, plugin_library: Path | None, compare: bool
) -> dict[str, Any] | None:
    """Compare `plan` with ONNX Runtime (unless `compare` is off); a plan that fails is deleted, so
    the cache only keeps checked plans. Returns the comparison record."""
    if not compare:
        return None
    init_plugins(build, plugin_library)
    try:
        comparison = ec.compare_plan(build, plan, profile)
    except ec.EngineMismatch:
        plan.unlink(missing_ok=True)
        raise
    worst = max((e["max_abs"] for outputs in comparison["errors"].values() for e in outputs.values()), default=0.0)
    log.info("%s: matches ONNX Runtime (max abs error %.2e, atol %.0e)", build.stage, worst, comparison["atol"])
    return comparison


def build_or_reuse(
    build: ep.EngineBuild,
    plan: Path,
    profile: Profile,
    recorded: dict[str, Any],
    *,
    plugin_library: Path | None,
    compare: bool,
) -> dict[str, Any]:
    """Build `plan` unless it is cached, and compare it unless a comparison is recorded; returns the
    fields of its engines-manifest entry this run decides (build_s, comparison)."""
    if plan.is_file():
        log.info("%s: cached %s", build.stage, plan.name)
        comparison = recorded.get(plan.name) or checked_plan(
            build, plan, profile, plugin_library=plugin_library, compare=compare
        )
        return {"build_s": None, "comparison": comparison}
    log.info("building %s", build.describe())
    t0 = time.perf_counter()
    partial = plan.with_suffix(".partial")
    build_plan(build, partial, plugin_library=plugin_library)
    build_s = round(time.perf_counter() - t0, 1)
    log.info("%s: built in %.1f s", build.stage, build_s)
    comparison = checked_plan(build, partial, profile, plugin_library=plugin_library, compare=compare)
    partial.rename(plan)
    return {"build_s": build_s, "comparison": comparison}


def build_all(
    export_dir: Path,
    engines_dir: Path,
    *,
    max_batch_size: int,
    warp_runner: str,
    plugin_library: Path | None,
    device: int = 0,
    compare: bool = True,
) -> Path:
    """Build (or reuse from the cache) every plan, compare each with ONNX Runtime unless `compare` is
    off, and write `engines.json`; returns its path."""
    builds = ep.plan_builds(export_dir, max_batch_size=max_batch_size, warp_runner=warp_runner)
    profile = get_profile(read_manifest(export_dir)["profile"])
    version, gpu = tensorrt_version(), ep.gpu_identity(device)
    check_same_tensorrt(version, server_tensorrt_version())
    engines_dir.mkdir(parents=True, exist_ok=True)
    recorded = recorded_comparisons(engines_dir)
    engines = {}
    for build in builds:
        name = build.cache_name(version, gpu)
        done = build_or_reuse(
            build, engines_dir / name, profile, recorded, plugin_library=plugin_library, compare=compare
        )
        engines[build.stage] = {**ep.engine_record(build, name, done["build_s"]), "comparison": done["comparison"]}
    record = {
        "tensorrt": version,
        "gpu": gpu,
        "export_dir": str(Path(export_dir).resolve()),
        "max_batch_size": max_batch_size,
        "warp_runner": warp_runner,
        "plugin_library": str(plugin_library) if plugin_library else None,
        "compared_with_onnxruntime": compare,
        "engines": engines,
    }
    return ep.write_engines_manifest(engines_dir, record)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ditto-trt-build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, required=True, help="ditto-export output directory")
    parser.add_argument("--engines", type=Path, required=True, help="plan cache directory (a volume in the container)")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULT_LIMITS.max_batch_size,
        help="largest batch of the profiles (default %(default)s)",
    )
    parser.add_argument("--warp-runner", choices=ep.WARP_RUNNERS, default="torch", help="default %(default)s")
    parser.add_argument("--plugin", type=Path, default=None, help=f"{ep.GRID_PLUGIN_LIBRARY} (warp runner plugin)")
    parser.add_argument("--device", type=int, default=0, help="GPU index (default %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="list the plans and exit; needs no TensorRT or GPU")
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="do not check each new plan against ONNX Runtime (Polygraphy's Comparator)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        builds = ep.plan_builds(args.export, max_batch_size=args.max_batch_size, warp_runner=args.warp_runner)
        if args.dry_run:
            print(f"{len(builds)} plan(s) for {args.export} into {args.engines}:")
            for build in builds:
                print("  " + build.describe())
            if args.warp_runner == "torch":
                print(f"  {ep.WARP_STAGE}: no plan, served by the PyTorch runner (--warp-runner plugin builds one)")
            return 0
        if args.warp_runner == "plugin" and args.plugin is None:
            raise ep.EnginePlanError(f"--warp-runner plugin needs --plugin PATH/{ep.GRID_PLUGIN_LIBRARY}")
        path = build_all(
            args.export,
            args.engines,
            max_batch_size=args.max_batch_size,
            warp_runner=args.warp_runner,
            plugin_library=args.plugin,
            device=args.device,
            compare=not args.no_compare,
        )
    except (ep.EnginePlanError, EngineBuildError, ec.EngineMismatch, FileNotFoundError) as err:
        print(f"ditto-trt-build: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        print(f"ditto-trt-build: {err}; the TensorRT Python API is needed (NVIDIA's container has it)", file=sys.stderr)
        return 2
    print(f"plans and {ep.ENGINES_MANIFEST}: {path.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
