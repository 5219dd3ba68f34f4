"""Seeded, plausibly-ranged inputs for every stage (export tracing, parity checks, timing)."""

from __future__ import annotations

import numpy as np

from ditto_triton.stages import StageSpec

HUBERT_WINDOW = 6480


def sample_inputs(
    spec: StageSpec,
    batch: int = 1,
    seed: int = 0,
    samples: int = HUBERT_WINDOW,
    timestep: int | None = None,
    n_timestep: int = 1000,
) -> dict[str, np.ndarray]:
    """One array per input of `spec`, with the batch (or sample-count) axis filled in."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for t in spec.inputs:
        shape = t.example_shape(batch, samples if spec.name == "hubert" else None)
        if t.name == "image":
            arr = rng.random(shape)
        elif t.name == "kp_source":
            arr = rng.normal(0.0, 0.3, shape)
        elif t.name == "kp_driving":
            base = out.get("kp_source", rng.normal(0.0, 0.3, shape))
            arr = base + rng.normal(0.0, 0.05, shape)
        elif t.name == "time_cond":
            arr = (
                np.full(shape, timestep, dtype=np.int64)
                if timestep is not None
                else rng.integers(0, n_timestep, shape, dtype=np.int64)
            )
        elif t.name == "guidance_weight":
            arr = rng.uniform(1.0, 3.0, shape)  # around Ditto's fixed weight of 2
        elif t.name == "input_values":
            arr = rng.normal(0.0, 0.1, shape)
        else:
            arr = rng.normal(0.0, 1.0, shape)
        out[t.name] = np.ascontiguousarray(arr, dtype=np.dtype(t.dtype))
    return out
