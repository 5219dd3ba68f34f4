"""Input data for perf_analyzer (`--input-data` JSON): seeded, plausibly ranged tensors.

perf_analyzer's default "random" fills every tensor with random *bytes*: float32 inputs then hold NaN,
±Inf, denormals and values up to 3e38, and `time_cond` int64 steps far outside [0, 1000). "zero" is
valid but degenerate (all keypoints at one point makes the warp's grid samples read one cache line).
So the tensors here are shaped from the server's own model config and drawn in the ranges of
`ditto_triton.export.sample_inputs`: images in [0, 1), keypoints ~N(0, 0.3) with driving = source +
N(0, 0.05), time steps in [0, 1000), guidance weights in [1, 3), audio ~N(0, 0.1), other features ~N(0, 1). One batch-1 entry is
written per stage; perf_analyzer repeats it to fill a batch. Tensors travel as little-endian base64
with an explicit shape.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ditto_triton.benchmarks.perf_tool import PerfAnalyzerError
from ditto_triton.protocol import CHUNK_SAMPLES  # noqa: F401 - re-exported for perf_analyzer
from ditto_triton.streaming.audio import WINDOW_SAMPLES

HUBERT_WINDOW = WINDOW_SAMPLES  # samples per streaming HuBERT call (20 feature frames)
DEFAULT_SHAPES: Mapping[str, Mapping[str, tuple[int, ...]]] = {"hubert": {"input_values": (1, HUBERT_WINDOW)}}
N_TIMESTEPS = 1000
_NP_DTYPES = {
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
    "INT64": np.int64,
    "INT32": np.int32,
    "INT16": np.int16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


@dataclass(frozen=True)
class ModelInput:
    name: str
    datatype: str  # Triton's: FP32, INT64, BYTES, ...
    dims: tuple[int, ...]  # without the batch axis; -1 where dynamic
    optional: bool = False


@dataclass(frozen=True)
class ModelInfo:
    name: str
    max_batch_size: int
    inputs: tuple[ModelInput, ...]


def model_info(grpc_url: str, model: str) -> ModelInfo:
    """A served model's inputs and max_batch_size, from the server's config (gRPC)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    try:
        client = grpcclient.InferenceServerClient(grpc_url)
        try:
            config = client.get_model_config(model, as_json=True)["config"]
        finally:
            client.close()
    except InferenceServerException as exc:
        raise PerfAnalyzerError(f"{grpc_url}: cannot read the config of model '{model}': {exc.message()}") from None
    inputs = tuple(
        ModelInput(
            name=i["name"],
            datatype=i["data_type"].removeprefix("TYPE_").replace("STRING", "BYTES"),
            dims=tuple(int(d) for d in i.get("dims", [])),  # what a client sends; `reshape` is server-side
            optional=bool(i.get("optional", False)),
        )
        for i in config.get("input", [])
    )
    return ModelInfo(
        name=model,
        max_batch_size=int(config.get("max_batch_size", 0)),
        inputs=inputs,
    )


def plausible_tensor(
    name: str, shape: Sequence[int], dtype: np.dtype, rng: np.random.Generator, related: Mapping[str, np.ndarray]
) -> np.ndarray:
    """A seeded tensor in the range the stage sees in a session (see the module docstring)."""
    shape = tuple(shape)
    if name == "image":
        value = rng.random(shape)
    elif name == "kp_driving" and "kp_source" in related and related["kp_source"].shape == shape:
        value = related["kp_source"] + rng.normal(0.0, 0.05, shape)
    elif name.startswith("kp"):
        value = rng.normal(0.0, 0.3, shape)
    elif name == "time_cond":
        value = rng.integers(0, N_TIMESTEPS, shape)
    elif name == "guidance_weight":
        value = rng.uniform(1.0, 3.0, shape)
    elif name in ("input_values", "audio"):
        value = rng.normal(0.0, 0.1, shape)
    elif np.issubdtype(dtype, np.integer):
        value = np.zeros(shape)
    else:
        value = rng.normal(0.0, 1.0, shape)
    return np.ascontiguousarray(value, dtype=dtype)


