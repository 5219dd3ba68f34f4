"""perf_analyzer against a real tiny tritonserver: stages, the render_chain ensemble and streaming
sessions through the orchestrator give parsed numbers; input data, CSV parsing and setup errors."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from ditto_triton.benchmarks import perf_analyzer as pa
from ditto_triton.benchmarks import perf_inputs as inputs
from ditto_triton.benchmarks import perf_tool as tool
from ditto_triton.client import DittoClient

# Short windows: three of them, accepted whatever their spread (the numbers are noisy on 2 cores).
QUICK = {"measurement_ms": 300, "stability_percentage": 1000, "max_trials": 3}

CSV = """\
Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency
2,240.5,10,257,93,21,7283,591,3,8068,8713,9188,11939
1,120.0,9,200,10,20,7000,500,2,8000,8500,9000,9500

Server Model,Inferences/Second,Client Send
decoder,1,2
"""


def test_parse_csv_reads_the_first_block_by_header():
    rows = tool.parse_csv(CSV)
    assert len(rows) == 2
    stats = tool.summarize_row(rows[0])
    assert stats["concurrency"] == 2 and stats["infer_per_s"] == 240.5
    assert (stats["p50_ms"], stats["p95_ms"], stats["server_compute_infer_ms"]) == (8.068, 9.188, 7.283)
    with pytest.raises(pa.PerfAnalyzerError, match="without throughput"):
        tool.summarize_row({"Concurrency": 1.0})


def test_stage_input_data_is_plausible():
    lmdm = inputs.ModelInfo(
        "lmdm",
        8,
        (
            inputs.ModelInput("x", "FP32", (80, 265)),
            inputs.ModelInput("time_cond", "INT64", (1,)),
        ),
    )
    entry = inputs.stage_input_data(lmdm, seed=3)["data"][0]
    steps = np.frombuffer(base64.b64decode(entry["time_cond"]["content"]["b64"]), "<i8")
    assert entry["time_cond"]["shape"] == [1] and 0 <= steps[0] < 1000
    x = np.frombuffer(base64.b64decode(entry["x"]["content"]["b64"]), "<f4")
    assert x.size == 80 * 265 and np.isfinite(x).all() and 0.5 < x.std() < 1.5

    kp = inputs.ModelInfo(
        "stitch_network", 8, tuple(inputs.ModelInput(n, "FP32", (21, 3)) for n in ("kp_source", "kp_driving"))
    )
    entry = inputs.stage_input_data(kp)["data"][0]
    src, drv = (np.frombuffer(base64.b64decode(entry[k]["content"]["b64"]), "<f4") for k in ("kp_source", "kp_driving"))
    assert np.abs(drv - src).max() < 0.5  # driving keypoints move around the source ones

    hubert = inputs.ModelInfo("hubert", 0, (inputs.ModelInput("input_values", "FP32", (1, -1)),))
    assert inputs.stage_input_data(hubert)["data"][0]["input_values"]["shape"] == [1, inputs.HUBERT_WINDOW]
    assert inputs.stage_input_data(hubert, {"input_values": (1, 3200)})["data"][0]["input_values"]["shape"] == [1, 3200]
    other = inputs.ModelInfo("other", 0, (inputs.ModelInput("input_values", "FP32", (1, -1)),))
    with pytest.raises(ValueError, match="dynamic dims"):
        inputs.stage_input_data(other)
    with pytest.raises(ValueError, match="does not fit"):
        inputs.stage_input_data(hubert, {"input_values": (2, 3200)})


def _request(sequence_id: int, sent_ms: float, responses_ms: list[float]) -> dict:
    return {
        "sequence_id": sequence_id,
        "timestamp": int(sent_ms * 1e6),
        "response_timestamps": [int(t * 1e6) for t in responses_ms],
    }


def test_profile_stats_from_request_timestamps():
    # Two-step sessions of 3 frames; every request ends with the empty final response.
    frames = [200.0, 240.0, 330.0]  # the last one 50 ms late
    profile = {
        "experiments": [
            {
                "requests": [
                    _request(1, 0.0, [5.0]),
                    _request(1, 10.0, [*frames, 331.0]),
                    _request(2, 400.0, [405.0]),  # cut off by the end of the run: not a session
                ]
            }
        ]
    }
    stats = pa.profile_stats(profile, steps=2, frames_per_stream=3, audio_s=0.12)
    assert (stats["sessions"], stats["frames"]) == (1, 3)
    assert stats["frames_per_s"] == pytest.approx(3 / 0.405, abs=0.01)
    assert stats["request_ms_p50"] == pytest.approx(5.0)  # of 5, 321 and 5 ms
    session = stats["session"]
    assert session["sessions"] == 1 and session["failed_sessions"] == 0
    assert session["ffd_ms_p50"] == pytest.approx(200.0)
    assert session["late_frame_ratio"] == pytest.approx(1 / 3, abs=1e-3)
    assert pa.profile_stats({"experiments": []}, 2, 3, 0.12)["sessions"] == 0


def test_missing_binary_or_library_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv(tool.BINARY_ENV, str(tmp_path / "nowhere" / "perf_analyzer"))
    with pytest.raises(tool.PerfAnalyzerSetupError, match="make setup"):
        tool.find_perf_analyzer()
    assert "apt-get install libb64-0d" in tool.missing_library_message("pa", "libb64.so.0d")
    # The real binary without the pip CUDA runtime directory cannot start.
    monkeypatch.delenv(tool.BINARY_ENV)
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    binary = tool.find_perf_analyzer().binary
    with pytest.raises(tool.PerfAnalyzerSetupError, match="libcudart.*nvidia-cuda-runtime-cu12"):
        tool.PerfAnalyzer(binary, ()).run(["--version"], timeout_s=30)


@pytest.mark.parametrize(("model", "batch"), [("stitch_network", 2), ("decoder", 2), ("render_chain", 1)])
def test_run_stage_measures(server, model, batch):
    stats = pa.run_stage(server.grpc_url, model, batch, concurrency=1, **QUICK)
    assert (stats["model"], stats["batch"], stats["concurrency"]) == (model, batch, 1)
    assert stats["infer_per_s"] > 0
    assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    assert stats["server_compute_infer_ms"] > 0


def test_sweep_runs_unbatched_hubert_at_batch_1_only(server):
    result = pa.sweep_stages(server.grpc_url, ["hubert", "stitch_network"], batches=(1, 8), concurrencies=(2,), **QUICK)
    assert list(result["hubert"]) == [1]
    assert list(result["stitch_network"]) == [1, 8]
    for model, batches in result.items():
        for batch, by_concurrency in batches.items():
            stats = by_concurrency[2]
            assert "error" not in stats, stats
            assert stats["infer_per_s"] > 0 and stats["p95_ms"] > 0, (model, batch, stats)


def test_run_streaming_sessions(server, samples_dir):
    with DittoClient(server.grpc_url) as client:
        avatar = client.register_avatar((samples_dir / "ditto_example_image.jpg").read_bytes(), {"max_size": 512})
    result = pa.run_streaming(
        server.grpc_url,
        avatar,
        concurrency=2,
        seconds=1.0,
        streams=2,
        options={"sampling_steps": 2},
        measurement_ms=5000,
    )
    assert result["steps_per_session"] == 5 and result["audio_s"] == 1.0
    assert result["sessions_per_s"] > 0 and result["pa_responses_per_s"] > 0 and result["pa_p95_ms"] > 0
    session = result["session"]
    assert result["sessions"] == session["sessions"] >= 2
    assert session["failed_sessions"] == 0, session  # every complete sequence brought its 25 frames
    assert session["ffd_ms_p50"] > 0 and session["fps_min"] > 0
    assert result["frames"] >= 25 * result["sessions"] and result["frames_per_s"] > 0
    assert 0 < result["request_ms_p50"] <= result["request_ms_p95"]


def test_run_streaming_reports_server_errors(server):
    with pytest.raises(pa.PerfAnalyzerError, match="unknown avatar id"):
        pa.run_streaming(server.grpc_url, "0" * 32, seconds=0.4, streams=1, measurement_ms=500)
