"""The benchmark suite (`make bench`): one run, one results directory.

    python -m ditto_triton.benchmarks.suite                       # tiny, python-ort, local server, + full per stage
    python -m ditto_triton.benchmarks.suite --url 127.0.0.1:8001 --metrics-url http://127.0.0.1:8002/metrics \\
        --flavor onnxruntime                                      # a server already running (e.g. NVIDIA's container)

For the profile (tiny by default) it measures, against one tritonserver:
1. every stage and the render_chain ensemble with perf_analyzer (batches 1..8, concurrency 1);
2. each request's latency per stage (batch 1) for the latency CDFs;
3. concurrent real-time sessions with Locust, 1, 2, 3, ... until a level is not real time;
4. first-frame delay with the audio fully available (several sessions in a row);
5. frames/s through Triton vs the in-process pipeline (same audio, same machine, same run);
   then bytes, encode/decode CPU and frames/s per frame format (frame_formats.py);
6. ONNX Runtime vs PyTorch per stage, in process;
7. the orchestrator's Prometheus metrics after all of that;
and for the full profile (unless --skip-full) ONNX Runtime per stage at batch 1. Then it writes
`benchmarks/results/<date>-<host>-<profile>-<flavor>/` (results.json, report.md, plots).
Exports are reused when they match the current profile and made otherwise (full without parity).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ditto_triton.benchmarks import RESULTS_DIR, provenance, throughput
from ditto_triton.benchmarks.batch_scaling import batch_scaling
from ditto_triton.benchmarks.criteria import load_thresholds
from ditto_triton.benchmarks.fixtures import CROP, SAMPLE_AUDIO, SAMPLE_IMAGE, local_tritonserver
from ditto_triton.benchmarks.gpu_memory import GpuMemorySampler, per_extra_session
from ditto_triton.benchmarks.report import results_dir, write_report
from ditto_triton.benchmarks.session_stats import aggregate, summarize
from ditto_triton.benchmarks.sessions import check_loopback
from ditto_triton.export.current import ensure_export
from ditto_triton.limits import DEFAULT_LIMITS
from ditto_triton.protocol import SAMPLE_RATE

log = logging.getLogger("ditto_triton.benchmarks.suite")
RENDER_STAGES = ("stitch_network", "warp_network", "decoder")


@contextlib.contextmanager
def serving(args: argparse.Namespace, export_dir: Path) -> Iterator[tuple[str, str | None, int | None]]:
    """(grpc_url, metrics_url, pid): the server given by --url (pid None), or a local tritonserver on `export_dir`."""
    if args.url:
        yield args.url, args.metrics_url, None
        return
    render = {"instance_kind": args.instance_kind, "cuda_graphs": args.cuda_graphs}
    with local_tritonserver(export_dir, args.flavor, **render) as server:
        yield server.grpc_url, server.metrics_url, server.pid


def step(name: str, fn: Callable[[], Any], timings: dict[str, float]) -> Any:
    """Run one part of the suite; a failure is recorded as {"error": ...} and the suite goes on."""
    log.info("%s ...", name)
    t0 = time.perf_counter()
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others
        log.error("%s failed: %s", name, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        timings[name] = round(time.perf_counter() - t0, 1)
        log.info("%s done in %.0f s", name, timings[name])


def stage_sweep(url: str, batches: tuple[int, ...], measurement_ms: int) -> dict[str, Any]:
    """perf_analyzer at concurrency 1, as {model: {batch: {p50_ms, p95_ms, infer_per_s, ...}}}."""
    from ditto_triton.benchmarks.perf_analyzer import DEFAULT_MODELS, sweep_stages

    # A shared 2-core CPU rarely gives three windows within perf_analyzer's default 10 %.
    raw = sweep_stages(url, DEFAULT_MODELS, batches, (1,), measurement_ms=measurement_ms, stability_percentage=100.0)
    return {model: {str(b): by_c[1] for b, by_c in by_batch.items()} for model, by_batch in raw.items()}


def triton_vs_inprocess(url: str, export_dir: Path, image: bytes, audio, pairs: int) -> dict[str, Any]:
    """frames/s of one session with the audio fully available, through Triton and in process, alternated
    in at least MIN_PAIRS pairs: the medians of each, and the median of the pairs' ratios (as the gate)."""
    from ditto_triton.benchmarks.inprocess import InProcessPipeline
    from ditto_triton.benchmarks.triton_session import run_session
    from ditto_triton.client import DittoClient

    pipeline = InProcessPipeline(export_dir, image, CROP)
    with DittoClient(url, timeout_s=120, busy_retries=0) as client:
        avatar = client.register_avatar(image, CROP)
        triton_fps, inprocess_fps, failed = throughput.alternate(
            lambda: run_session(client, avatar, audio, "full"),
            lambda: pipeline.run(audio, "full"),
            max(pairs, throughput.MIN_PAIRS),
        )
    if failed:
        raise RuntimeError(f"{failed} incomplete session(s) while measuring Triton vs in process")
    ratios = throughput.pair_ratios(triton_fps, inprocess_fps)
    return {
        "triton_fps": round(statistics.median(triton_fps), 2),
        "inprocess_fps": round(statistics.median(inprocess_fps), 2),
        "triton_over_inprocess": throughput.median_ratio(ratios),
        "pair_ratios": ratios,
        "triton_runs": triton_fps,
        "inprocess_runs": inprocess_fps,
    }


