"""`make bench-profile` (benchmarks/cpu_budget.py): the per-frame CPU table from given numbers, py-spy's raw
output read back, and a short real run through tritonserver and in process."""

from __future__ import annotations

import pytest

from ditto_triton.benchmarks.cpu_budget import (
    CLIENT,
    SESSION_LOGIC,
    PySpy,
    budget_table,
    markdown,
    measure,
    median_budget,
    summary,
)
from ditto_triton.client import load_audio

TRITON_RUN = {
    "fps": 60.0,
    "frames": 100,
    "cpu_ms": {"stub:warp_network": 9.0, "stub:orchestrator": 5.0, "tritonserver": 2.0, CLIENT: 1.5},
}
INPROCESS_RUN = {"fps": 80.0, "frames": 100, "cpu_ms": {"warp_network": 8.5, SESSION_LOGIC: 4.0}}


def test_the_table_puts_each_stage_beside_its_stub_and_serving_costs_last():
    triton, inprocess = median_budget([TRITON_RUN]), median_budget([INPROCESS_RUN])
    rows = {r["component"]: (r["triton_ms"], r["inprocess_ms"]) for r in budget_table(triton, inprocess)}
    assert rows["warp_network"] == (9.0, 8.5)
    assert rows[f"{SESSION_LOGIC} (orchestrator stub / in process)"] == (5.0, 4.0)
    assert rows["tritonserver"] == (2.0, 0.0) and rows[CLIENT] == (1.5, 0.0)
    s = summary(triton, inprocess)
    assert s["triton_cpu_ms_per_frame"] == 17.5 and s["server_cpu_ms_per_frame"] == 16.0
    assert s["fps_triton_over_inprocess"] == 0.75
    assert s["inprocess_over_server_cpu"] == pytest.approx(12.5 / 16.0, abs=1e-3)


def test_medians_over_pairs():
    slow = {**TRITON_RUN, "fps": 30.0, "cpu_ms": {**TRITON_RUN["cpu_ms"], "tritonserver": 9.0}}
    fast = {**TRITON_RUN, "fps": 70.0}
    budget = median_budget([TRITON_RUN, slow, fast])
    assert budget["fps"] == 60.0 and budget["cpu_ms"]["tritonserver"] == 2.0


def test_py_spy_raw_stacks_become_ms_per_frame():
    spy = PySpy(pid=0, rate_hz=100)
    spy.stacks = {"run (a.py:1);PutBack.__call__ (putback.py:53)": 50, "run (a.py:1);send (o.py:9)": 10}
    top = spy.top_functions(frames=10)
    assert top[0] == {"function": "PutBack.__call__ (putback.py:53)", "ms_per_frame": 50.0}
    assert top[1]["ms_per_frame"] == 10.0


def test_a_short_run_measures_both_paths(tiny_export, portrait, samples_dir):
    audio = load_audio(samples_dir / "ditto_example_audio.wav")[: 3 * 16000]
    budget = measure(tiny_export, portrait, audio, pairs=1, py_spy=True)
    rows = {r["component"]: r for r in budget["table"]}
    for stage in ("warp_network", "decoder", "lmdm"):
        assert rows[stage]["triton_ms"] > 0 and rows[stage]["inprocess_ms"] > 0, stage
    assert rows["tritonserver"]["triton_ms"] > 0 and rows[CLIENT]["triton_ms"] > 0
    assert budget["triton"]["frames"] == budget["inprocess"]["frames"] == 75
    orchestrator = budget["python_functions"]["stub:orchestrator"]
    assert orchestrator and "error" not in orchestrator[0], orchestrator
    assert any("putback" in f["function"] for f in budget["python_functions"]["in process"])
    text = "\n".join(markdown(budget))
    assert "| **total** |" in text and "py-spy" in text
