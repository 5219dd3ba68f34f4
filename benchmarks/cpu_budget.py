"""Where each millisecond of CPU goes, per frame, through tritonserver and in process (`make bench-profile`).

    python -m ditto_triton.benchmarks.cpu_budget                 # tiny export, sample speech, 3 pairs
    python -m ditto_triton.benchmarks.cpu_budget --out DIR       # cpu_budget.json + cpu_budget.md in DIR

One session of the sample speech with the audio fully available, through a fresh local tritonserver and
through the in-process pipeline (the same session code on ONNX Runtime, configured like the stage models),
alternated `--pairs` times; medians over the pairs. Per frame:
- through tritonserver: user + system CPU of tritonserver, of every python stub (one per model, so one per
  stage) and of this process (the client), read from /proc; exited threads count (a session's threads end
  with it);
- in process: each stage's CPU (the calling thread's CPU during the ONNX Runtime call plus the session's own
  intra-op worker threads), and the rest of the process (the session logic: motion, stitching, put-back).
Then one more session on each path under py-spy (sampling Python stacks, not timed): the functions that
take the orchestrator stub's and the in-process pipeline's Python threads' CPU, as ms per frame.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from ditto_triton.benchmarks import cli_logging, process_cpu
from ditto_triton.benchmarks.fixtures import CROP, SAMPLE_AUDIO, SAMPLE_IMAGE, local_tritonserver
from ditto_triton.benchmarks.inprocess import InProcessPipeline, ServerLikeOrtStages
from ditto_triton.benchmarks.session_stats import SessionRecord, summarize
from ditto_triton.protocol import ORCHESTRATOR, SAMPLE_RATE

log = logging.getLogger("ditto_triton.benchmarks.cpu_budget")
CLIENT = "client"
SESSION_LOGIC = "session logic"
WARMUP_SECONDS = 2.0
PY_SPY_RATE_HZ = 200
TOP_FUNCTIONS = 12


class TimedOrtStages(ServerLikeOrtStages):
    """`ServerLikeOrtStages` that counts each stage's CPU: the caller's thread time during the run plus
    the stage session's own intra-op worker threads (ONNX Runtime starts them with the session)."""

    def __init__(self, export_dir: Path, threads: int | None = None) -> None:
        self._workers: dict[str, set[int]] = {}
        self._caller_s: dict[str, float] = collections.defaultdict(float)
        super().__init__(export_dir, threads)

    def _open(self, name: str, path: Path):
        before = process_cpu.thread_ids(os.getpid())
        session = super()._open(name, path)
        self._workers[name] = process_cpu.thread_ids(os.getpid()) - before
        return session

    def infer(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.thread_time()
        try:
            return super().infer(name, inputs)
        finally:
            self._caller_s[name] += time.thread_time() - started

    def stage_cpu_s(self) -> dict[str, float]:
        """{stage: CPU seconds so far}."""
        pid = os.getpid()
        return {
            name: self._caller_s[name] + process_cpu.thread_cpu_seconds(pid, w) for name, w in self._workers.items()
        }


def per_frame_ms(before: Mapping[str, float], after: Mapping[str, float], frames: int) -> dict[str, float]:
    return {k: round((after[k] - before.get(k, 0.0)) * 1000 / max(frames, 1), 3) for k in after}


def triton_budget(run: Callable[[], SessionRecord], procs: Mapping[str, Any]) -> dict[str, Any]:
    """One session through tritonserver: {fps, frames, cpu_ms {process: ms/frame}}."""
    me = psutil.Process()
    before = {**process_cpu.snapshot(procs), CLIENT: process_cpu.cpu_seconds(me)}
    record = run()
    after = {**process_cpu.snapshot(procs), CLIENT: process_cpu.cpu_seconds(me)}
    frames = len(record.arrivals_s)
    return {"fps": summarize(record)["fps"], "frames": frames, "cpu_ms": per_frame_ms(before, after, frames)}


def inprocess_budget(pipeline: InProcessPipeline, stages: TimedOrtStages, audio: np.ndarray) -> dict[str, Any]:
    """One in-process session: {fps, frames, cpu_ms {stage | session logic: ms/frame}}."""
    me = psutil.Process()
    total0, stages0 = process_cpu.cpu_seconds(me), stages.stage_cpu_s()
    record = pipeline.run(audio, "full")
    total1, stages1 = process_cpu.cpu_seconds(me), stages.stage_cpu_s()
    frames = len(record.arrivals_s)
    cpu = per_frame_ms(stages0, stages1, frames)
    cpu[SESSION_LOGIC] = round((total1 - total0) * 1000 / max(frames, 1) - sum(cpu.values()), 3)
    return {"fps": summarize(record)["fps"], "frames": frames, "cpu_ms": cpu}


def median_budget(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    keys = {k for r in runs for k in r["cpu_ms"]}
    return {
        "fps": round(statistics.median(r["fps"] or 0.0 for r in runs), 2),
        "frames": runs[0]["frames"],
        "cpu_ms": {k: round(statistics.median(r["cpu_ms"].get(k, 0.0) for r in runs), 3) for k in sorted(keys)},
        "runs": list(runs),
    }


def budget_table(triton: Mapping[str, Any], inprocess: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows {component, triton_ms, inprocess_ms}: each stage side by side (its stub vs its ONNX Runtime
    calls), the orchestrator stub beside the in-process session logic, then what only serving has."""
    t, p = dict(triton["cpu_ms"]), dict(inprocess["cpu_ms"])
    rows = []
    for stage in [k for k in p if k != SESSION_LOGIC]:
        rows.append({"component": stage, "triton_ms": t.pop(f"stub:{stage}", 0.0), "inprocess_ms": p[stage]})
    rows.append(
        {
            "component": f"{SESSION_LOGIC} ({ORCHESTRATOR} stub / in process)",
            "triton_ms": t.pop(f"stub:{ORCHESTRATOR}", 0.0),
            "inprocess_ms": p[SESSION_LOGIC],
        }
    )
    for label in sorted(t, key=lambda k: -t[k]):
        if t[label] > 0.0:
            rows.append({"component": label, "triton_ms": t[label], "inprocess_ms": 0.0})
    return rows


def summary(triton: Mapping[str, Any], inprocess: Mapping[str, Any]) -> dict[str, Any]:
    t_total = sum(triton["cpu_ms"].values())
    server = t_total - triton["cpu_ms"].get(CLIENT, 0.0)
    p_total = sum(inprocess["cpu_ms"].values())
    ratios = [a["fps"] / b["fps"] for a, b in zip(triton["runs"], inprocess["runs"]) if a["fps"] and b["fps"]]
    return {
        "triton_cpu_ms_per_frame": round(t_total, 2),
        "server_cpu_ms_per_frame": round(server, 2),
        "inprocess_cpu_ms_per_frame": round(p_total, 2),
        "fps_triton_over_inprocess": round(statistics.median(ratios), 3) if ratios else None,
        "inprocess_over_triton_cpu": round(p_total / t_total, 3) if t_total else None,
        "inprocess_over_server_cpu": round(p_total / server, 3) if server else None,
    }


class PySpy:
    """py-spy recording one process's Python stacks while a session runs (`with PySpy(pid) as spy:`)."""

    def __init__(self, pid: int, rate_hz: int = PY_SPY_RATE_HZ) -> None:
        self.pid, self.rate_hz = pid, rate_hz
        self._out = Path(tempfile.mkstemp(prefix="ditto-py-spy-", suffix=".txt")[1])
        self._proc: subprocess.Popen | None = None
        self.stacks: dict[str, int] = {}

    def __enter__(self) -> PySpy:
        binary = Path(sys.executable).with_name("py-spy")
        cmd = [str(binary), "record", "--pid", str(self.pid), "--rate", str(self.rate_hz), "--nonblocking"]
        cmd += ["--function", "--format", "raw", "--output", str(self._out)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # attached before the session starts
        if self._proc.poll() is not None:
            raise RuntimeError(f"py-spy could not attach to pid {self.pid}: {self._proc.stderr.read().strip()}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.send_signal(2)  # py-spy writes its samples on SIGINT
        self._proc.wait(timeout=60)
        text = self._out.read_text() if self._out.exists() else ""
        self._out.unlink(missing_ok=True)
        for line in text.splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                self.stacks[stack] = self.stacks.get(stack, 0) + int(count)

    def top_functions(self, frames: int, limit: int = TOP_FUNCTIONS) -> list[dict[str, Any]]:
        """The functions Python threads were running when sampled (self time), as CPU ms per frame."""
        own: collections.Counter = collections.Counter()
        for stack, count in self.stacks.items():
            own[stack.split(";")[-1]] += count
        ms = 1000.0 / self.rate_hz / max(frames, 1)
        return [{"function": f, "ms_per_frame": round(n * ms, 3)} for f, n in own.most_common(limit)]


def sampled_functions(pid: int, run: Callable[[], SessionRecord]) -> list[dict[str, Any]]:
    try:
        with PySpy(pid) as spy:
            record = run()
    except (OSError, RuntimeError) as exc:
        return [{"error": str(exc)}]
    return spy.top_functions(len(record.arrivals_s))


def measure(export_dir: Path, image: bytes, audio: np.ndarray, *, pairs: int, py_spy: bool) -> dict[str, Any]:
    """The budget of both paths (see the module's docstring)."""
    from ditto_triton.benchmarks.triton_session import run_session
    from ditto_triton.client import DittoClient

    warmup = audio[: int(WARMUP_SECONDS * SAMPLE_RATE)]
    stages = TimedOrtStages(export_dir)
    pipeline = InProcessPipeline(export_dir, image, CROP, stages=stages)
    pipeline.run(warmup, "full")
    with local_tritonserver(export_dir) as server, DittoClient(server.grpc_url, timeout_s=300) as client:
        avatar = client.register_avatar(image, CROP)
        session = lambda: run_session(client, avatar, audio, "full")  # noqa: E731
        run_session(client, avatar, warmup, "full")  # first-use costs stay out
        procs = process_cpu.server_processes(server.pid)
        triton_runs, inprocess_runs = [], []
        for k in range(pairs):
            log.info("pair %d/%d", k + 1, pairs)
            triton_runs.append(triton_budget(session, procs))
            inprocess_runs.append(inprocess_budget(pipeline, stages, audio))
        functions = {}
        if py_spy:
            log.info("py-spy: one more session on each path")
            functions[f"stub:{ORCHESTRATOR}"] = sampled_functions(procs[f"stub:{ORCHESTRATOR}"].pid, session)
    if py_spy:
        functions["in process"] = sampled_functions(os.getpid(), lambda: pipeline.run(audio, "full"))
    triton, inprocess = median_budget(triton_runs), median_budget(inprocess_runs)
    return {
        "pairs": pairs,
        "audio_s": round(audio.size / SAMPLE_RATE, 3),
        "ort_threads": stages.threads,
        "triton": triton,
        "inprocess": inprocess,
        "table": budget_table(triton, inprocess),
        "summary": summary(triton, inprocess),
        "python_functions": functions,
    }


def markdown(budget: Mapping[str, Any]) -> list[str]:
    """The budget as the report's section."""
    s = budget["summary"]
    lines = [
        "## CPU per frame, through tritonserver and in process (`make bench-profile`)",
        "",
        f"One session of {budget['audio_s']} s of audio fully available on each path, alternated "
        f"{budget['pairs']} times (medians); ONNX Runtime with {budget['ort_threads']} intra-op threads on both. "
        f"Frames/s: Triton {budget['triton']['fps']}, in process {budget['inprocess']['fps']} "
        f"(median ratio of the pairs {s['fps_triton_over_inprocess']}).",
        "",
        "| component | through tritonserver, ms/frame | in process, ms/frame | difference |",
        "|---|---|---|---|",
    ]
    for row in budget["table"]:
        diff = row["triton_ms"] - row["inprocess_ms"]
        lines.append(f"| {row['component']} | {row['triton_ms']:.2f} | {row['inprocess_ms']:.2f} | {diff:+.2f} |")
    total_diff = s["triton_cpu_ms_per_frame"] - s["inprocess_cpu_ms_per_frame"]
    lines += [
        f"| **total** | **{s['triton_cpu_ms_per_frame']:.2f}** | **{s['inprocess_cpu_ms_per_frame']:.2f}** "
        f"| **{total_diff:+.2f}** |",
        "",
        f"Server side (client excluded): {s['server_cpu_ms_per_frame']} ms/frame; in-process CPU ÷ server CPU "
        f"{s['inprocess_over_server_cpu']}, ÷ all of the Triton path's {s['inprocess_over_triton_cpu']}.",
        "",
    ]
    for who, functions in budget.get("python_functions", {}).items():
        lines += [f"Python functions sampled by py-spy, {who} (self time, ms/frame):", ""]
        lines += [
            f"- {f['error']}" if "error" in f else f"- {f['ms_per_frame']:.2f} `{f['function']}`" for f in functions
        ]
        lines.append("")
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="CPU per frame through tritonserver and in process (make bench-profile).")
    p.add_argument("--export-dir", type=Path, default=Path("out/export/tiny"))
    p.add_argument("--image", type=Path, default=SAMPLE_IMAGE)
    p.add_argument("--audio", type=Path, default=SAMPLE_AUDIO)
    p.add_argument("--seconds", type=float, default=0.0, help="use only this much of the audio (0: all)")
    p.add_argument("--pairs", type=int, default=3, help="Triton/in-process session pairs (medians)")
    p.add_argument("--no-py-spy", dest="py_spy", action="store_false", help="skip the sampled Python functions")
    p.add_argument("--out", type=Path, default=Path("out/cpu_budget"), help="folder for cpu_budget.json and .md")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli_logging.configure()
    from ditto_triton.client import load_audio
    from ditto_triton.export.current import ensure_export

    audio = load_audio(args.audio)
    if args.seconds:
        audio = audio[: int(args.seconds * SAMPLE_RATE)]
    export_dir = ensure_export(args.export_dir, "tiny")
    budget = measure(export_dir, args.image.read_bytes(), audio, pairs=args.pairs, py_spy=args.py_spy)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_budget.json").write_text(json.dumps(budget, indent=2) + "\n")
    text = "\n".join(markdown(budget))
    (args.out / "cpu_budget.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
