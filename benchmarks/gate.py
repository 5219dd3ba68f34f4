"""The real-time gate (`make bench-gate`): does the tiny profile still stream in real time here?

    python -m ditto_triton.benchmarks.gate                      # measure, print, write out/bench-gate.json
    python -m ditto_triton.benchmarks.gate --measurements m.json  # judge given numbers (no server)

Against a fresh local tritonserver (python-ort flavor of the tiny export) it measures, after one short
warm-up session:
- one session with the sample speech paced in real time: complete, sustained frames/s;
- `--ffd-sessions` sessions in a row with the audio fully available: first-frame delay p50/p95;
- frames/s of one session with the audio fully available through Triton and through the in-process
  pipeline (alternated `--repeats` times, best of each), and their ratio.
It prints every measured value next to its threshold (`thresholds.json`), writes them as JSON, and
exits 1 when any check misses (2 when it cannot measure at all).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ditto_triton.benchmarks.criteria import Check, load_thresholds
from ditto_triton.benchmarks.fixtures import CROP, SAMPLE_AUDIO, SAMPLE_IMAGE, local_server
from ditto_triton.benchmarks.session_stats import SessionRecord, aggregate, summarize
from ditto_triton.protocol import SAMPLE_RATE

log = logging.getLogger("ditto_triton.benchmarks.gate")
WARMUP_SECONDS = 2.0


def collect(
    realtime: SessionRecord,
    full_audio: Sequence[SessionRecord],
    triton_fps: float | None,
    inprocess_fps: float | None,
) -> dict[str, Any]:
    """The gate's measurements from its sessions' records (and the two throughput figures)."""
    rt = summarize(realtime)
    ffd = aggregate([summarize(r) for r in full_audio])
    ratio = triton_fps / inprocess_fps if triton_fps and inprocess_fps else None
    return {
        "realtime_complete": rt["complete"],
        "realtime_fps": rt["fps"],
        "realtime_ffd_ms": rt["ffd_ms"],
        "realtime_late_frame_ratio": rt["late_frame_ratio"],
        "realtime_error": rt["error"],
        "full_audio_sessions": ffd["sessions"],
        "full_audio_failed_sessions": ffd["failed_sessions"],
        "ffd_ms_p50_full_audio": ffd["ffd_ms_p50"],
        "ffd_ms_p95_full_audio": ffd["ffd_ms_p95"],
        "triton_fps": triton_fps,
        "inprocess_fps": inprocess_fps,
        "triton_over_inprocess": round(ratio, 3) if ratio is not None else None,
    }


def _incomplete(m: dict[str, Any]) -> float | None:
    parts = (m.get("realtime_complete"), m.get("full_audio_failed_sessions"))
    if any(p is None for p in parts):
        return None
    return float((not parts[0]) + parts[1] + int(m.get("throughput_failed_sessions") or 0))


def evaluate(m: dict[str, Any], th: dict[str, float]) -> list[Check]:
    """The gate's checks; a missing value fails its check."""
    return [
        Check("incomplete or failed sessions", _incomplete(m), "<=", 0.0),
        Check("frames/s, one session with real-time audio", m.get("realtime_fps"), ">=", th["fps_min"], "fps"),
        Check(
            "first-frame delay p95, audio fully available",
            m.get("ffd_ms_p95_full_audio"),
            "<=",
            th["ffd_ms_p95_full_audio_max"],
            "ms",
        ),
        Check("frames/s Triton / in-process", m.get("triton_over_inprocess"), ">=", th["triton_over_inprocess_min"]),
    ]


