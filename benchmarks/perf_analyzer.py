"""NVIDIA perf_analyzer against the Ditto models: per-stage latency/throughput and streaming sessions.

    from ditto_triton.benchmarks.perf_analyzer import run_stage, sweep_stages, run_streaming

    run_stage("127.0.0.1:8001", "decoder", batch=8, concurrency=2)
    # {'model': 'decoder', 'batch': 8, 'concurrency': 2, 'p50_ms': ..., 'p95_ms': ..., 'infer_per_s': ..., ...}
    sweep_stages("127.0.0.1:8001")            # {model: {batch: {concurrency: stats}}}
    run_streaming("127.0.0.1:8001", avatar_id, concurrency=2)

The binary and its CSV: `perf_tool.py`; the input tensors (seeded, plausibly ranged; not
perf_analyzer's random bytes): `perf_inputs.py`. Stage numbers are perf_analyzer's own: latencies per
request (a whole batch) in ms, `infer_per_s` counts inferences (requests x batch), `server_*_ms` are
Triton's averages per request. Stability: perf_analyzer repeats windows of `measurement_ms` until three
in a row agree within `stability_percentage` (its default 10 % is too strict for a shared 2-core
CPU), at most `max_trials` windows.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ditto_triton.benchmarks.perf_inputs import (
    CHUNK_SAMPLES,
    ModelInfo,
    model_info,
    stage_input_data,
    streaming_input_data,
)
from ditto_triton.benchmarks.perf_tool import (
    PerfAnalyzer,
    PerfAnalyzerError,
    PerfAnalyzerSetupError,
    find_perf_analyzer,
    parse_csv,
    summarize_row,
    tail,
)
from ditto_triton.benchmarks.session_stats import SessionRecord, aggregate, percentile, summarize
from ditto_triton.protocol import FPS, ORCHESTRATOR, SAMPLE_RATE, SAMPLES_PER_FRAME
from ditto_triton.stages import STAGE_ORDER

log = logging.getLogger(__name__)

RENDER_CHAIN = "render_chain"
DEFAULT_MODELS = (*STAGE_ORDER, RENDER_CHAIN)

__all__ = [
    "DEFAULT_MODELS",
    "PerfAnalyzer",
    "PerfAnalyzerError",
    "PerfAnalyzerSetupError",
    "find_perf_analyzer",
    "profile_stats",
    "run_stage",
    "run_streaming",
    "sweep_stages",
]


def _host_port(grpc_url: str) -> str:
    return grpc_url.removeprefix("grpc://").removeprefix("http://")


def _measure_args(
    measurement_ms: int, stability_percentage: float, max_trials: int, stable_percentile: int
) -> list[str]:
    if measurement_ms < 50:
        raise ValueError(f"measurement_ms must be >= 50 (got {measurement_ms})")
    if max_trials < 3:
        raise ValueError(
            f"max_trials must be >= 3: perf_analyzer needs three windows to call a result stable (got {max_trials})"
        )
    return [
        f"--measurement-interval={int(measurement_ms)}",
        f"--stability-percentage={stability_percentage:g}",
        f"--max-trials={int(max_trials)}",
        f"--percentile={int(stable_percentile)}",
    ]


# -- one stage ------------------------------------------------------------------------------------
def run_stage(
    grpc_url: str,
    model: str,
    batch: int = 1,
    concurrency: int = 1,
    *,
    measurement_ms: int = 2000,
    shapes: Mapping[str, Sequence[int]] | None = None,
    stability_percentage: float = 50.0,
    max_trials: int = 8,
    stable_percentile: int = 95,
    seed: int = 0,
    timeout_s: float = 300.0,
    info: ModelInfo | None = None,
    tool: PerfAnalyzer | None = None,
) -> dict[str, Any]:
    """perf_analyzer on one model at one batch size and concurrency (synchronous requests over gRPC).

    Returns {model, batch, concurrency, p50_ms, p90_ms, p95_ms, p99_ms, infer_per_s, client_send_ms,
    network_server_ms, server_queue_ms, server_compute_input_ms, server_compute_infer_ms,
    server_compute_output_ms, client_recv_ms}; the `server_*` parts are Triton's own averages per request.
    `shapes` fixes dynamic dims per input, without the batch axis (HuBERT defaults to 1×6480).
    `stable_percentile` is the latency perf_analyzer checks for stability (`--percentile`); `info`
    saves the config lookup when the caller already has it.
    """
    tool = tool or find_perf_analyzer()
    info = info or model_info(grpc_url, model)
    if batch < 1 or concurrency < 1:
        raise ValueError(f"{model}: batch and concurrency must be >= 1 (got {batch}, {concurrency})")
    if batch > max(info.max_batch_size, 1):
        raise ValueError(f"{model}: batch {batch} exceeds the model's max_batch_size {info.max_batch_size}")
    with tempfile.TemporaryDirectory(prefix="ditto-pa-") as tmp:
        data = Path(tmp) / "input.json"
        data.write_text(json.dumps(stage_input_data(info, shapes, seed)))
        report = Path(tmp) / "report.csv"
        args = [
            "-i",
            "grpc",
            "-u",
            _host_port(grpc_url),
            "-m",
            model,
            "-b",
            str(batch),
            f"--concurrency-range={concurrency}",
            f"--input-data={data}",
            "-f",
            str(report),
            *_measure_args(measurement_ms, stability_percentage, max_trials, stable_percentile),
        ]
        output = tool.run(args, timeout_s)
        rows = parse_csv(report.read_text()) if report.is_file() else []
    if not rows:
        raise PerfAnalyzerError(f"perf_analyzer wrote no measurement for {model}:\n{tail(output)}")
    return {"model": model, "batch": batch, **summarize_row(rows[0])}


def sweep_stages(
    grpc_url: str,
    models: Iterable[str] = DEFAULT_MODELS,
    batches: Sequence[int] = (1, 2, 4, 8),
    concurrencies: Sequence[int] = (1, 2, 4),
    *,
    raise_errors: bool = False,
    **run_kwargs: Any,
) -> dict[str, dict[int, dict[int, dict[str, Any]]]]:
    """`run_stage` over models × batches × concurrencies: {model: {batch: {concurrency: stats}}}.

    Unbatched models (max_batch_size 0: HuBERT) run at batch 1 only, batches above a model's
    max_batch_size are skipped. A failed measurement is stored as {"error": message} unless
    `raise_errors`; a missing binary or library always raises PerfAnalyzerSetupError.
    """
    tool = run_kwargs.pop("tool", None) or find_perf_analyzer()
    results: dict[str, dict[int, dict[int, dict[str, Any]]]] = {}
    for model in models:
        info = model_info(grpc_url, model)
        usable = [b for b in batches if b == 1 or b <= info.max_batch_size]
        results[model] = {}
        for batch in usable:
            results[model][batch] = {}
            for concurrency in concurrencies:
                try:
                    stats = run_stage(grpc_url, model, batch, concurrency, info=info, tool=tool, **run_kwargs)
                except PerfAnalyzerSetupError:
                    raise
                except PerfAnalyzerError as exc:
                    if raise_errors:
                        raise
                    log.warning("%s batch %d concurrency %d: %s", model, batch, concurrency, exc)
                    stats = {"model": model, "batch": batch, "concurrency": concurrency, "error": str(exc)}
                results[model][batch][concurrency] = stats
    return results


# -- streaming sessions through the orchestrator --------------------------------------------------
def _session_records(
    profile: Mapping[str, Any], steps: int, frames_per_stream: int, audio_s: float
) -> tuple[list[SessionRecord], list[float]]:
    """Complete sequences of a profile export as SessionRecords (times from each first request), and
    every request's latency to its final response (ms). Each request's last response is the empty final
    one; every other response is one frame, in order."""
    by_sequence: dict[int, list[Mapping[str, Any]]] = {}
    request_ms: list[float] = []
    for experiment in profile.get("experiments", []):
        for request in experiment.get("requests", []):
            by_sequence.setdefault(int(request["sequence_id"]), []).append(request)
            if request["response_timestamps"]:
                request_ms.append((request["response_timestamps"][-1] - request["timestamp"]) / 1e6)
    records = []
    for requests in by_sequence.values():
        requests.sort(key=lambda r: r["timestamp"])
        if len(requests) != steps or not requests[-1]["response_timestamps"]:
            continue  # cut off by the end of the run
        t0 = requests[0]["timestamp"]
        arrivals = [(ts - t0) / 1e9 for r in requests for ts in r["response_timestamps"][:-1]]
        records.append(
            SessionRecord(
                mode="full",
                audio_s=audio_s,
                expected_frames=frames_per_stream,
                arrivals_s=arrivals,
                pts_s=[k / FPS for k in range(len(arrivals))],
            )
        )
    return records, request_ms


def run_streaming(
    grpc_url: str,
    avatar_id: str,
    *,
    concurrency: int = 1,
    audio: np.ndarray | None = None,
    seconds: float = 2.0,
    streams: int = 4,
    chunk_samples: int = CHUNK_SAMPLES,
    options: Mapping[str, Any] | None = None,
    measurement_ms: int = 5000,
    stability_percentage: float = 1000.0,
    max_trials: int = 3,
    stable_percentile: int = 95,
    seed: int = 0,
    timeout_s: float = 600.0,
    model: str = ORCHESTRATOR,
    tool: PerfAnalyzer | None = None,
) -> dict[str, Any]:
    """perf_analyzer `--streaming` on the decoupled orchestrator: `concurrency` sessions at a time, each a
    sequence of `chunk_samples` audio chunks, each chunk sent once the previous one is answered (so
    faster than real time when the server keeps up).

    `audio` (16 kHz mono float32) is cut to `seconds` and used by every session; without it each of the
    `streams` data streams gets seeded noise (N(0, 0.1)). Returns
    - from perf_analyzer's per-request timestamps (`--profile-export-file`), over the sessions that
      completed within the run: `sessions`, `sessions_per_s`, `frames`, `frames_per_s` (every frame
      received over the run's span), `request_ms_p50`/`_p95` (each request to its final response) and
      `session` = `session_stats.aggregate` (first-frame delay p50/p95, frames/s, late frames, RTF);
    - perf_analyzer's own summary, as 2.41.1 computes it for a decoupled model (checked against the
      timestamps): it leaves out requests answered only by the empty final response, so
      `pa_infer_per_s` counts requests that returned frames, `pa_responses_per_s` counts frames, and
      `pa_p50_ms`... time such a request from its send to its last frame (not its first, whatever its
      log line says). The stability defaults accept the first three windows (a session averages many frames).
    """
    tool = tool or find_perf_analyzer()
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1 (got {concurrency})")
    stream_audio = _stream_audio(audio, seconds, streams, seed)
    n_samples = stream_audio[0].size
    with tempfile.TemporaryDirectory(prefix="ditto-pa-stream-") as tmp:
        data = Path(tmp) / "input.json"
        data.write_text(json.dumps(streaming_input_data(avatar_id, stream_audio, chunk_samples, options)))
        report, profile_path = Path(tmp) / "report.csv", Path(tmp) / "profile.json"
        args = [
            *_streaming_args(grpc_url, model, concurrency, data, report, profile_path),
            *_measure_args(measurement_ms, stability_percentage, max_trials, stable_percentile),
        ]
        output = tool.run(args, timeout_s)
        rows, profile = _read_outputs(report, profile_path)
    if not rows:
        raise PerfAnalyzerError(f"perf_analyzer wrote no measurement for {model}:\n{tail(output)}")
    steps = -(-n_samples // chunk_samples)
    stats = profile_stats(profile, steps, -(-n_samples // SAMPLES_PER_FRAME), n_samples / SAMPLE_RATE)
    if not stats["sessions"]:
        raise PerfAnalyzerError(
            f"no session completed during the measurement; raise measurement_ms (now {measurement_ms})"
        )
    run = {"model": model, "concurrency": concurrency, "audio_s": round(n_samples / SAMPLE_RATE, 3)}
    return {**run, "chunk_samples": chunk_samples, "steps_per_session": steps, **stats, **_pa_summary(rows[0])}


def _pa_summary(csv_row: Mapping[str, Any]) -> dict[str, Any]:
    """perf_analyzer's own numbers, `pa_`-prefixed (see `run_streaming` for what they count)."""
    row = summarize_row(csv_row)
    return {
        "pa_infer_per_s": row["infer_per_s"],
        "pa_responses_per_s": row.get("responses_per_s"),
        **{f"pa_{k}": row[k] for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms") if k in row},
    }


def _read_outputs(report: Path, profile: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """perf_analyzer's CSV rows and profile export (empty when it wrote none)."""
    rows = parse_csv(report.read_text()) if report.is_file() else []
    return rows, json.loads(profile.read_text()) if profile.is_file() else {}


def _stream_audio(audio: np.ndarray | None, seconds: float, streams: int, seed: int) -> list[np.ndarray]:
    """`audio` cut to `seconds` for every session, or one seeded N(0, 0.1) noise clip per data stream."""
    samples = int(round(seconds * SAMPLE_RATE))
    if audio is not None:
        return [np.asarray(audio, dtype=np.float32).reshape(-1)[:samples]]
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 0.1, samples).astype(np.float32) for _ in range(max(1, streams))]


