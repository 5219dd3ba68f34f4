"""The orchestrator's Prometheus metrics: the Triton-free per-session logic, the text-format parser,
and the real metrics port after sessions streamed through a tiny tritonserver."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from support import wait_for

from ditto_triton.client import DittoClient, ServerError, load_audio
from ditto_triton.model_repository.prometheus import (
    MetricsError,
    parse,
    scrape,
    series,
    session_metrics,
    split_series,
    value,
)
from ditto_triton.streaming.session_metrics import FLUSH_S, OUTCOMES, RecordingSink, SessionMetrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- SessionMetrics (no Triton) -------------------------------------------------------------------
def test_first_frame_delay_and_late_frames_per_session():
    clock, sink = FakeClock(), RecordingSink()
    metrics = SessionMetrics(sink, clock)
    metrics.session_opened(7, start_s=100.0)
    assert sink.active_sessions == 1
    clock.now = 100.3
    metrics.frame_sent(7, pts_s=0.0)  # first frame: 0.3 s after START, never late
    clock.now = 100.34
    metrics.frame_sent(7, pts_s=0.04)  # exactly on time
    clock.now = 100.3805
    metrics.frame_sent(7, pts_s=0.08)  # 0.5 ms after its time: within the 1 ms slack
    clock.now = 100.5
    metrics.frame_sent(7, pts_s=0.12)  # 80 ms late
    assert sink.first_frame_delays == [pytest.approx(0.3)]
    # Counts reach the sink in bulk: the first frame at once, the others within FLUSH_S or at close.
    assert (sink.frames_sent, sink.late_frames) == (1, 0)
    clock.now = 100.3 + FLUSH_S
    metrics.frame_sent(7, pts_s=0.04 + FLUSH_S)
    assert (sink.frames_sent, sink.late_frames) == (5, 1)
    clock.now += 0.01
    metrics.frame_sent(7, pts_s=0.05 + FLUSH_S)
    metrics.flush()
    assert (sink.frames_sent, sink.late_frames) == (6, 1)
    timing = metrics.session_closed(7, "completed")
    assert (timing.frames, timing.late) == (6, 1)
    assert sink.active_sessions == 0 and sink.sessions["completed"] == 1


def test_sessions_are_timed_independently_and_outcomes_counted():
    clock, sink = FakeClock(), RecordingSink()
    metrics = SessionMetrics(sink, clock)
    metrics.session_opened(1, 100.0)
    clock.now = 101.0
    metrics.session_opened(2, 101.0)
    clock.now = 101.2
    metrics.frame_sent(2, 0.0)
    metrics.frame_sent(1, 0.0)
    clock.now = 101.21
    metrics.frame_sent(1, 0.04)  # pending until the session closes
    assert sink.first_frame_delays == [pytest.approx(0.2), pytest.approx(1.2)]
    assert metrics.active == 2
    metrics.session_closed(1, "failed")
    metrics.session_closed(2, "idle_timeout")
    metrics.session_rejected()
    assert metrics.session_closed(2, "completed") is None  # already closed: not counted twice
    assert sink.sessions == {**dict.fromkeys(OUTCOMES, 0), "failed": 1, "idle_timeout": 1, "rejected": 1}
    assert sink.active_sessions == 0
    metrics.frame_sent(99, 0.0)  # a frame of no known session still counts as sent
    assert (sink.frames_sent, sink.late_frames) == (4, 0)
    with pytest.raises(ValueError, match="unknown session outcome"):
        metrics.session_closed(1, "exploded")


# -- the text-format parser -----------------------------------------------------------------------
EXPOSITION = """\
# HELP nv_inference_count Number of inferences performed
# TYPE nv_inference_count counter
nv_inference_count{model="decoder",version="1"} 16
nv_inference_count{version="1",model="lmdm"} 3
# TYPE ditto_active_sessions gauge
ditto_active_sessions{model="orchestrator",version="1"} 2
ditto_first_frame_delay_seconds_bucket{model="orchestrator",version="1",le="+Inf"} 4
ditto_first_frame_delay_seconds_sum{model="orchestrator",version="1"} 1.5e-1
odd{path="a\\"b\\\\c",x="1"} NaN 1712345678000
plain 7
"""


def test_parse_exposition():
    samples = parse(EXPOSITION)
    assert samples['nv_inference_count{model="decoder",version="1"}'] == 16
    assert samples['nv_inference_count{model="lmdm",version="1"}'] == 3  # labels sorted
    assert samples['ditto_first_frame_delay_seconds_bucket{le="+Inf",model="orchestrator",version="1"}'] == 4
    assert samples["plain"] == 7
    assert math.isnan(samples[series("odd", {"path": 'a"b\\c', "x": "1"})])
    assert split_series('odd{path="a\\"b\\\\c",x="1"}') == ("odd", {"path": 'a"b\\c', "x": "1"})
    assert value(samples, "nv_inference_count") == 19
    assert value(samples, "nv_inference_count", model="lmdm") == 3
    assert value(samples, "missing") == 0.0
    assert session_metrics(samples)["first_frame_delay"] == {"count": 0.0, "sum_s": 0.15, "mean_s": None}
    with pytest.raises(MetricsError, match="line 1"):
        parse("not a sample line at all {")
    with pytest.raises(MetricsError, match="cannot read metrics"):
        scrape("127.0.0.1:1/metrics", timeout_s=1)


# -- the real metrics port ------------------------------------------------------------------------
IDLE_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def server(triton_server_factory):
    return triton_server_factory(include_services=True, idle_timeout_s=IDLE_TIMEOUT_S)


@pytest.fixture(scope="module")
def avatar(server, samples_dir) -> str:
    with DittoClient(server.grpc_url) as client:
        return client.register_avatar((samples_dir / "ditto_example_image.jpg").read_bytes(), {"max_size": 512})


def ditto(server) -> dict:
    return session_metrics(scrape(server.metrics_url), model="orchestrator")


def test_metrics_follow_a_streamed_session(server, avatar, samples_dir):
    before = ditto(server)
    assert before["active_sessions"] == 0 and before["frames_sent"] == 0
    assert set(before["sessions"]) == set(OUTCOMES)  # every outcome is exported from the start
    audio = load_audio(samples_dir / "ditto_example_audio.wav")[:16000]
    with DittoClient(server.grpc_url) as client, client.open_session(avatar, {"sampling_steps": 2}) as session:
        for i in range(0, audio.size, 3200):
            (session.end if i + 3200 >= audio.size else session.send)(audio[i : i + 3200])
        frames = list(session.frames())
    assert len(frames) == 25
    # The session is freed right after its final response is sent.
    after = wait_for(
        lambda: (m := ditto(server))["active_sessions"] == 0 and m["sessions"]["completed"] == 1 and m,
        "the session to be counted",
    )
    assert after, f"the session did not end in the metrics: {ditto(server)}"
    assert after["frames_sent"] == len(frames)
    assert 0 <= after["late_frames"] <= len(frames)
    delay = after["first_frame_delay"]
    assert delay["count"] == 1
    # From the START request's arrival to the first frame's send, inside what the client measured
    # (its first request sent to the first frame received).
    assert 0 < delay["sum_s"] <= frames[0].received_s - session.first_send_s


def test_rejected_and_idle_sessions_are_counted(server, avatar):
    start = ditto(server)["sessions"]
    with DittoClient(server.grpc_url) as client, pytest.raises(ServerError, match="unknown avatar id"):
        list(client.stream("0" * 32, np.zeros(3200, np.float32)))
    # A session that gets START and one chunk, then nothing: freed by the idle timeout.
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    finals: list = []
    grpc.start_stream(callback=lambda result, error: finals.append(error or result))
    audio = grpcclient.InferInput("audio", [1, 3200], "FP32")
    audio.set_data_from_numpy(np.zeros((1, 3200), np.float32))
    avatar_id = grpcclient.InferInput("avatar_id", [1, 1], "BYTES")
    avatar_id.set_data_from_numpy(np.array([[avatar.encode()]], dtype=object))
    grpc.async_stream_infer(
        "orchestrator", [audio, avatar_id], sequence_id=4242, sequence_start=True, enable_empty_final_response=True
    )
    try:
        wait_for(lambda: ditto(server)["active_sessions"] == 1, "the session to open", 10)
        ended = wait_for(
            lambda: ditto(server)["sessions"]["idle_timeout"] == start["idle_timeout"] + 1,
            "the idle timeout",
            IDLE_TIMEOUT_S + 10,
        )
        assert ended, f"the idle session was not counted: {ditto(server)}"
    finally:
        grpc.stop_stream()
        grpc.close()
    end = ditto(server)
    assert end["active_sessions"] == 0
    assert end["sessions"]["rejected"] == start["rejected"] + 1
