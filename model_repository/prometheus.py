"""Read Triton's Prometheus endpoint (`http://host:8002/metrics`): the `ditto_*` session metrics of the
orchestrator (see `model_repository/backends/metrics.py`) and Triton's own `nv_*` metrics.

    samples = scrape(server.metrics_url)
    samples['ditto_frames_sent_total{model="orchestrator",version="1"}']      # 25.0
    value(samples, METRIC_SESSIONS, outcome="completed")              # summed over other labels
    first_frame_delay(samples)                                               # {"count": 1.0, "sum_s": 0.25, "mean_s": 0.25}

A small parser for the text exposition format (version 0.0.4) covers what Triton writes: `# HELP` /
`# TYPE` comments, `name{label="value",...} number [timestamp]` samples. `prometheus_client` is not a
dependency.
"""

from __future__ import annotations

import math
import re
import urllib.error
import urllib.request

from ditto_triton.protocol import (
    METRIC_ACTIVE_SESSIONS,
    METRIC_FIRST_FRAME_DELAY,
    METRIC_FRAMES_SENT,
    METRIC_LATE_FRAMES,
    METRIC_SESSIONS,
)

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class MetricsError(RuntimeError):
    """The metrics endpoint could not be read or parsed."""


def parse_labels(text: str) -> dict[str, str]:
    """`{a="1",b="x\\"y"}` -> {"a": "1", "b": 'x"y'}."""
    inner = text.strip()
    if inner.startswith("{"):
        inner = inner[1:-1]
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(inner):
        match = _LABEL.match(inner, pos)
        if match is None:
            raise MetricsError(f"malformed labels {text!r}")
        labels[match.group(1)] = re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], match.group(2))
        pos = match.end()
    return labels


def _number(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    return special[text] if text in special else float(text)


def parse(text: str) -> dict[str, float]:
    """Every sample of an exposition as {series: value}; the series is the name with its label block as
    written, labels sorted by name (`name{a="1",b="2"}`, or `name` without labels)."""
    samples: dict[str, float] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise MetricsError(f"line {number}: not a Prometheus sample: {line!r}")
        name, labels, value = match.groups()
        try:
            samples[series(name, parse_labels(labels) if labels else {})] = _number(value)
        except ValueError:
            raise MetricsError(f"line {number}: bad value {value!r}") from None
    return samples


def series(name: str, labels: dict[str, str]) -> str:
    """The key `parse` uses for a sample: `name{a="1",b="2"}` with labels sorted by name."""
    if not labels:
        return name
    escaped = {k: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for k, v in labels.items()}
    return name + "{" + ",".join(f'{k}="{escaped[k]}"' for k in sorted(escaped)) + "}"


def split_series(key: str) -> tuple[str, dict[str, str]]:
    """Inverse of `series`."""
    name, brace, rest = key.partition("{")
    return name, (parse_labels("{" + rest) if brace else {})


def scrape(metrics_url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """GET the endpoint (proxies bypassed: a local server) and parse it (see `parse`)."""
    url = metrics_url if "://" in metrics_url else f"http://{metrics_url}"
    if not url.rstrip("/").endswith("/metrics"):
        url = url.rstrip("/") + "/metrics"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        raise MetricsError(f"cannot read metrics from {url}: {exc}") from None
    return parse(text)


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0.0 if none)."""
    total = 0.0
    for key, sample in samples.items():
        key_name, key_labels = split_series(key)
        if key_name == name and all(key_labels.get(k) == v for k, v in labels.items()):
            total += sample
    return total


def has(samples: dict[str, float], name: str) -> bool:
    return any(split_series(key)[0] == name for key in samples)


def first_frame_delay(samples: dict[str, float], **labels: str) -> dict[str, float | None]:
    """The orchestrator's first-frame-delay histogram: count, sum and mean (seconds)."""
    count = value(samples, f"{METRIC_FIRST_FRAME_DELAY}_count", **labels)
    total = value(samples, f"{METRIC_FIRST_FRAME_DELAY}_sum", **labels)
    return {"count": count, "sum_s": total, "mean_s": total / count if count else None}


def session_metrics(samples: dict[str, float], **labels: str) -> dict[str, object]:
    """The `ditto_*` values in one dict: active_sessions, frames_sent, late_frames, first_frame_delay,
    sessions (by outcome)."""
    sessions: dict[str, float] = {}
    for key, sample in samples.items():
        name, key_labels = split_series(key)
        if name == METRIC_SESSIONS and all(key_labels.get(k) == v for k, v in labels.items()):
            outcome = key_labels.get("outcome", "")
            sessions[outcome] = sessions.get(outcome, 0.0) + sample
    return {
        "active_sessions": value(samples, METRIC_ACTIVE_SESSIONS, **labels),
        "frames_sent": value(samples, METRIC_FRAMES_SENT, **labels),
        "late_frames": value(samples, METRIC_LATE_FRAMES, **labels),
        "first_frame_delay": first_frame_delay(samples, **labels),
        "sessions": sessions,
    }
