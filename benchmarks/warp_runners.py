"""Which runner should serve the warp network (its two 5-D GridSamples have no TensorRT layer):
ms per call and per frame at each batch size, PyTorch runner vs ONNX Runtime, on this machine.

    python -m ditto_triton.benchmarks.warp_runners --export out/export/full --batches 1,2,4,8 --out warp.json

On a GPU: the torch runner in fp16 (grid samples fp32) and in fp32, and ONNX Runtime with the CUDA
provider when this onnxruntime has it (its GridSample nodes fall back to the CPU in releases without
onnxruntime PR #27201). Without a GPU: both on the CPU, fp32. A TensorRT plan with the GridSample3D
plugin is timed by `trtexec --loadEngine=... --plugins=...` inside the container (not here).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ditto_triton.benchmarks import provenance
from ditto_triton.export.sample_inputs import sample_inputs
from ditto_triton.manifest import checkpoint_of, read_manifest
from ditto_triton.profiles import get_profile
from ditto_triton.stages import stage_specs

STAGE = "warp_network"


def _time(fn: Callable[[], Any], budget_s: float, max_repeats: int) -> float:
    fn()  # warm-up (CUDA graphs, cuDNN autotune, ORT allocations)
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < max_repeats and (not times or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def torch_runner(export_dir: Path, device: str, precision: str):
    """The warp stage's torch runner with the config the repository would give it, on `device`."""
    from google.protobuf.json_format import MessageToDict

    from ditto_triton.model_repository import pbtxt
    from ditto_triton.model_repository.render import stage_config
    from ditto_triton.model_repository.torch_runtime import TorchStageRunner

    manifest = read_manifest(export_dir)
    checkpoint = checkpoint_of(manifest["stages"][STAGE], export_dir)
    spec = stage_specs(get_profile(manifest["profile"]))[STAGE]
    kind = pbtxt.KIND_CPU if device == "cpu" else pbtxt.KIND_GPU
    config = stage_config(spec, "torch", kind=kind, max_batch_size=8, profile=manifest["profile"])
    config = MessageToDict(config, preserving_proto_field_name=True)
    config["parameters"]["precision"] = {"string_value": precision}
    config["parameters"]["checkpoint_file"] = {"string_value": checkpoint.name}
    runner = TorchStageRunner(config, checkpoint.parent)
    return lambda inputs: runner.run([inputs])[0]


def ort_runner(export_dir: Path, providers: list[str]):
    import onnxruntime as ort

    manifest = read_manifest(export_dir)
    session = ort.InferenceSession(str(export_dir / manifest["stages"][STAGE]["file"]), providers=providers)
    return lambda inputs: session.run(None, inputs)


def measure(export_dir: Path, batches: tuple[int, ...], budget_s: float, max_repeats: int) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    spec = stage_specs(get_profile(read_manifest(export_dir)["profile"]))[STAGE]
    runners: dict[str, Callable] = {}
    if torch.cuda.is_available():
        runners["torch cuda fp16"] = torch_runner(export_dir, "cuda", "fp16")
        runners["torch cuda fp32"] = torch_runner(export_dir, "cuda", "fp32")
    else:
        runners["torch cpu fp32"] = torch_runner(export_dir, "cpu", "fp32")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        runners["onnxruntime cuda fp32"] = ort_runner(export_dir, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    else:
        runners["onnxruntime cpu fp32"] = ort_runner(export_dir, ["CPUExecutionProvider"])
    out: dict[str, Any] = {}
    for name, run in runners.items():
        rows = {}
        for batch in batches:
            inputs = {k: np.ascontiguousarray(v) for k, v in sample_inputs(spec, batch=batch, seed=batch).items()}
            ms = _time(lambda r=run, i=inputs: r(i), budget_s, max_repeats)
            rows[batch] = {"ms_per_call": round(ms, 2), "ms_per_frame": round(ms / batch, 2)}
        out[name] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, default=Path("out/export/tiny"))
    parser.add_argument("--batches", type=lambda s: tuple(int(b) for b in s.split(",")), default=(1, 2, 4, 8))
    parser.add_argument("--budget-s", type=float, default=5.0, help="timed seconds per runner and batch")
    parser.add_argument("--max-repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = parser.parse_args(argv)
    runners = measure(args.export, args.batches, args.budget_s, args.max_repeats)
    provenance.print_or_write(provenance.stamped(args.export, {"runners": runners}), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