def _concrete_dims(model: str, tensor: ModelInput, shapes: Mapping[str, Sequence[int]]) -> tuple[int, ...]:
    if tensor.name in shapes:
        dims = tuple(int(d) for d in shapes[tensor.name])
        if len(dims) != len(tensor.dims) or any(w not in (-1, d) for w, d in zip(tensor.dims, dims)):
            raise ValueError(
                f"{model}: shape {list(dims)} for input '{tensor.name}' does not fit its dims {list(tensor.dims)}"
            )
        return dims
    if any(d < 0 for d in tensor.dims):
        raise ValueError(
            f"{model}: input '{tensor.name}' has dynamic dims {list(tensor.dims)}; give "
            f"shapes={{'{tensor.name}': (...)}} (without the batch axis)"
        )
    return tensor.dims


def b64_tensor(value: np.ndarray) -> dict[str, Any]:
    data = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
    return {"content": {"b64": base64.b64encode(data).decode("ascii")}, "shape": list(value.shape)}


def stage_input_data(
    info: ModelInfo, shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0
) -> dict[str, Any]:
    """perf_analyzer `--input-data` JSON (one batch-1 entry) for a stage or ensemble."""
    shapes = {**DEFAULT_SHAPES.get(info.name, {}), **(shapes or {})}
    rng = np.random.default_rng(seed)
    entry: dict[str, Any] = {}
    values: dict[str, np.ndarray] = {}
    for tensor in info.inputs:
        if tensor.datatype not in _NP_DTYPES:
            if tensor.optional:
                continue
            raise ValueError(
                f"{info.name}: input '{tensor.name}' is {tensor.datatype}; only numeric stage inputs are generated"
            )
        dims = _concrete_dims(info.name, tensor, shapes)
        values[tensor.name] = plausible_tensor(tensor.name, dims, np.dtype(_NP_DTYPES[tensor.datatype]), rng, values)
        entry[tensor.name] = b64_tensor(values[tensor.name])
    return {"data": [entry]}


def streaming_input_data(
    avatar_id: str,
    streams: Sequence[np.ndarray],
    chunk_samples: int = CHUNK_SAMPLES,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`--input-data` JSON for the orchestrator: one data stream per audio array (16 kHz mono), each a
    sequence of `chunk_samples` chunks; the first step also carries `avatar_id` and `options`.
    perf_analyzer sets START on the first step, END on the last and the correlation id itself."""
    data = []
    for audio in streams:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            raise ValueError("every stream needs audio")
        steps = []
        for i in range(0, audio.size, chunk_samples):
            step: dict[str, Any] = {"audio": b64_tensor(audio[i : i + chunk_samples])}
            if i == 0:
                step["avatar_id"] = [avatar_id]
                if options:
                    step["options"] = [json.dumps(dict(options))]
            steps.append(step)
        data.append(steps)
    return {"data": data}


def main(argv: Sequence[str] | None = None) -> None:
    """Write `--input-data` JSON for perf_analyzer on one model of a running server (docs/protocol.md):
    a stage's plausible tensors, or for the orchestrator a photo registered on the server and a speech
    file cut into one session's audio requests."""
    import argparse
    from pathlib import Path

    from ditto_triton.client import DittoClient, load_audio
    from ditto_triton.protocol import ORCHESTRATOR, SAMPLE_RATE

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    parser.add_argument("model", help="a stage or ensemble name, or orchestrator")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--url", default="localhost:8001", help="the server's gRPC address")
    parser.add_argument("--image", type=Path, default=Path("examples/ditto_example_image.jpg"))
    parser.add_argument("--audio", type=Path, default=Path("examples/ditto_example_audio.wav"))
    parser.add_argument("--seconds", type=float, default=2.0, help="orchestrator: audio per session")
    args = parser.parse_args(argv)
    if args.model != ORCHESTRATOR:
        args.out.write_text(json.dumps(stage_input_data(model_info(args.url, args.model))))
        print(f"{args.out}: one batch-1 request for {args.model}")
        return
    with DittoClient(args.url) as client:
        avatar = client.register_avatar(args.image.read_bytes(), {"max_size": 512})
    audio = load_audio(args.audio)[: int(args.seconds * SAMPLE_RATE)]
    args.out.write_text(json.dumps(streaming_input_data(avatar, [audio])))
    print(f"{args.out}: {audio.size / SAMPLE_RATE:.2f} s of audio for avatar {avatar[:12]}")


if __name__ == "__main__":
    main()
