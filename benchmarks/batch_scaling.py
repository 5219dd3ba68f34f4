"""Frames/s against batch size for the per-frame models, from the perf_analyzer stage sweep.

Concurrent sessions' frames meet in the dynamically batched warp and decoder models (and in the
render_chain ensemble that runs them), so what one GPU sustains follows from how a frame's cost
falls with the batch: `ms_per_frame` = 1000 / inferences per second at concurrency 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PER_FRAME_MODELS = ("render_chain", "warp_network", "decoder")


def batch_scaling(stages: Mapping[str, Any], models: tuple[str, ...] = PER_FRAME_MODELS) -> dict[str, Any]:
    """{model: {"by_batch": {b: {frames_per_s, ms_per_frame}}, "batch1_ms", "best_batch", "best_ms",
    "speedup"}} for the models the sweep measured (batches as the sweep's string keys)."""
    out: dict[str, Any] = {}
    for model in models:
        by_batch = stages.get(model)
        if not isinstance(by_batch, Mapping) or "error" in by_batch:
            continue
        rows = {}
        for batch, stats in sorted(by_batch.items(), key=lambda kv: int(kv[0])):
            rate = stats.get("infer_per_s") if isinstance(stats, Mapping) else None
            if rate:
                rows[int(batch)] = {"frames_per_s": round(rate, 2), "ms_per_frame": round(1000.0 / rate, 3)}
        if not rows:
            continue
        best = min(rows, key=lambda b: rows[b]["ms_per_frame"])
        first = rows.get(1, rows[min(rows)])
        out[model] = {
            "by_batch": rows,
            "batch1_ms": first["ms_per_frame"],
            "best_batch": best,
            "best_ms": rows[best]["ms_per_frame"],
            "speedup": round(first["ms_per_frame"] / rows[best]["ms_per_frame"], 2),
        }
    return out
