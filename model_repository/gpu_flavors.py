"""What the GPU flavors (`onnxruntime`, `tensorrt`) need beyond their configs: the NVIDIA container
they run in, TensorRT precision per stage and how each stage's `model.plan` is built.

Nothing here runs on this machine: the onnxruntime and tensorrt backends exist only inside NVIDIA's
Triton containers, and engines must be built with the TensorRT version of the serving image.
"""

from __future__ import annotations

from pathlib import Path

from ditto_triton.profiles import Profile
from ditto_triton.stages import StageSpec

# Triton 2.51.0 (the server bundled by nvidia-pytriton 0.7.0, used on CPU here) ships as NGC 24.10.
NGC_RELEASE = "24.10"
TRITON_IMAGE = f"nvcr.io/nvidia/tritonserver:{NGC_RELEASE}-py3"
TENSORRT_IMAGE = f"nvcr.io/nvidia/tensorrt:{NGC_RELEASE}-py3"

# Ditto's converter keeps these in fp32 and builds every other engine in fp16 (reference §9).
TRT_FP32_STAGES = frozenset({"motion_extractor", "lmdm", "hubert"})
# TensorRT has no 5-D GridSample: this stage needs a plugin (or another runner).
TRT_PLUGIN_STAGES = {"warp_network": "GridSample3D"}


def trt_precision(stage: str) -> str:
    return "fp32" if stage in TRT_FP32_STAGES else "fp16"


def _shape_arg(spec: StageSpec, batch: int, dynamic_length: int | None) -> str:
    return ",".join(
        f"{t.name}:" + "x".join(str(d) for d in t.example_shape(batch=batch, dynamic_length=dynamic_length))
        for t in spec.inputs
    )


def trtexec_command(spec: StageSpec, profile: Profile, onnx_path: str, max_batch_size: int) -> str:
    """A `trtexec` line that builds this stage's plan with an optimization profile covering the
    batch sizes the config allows (HuBERT: audio windows of ½, 1 and 2 × 6480 samples, as Ditto)."""
    if spec.batch_dynamic:
        shapes = [_shape_arg(spec, b, None) for b in (1, max(1, max_batch_size // 2), max_batch_size)]
    else:
        window = profile.hubert.window_samples
        shapes = [_shape_arg(spec, 1, n) for n in (window // 2, window, window * 2)]
    parts = [
        "trtexec",
        f"--onnx={onnx_path}",
        "--saveEngine=model.plan",
        f"--minShapes={shapes[0]}",
        f"--optShapes={shapes[1]}",
        f"--maxShapes={shapes[2]}",
    ]
    if trt_precision(spec.name) == "fp16":
        parts.append("--fp16")
    if spec.name in TRT_PLUGIN_STAGES:
        parts.append("--staticPlugins=/plugins/libgrid_sample_3d_plugin.so")
    return " ".join(parts)


def plan_readme(spec: StageSpec, profile: Profile, onnx_file: str, max_batch_size: int) -> str:
    """Text of `<stage>/1/README.txt` in a tensorrt repository (where `model.plan` must go)."""
    precision = trt_precision(spec.name)
    lines = [
        f"{spec.name}: TensorRT plan ({precision}) goes here as model.plan",
        "",
        "Plans are not portable: build this one on the GPU that will serve it, with the TensorRT",
        f"version of the serving image ({TRITON_IMAGE}),",
        f"for example inside {TENSORRT_IMAGE}:",
        "",
        f"  docker run --gpus all --rm -v <export dir>:/export -v $PWD:/out -w /out {TENSORRT_IMAGE} \\",
        "    " + trtexec_command(spec, profile, f"/export/{onnx_file}", max_batch_size),
        "",
        f"The ONNX file is {onnx_file} from the `ditto-export --profile {profile.name}` output directory.",
    ]
    if precision == "fp16":
        lines.append("Ditto builds this stage in fp16; drop --fp16 for an fp32 engine.")
    else:
        lines.append("Ditto keeps this stage in fp32.")
    if spec.name in TRT_PLUGIN_STAGES:
        plugin = TRT_PLUGIN_STAGES[spec.name]
        lines += [
            "",
            f"TensorRT has no 5-D GridSample: this network needs the {plugin} plugin",
            "(Ditto ships libgrid_sample_3d_plugin.so; rebuild it against this TensorRT version) and its",
            "GridSample layers must stay fp32. The server must load the plugin too, e.g.",
            "  tritonserver --backend-config=tensorrt,plugins=/plugins/libgrid_sample_3d_plugin.so ...",
            "Without the plugin, serve this stage from the onnxruntime flavor instead: ONNX Runtime runs",
            "the opset-20 5-D GridSample (on its CUDA provider only in releases with onnxruntime PR #27201,",
            "early 2026; older ones, such as the one in this image, run that node on the CPU).",
        ]
    return "\n".join(lines) + "\n"


def docker_run_command(repo_dir: Path, *, host: str = "127.0.0.1") -> str:
    """The `docker run` line that serves a rendered GPU repository with NVIDIA's Triton image."""
    ports = " ".join(f"-p {host}:{p}:{p}" for p in (8000, 8001, 8002))
    return (
        f"docker run --gpus all --rm --shm-size=1g {ports} -v {Path(repo_dir).resolve()}:/models "
        f"{TRITON_IMAGE} tritonserver --model-repository=/models"
    )