def scrape_metrics(metrics_url: str | None) -> dict[str, Any]:
    if not metrics_url:
        return {"error": "no metrics URL (give --metrics-url with --url)"}
    from ditto_triton.model_repository.prometheus import scrape, session_metrics

    samples = scrape(metrics_url)
    kept = {
        k: v
        for k, v in samples.items()
        if k.startswith(("ditto_", "nv_inference_count", "nv_inference_request_success"))
    }
    return {"orchestrator": session_metrics(samples), "samples": kept}


def full_profile(export_dir: Path, budget_s: float) -> dict[str, Any]:
    """The full profile per stage on ONNX Runtime, and PyTorch vs ONNX Runtime with the runner the CPU
    flavor would choose (`--cpu-runners auto`)."""
    from ditto_triton.benchmarks import cpu_runner_choice
    from ditto_triton.benchmarks.stage_timing import time_ort

    ensure_export(export_dir, "full", parity=False)
    stages = time_ort(export_dir, budget_s=budget_s, max_repeats=20)
    return {
        "export": str(export_dir),
        "stages": stages,
        "per_frame_ms": round(sum(stages[s]["ort_ms"] for s in RENDER_STAGES), 1),
        "cpu_runners": cpu_runner_choice.measure(export_dir),
    }


@dataclass
class SuiteRun:
    """One run of the suite: its inputs, the server it measures and what it has measured so far."""

    args: argparse.Namespace
    export_dir: Path
    image: bytes
    audio: np.ndarray
    results: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    latency_samples: dict[str, list[float]] = field(default_factory=dict)
    url: str = ""
    metrics_url: str | None = None
    server_pid: int | None = None  # a local server's, for its CPU time; None with --url


# A part of the suite: its name (log and step_s), what it measures (None: skipped by
# --skip-inprocess) and how the result, or its {"error": ...}, goes into the results.
Part = tuple[str, Callable[[SuiteRun], Any] | None, Callable[[SuiteRun, Any], None]]
SKIPPED_INPROCESS = "skipped (--skip-inprocess)"


def run_suite(args: argparse.Namespace) -> Path:
    started = time.perf_counter()
    run = prepare_run(args)
    with serving(args, run.export_dir) as (run.url, run.metrics_url, run.server_pid):
        run_parts(run, server_parts(args))
    run_parts(run, in_process_parts(args))
    run.results["step_s"] = run.timings
    run.results["duration_s"] = round(time.perf_counter() - started, 1)
    results = run.results
    out_dir = args.out or results_dir(args.profile, args.flavor, results["date"], results["host"], args.results_root)
    paths = write_report(results, out_dir, run.latency_samples)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return out_dir


def prepare_run(args: argparse.Namespace) -> SuiteRun:
    """The session audio (cut to --seconds), the export and the results' provenance fields."""
    from ditto_triton.client import load_audio

    thresholds = load_thresholds(args.thresholds)
    image = args.image.read_bytes()
    audio = load_audio(args.audio)
    if args.seconds:
        audio = audio[: int(args.seconds * SAMPLE_RATE)]
    export_dir = ensure_export(args.export_dir, args.profile)
    results: dict[str, Any] = {
        "profile": args.profile,
        "flavor": args.flavor,
        "device": args.device or provenance.detect_device(),
        "host": provenance.host(),
        "date": provenance.today(),
        "started_at": provenance.now_iso(),
        "versions": provenance.versions(),
        "git_sha": provenance.git_sha(),
        "thresholds": thresholds,
        "export": str(export_dir),
        "session_audio_s": round(audio.size / SAMPLE_RATE, 3),
    }
    return SuiteRun(args, export_dir, image, audio, results)


def run_parts(run: SuiteRun, parts: list[Part]) -> None:
    for name, measure, keep in parts:
        if measure is None:
            keep(run, {"error": SKIPPED_INPROCESS})
        else:
            keep(run, step(name, lambda: measure(run), run.timings))  # noqa: B023 - called at once