def measure(
    export_dir: Path, image: bytes, audio, *, ffd_sessions: int, ffd_seconds: float, repeats: int
) -> dict[str, Any]:
    """Start a server on `export_dir`, run the gate's sessions, return `collect(...)`'s dict."""
    from ditto_triton.benchmarks.inprocess import InProcessPipeline
    from ditto_triton.benchmarks.triton_session import run_session
    from ditto_triton.client import DittoClient

    short = audio[: int(ffd_seconds * SAMPLE_RATE)]
    with local_server(export_dir) as (url, _), DittoClient(url, timeout_s=120) as client:
        avatar = client.register_avatar(image, CROP)
        run_session(client, avatar, audio[: int(WARMUP_SECONDS * SAMPLE_RATE)], "full")  # first-use costs stay out
        log.info("one session, real-time audio (%.1f s)", audio.size / SAMPLE_RATE)
        realtime = run_session(client, avatar, audio, "realtime")
        log.info("%d sessions in a row, audio fully available (%.1f s each)", ffd_sessions, ffd_seconds)
        full_audio = [run_session(client, avatar, short, "full") for _ in range(ffd_sessions)]
        log.info("Triton vs in-process frames/s (%d pair(s))", repeats)
        pipeline = InProcessPipeline(export_dir, image, CROP)
        pipeline.run(audio[: int(WARMUP_SECONDS * SAMPLE_RATE)], "full")
        triton_fps, inprocess_fps, failed = [], [], 0
        for _ in range(repeats):
            for runs, session in (
                (triton_fps, lambda: run_session(client, avatar, audio, "full")),
                (inprocess_fps, lambda: pipeline.run(audio, "full")),
            ):
                summary = summarize(session())
                failed += not summary["complete"]
                runs.append(summary["fps"] or 0.0)
    measured = collect(realtime, full_audio, max(triton_fps), max(inprocess_fps))
    measured.update(triton_fps_runs=triton_fps, inprocess_fps_runs=inprocess_fps, throughput_failed_sessions=failed)
    return measured


def report_lines(checks: Sequence[Check], measured: dict[str, Any]) -> list[str]:
    lines = [c.line() for c in checks]
    lines.append(
        f"      (real-time session: FFD {measured.get('realtime_ffd_ms')} ms, late-frame ratio "
        f"{measured.get('realtime_late_frame_ratio')}; full-audio FFD p50 {measured.get('ffd_ms_p50_full_audio')} ms; "
        f"Triton {measured.get('triton_fps')} vs in-process {measured.get('inprocess_fps')} frames/s)"
    )
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Real-time gate on the tiny profile (make bench-gate).")
    p.add_argument("--export-dir", type=Path, default=Path("out/export/tiny"))
    p.add_argument("--image", type=Path, default=SAMPLE_IMAGE)
    p.add_argument("--audio", type=Path, default=SAMPLE_AUDIO)
    p.add_argument("--ffd-sessions", type=int, default=5, help="full-audio sessions in a row for the FFD p95")
    p.add_argument("--ffd-seconds", type=float, default=3.0, help="audio per full-audio FFD session")
    p.add_argument("--repeats", type=int, default=2, help="Triton/in-process session pairs for the ratio")
    p.add_argument("--thresholds", type=Path, default=None)
    p.add_argument("--measurements", type=Path, default=None, help="judge these numbers (JSON) instead of measuring")
    p.add_argument("--out", type=Path, default=Path("out/bench-gate.json"), help="where to write the result JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("ditto_triton.model_repository").setLevel(logging.WARNING)
    thresholds = load_thresholds(args.thresholds)
    started = time.perf_counter()
    if args.measurements:
        measured = json.loads(args.measurements.read_text())
        measured = measured.get("measured", measured)
    else:
        from ditto_triton.client import load_audio
        from ditto_triton.export.current import ensure_export

        try:
            export_dir = ensure_export(args.export_dir, "tiny")
            measured = measure(
                export_dir, args.image.read_bytes(), load_audio(args.audio),
                ffd_sessions=args.ffd_sessions, ffd_seconds=args.ffd_seconds, repeats=args.repeats,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - one clear line and exit code 2
            print(f"bench-gate: cannot measure: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
    checks = evaluate(measured, thresholds)
    passed = all(c.passed for c in checks)
    print("\n".join(report_lines(checks, measured)))
    print(f"bench-gate: {'PASS' if passed else 'FAIL'} ({time.perf_counter() - started:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"passed": passed, "measured": measured, "checks": [c.to_dict() for c in checks]}, indent=2) + "\n"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
