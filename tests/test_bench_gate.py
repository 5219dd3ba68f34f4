"""The real-time gate's logic: it passes good numbers, fails each bad one, fails a pipeline with a
deliberately slowed decoder, and its CLI exits non-zero on a miss. No server: CI's real gate is
`make bench-gate`."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from ditto_triton.benchmarks.criteria import load_thresholds, realtime_level_checks
from ditto_triton.benchmarks.gate import collect, evaluate, main
from ditto_triton.benchmarks.inprocess import InProcessPipeline, ServerLikeOrtStages
from ditto_triton.benchmarks.session_stats import SessionRecord, aggregate, summarize
from ditto_triton.client import load_audio

GOOD = {
    "realtime_complete": True,
    "realtime_fps": 25.4,
    "realtime_failed_sessions": 0,
    "realtime_late_frame_ratio": 0.0,
    "ffd_ms_p95_realtime": 1100.0,
    "full_audio_sessions": 5,
    "full_audio_failed_sessions": 0,
    "ffd_ms_p95_full_audio": 250.0,
    "triton_over_inprocess": 0.94,
    "memory_growth_ratio": 0.01,
}
FPS_CHECK = "frames/s, one session with real-time audio"
LATE_CHECK = "late-frame ratio, the session with real-time audio"
PACED_FFD_CHECK = "first-frame delay p95, audio paced in real time"
FFD_CHECK = "first-frame delay p95, audio fully available"
RATIO_CHECK = "frames/s Triton / in-process, median of >= 3 pairs"
COMPLETE_CHECK = "incomplete or failed sessions"
MEMORY_CHECK = "server memory growth after warm-up"
ALL_CHECKS = {FPS_CHECK, LATE_CHECK, PACED_FFD_CHECK, FFD_CHECK, RATIO_CHECK, COMPLETE_CHECK, MEMORY_CHECK}


@pytest.fixture(scope="module")
def thresholds():
    return load_thresholds()


def failed(checks) -> set[str]:
    return {c.name for c in checks if not c.passed}


def timeline(n: int, ffd_s: float, interval_s: float, delays: dict[int, float] | None = None) -> SessionRecord:
    """A session whose frames arrive every `interval_s` after `ffd_s`, some delayed by `delays`."""
    arrivals = [ffd_s + k * interval_s + (delays or {}).get(k, 0.0) for k in range(n)]
    return SessionRecord(
        "full", audio_s=n / 25, expected_frames=n, arrivals_s=arrivals, pts_s=[k / 25 for k in range(n)]
    )


def test_thresholds_are_the_issue_s(thresholds):
    assert thresholds["fps_min"] == 25.0
    assert thresholds["ffd_ms_p95_full_audio_max"] == 400.0
    assert thresholds["late_frame_ratio_max"] == 0.01
    assert thresholds["triton_over_inprocess_min"] == 0.9


def test_good_numbers_pass_and_every_threshold_is_checked(thresholds):
    checks = evaluate(GOOD, thresholds)
    assert failed(checks) == set()
    assert {c.name for c in checks} == ALL_CHECKS
    assert {c.threshold for c in checks} >= set(thresholds.values())  # no threshold of the file left out


@pytest.mark.parametrize(
    ("field", "value", "check"),
    [
        ("realtime_fps", 24.9, FPS_CHECK),
        ("realtime_fps", None, FPS_CHECK),
        ("realtime_late_frame_ratio", 0.0635, LATE_CHECK),
        ("ffd_ms_p95_realtime", 1501.0, PACED_FFD_CHECK),
        ("ffd_ms_p95_full_audio", 401.0, FFD_CHECK),
        ("triton_over_inprocess", 0.89, RATIO_CHECK),
        ("triton_over_inprocess", None, RATIO_CHECK),
        ("realtime_failed_sessions", 1, COMPLETE_CHECK),
        ("full_audio_failed_sessions", 1, COMPLETE_CHECK),
        ("memory_growth_ratio", 0.06, MEMORY_CHECK),
    ],
)
def test_each_bad_number_fails_its_own_check(thresholds, field, value, check):
    assert failed(evaluate({**GOOD, field: value}, thresholds)) == {check}


def test_session_numbers_from_a_timeline():
    steady = summarize(timeline(50, ffd_s=0.2, interval_s=0.04))
    assert steady["fps"] == pytest.approx(25.0)
    assert steady["ffd_ms"] == pytest.approx(200.0)
    assert steady["late_frames"] == 0 and steady["complete"]
    # Frame 10 is 50 ms behind its presentation time (counted from the first frame): late; 0.5 ms is not.
    jittery = summarize(timeline(50, ffd_s=0.2, interval_s=0.04, delays={10: 0.05, 20: 0.0005}))
    assert jittery["late_frames"] == 1 and jittery["late_ms_max"] == pytest.approx(50.0)
    slow = summarize(timeline(50, ffd_s=0.2, interval_s=0.05))
    assert slow["fps"] == pytest.approx(20.0) and slow["late_frames"] == 49


def test_collect_builds_the_gate_measurements(thresholds):
    fast = [timeline(75, ffd_s=0.15 + 0.01 * i, interval_s=0.02) for i in range(5)]
    paced = [timeline(100, 0.9, 0.0393)] + [timeline(75, 0.85 + 0.01 * i, 0.0393) for i in range(4)]
    emit = [timeline(75, 0.45 + 0.01 * i, 0.0393) for i in range(4)]
    measured = collect(paced, fast, [46.0, 30.0, 47.0], [50.0, 50.0, 50.0], emit)
    assert measured["ffd_ms_p95_full_audio"] == pytest.approx(np.percentile([150, 160, 170, 180, 190], 95))
    assert measured["ffd_ms_p95_realtime"] == pytest.approx(np.percentile([900, 850, 860, 870, 880], 95))
    assert measured["ffd_ms_p50_realtime_first_window_emit"] == pytest.approx(465.0)
    assert measured["pair_ratios"] == [0.92, 0.6, 0.94]
    assert measured["triton_over_inprocess"] == pytest.approx(0.92)  # the median pair, not the best runs
    measured["memory_growth_ratio"] = 0.0
    assert failed(evaluate(measured, thresholds)) == set()
    # Fewer than 3 pairs is no ratio; a paced session that lost frames is incomplete.
    short = timeline(90, 0.9, 0.0393)
    short.expected_frames = 100
    bad = {**collect([short], fast, [46.0, 47.0], [50.0, 50.0]), "memory_growth_ratio": 0.0}
    assert failed(evaluate(bad, thresholds)) == {COMPLETE_CHECK, RATIO_CHECK}


def test_late_frames_of_a_paced_session_fail_the_gate(thresholds):
    late = timeline(100, 0.9, 0.04, delays={k: 0.05 for k in range(10, 100, 10)})  # 9 % late
    measured = {**collect([late], [timeline(75, 0.2, 0.02)], [1.0] * 3, [1.0] * 3), "memory_growth_ratio": 0.0}
    assert measured["realtime_late_frame_ratio"] == pytest.approx(0.09)
    assert failed(evaluate(measured, thresholds)) == {LATE_CHECK}


def test_realtime_level_checks(thresholds):
    good = aggregate([summarize(timeline(100, 0.9, 0.0395)) for _ in range(3)])
    assert all(c.passed for c in realtime_level_checks(good, thresholds))
    late = aggregate([summarize(timeline(100, 0.9, 0.0395, delays={k: 0.02 for k in range(10, 100, 10)}))])
    assert {c.name for c in realtime_level_checks(late, thresholds) if not c.passed} == {
        "late-frame ratio, worst session"
    }


class SlowDecoder:
    """Stages whose decoder costs `per_frame_s` more per frame (a deliberately slowed stage). Like a
    stage model with one instance, the decoder runs one batch at a time."""

    def __init__(self, inner, per_frame_s: float) -> None:
        self.inner, self.per_frame_s = inner, per_frame_s
        self._decoder = threading.Lock()

    def infer(self, name, inputs):
        if name != "decoder":
            return self.inner.infer(name, inputs)
        with self._decoder:
            time.sleep(self.per_frame_s * inputs["feature"].shape[0])
            return self.inner.infer(name, inputs)


def test_gate_fails_a_pipeline_with_a_slowed_decoder(tiny_export, samples_dir, thresholds):
    stages = SlowDecoder(ServerLikeOrtStages(tiny_export), per_frame_s=0.06)  # at most 16.7 frames/s
    pipeline = InProcessPipeline(
        tiny_export, (samples_dir / "ditto_example_image.jpg").read_bytes(), {"max_size": 512}, stages
    )
    audio = load_audio(samples_dir / "ditto_example_audio.wav")[: 2 * 16000]
    realtime = pipeline.run(audio, "realtime")
    full = pipeline.run(audio, "full")
    assert summarize(realtime)["complete"] and summarize(full)["complete"]
    fps = summarize(full)["fps"]
    assert fps < 17
    measured = collect([realtime], [full], [fps] * 3, [fps] * 3)
    assert measured["realtime_fps"] < 17
    checks = evaluate(measured, thresholds)
    assert FPS_CHECK in failed(checks)
    assert not all(c.passed for c in checks)


def test_cli_judges_given_measurements(tmp_path, capsys):
    good, bad, out = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "gate.json"
    good.write_text(json.dumps(GOOD))
    bad.write_text(json.dumps({**GOOD, "realtime_fps": 20.0}))
    assert main(["--measurements", str(good), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["passed"] is True
    assert main(["--measurements", str(bad), "--out", str(out)]) == 1
    result = json.loads(out.read_text())
    assert result["passed"] is False
    assert [c["name"] for c in result["checks"] if not c["passed"]] == [FPS_CHECK]
    printed = capsys.readouterr().out
    assert "FAIL  frames/s, one session with real-time audio: 20 fps (needs >= 25 fps)" in printed
    assert "bench-gate: FAIL" in printed
