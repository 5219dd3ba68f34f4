"""The report's PNG plots (matplotlib, headless): stage latency CDFs, stage throughput vs batch,
frames/s and first-frame delay vs concurrent sessions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

DPI = 120
_PLAIN = FuncFormatter(lambda v, _: f"{v:g}")


def _plain_log_axis(axis, minor_labels: bool) -> None:
    """Log-scale ticks as plain numbers (2, 5, 10, 20) instead of 2×10⁰."""
    axis.set_major_formatter(_PLAIN)
    axis.set_minor_formatter(_PLAIN if minor_labels else NullFormatter())


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def latency_cdf(samples_ms: Mapping[str, Sequence[float]], path: Path, title: str) -> Path:
    """One empirical CDF per model: x request latency (ms, log scale), y fraction of requests."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, values in sorted(samples_ms.items(), key=lambda kv: float(np.median(kv[1]))):
        xs = np.sort(np.asarray(values, dtype=float))
        ys = np.arange(1, xs.size + 1) / xs.size
        ax.step(xs, ys, where="post", label=f"{name} (p50 {np.median(xs):.1f} ms)")
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    _plain_log_axis(ax.xaxis, minor_labels=hi / lo < 100)
    ax.set_xlabel("request latency (ms, log scale)")
    ax.set_ylabel("fraction of requests ≤ latency")
    ax.set_ylim(0, 1.02)
    ax.axhline(0.95, color="grey", lw=0.8, ls=":")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def stage_throughput(stages: Mapping[str, Mapping[Any, Mapping[str, Any]]], path: Path, title: str) -> Path:
    """infer/s vs batch size per model (from the perf_analyzer sweep)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    batches: set[int] = set()
    for name, by_batch in sorted(stages.items()):
        points = sorted((int(b), s["infer_per_s"]) for b, s in by_batch.items() if s.get("infer_per_s") is not None)
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
            batches.update(p[0] for p in points)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(batches))
    ax.xaxis.set_major_formatter(_PLAIN)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yscale("log")
    _plain_log_axis(ax.yaxis, minor_labels=False)
    ax.set_xlabel("batch size (frames per request)")
    ax.set_ylabel("throughput (inferences/s, log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _per_level(
    levels: Sequence[Mapping[str, Any]],
    series: Sequence[tuple[str, str, str, str]],
    bound: tuple[float, str],
    ylabel: str,
    path: Path,
    title: str,
) -> Path:
    """One line per (key, marker, line style, label) over the concurrency levels, plus a bound."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [lv["concurrency"] for lv in levels]
    for key, marker, style, label in series:
        ax.plot(xs, [lv[key] for lv in levels], marker=marker, ls=style, label=label)
    ax.axhline(bound[0], color="red", ls=":", label=bound[1])
    ax.set_xlabel("concurrent sessions")
    ax.set_ylabel(ylabel)
    ax.set_xticks(xs)
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def sessions_fps(levels: Sequence[Mapping[str, Any]], fps_min: float, path: Path, title: str) -> Path:
    """Slowest and mean session frames/s per concurrency level, with the real-time threshold."""
    series = [("fps_min", "o", "-", "slowest session"), ("fps_mean", "s", "--", "mean over sessions")]
    return _per_level(
        levels, series, (fps_min, f"real time ({fps_min:g} frames/s)"), "sustained frames/s per session", path, title
    )


def sessions_ffd(levels: Sequence[Mapping[str, Any]], ffd_max_ms: float, path: Path, title: str) -> Path:
    """First-frame delay p50/p95 per concurrency level (real-time audio), with the threshold."""
    series = [("ffd_ms_p50", "o", "-", "p50"), ("ffd_ms_p95", "s", "--", "p95")]
    return _per_level(
        levels, series, (ffd_max_ms, f"p95 bound ({ffd_max_ms:g} ms)"), "first-frame delay (ms)", path, title
    )


def memory_over_time(samples: Sequence[tuple[float, float]], path: Path, title: str, warmup_s: float) -> Path:
    """Resident memory (MB) over the soak, with the warm-up window shaded."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ts = [t for t, _ in samples]
    ax.plot(ts, [mb for _, mb in samples], lw=1.2, label="RSS, tritonserver + python stubs")
    if ts:
        ax.axvspan(0, warmup_s, color="grey", alpha=0.15, label="warm-up (not judged)")
    ax.set_xlabel("time since the first session (s)")
    ax.set_ylabel("resident memory (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
