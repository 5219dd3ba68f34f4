"""Write a benchmark run to `benchmarks/results/<date>-<host>-<profile>-<flavor>/`: results.json,
report.md and the PNG plots.

`results` is the suite's dict (see `suite.py`); the keys this module reads are profile, flavor,
device, versions, git_sha, stages {model: {batch: {p50_ms, p95_ms, infer_per_s}}}, sessions [...],
max_realtime_sessions, ffd_full_audio, ratios {triton_over_inprocess, ort_over_torch {stage: x}},
throughput, frame_formats (frame_formats.py), stage_timing, full, metrics, thresholds. Any part may be missing or hold {"error": ...};
the report says so instead of failing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ditto_triton.benchmarks import RESULTS_DIR, plots


def results_dir(profile: str, flavor: str, date: str, host: str, root: Path = RESULTS_DIR) -> Path:
    return Path(root) / f"{date}-{host}-{profile}-{flavor}"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _one_line(text: str | None, limit: int = 90) -> str:
    """A multi-line tool message as its last non-empty line, cut to `limit` characters."""
    if not text:
        return ""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return (last[: limit - 1] + "…") if len(last) > limit else last


def _error(part: Any) -> str | None:
    return part.get("error") if isinstance(part, Mapping) and "error" in part else None


def _stages_section(stages: Any) -> list[str]:
    lines = ["## Stages through tritonserver (perf_analyzer, gRPC, concurrency 1)", ""]
    if _error(stages) or not stages:
        return lines + [f"Not measured: {_error(stages) or 'no data'}", ""]
    rows = []
    for model, by_batch in stages.items():
        for batch, s in sorted(by_batch.items(), key=lambda kv: int(kv[0])):
            rows.append(
                [model, batch, s.get("p50_ms"), s.get("p95_ms"), s.get("infer_per_s"), _one_line(s.get("error"))]
            )
    lines += _table(["model", "batch", "p50 ms", "p95 ms", "infer/s", "error"], rows)
    return lines + ["", "Latency is per request (a whole batch); infer/s counts frames (requests × batch).", ""]


def _batch_section(results: Mapping[str, Any]) -> list[str]:
    scaling = results.get("batch_scaling")
    if not scaling:
        return []
    lines = ["## Frames/s against batch size (concurrent sessions' frames batched together)", ""]
    rows = [
        [model, b, r["frames_per_s"], r["ms_per_frame"]]
        for model, m in scaling.items()
        for b, r in m["by_batch"].items()
    ]
    lines += _table(["model", "batch", "frames/s", "ms/frame"], rows)
    lines.append("")
    for model, m in scaling.items():
        lines.append(
            f"- {model}: {m['batch1_ms']} ms/frame at batch 1, {m['best_ms']} ms/frame at batch "
            f"{m['best_batch']} ({m['speedup']}×)"
        )
    memory = results.get("gpu_memory_per_session")
    if memory:
        lines.append(
            f"- GPU memory per extra session: {memory['mib_per_session']} MiB (peak per level: {memory['points']})"
        )
    return lines + [""]


def _sessions_section(results: Mapping[str, Any]) -> list[str]:
    th = results.get("thresholds", {})
    lines = [
        "## Concurrent sessions (Locust, real-time audio)",
        "",
        f"Each level runs N Locust users at once, each streaming the sample speech ({_fmt(results.get('session_audio_s'))} s) "
        f"in 200 ms chunks paced in real time. A level is real time when every session is complete and "
        f"≥ {_fmt(th.get('fps_min'), 0)} frames/s, first-frame delay p95 ≤ {_fmt(th.get('ffd_ms_p95_realtime_max'), 0)} ms "
        f"and late frames ≤ {_fmt(100 * th.get('late_frame_ratio_max', 0), 0)} % in every session.",
        "",
    ]
    sessions = results.get("sessions")
    if _error(sessions) or not sessions:
        return lines + [f"Not measured: {_error(sessions) or 'no data'}", ""]
    rows = [
        [
            lv["concurrency"],
            lv["ffd_ms_p50"],
            lv["ffd_ms_p95"],
            lv["fps_min"],
            lv["late_frame_ratio"],
            lv.get("late_ms_max"),
            lv["rtf"],
            lv["failed_sessions"],
            "yes" if lv["realtime"] else "no",
        ]
        for lv in sessions
    ]
    lines += _table(
        [
            "sessions",
            "FFD p50 ms",
            "FFD p95 ms",
            "fps (slowest)",
            "late ratio (worst)",
            "worst lateness ms",
            "RTF (worst)",
            "failed",
            "real time",
        ],
        rows,
    )
    lines += ["", f"**Largest number of real-time sessions: {results.get('max_realtime_sessions')}**", ""]
    failing = [lv for lv in sessions if not lv["realtime"]]
    if failing:
        missed = [c["name"] for c in failing[-1]["checks"] if not c["passed"]]
        lines += [f"Level {failing[-1]['concurrency']} missed: {', '.join(missed)}.", ""]
    return lines


def _ratios_section(results: Mapping[str, Any]) -> list[str]:
    ratios = results.get("ratios", {})
    through = results.get("throughput", {})
    lines = ["## Ratios (same machine, same run)", ""]
    if _error(through):
        lines += [f"Triton vs in-process not measured: {_error(through)}", ""]
    else:
        lines += [
            f"- frames/s through tritonserver ÷ in-process pipeline (audio fully available, one session each, "
            f"alternated pairs, median of the pairs' ratios): **{_fmt(ratios.get('triton_over_inprocess'))}** "
            f"(medians {_fmt(through.get('triton_fps'))} vs {_fmt(through.get('inprocess_fps'))} frames/s)",
            "",
        ]
    timing = results.get("stage_timing", {})
    if _error(timing) or not timing:
        lines += [f"ONNX Runtime vs PyTorch not measured: {_error(timing) or 'no data'}", ""]
    else:
        rows = [[s, t["torch_ms"], t["ort_ms"], t["ort_over_torch"]] for s, t in timing.items()]
        lines += [
            "ONNX Runtime ÷ PyTorch (speed: PyTorch ms / ORT ms, batch 1, 2 threads, median of repeated calls):",
            "",
        ]
        lines += _table(["stage", "PyTorch ms", "ORT ms", "ORT speed-up"], rows) + [""]
    return lines


def frame_formats_section(formats: Any) -> list[str]:
    """Bytes and CPU per frame and one session's frames/s for each frame format, per frame size."""
    lines = ["## Frame formats (session option output_format)", ""]
    if _error(formats) or not formats:
        return lines + [f"Not measured: {_error(formats) or 'skipped'}", ""]
    lines += [
        f"Codec: up to {formats['codec_frames']} frames of one session encoded by the orchestrator's encoder (or "
        "Pillow) and decoded by the client's, CPU per frame of this process (median of the repeats). Sessions: "
        f"{formats['audio_s']} s of audio fully available, each format {formats['repeats']} times, alternated (medians); "
        "server CPU is tritonserver and its python stubs, client CPU this process (it decodes every frame).",
        "",
    ]
    for name, case in formats["cases"].items():
        lines += _frame_format_case(name, case)
    return lines


