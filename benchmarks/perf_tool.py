"""The perf_analyzer binary: where it is, how it starts, what its CSV report says.

The binary comes with `tritonclient==2.41.1` (the venv's `bin/perf_analyzer`; `DITTO_PERF_ANALYZER`
overrides it). It needs `libb64.so.0d` (Debian `libb64-0d`) and `libcudart.so.12`, which the pip
package `nvidia-cuda-runtime-cu12` provides and which is put on `LD_LIBRARY_PATH` here (no GPU is
used). A missing binary or library raises `PerfAnalyzerSetupError` saying how to install it.

The CSV (`-f`, verified against 2.41.1): a header line, one row per concurrency sorted by throughput,
latencies in microseconds: `Concurrency, Inferences/Second, [Response Throughput (decoupled models),]
Client Send, Network+Server Send/Recv, Server Queue, Server Compute Input, Server Compute Infer,
Server Compute Output, Client Recv, p50 latency, p90 latency, p95 latency, p99 latency`.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

BINARY_ENV = "DITTO_PERF_ANALYZER"

_LIB_HINTS = {
    "libb64": "install it with `apt-get install libb64-0d`",
    "libcudart": "install the pip package nvidia-cuda-runtime-cu12 (`make setup` does; no GPU is needed)",
}
_MISSING_LIB = re.compile(r"error while loading shared libraries: (\S+?):")


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer failed or measured nothing; the message carries its own last lines."""


class PerfAnalyzerSetupError(PerfAnalyzerError):
    """The binary or one of its libraries is missing (nothing can be measured until fixed)."""


# -- the binary -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    library_dirs: tuple[Path, ...] = ()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(p) for p in self.library_dirs] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
        return env

    def run(self, args: Sequence[str], timeout_s: float) -> str:
        """Run with `args`; returns stdout+stderr. Raises PerfAnalyzerSetupError for a missing library,
        PerfAnalyzerError for a non-zero exit or a timeout."""
        cmd = [str(self.binary), *args]
        log.info("running %s", " ".join(cmd))
        try:
            done = subprocess.run(
                cmd, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            last = tail((exc.stdout or b"").decode(errors="replace"))
            raise PerfAnalyzerError(f"perf_analyzer did not finish within {timeout_s:.0f} s\n{last}") from None
        out = done.stdout.decode(errors="replace")
        if done.returncode != 0:
            missing = _MISSING_LIB.search(out)
            if missing:
                raise PerfAnalyzerSetupError(missing_library_message(self.binary, missing.group(1)))
            raise PerfAnalyzerError(f"perf_analyzer exited with code {done.returncode}:\n{tail(out)}")
        return out


def missing_library_message(binary: Path | str, library: str) -> str:
    hint = next(
        (h for prefix, h in _LIB_HINTS.items() if library.startswith(prefix)), "install the library that provides it"
    )
    return f"{binary} cannot start: shared library {library} not found; {hint}"


def tail(text: str, lines: int = 15) -> str:
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) or "<no output>"


def cuda_runtime_dir() -> Path | None:
    """`<site-packages>/nvidia/cuda_runtime/lib` if the pip package nvidia-cuda-runtime-cu12 is installed."""
    for entry in sys.path:
        lib = Path(entry or ".") / "nvidia" / "cuda_runtime" / "lib"
        if (lib / "libcudart.so.12").is_file():
            return lib
    return None


@lru_cache(maxsize=4)
def _find(binary_override: str | None) -> PerfAnalyzer:
    if binary_override:
        binary = Path(binary_override)
        where = f"{BINARY_ENV}={binary_override}"
    else:
        beside = Path(sys.executable).parent / "perf_analyzer"
        found = shutil.which("perf_analyzer")
        binary = beside if beside.is_file() else Path(found) if found else beside
        where = str(beside)
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise PerfAnalyzerSetupError(
            f"perf_analyzer not found ({where}); run `make setup` (tritonclient==2.41.1 installs it into the venv's bin/)"
        )
    cudart = cuda_runtime_dir()
    tool = PerfAnalyzer(binary, (cudart,) if cudart else ())
    tool.run(["--version"], timeout_s=30)  # fails early, with the install hint, on a missing library
    return tool


def find_perf_analyzer() -> PerfAnalyzer:
    """Locate the binary and the CUDA runtime directory and check that it starts (cached)."""
    return _find(os.environ.get(BINARY_ENV) or None)


# -- the CSV --------------------------------------------------------------------------------------
_LATENCY_COLUMNS = {
    "p50 latency": "p50_ms",
    "p90 latency": "p90_ms",
    "p95 latency": "p95_ms",
    "p99 latency": "p99_ms",
    "Avg latency": "avg_ms",
}
_PART_COLUMNS = {
    "Client Send": "client_send_ms",
    "Network+Server Send/Recv": "network_server_ms",
    "Server Queue": "server_queue_ms",
    "Server Compute Input": "server_compute_input_ms",
    "Server Compute Infer": "server_compute_infer_ms",
    "Server Compute Output": "server_compute_output_ms",
    "Client Recv": "client_recv_ms",
}


def parse_csv(text: str) -> list[dict[str, float]]:
    """perf_analyzer's `-f` CSV (first block: one row per concurrency) as dicts of floats by header name.

    Rows come sorted by throughput, not by concurrency; empty cells (GPU metrics on a CPU) are skipped.
    """
    lines = text.splitlines()
    end = next((i for i, line in enumerate(lines) if i > 0 and not line.strip()), len(lines))
    rows = []
    for raw in csv.DictReader(io.StringIO("\n".join(lines[:end]))):
        row = {}
        for key, value in raw.items():
            if key is None or value is None or not value.strip():
                continue
            try:
                row[key.strip()] = float(value)
            except ValueError:
                continue
        rows.append(row)
    return rows


def summarize_row(row: Mapping[str, float]) -> dict[str, float]:
    """One CSV row in the units this package reports: ms latencies, `infer_per_s`, the latency parts."""
    if "Inferences/Second" not in row or "p50 latency" not in row:
        raise PerfAnalyzerError(f"perf_analyzer CSV row without throughput/latency columns: {sorted(row)}")
    out: dict[str, float] = {"concurrency": int(row["Concurrency"]), "infer_per_s": row["Inferences/Second"]}
    if "Response Throughput" in row:
        out["responses_per_s"] = row["Response Throughput"]
    for column, key in {**_LATENCY_COLUMNS, **_PART_COLUMNS}.items():
        if column in row:
            out[key] = round(row[column] / 1e3, 3)
    return out
