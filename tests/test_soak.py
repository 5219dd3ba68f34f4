"""The short soak CI runs (`make soak` is the 10-minute one): 8 concurrent real-time tiny sessions
for 2 minutes on a real tritonserver; every frame arrives, no session fails, memory levels off."""

from __future__ import annotations

import json

from ditto_triton.benchmarks.criteria import load_thresholds
from ditto_triton.benchmarks.soak import run_soak, soak_checks, write_soak_report
from ditto_triton.model_repository.render import render_repository
from ditto_triton.model_repository.server import TritonServer

SESSIONS = 8
DURATION_S = 120.0


def test_short_soak(tiny_export, tmp_path, portrait, speech16k):
    repo = render_repository(tiny_export, tmp_path / "repo", "python-ort", include_services=True)
    with TritonServer(repo) as server:
        result = run_soak(server.grpc_url, server.pid, SESSIONS, DURATION_S, speech16k, portrait)
        assert server.is_ready()
    checks = {c.name: c for c in soak_checks(result, load_thresholds())}
    out = write_soak_report(result, list(checks.values()), tmp_path / "soak")
    print("\n" + "\n".join(c.line() for c in checks.values()) + f"\nreport: {out / 'soak.md'}")
    assert json.loads((out / "soak.json").read_text())["frames_lost"] == 0
    assert result["completed_sessions"] >= SESSIONS
    assert checks["frames lost"].passed and checks["failed sessions"].passed, result["errors"]
    assert checks["server memory growth after warm-up"].passed, result["memory"]
    # The late-frame check is reported, not asserted: 8 real-time sessions need 200 frames/s, about
    # three times what this project's 2-core CI machine renders (its measured capacity is one
    # real-time session); `make soak` on a machine with the capacity enforces it.