def _frame_format_case(name: str, case: Mapping[str, Any]) -> list[str]:
    codec = [
        [v, c["bytes_per_frame"], c["mbit_per_s_at_25fps"], c["encode_cpu_ms"], c["decode_cpu_ms"],
         "lossless" if c["lossless"] else c["psnr_db_worst"]]
        for v, c in case["codec"].items()
    ]  # fmt: skip
    lines = [f"### {name} frames", ""]
    lines += _table(["encoding", "bytes/frame", "Mbit/s at 25 fps", "encode CPU ms", "decode CPU ms", "PSNR dB"], codec)
    mp4 = case.get("mp4_psnr_db")
    if mp4:
        made = ", ".join(f"{k.removeprefix('from_')} {v} dB" for k, v in mp4.items())
        lines += ["", f"ditto-render's MP4 (H.264, CRF 18) against the raw frames, made from: {made}."]
    sessions = [
        [f, s["fps"], s["fps_over_rgb"], s["wall_s"], s["server_cpu_ms_per_frame"], s["client_cpu_ms_per_frame"]]
        for f, s in case["sessions"].items()
    ]
    headers = ["session format", "frames/s", "frames/s ÷ rgb", "wall s", "server CPU ms/frame", "client CPU ms/frame"]
    return lines + [""] + _table(headers, sessions) + [""]


def _full_section(full: Any) -> list[str]:
    lines = ["## Full profile (Ditto's real sizes), per stage", ""]
    if _error(full) or not full:
        return lines + [f"Not measured: {_error(full) or 'skipped'}", ""]
    rows = [[s, t["ort_ms"], len(t.get("samples_ms", []))] for s, t in full.get("stages", {}).items()]
    lines += ["ONNX Runtime on this CPU, batch 1, in process (median):", ""]
    lines += _table(["stage", "ORT ms", "calls"], rows)
    per_frame = full.get("per_frame_ms")
    if per_frame:
        lines += [
            "",
            f"Per-frame render chain (stitch + warp + decoder): {_fmt(per_frame, 0)} ms → "
            f"{_fmt(1000 / per_frame)} frames/s on this device.",
        ]
    return lines + [""] + cpu_runners_lines(full.get("cpu_runners"))


def cpu_runners_lines(choice: Any) -> list[str]:
    """PyTorch vs ONNX Runtime per stage and the runner `ditto-serve --cpu-runners auto` serves it with."""
    if not choice or _error(choice):
        return []
    rows = [[s, t["torch_ms"], t["ort_ms"], t["served_by"]] for s, t in choice["stages"].items()]
    return [
        f"PyTorch vs ONNX Runtime, batch 1 (the CPU flavor's `--cpu-runners auto` serves a stage with PyTorch where "
        f"it is faster by more than {choice['margin']:.0%}):",
        "",
        *_table(["stage", "PyTorch ms", "ORT ms", "served by"], rows),
        "",
    ]