def _streaming_args(grpc_url: str, model: str, concurrency: int, data: Path, report: Path, profile: Path) -> list[str]:
    # perf_analyzer numbers sequences from 1 on every run; a random start keeps two runs (or a client)
    # from meeting on one correlation id. It parses the range as 32-bit ints.
    first_id = random.SystemRandom().randrange(1 << 20, (1 << 31) - (1 << 24))
    return [
        "-i",
        "grpc",
        "--streaming",
        "-u",
        _host_port(grpc_url),
        "-m",
        model,
        f"--concurrency-range={concurrency}",
        f"--input-data={data}",
        f"--sequence-id-range={first_id}:{first_id + (1 << 23)}",
        "-f",
        str(report),
        f"--profile-export-file={profile}",
    ]


def profile_stats(profile: Mapping[str, Any], steps: int, frames_per_stream: int, audio_s: float) -> dict[str, Any]:
    """Streaming numbers from a perf_analyzer profile export (see `run_streaming`)."""
    records, request_ms = _session_records(profile, steps, frames_per_stream, audio_s)
    requests = [r for e in profile.get("experiments", []) for r in e.get("requests", [])]
    if not requests:
        return {"sessions": 0}
    begin = min(r["timestamp"] for r in requests)
    end = max(max(r["response_timestamps"], default=r["timestamp"]) for r in requests)
    span_s = (end - begin) / 1e9
    frames = sum(max(len(r["response_timestamps"]) - 1, 0) for r in requests)
    return {
        "sessions": len(records),
        "sessions_per_s": _round(len(records) / span_s, 3) if span_s > 0 else None,
        "frames": frames,
        "frames_per_s": _round(frames / span_s) if span_s > 0 else None,
        "request_ms_p50": _round(percentile(request_ms, 50)),
        "request_ms_p95": _round(percentile(request_ms, 95)),
        "session": aggregate([summarize(r) for r in records]),
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