def server_parts(args: argparse.Namespace) -> list[Part]:
    """What the suite measures through the server, in order."""
    parts: list[Part] = [("server metadata", lambda run: server_metadata(run.url), keep_as("server"))]
    if not args.skip_stages:
        parts += [
            ("perf_analyzer stage sweep", measure_stages, keep_as("stages")),
            ("stage latency samples", measure_latencies, keep_latencies),
        ]
    parts += [
        ("Locust session sweep", measure_sessions, keep_sessions),
        ("first-frame delay, audio fully available", measure_ffd_full_audio, keep_as("ffd_full_audio")),
        ("Triton vs in-process frames/s", None if args.skip_inprocess else measure_throughput, keep_as("throughput")),
    ]
    if not args.skip_frame_formats:
        parts.append(("frame formats", measure_frame_formats, keep_as("frame_formats")))
    parts += [
        ("orchestrator metrics", lambda run: scrape_metrics(run.metrics_url), keep_as("metrics")),
    ]
    return parts


def in_process_parts(args: argparse.Namespace) -> list[Part]:
    """What the suite measures in this process once the server is gone, in order."""
    from ditto_triton.benchmarks.stage_timing import time_ort_vs_torch

    def ort_vs_torch(run: SuiteRun) -> dict[str, Any]:
        return time_ort_vs_torch(run.export_dir)

    def full(run: SuiteRun) -> dict[str, Any]:
        return full_profile(run.args.full_export_dir, run.args.full_budget_s)

    parts: list[Part] = [("ONNX Runtime vs PyTorch", None if args.skip_inprocess else ort_vs_torch, keep_stage_timing)]
    if not args.skip_full:
        parts.append(("full profile per stage", full, keep_as("full")))
    return parts


def keep_as(key: str) -> Callable[[SuiteRun, Any], None]:
    def keep(run: SuiteRun, value: Any) -> None:
        run.results[key] = value

    return keep


def measure_stages(run: SuiteRun) -> dict[str, Any]:
    return stage_sweep(run.url, run.args.batches, run.args.measurement_ms)


def measure_latencies(run: SuiteRun) -> dict[str, Any]:
    from ditto_triton.benchmarks.stage_latency import sample_latencies

    return sample_latencies(run.url, run.export_dir, requests=run.args.latency_requests)


def keep_latencies(run: SuiteRun, got: dict[str, Any]) -> None:
    """The samples go to the latency CDFs, not into results.json; batch scaling follows from the stage sweep."""
    run.latency_samples = got if "error" not in got else {}
    if "error" in got:
        run.results["stage_latency_error"] = got["error"]
    run.results["batch_scaling"] = batch_scaling(run.results["stages"])


def measure_sessions(run: SuiteRun) -> dict[str, Any]:
    """The Locust sweep of concurrent real-time sessions, with each level's peak GPU memory."""
    from ditto_triton.benchmarks.sessions import sweep_sessions

    def on_level(lv: dict[str, Any]) -> None:
        lv["gpu_memory_mib"] = memory.take_peak()
        log.info("%d session(s): fps min %s, FFD p95 %s ms, late %s, GPU %s MiB -> %s", lv["concurrency"],
                 lv["fps_min"], lv["ffd_ms_p95"], lv["late_frame_ratio"], lv["gpu_memory_mib"],
                 "real time" if lv["realtime"] else "NOT real time")  # fmt: skip

    args = run.args
    with GpuMemorySampler() as memory:
        return sweep_sessions(
            run.url,
            image=args.image,
            audio=args.audio,
            thresholds=run.results["thresholds"],
            max_concurrency=args.max_sessions,
            min_levels=args.min_levels,
            seconds=args.seconds,
            on_level=on_level,
        )


def keep_sessions(run: SuiteRun, sweep: dict[str, Any]) -> None:
    results = run.results
    if "error" in sweep:
        results["sessions"], results["max_realtime_sessions"] = sweep, None
    else:
        results["sessions"], results["max_realtime_sessions"] = sweep["levels"], sweep["max_realtime_sessions"]
        results["gpu_memory_per_session"] = per_extra_session(sweep["levels"])


def measure_ffd_full_audio(run: SuiteRun) -> dict[str, Any]:
    from ditto_triton.benchmarks.session_stats import SessionRecord
    from ditto_triton.benchmarks.sessions import run_locust

    args = run.args
    records = run_locust(run.url, 1, image=args.image, audio=args.audio, mode="full", sessions_per_user=args.ffd_sessions,
                         seconds=args.ffd_seconds)["records"]  # fmt: skip
    return {**aggregate([summarize(SessionRecord.from_dict(r)) for r in records]), "audio_s": args.ffd_seconds}