def _metrics_section(metrics: Any) -> list[str]:
    lines = ["## Orchestrator metrics (scraped from the metrics port after the run)", ""]
    if _error(metrics) or not metrics:
        return lines + [f"Not scraped: {_error(metrics) or 'no data'}", ""]
    return lines + ["```json", json.dumps(metrics.get("orchestrator", metrics), indent=2), "```", ""]


def render_markdown(results: Mapping[str, Any], images: Mapping[str, Path]) -> str:
    th = results.get("thresholds", {})
    ffd_full = results.get("ffd_full_audio", {})
    lines = [
        f"# Ditto on Triton benchmark — {results.get('profile')} profile, {results.get('flavor')} flavor",
        "",
        f"- device: {results.get('device')}",
        f"- host: {results.get('host')}, date: {results.get('date')}, suite wall time: {_fmt(results.get('duration_s'), 0)} s",
        f"- git: `{results.get('git_sha')}`",
        f"- versions: {', '.join(f'{k} {v}' for k, v in results.get('versions', {}).items())}",
        "",
        "## Summary",
        "",
        f"- real-time concurrent sessions: **{results.get('max_realtime_sessions')}**",
        f"- first-frame delay, audio fully available ({ffd_full.get('sessions', '–')} sessions in a row): "
        f"p50 {_fmt(ffd_full.get('ffd_ms_p50'), 0)} ms, p95 {_fmt(ffd_full.get('ffd_ms_p95'), 0)} ms "
        f"(bound {_fmt(th.get('ffd_ms_p95_full_audio_max'), 0)} ms)",
        f"- Triton ÷ in-process frames/s: {_fmt(results.get('ratios', {}).get('triton_over_inprocess'))} "
        f"(bound ≥ {_fmt(th.get('triton_over_inprocess_min'))})",
        "",
    ]
    lines += _stages_section(results.get("stages"))
    lines += _batch_section(results)
    lines += _sessions_section(results)
    lines += _ratios_section(results)
    if "frame_formats" in results:
        lines += frame_formats_section(results["frame_formats"])
    lines += _full_section(results.get("full"))
    lines += _metrics_section(results.get("metrics"))
    if images:
        lines += ["## Plots", ""] + [f"![{name}]({path.name})" for name, path in images.items()] + [""]
    lines += [
        "## Definitions",
        "",
        "- first-frame delay (FFD): from opening the session (before the first request) to the first frame received.",
        "- frames/s (sustained): (frames − 1) / (last arrival − first arrival).",
        "- late frame: arrives after its presentation time counted from the first frame's arrival (1 ms slack); "
        "worst lateness is the playout buffer that would have hidden every late frame.",
        "- RTF: (last frame − session open) / audio duration; below 1 is faster than real time.",
        "",
    ]
    return "\n".join(lines)


def write_report(
    results: dict[str, Any], out_dir: Path, latency_samples: Mapping[str, list[float]] | None = None
) -> dict[str, Path]:
    """Write results.json, report.md and the plots into `out_dir`; returns {name: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, Path] = {}
    title = f"{results.get('profile')} · {results.get('flavor')} · {results.get('device')}"
    if latency_samples:
        images["stage latency CDF"] = plots.latency_cdf(
            latency_samples, out_dir / "stage_latency_cdf.png", f"Stage request latency, batch 1, gRPC — {title}"
        )
    stages = results.get("stages")
    if stages and not _error(stages):
        images["stage throughput"] = plots.stage_throughput(
            stages, out_dir / "stage_throughput.png", f"Stage throughput vs batch (perf_analyzer) — {title}"
        )
    sessions = results.get("sessions")
    th = results.get("thresholds", {})
    if sessions and not _error(sessions):
        images["frames/s vs sessions"] = plots.sessions_fps(
            sessions,
            th.get("fps_min", 25.0),
            out_dir / "sessions_fps.png",
            f"Frames/s vs concurrent sessions — {title}",
        )
        images["FFD vs sessions"] = plots.sessions_ffd(
            sessions, th.get("ffd_ms_p95_realtime_max", 0.0), out_dir / "sessions_ffd.png",
            f"First-frame delay vs concurrent sessions — {title}",
        )  # fmt: skip
    paths = dict(images)
    results_path = out_dir / "results.json"
    payload = {
        **results,
        "stage_latency_ms": {k: [round(v, 3) for v in vs] for k, vs in (latency_samples or {}).items()},
    }
    results_path.write_text(json.dumps(payload, indent=2) + "\n")
    paths["results.json"] = results_path
    report_path = out_dir / "report.md"
    report_path.write_text(render_markdown(results, images))
    paths["report.md"] = report_path
    return paths
