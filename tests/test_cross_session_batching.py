"""Cross-session batching on a real tritonserver: concurrent sessions' per-frame requests meet in
one execution of the dynamically batched warp and decoder models, and every session still gets its
own frames. A session's render thread has one request in flight at a time, so an execution that
served several requests held frames of several sessions.

The CPU flavor starts an idle stage at once (queue delay 0); here the batcher waits 30 ms as the GPU
flavors do (0.5 ms there, where a stage is faster than the sessions' frame interval)."""

from __future__ import annotations

import threading

import numpy as np
import tritonclient.grpc as grpcclient
from frame_compare import assert_same_pictures

from ditto_triton.client import DittoClient

SESSIONS = 3
CROP = {"max_size": 512}


def model_stats(url: str, model: str) -> dict[str, int]:
    with grpcclient.InferenceServerClient(url) as client:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return {
        "requests": int(stats["inference_stats"]["success"]["count"]),
        "executions": int(stats.get("execution_count", 0)),
        "frames": int(stats.get("inference_count", 0)),
    }


def test_concurrent_sessions_frames_meet_in_one_batch(triton_server_factory, portrait, speech16k):
    server = triton_server_factory(include_services=True, queue_delay_us=30_000)
    audio = [speech16k[16000 * k : 16000 * (k + 2)] for k in range(SESSIONS)]
    with DittoClient(server.grpc_url) as client:
        avatar = client.register_avatar(portrait, CROP)
        alone = [[f.rgb for f in client.stream(avatar, a, {"seed": k})] for k, a in enumerate(audio)]
        before = {m: model_stats(server.grpc_url, m) for m in ("warp_network", "decoder")}
        results: dict[int, list[np.ndarray]] = {}

        def run(k: int) -> None:
            results[k] = [f.rgb for f in client.stream(avatar, audio[k], {"seed": k})]

        threads = [threading.Thread(target=run, args=(k,)) for k in range(SESSIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = {m: model_stats(server.grpc_url, m) for m in ("warp_network", "decoder")}

    frames = sum(len(results[k]) for k in range(SESSIONS))
    for model in ("warp_network", "decoder"):
        delta = {key: after[model][key] - before[model][key] for key in ("requests", "executions", "frames")}
        assert delta["frames"] == frames, (model, delta)  # every frame rendered once, none dropped
        # fewer executions than requests: requests of different sessions were run as one batch
        assert delta["executions"] < delta["requests"], (model, delta)
    for k in range(SESSIONS):
        assert_same_pictures(results[k], alone[k])