def measure_throughput(run: SuiteRun) -> dict[str, Any]:
    return triton_vs_inprocess(run.url, run.export_dir, run.image, run.audio, run.args.repeats)


def measure_frame_formats(run: SuiteRun) -> dict[str, Any]:
    from ditto_triton.benchmarks.frame_formats import measure

    audio = run.audio[: int(run.args.frame_format_seconds * SAMPLE_RATE)]
    return measure(run.url, run.server_pid, audio, repeats=run.args.repeats)


def keep_stage_timing(run: SuiteRun, timing: dict[str, Any]) -> None:
    """ONNX Runtime vs PyTorch per stage, and the two ratios (with Triton vs in process)."""
    results = run.results
    results["stage_timing"] = timing
    through = results["throughput"]
    results["ratios"] = {
        "triton_over_inprocess": through.get("triton_over_inprocess"),
        "ort_over_torch": {s: t["ort_over_torch"] for s, t in timing.items()} if "error" not in timing else {},
    }


def server_metadata(url: str) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        meta = client.get_server_metadata(as_json=True)
    finally:
        client.close()
    return {"name": meta.get("name"), "version": meta.get("version")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Ditto on Triton benchmark suite (make bench).")
    p.add_argument("--profile", default="tiny", choices=("tiny", "full"))
    p.add_argument(
        "--flavor",
        default="python-ort",
        help="model repository flavor: python-ort and torch are served by a local tritonserver, onnxruntime/tensorrt need --url",
    )
    p.add_argument("--instance-kind", choices=("cpu", "gpu"), default=None, help="local server: default per flavor")
    p.add_argument("--cuda-graphs", action="store_true", help="local torch flavor on GPU: replay CUDA graphs")
    p.add_argument("--device", default=None, help="device label (default: nvidia-smi's GPU, else the CPU model)")
    p.add_argument("--export-dir", type=Path, default=None, help="default out/export/<profile>")
    p.add_argument("--full-export-dir", type=Path, default=Path("out/export/full"))
    p.add_argument("--skip-full", action="store_true", help="skip the full profile's per-stage timing")
    p.add_argument("--skip-stages", action="store_true", help="skip perf_analyzer and the latency CDFs")
    p.add_argument(
        "--skip-inprocess",
        action="store_true",
        help="skip the in-process CPU baselines (Triton ÷ in-process, ORT vs PyTorch): for GPU runs of the full profile",
    )
    p.add_argument(
        "--url", default=None, help="use this running server (loopback gRPC host:port) instead of starting one"
    )
    p.add_argument("--metrics-url", default=None, help="its metrics URL (with --url)")
    p.add_argument("--image", type=Path, default=SAMPLE_IMAGE)
    p.add_argument("--audio", type=Path, default=SAMPLE_AUDIO)
    p.add_argument("--seconds", type=float, default=None, help="cut the session audio (default: all of it)")
    p.add_argument(
        "--max-sessions", type=int, default=DEFAULT_LIMITS.max_sessions, help="highest concurrency the sweep tries"
    )
    p.add_argument("--min-levels", type=int, default=3, help="concurrency levels measured even after one fails")
    p.add_argument("--batches", type=lambda s: tuple(int(b) for b in s.split(",")), default=(1, 2, 4, 8))
    p.add_argument("--measurement-ms", type=int, default=1000, help="perf_analyzer measurement window")
    p.add_argument("--latency-requests", type=int, default=100, help="requests per stage for the latency CDFs")
    p.add_argument("--ffd-sessions", type=int, default=5, help="sessions in a row for the full-audio FFD")
    p.add_argument("--ffd-seconds", type=float, default=3.0, help="audio per full-audio FFD session")
    p.add_argument(
        "--repeats", type=int, default=2, help="Triton/in-process session pairs (at least 3) and frame formats"
    )
    p.add_argument("--skip-frame-formats", action="store_true", help="skip bytes, CPU and frames/s per frame format")
    p.add_argument("--frame-format-seconds", type=float, default=4.0, help="audio per frame-format session")
    p.add_argument("--full-budget-s", type=float, default=8.0, help="seconds of timed calls per full stage")
    p.add_argument("--thresholds", type=Path, default=None)
    p.add_argument("--results-root", type=Path, default=RESULTS_DIR)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results directory (default: <results-root>/<date>-<host>-<profile>-<flavor>)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.export_dir = args.export_dir or Path("out/export") / args.profile
    if args.url:
        check_loopback(args.url)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("ditto_triton.model_repository", "ditto_triton.benchmarks.perf_analyzer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out_dir = run_suite(args)
    print(f"results: {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
