"""Every request's latency through tritonserver, per stage: the raw samples behind the latency CDFs.

perf_analyzer reports percentiles only; the CDF plot needs each request's time, so this sends
`requests` sequential batch-1 gRPC requests per model (one client, concurrency 1) with the seeded,
plausibly ranged inputs the export's parity checks use (`export.sample_inputs`; the render_chain
ensemble gets the warp network's), shaped as the served model's config declares, and times each call
end to end (client serialization, loopback gRPC, queueing, the stage, the reply).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import tritonclient.grpc as grpcclient

from ditto_triton.export.sample_inputs import sample_inputs
from ditto_triton.manifest import read_manifest
from ditto_triton.profiles import get_profile
from ditto_triton.stages import STAGE_ORDER, stage_specs

RENDER_CHAIN = "render_chain"
MODELS = (*STAGE_ORDER, RENDER_CHAIN)
_SOURCE_SPEC = {RENDER_CHAIN: "warp_network"}  # an ensemble's inputs are those of its first stage


def request_inputs(
    client: grpcclient.InferenceServerClient, model: str, profile_name: str
) -> list[grpcclient.InferInput]:
    """One batch-1 request for `model`, every input reshaped to the served config's dims."""
    config = client.get_model_config(model, as_json=True)["config"]
    spec = stage_specs(get_profile(profile_name))[_SOURCE_SPEC.get(model, model)]
    values = sample_inputs(spec, batch=1)
    batched = int(config.get("max_batch_size", 0)) > 0
    inputs = []
    for entry in config["input"]:
        value = values[entry["name"]]
        dims = [int(d) for d in entry.get("dims", [])]
        shape = [1, *dims] if batched else dims
        value = value.reshape([-1 if d < 0 else d for d in shape])  # at most one dynamic dim (HuBERT's samples)
        item = grpcclient.InferInput(entry["name"], list(value.shape), entry["data_type"].removeprefix("TYPE_"))
        item.set_data_from_numpy(value)
        inputs.append(item)
    return inputs


def sample_latencies(
    grpc_url: str, export_dir: Path, models: Iterable[str] = MODELS, requests: int = 100, warmup: int = 3
) -> dict[str, list[float]]:
    """{model: [ms per request]} for `requests` sequential batch-1 requests after `warmup` untimed ones."""
    profile_name = read_manifest(export_dir)["profile"]
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        out: dict[str, list[float]] = {}
        for model in models:
            inputs = request_inputs(client, model, profile_name)
            for _ in range(warmup):
                client.infer(model, inputs)
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                client.infer(model, inputs)
                times.append((time.perf_counter() - t0) * 1e3)
            out[model] = times
        return out
    finally:
        client.close()
