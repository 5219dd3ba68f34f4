"""Faults against real tritonservers (tiny profile): a client killed mid-stream, END never sent, a
stage model that raises, the server going away under a client, and more sessions than the limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from support import active_sessions, wait_for

from ditto_triton.benchmarks.session_stats import summarize
from ditto_triton.benchmarks.triton_session import run_session
from ditto_triton.client import ConnectionLostError, DittoClient, ServerBusyError, ServerError
from ditto_triton.model_repository import pbtxt
from ditto_triton.model_repository.render import render_repository
from ditto_triton.model_repository.server import TritonServer

CROP = {"max_size": 512}
IDLE_TIMEOUT_S = 3.0
REAPER_PERIOD_S = 1.0  # the orchestrator's idle reaper wakes once a second


def seconds_until_no_session(server: TritonServer, limit_s: float) -> float:
    t0 = time.monotonic()
    while active_sessions(server) > 0:
        if time.monotonic() - t0 > limit_s:
            pytest.fail(f"a session was still live {limit_s:.0f} s later")
        time.sleep(0.05)
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def server(triton_server_factory):
    return triton_server_factory(include_services=True, idle_timeout_s=IDLE_TIMEOUT_S)


@pytest.fixture(scope="module")
def avatar(server, portrait) -> str:
    with DittoClient(server.grpc_url) as client:
        return client.register_avatar(portrait, CROP)


KILLED_CLIENT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from ditto_triton.client import DittoClient
    with DittoClient(sys.argv[1]) as client:
        session = client.open_session(sys.argv[2])
        session.send(np.zeros(16000 * 30, np.float32))  # 30 s of audio, no END
        next(iter(session.frames()))
        print("streaming", flush=True)
        time.sleep(600)
    """
)


def test_killed_client_frees_its_session_within_the_idle_timeout(server, avatar):
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLIENT, server.grpc_url, avatar], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "streaming"
        assert active_sessions(server) == 1
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        freed_after = seconds_until_no_session(server, IDLE_TIMEOUT_S + REAPER_PERIOD_S + 2)
    finally:
        child.kill()
    print(f"killed client: session freed {freed_after:.2f} s later (idle timeout {IDLE_TIMEOUT_S} s)")
    assert freed_after <= IDLE_TIMEOUT_S + REAPER_PERIOD_S + 0.5
    with DittoClient(server.grpc_url) as client:
        assert len(list(client.stream(avatar, np.zeros(6400, np.float32)))) == 10


def test_session_without_end_is_freed_after_the_idle_timeout(server, avatar):
    with DittoClient(server.grpc_url) as client:
        session = client.open_session(avatar)
        session.send(np.zeros(2 * 16000, np.float32))  # END never comes
        sent = time.monotonic()
        frames = session.frames()
        got = [next(frames) for _ in range(10)]
        assert active_sessions(server) == 1
        seconds_until_no_session(server, IDLE_TIMEOUT_S + REAPER_PERIOD_S + 5)
        freed_after = time.monotonic() - sent
        session.close()
    print(f"no END: session freed {freed_after:.2f} s after its last request (idle timeout {IDLE_TIMEOUT_S} s)")
    assert len(got) == 10
    assert IDLE_TIMEOUT_S <= freed_after <= IDLE_TIMEOUT_S + REAPER_PERIOD_S + 0.5


RAISING_MODEL = textwrap.dedent(
    """
    class TritonPythonModel:
        def execute(self, requests):
            raise RuntimeError("injected fault in warp_network")
    """
)


def test_a_raising_stage_fails_the_session_and_nothing_hangs(tiny_export, tmp_path, portrait):
    repo = render_repository(tiny_export, tmp_path / "repo", "python-ort", include_services=True)
    (repo / "warp_network" / "1" / "model.py").write_text(RAISING_MODEL)
    config = pbtxt.read_config(repo / "warp_network")
    del config.model_warmup[:]  # the fault is in serving: with its warm-up request the model would not load
    pbtxt.write_config(config, repo / "warp_network")
    with TritonServer(repo) as srv, DittoClient(srv.grpc_url, timeout_s=30) as client:
        avatar = client.register_avatar(portrait, CROP)  # registration does not use the warp network
        t0 = time.monotonic()
        with pytest.raises(ServerError, match="injected fault in warp_network"):
            list(client.stream(avatar, np.zeros(16000, np.float32)))
        assert time.monotonic() - t0 < 20
        assert srv.is_ready()
        assert seconds_until_no_session(srv, 5) < 5
        with pytest.raises(ServerError, match="injected fault"):  # the next session fails the same way, cleanly
            list(client.stream(avatar, np.zeros(3200, np.float32)))


def test_server_dying_under_a_client_is_one_line(tiny_export, tmp_path, portrait, speech16k):
    repo = render_repository(tiny_export, tmp_path / "repo", "python-ort", include_services=True)
    srv = TritonServer(repo).start()
    url = srv.grpc_url
    try:
        client = DittoClient(srv.grpc_url)
        avatar = client.register_avatar(portrait, CROP)
        frames = client.stream(avatar, speech16k, realtime=True)
        next(frames)
        os.killpg(srv.pid, signal.SIGKILL)  # the server (and its stubs) die under the client
        with pytest.raises(ConnectionLostError) as err:
            for _ in frames:
                pass
    finally:
        srv.stop()
    message = str(err.value)
    print(f"client saw: {message}")
    assert "\n" not in message and "lost the connection" in message and url in message
    # A restarted server serves the same client code again.
    with TritonServer(repo) as again, DittoClient(again.grpc_url) as fresh:
        assert len(list(fresh.stream(fresh.register_avatar(portrait, CROP), np.zeros(3200, np.float32)))) == 5


def test_sessions_over_the_limit_get_resource_exhausted_and_admitted_ones_finish(
    tiny_export, tmp_path, portrait, speech16k
):
    repo = render_repository(tiny_export, tmp_path / "repo", "python-ort", include_services=True, max_sessions=1)
    speech = speech16k[: 6 * 16000]
    with TritonServer(repo) as srv, DittoClient(srv.grpc_url, busy_retries=0) as client:
        avatar = client.register_avatar(portrait, CROP)
        admitted: dict = {}
        runner = threading.Thread(
            target=lambda: admitted.update(summarize(run_session(client, avatar, speech, "realtime")))
        )
        runner.start()
        wait_for(lambda: active_sessions(srv) >= 1, "the admitted session to open")
        refused = []
        for _ in range(4):  # more attempts than the batcher's spare sequence slots: refused ones release theirs
            with pytest.raises(ServerBusyError, match="resource exhausted") as err:
                list(client.stream(avatar, np.zeros(3200, np.float32)))
            refused.append(str(err.value))
        runner.join()
        assert len(list(client.stream(avatar, np.zeros(3200, np.float32)))) == 5  # room again
    print(f"refused: {refused[0]}; admitted: {admitted['fps']} frames/s, late {admitted['late_frame_ratio']}")
    assert admitted["complete"], admitted  # how many sessions stay real time is the capacity benchmark's question
