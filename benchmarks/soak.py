"""Soak (`make soak`): many concurrent real-time sessions for a bounded time against one local
tritonserver; nothing may be lost and the server's memory must level off.

    python -m ditto_triton.benchmarks.soak                        # 8 sessions, 10 minutes
    python -m ditto_triton.benchmarks.soak --sessions 8 --minutes 2

Each of `--sessions` workers streams the sample speech paced in real time, session after session,
until the time is up (workers start staggered so sessions overlap evenly). Every second the resident
memory (RSS) of tritonserver and all its python stubs is summed. Checks (`thresholds.json`):
- frames lost: for every session, frames received == ceil(samples / 640) (must be 0);
- failed sessions: 0;
- memory growth: median RSS of the last 20 % of the run vs as long a window right after warm-up
  (until every worker has finished one session), at most `soak_memory_growth_max`;
- late frames: the worst session's late-frame ratio within `late_frame_ratio_max`.
Writes soak.json, soak.md and soak_memory.png into the run's results directory and exits 1 when a
check misses.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ditto_triton.benchmarks import RESULTS_DIR, provenance
from ditto_triton.benchmarks.criteria import Check, load_thresholds
from ditto_triton.benchmarks.fixtures import CROP, SAMPLE_AUDIO, SAMPLE_IMAGE, local_tritonserver
from ditto_triton.benchmarks.report import results_dir
from ditto_triton.benchmarks.server_memory import MemorySampler, memory_growth
from ditto_triton.benchmarks.session_stats import summarize
from ditto_triton.protocol import SAMPLE_RATE

log = logging.getLogger("ditto_triton.benchmarks.soak")


def run_soak(url: str, server_pid: int, sessions: int, duration_s: float, audio, image: bytes) -> dict[str, Any]:
    """Stream real-time sessions on `sessions` workers for `duration_s`; per-session summaries and
    the server's memory. Sessions still running at the deadline finish (and count)."""
    from ditto_triton.benchmarks.triton_session import run_session
    from ditto_triton.client import DittoClient

    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    with DittoClient(url, timeout_s=120, busy_retries=0) as client:
        avatar = client.register_avatar(image, CROP)
        run_session(client, avatar, audio[:SAMPLE_RATE], "full")  # warm the stages before measuring
        started = time.monotonic()
        deadline = started + duration_s
        first_done: dict[int, float] = {}

        def worker(index: int) -> None:
            time.sleep(index * (audio.size / SAMPLE_RATE) / sessions)  # staggered starts
            while time.monotonic() < deadline:
                summary = summarize(run_session(client, avatar, audio, "realtime"))
                with lock:
                    records.append({"worker": index, **summary})
                    first_done.setdefault(index, time.monotonic() - started)

        with MemorySampler(server_pid) as memory:
            workers = [threading.Thread(target=worker, args=(i,), name=f"soak-{i}") for i in range(sessions)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        elapsed = duration_s + max(0.0, time.monotonic() - deadline)
    warmup_s = max(first_done.values(), default=elapsed)
    lost = sum(max(r["expected_frames"] - r["frames"], 0) for r in records)
    late = [r["late_frame_ratio"] for r in records if r["late_frame_ratio"] is not None]
    return {
        "sessions": sessions,
        "duration_s": round(elapsed, 1),
        "completed_sessions": sum(r["complete"] for r in records),
        "failed_sessions": sum(not r["complete"] for r in records),
        "frames_expected": sum(r["expected_frames"] for r in records),
        "frames_received": sum(r["frames"] for r in records),
        "frames_lost": lost,
        "late_frame_ratio_worst": max(late) if late else None,
        "late_frame_ratio_median": round(statistics.median(late), 4) if late else None,
        "fps_min": min((r["fps"] for r in records if r["fps"]), default=None),
        "errors": sorted({r["error"] for r in records if r["error"]}),
        "memory": memory_growth(memory.samples, elapsed, warmup_s),
        "memory_samples": [(round(t, 1), round(mb, 1)) for t, mb in memory.samples],
        "memory_by_process": {
            "warmup_end": _parts_at(memory.by_process, warmup_s),
            "end": {k: round(v, 1) for k, v in (memory.by_process[-1][1] if memory.by_process else {}).items()},
        },
        "records": records,
    }


def _parts_at(by_process: list[tuple[float, dict[str, float]]], t: float) -> dict[str, float]:
    later = [parts for ts, parts in by_process if ts >= t]
    return {k: round(v, 1) for k, v in (later[0] if later else {}).items()}


def soak_checks(result: dict[str, Any], th: dict[str, float]) -> list[Check]:
    return [
        Check("frames lost", float(result["frames_lost"]), "<=", 0.0),
        Check("failed sessions", float(result["failed_sessions"]), "<=", 0.0),
        Check(
            "server memory growth after warm-up",
            result["memory"].get("growth_ratio"),
            "<=",
            th["soak_memory_growth_max"],
        ),
        Check("late-frame ratio, worst session", result["late_frame_ratio_worst"], "<=", th["late_frame_ratio_max"]),
    ]


def write_soak_report(result: dict[str, Any], checks: list[Check], out_dir: Path) -> Path:
    from ditto_triton.benchmarks import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "soak.json").write_text(json.dumps({**result, "checks": [c.to_dict() for c in checks]}, indent=2))
    mem = result["memory"]
    plot = plots.memory_over_time(
        result["memory_samples"],
        out_dir / "soak_memory.png",
        f"tritonserver + stubs RSS, {result['sessions']} sessions",
        mem.get("warmup_s", 0.0),
    )
    lines = [
        f"# Soak: {result['sessions']} concurrent real-time sessions for {result['duration_s']:.0f} s",
        "",
        f"{result.get('device', '')} · {result.get('profile', '')} · {result.get('flavor', '')} · git {result.get('git_sha', '')}",
        "",
        "| check | measured | threshold | |",
        "|---|---|---|---|",
        *[
            f"| {c.name} | {c.measured if c.measured is not None else 'missing'} | {c.op} {c.threshold:g} | {'PASS' if c.passed else 'FAIL'} |"
            for c in checks
        ],
        "",
        f"Sessions: {result['completed_sessions']} complete, {result['failed_sessions']} failed; frames "
        f"{result['frames_received']} of {result['frames_expected']}; slowest session {result['fps_min']} frames/s; "
        f"late-frame ratio median {result['late_frame_ratio_median']}, worst {result['late_frame_ratio_worst']}.",
        "",
        f"Memory (RSS of tritonserver and its stubs): {mem.get('baseline_mb')} MB after warm-up, "
        f"{mem.get('final_mb')} MB at the end (growth {mem.get('growth_ratio')}), peak {mem.get('peak_mb')} MB.",
        "",
        "By process (MB, after warm-up → end): "
        + ", ".join(
            f"{name} {before:g} → {result['memory_by_process']['end'].get(name, 0):g}"
            for name, before in sorted(result["memory_by_process"]["warmup_end"].items())
        ),
        "",
        f"![memory]({plot.name})",
        "",
    ]
    if result["errors"]:
        lines += ["Errors:", *[f"- {e}" for e in result["errors"]], ""]
    (out_dir / "soak.md").write_text("\n".join(lines))
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--export", type=Path, default=Path("out/export/tiny"))
    parser.add_argument("--results-root", type=Path, default=RESULTS_DIR)
    parser.add_argument("--thresholds", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from ditto_triton.client import load_audio
    from ditto_triton.export.current import ensure_export

    thresholds = load_thresholds(args.thresholds)
    ensure_export(args.export, "tiny", parity=False)
    audio, image = load_audio(SAMPLE_AUDIO), SAMPLE_IMAGE.read_bytes()
    log.info("soak: %d sessions for %.1f minutes", args.sessions, args.minutes)
    with local_tritonserver(args.export) as server:
        result = run_soak(server.grpc_url, server.pid, args.sessions, args.minutes * 60, audio, image)
    result.update(
        profile="tiny",
        flavor="python-ort",
        device=provenance.detect_device(),
        git_sha=provenance.git_sha(),
        versions=provenance.versions(),
    )
    checks = soak_checks(result, thresholds)
    out = write_soak_report(
        result, checks, results_dir("tiny", "python-ort", provenance.today(), provenance.host(), args.results_root)
    )
    for check in checks:
        print(check.line())
    print(f"report: {out / 'soak.md'}")
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
