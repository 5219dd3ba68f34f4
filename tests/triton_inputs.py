"""Stage-model inputs and plain tritonclient calls shared by the tests that talk to stage models."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

from ditto_triton.profiles import TINY
from ditto_triton.stages import StageSpec, stage_specs

SPECS = stage_specs(TINY)


def seeded_inputs(spec: StageSpec, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Model-shaped inputs: images in [0, 1], keypoints ~ N(0, 0.3), LMDM step t = 500."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in spec.inputs:
        length = TINY.hubert.window_samples if spec.name == "hubert" else None
        shape = t.example_shape(batch=batch, dynamic_length=length)
        if t.dtype == "int64":
            out[t.name] = np.full(shape, 500, np.int64)
        elif t.name.startswith("kp"):
            out[t.name] = (0.3 * rng.standard_normal(shape)).astype(np.float32)
        else:
            out[t.name] = rng.random(shape, dtype=np.float32)
    return out


def to_wire(spec: StageSpec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Model shape -> request shape (LMDM's `time_cond` [B] travels as [B, 1])."""
    return {k: v.reshape(-1, 1) if spec.batch_dynamic and v.ndim == 1 else v for k, v in arrays.items()}


def infer_inputs(arrays: dict[str, np.ndarray]) -> list[grpcclient.InferInput]:
    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def infer(client, model: str, arrays: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    result = client.infer(model, infer_inputs(arrays), outputs=[grpcclient.InferRequestedOutput(n) for n in outputs])
    return {n: result.as_numpy(n) for n in outputs}
