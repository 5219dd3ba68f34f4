"""What the GPU flavors need beyond their configs: the NVIDIA container they run in, where each
stage's TensorRT plan comes from, and how the warp network is served.

Nothing here runs a GPU: the onnxruntime and tensorrt backends exist only inside NVIDIA's Triton
containers, and plans must be built there, on the serving GPU (`ditto-trt-build`, run by the
container's entrypoint; see `deploy/`).
"""

from __future__ import annotations

from pathlib import Path

from ditto_triton.export import engine_plan as ep

# 24.12 is the first release on Ubuntu 24.04 with Python 3.12 (24.10 has 3.10, older than this
# package allows); its python backend stub runs the service models and the PyTorch runner.
NGC_RELEASE = "24.12"
TRITON_IMAGE = f"nvcr.io/nvidia/tritonserver:{NGC_RELEASE}-py3"
TENSORRT_IMAGE = f"nvcr.io/nvidia/tensorrt:{NGC_RELEASE}-py3"
PLUGIN_DIR = "/opt/ditto/plugins"

# The ONNX Runtime of the 24.12 image (1.19.2) has no CUDA kernel for 5-D GridSample (added by
# onnxruntime PR #27201, 2026): it would run both warp GridSamples on the CPU with copies in and out.
WARP_RUNNERS = {"onnxruntime": ("torch", "onnxruntime"), "tensorrt": ep.WARP_RUNNERS}
DEFAULT_WARP_RUNNER = "torch"


def check_warp_runner(flavor: str, warp_runner: str | None) -> str | None:
    """The warp runner a flavor uses (None for flavors that have no choice)."""
    if flavor not in WARP_RUNNERS:
        if warp_runner is not None:
            raise ValueError(f"warp_runner applies to the {sorted(WARP_RUNNERS)} flavors, not {flavor!r}")
        return None
    runner = warp_runner or DEFAULT_WARP_RUNNER
    if runner not in WARP_RUNNERS[flavor]:
        raise ValueError(
            f"the {flavor} flavor serves the warp network with one of {WARP_RUNNERS[flavor]}, not {runner!r}"
        )
    return runner


def plan_readme(build: ep.EngineBuild) -> str:
    """Text of `<stage>/1/README.txt` in a tensorrt repository rendered without plans."""
    lines = [
        f"{build.stage}: TensorRT plan ({build.precision}) goes here as model.plan",
        "",
        "Plans are not portable: build them on the GPU that will serve them, with the TensorRT of the",
        f"serving image ({TRITON_IMAGE}). The container in deploy/ does it at start, cached in a",
        "volume; by hand, inside that image:",
        "",
        "  ditto-trt-build --export <export dir> --engines <engines dir>",
        "  ditto-serve --flavor tensorrt --engines <engines dir> --render-only ...",
        "",
        "This plan: " + build.describe(),
    ]
    if build.plugin:
        lines += [
            "",
            f"TensorRT has no 5-D GridSample: this plan uses the {build.plugin} plugin ({ep.GRID_PLUGIN_LIBRARY},",
            "built against the image's TensorRT by deploy/Dockerfile) with its GridSample layers kept in fp32.",
            "The server loads it with --backend-config=tensorrt,plugins=<path>.",
        ]
    return "\n".join(lines) + "\n"


def docker_run_command(repo_dir: Path, *, host: str = "127.0.0.1", plugin: bool = False) -> str:
    """The `docker run` line that serves a rendered GPU repository with NVIDIA's Triton image."""
    ports = " ".join(f"-p {host}:{p}:{p}" for p in (8000, 8001, 8002))
    extra = f" --backend-config=tensorrt,plugins={PLUGIN_DIR}/{ep.GRID_PLUGIN_LIBRARY}" if plugin else ""
    return (
        f"docker run --gpus all --rm --shm-size=1g {ports} -v {Path(repo_dir).resolve()}:/models "
        f"{TRITON_IMAGE} tritonserver --model-repository=/models{extra}"
    )
