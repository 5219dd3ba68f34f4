"""ONNX Runtime vs PyTorch: numerical parity and CPU timing of one stage."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

TOLERANCE = 1e-4


def relative_error(found: np.ndarray, ref: np.ndarray) -> float:
    """max|found - ref| / max|ref|: scale-free, and stable where ref crosses zero."""
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return float(np.max(np.abs(found.astype(np.float64) - ref.astype(np.float64)))) / max(scale, 1e-12)


def torch_outputs(module: nn.Module, input_names: list[str], inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(inputs[n]) for n in input_names))
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().numpy() for o in out]


def compare(
    module: nn.Module, session: ort.InferenceSession, input_names: list[str], inputs: dict[str, np.ndarray]
) -> dict[str, float]:
    """Relative error of every output, ONNX Runtime against PyTorch on the same inputs."""
    ref = torch_outputs(module, input_names, inputs)
    got = session.run(None, inputs)
    names = [o.name for o in session.get_outputs()]
    if len(ref) != len(got):
        raise ValueError(f"PyTorch gives {len(ref)} outputs, ONNX {len(got)}")
    errors = {}
    for name, r, g in zip(names, ref, got):
        if r.shape != g.shape:
            raise ValueError(f"output {name}: PyTorch shape {r.shape}, ONNX shape {g.shape}")
        errors[name] = relative_error(g, r)
    return errors


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_stage(
    module: nn.Module,
    session: ort.InferenceSession,
    input_names: list[str],
    inputs: dict[str, np.ndarray],
    repeats: int,
) -> dict[str, float]:
    """Median CPU milliseconds per call, PyTorch eager vs ONNX Runtime, same inputs; both flush denormals
    to zero, as they do when they serve (`ort_session`, the torch runner on the CPU)."""
    args = tuple(torch.from_numpy(inputs[n]) for n in input_names)

    def run_torch() -> None:
        with torch.no_grad():
            module(*args)

    flushing = torch.set_flush_denormal(True)
    try:
        torch_ms = median_ms(run_torch, repeats)
    finally:
        if flushing:
            torch.set_flush_denormal(False)
    return {"torch_ms": torch_ms, "ort_ms": median_ms(lambda: session.run(None, inputs), repeats)}
