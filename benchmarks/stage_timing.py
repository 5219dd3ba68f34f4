"""Per-stage CPU time of an export, in this process: ONNX Runtime alone, or ONNX Runtime vs PyTorch.

The PyTorch module is rebuilt from the export's own checkpoints (the synthetic ones it wrote to
`synthetic_weights/`, or the real weights directory its manifest names) through the same strict
loader the export used, prepared for export the same way, and timed on the same seeded inputs
(`export.sample_inputs`) as the ONNX file. `ort_over_torch` is a speed ratio: PyTorch ms / ORT ms
(above 1: ONNX Runtime is faster).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ditto_triton.export.ort_runtime import ort_session
from ditto_triton.export.parity import time_stage
from ditto_triton.export.registry import STAGE_NETWORKS
from ditto_triton.export.sample_inputs import sample_inputs
from ditto_triton.export.weights import SYNTHETIC, load_stage
from ditto_triton.manifest import read_manifest
from ditto_triton.profiles import get_profile
from ditto_triton.stages import STAGE_ORDER, stage_specs


def weights_source(export_dir: Path, manifest: dict[str, Any]) -> Path:
    """Where the export's weights are: its own `synthetic_weights/` or the directory it was given."""
    weights = str(manifest.get("weights", SYNTHETIC))
    return Path(export_dir) / "synthetic_weights" if weights == SYNTHETIC else Path(weights)


def adaptive_samples(fn: Callable[[], object], budget_s: float, max_repeats: int, min_repeats: int = 1) -> list[float]:
    """One untimed warm-up call, then as many timed calls (ms) as fit in `budget_s`, within the bounds."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    repeats = max(min_repeats, min(max_repeats, int(budget_s / max(first, 1e-6))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def time_ort(
    export_dir: Path, stages: Iterable[str] = STAGE_ORDER, budget_s: float = 10.0, max_repeats: int = 50, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """{stage: {"batch": 1, "ort_ms": median, "samples_ms": [...]}} at batch 1, ORT CPU with 2 threads."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    specs = stage_specs(get_profile(manifest["profile"]))
    out: dict[str, dict[str, Any]] = {}
    for name in stages:
        session = ort_session(export_dir / manifest["stages"][name]["file"])
        inputs = sample_inputs(specs[name], batch=1, seed=seed)
        samples = adaptive_samples(lambda s=session, i=inputs: s.run(None, i), budget_s, max_repeats)
        out[name] = {
            "batch": 1,
            "ort_ms": round(statistics.median(samples), 3),
            "samples_ms": [round(s, 3) for s in samples],
        }
        del session
    return out


def time_ort_vs_torch(
    export_dir: Path, stages: Iterable[str] = STAGE_ORDER, repeats: int = 20, seed: int = 0
) -> dict[str, dict[str, float]]:
    """{stage: {"torch_ms", "ort_ms", "ort_over_torch"}}: medians of `repeats` batch-1 calls each."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    profile = get_profile(manifest["profile"])
    specs = stage_specs(profile)
    weights = weights_source(export_dir, manifest)
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ditto-stage-timing-") as scratch:
        for name in stages:
            net, spec = STAGE_NETWORKS[name], specs[name]
            loaded = load_stage(net, spec, profile, weights, int(manifest.get("seed", seed)), Path(scratch))
            if loaded.module is None:  # a user-supplied ONNX (real HuBERT): no PyTorch module to time
                continue
            module = loaded.module.eval()
            net.prepare_export(module)
            session = ort_session(export_dir / manifest["stages"][name]["file"])
            timing = time_stage(module, session, spec.input_names, sample_inputs(spec, seed=seed), repeats)
            out[name] = {
                "torch_ms": round(timing["torch_ms"], 3),
                "ort_ms": round(timing["ort_ms"], 3),
                "ort_over_torch": round(timing["torch_ms"] / timing["ort_ms"], 2),
            }
    return out
