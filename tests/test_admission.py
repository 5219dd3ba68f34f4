"""Admission and drain pieces on their own: the drain wait, the supervisor's health port, the
client's replay of refused sessions, and "resource exhausted" retries on a real server."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest

from ditto_triton.client import DittoClient, ServerBusyError
from ditto_triton.client.session import _Replayable
from ditto_triton.model_repository.drain import clear_drain, is_draining, start_drain, wait_for_sessions
from ditto_triton.model_repository.drain import main as drain_main
from ditto_triton.model_repository.prometheus import MetricsError
from ditto_triton.model_repository.replica import HealthServer


def test_wait_for_sessions_returns_when_they_end_or_at_the_timeout():
    counts = iter([3, 2, 2, 1, 0, 5])
    assert wait_for_sessions(lambda: next(counts), timeout_s=10, poll_s=0.0, log=lambda _: None) == 0
    assert next(counts) == 5  # it stopped at the first 0
    start = time.monotonic()
    assert wait_for_sessions(lambda: 2, timeout_s=0.3, poll_s=0.05, log=lambda _: None) == 2
    assert 0.3 <= time.monotonic() - start < 2


def test_wait_for_sessions_stops_when_the_server_is_gone():
    def gone() -> int:
        raise MetricsError("connection refused")

    lines: list[str] = []
    assert wait_for_sessions(gone, timeout_s=10, log=lines.append) == 0
    assert "not waiting" in lines[0]


def test_drain_mark_and_the_cli(tmp_path):
    mark = tmp_path / "sub" / "draining"
    assert not is_draining(mark) and not is_draining(None)
    start_drain(mark)
    assert is_draining(mark)
    clear_drain(mark)
    assert not is_draining(mark)
    assert drain_main(["--drain-file", str(mark)]) == 0 and is_draining(mark)
    # --wait with an unreachable metrics endpoint: nothing left to wait for.
    assert drain_main(["--wait", "--drain-file", str(mark), "--metrics-url", "http://127.0.0.1:9/metrics"]) == 0


def _status(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode().strip()


def test_health_port_follows_triton_and_the_drain_mark(triton_stage_server, tmp_path):
    mark = tmp_path / "draining"
    health = HealthServer("127.0.0.1", 0, triton_stage_server.http_url, mark).start()
    try:
        base = f"http://127.0.0.1:{health.port}"
        assert _status(f"{base}/ready") == (200, "ready")
        assert _status(f"{base}/live") == (200, "live")
        start_drain(mark)
        assert _status(f"{base}/ready") == (503, "draining")
        assert _status(f"{base}/live") == (200, "live")  # draining is not dead: no restart
        assert _status(f"{base}/other")[0] == 404
    finally:
        health.close()
    dead = HealthServer("127.0.0.1", 0, "127.0.0.1:9", tmp_path / "none").start()
    try:
        assert _status(f"http://127.0.0.1:{dead.port}/ready") == (503, "tritonserver is not ready")
    finally:
        dead.close()


def test_replayable_chunks_replay_until_sealed():
    pulled: list[int] = []

    def live():
        for k in range(5):
            pulled.append(k)
            yield k

    chunks = _Replayable(live())
    assert [chunks.get(i) for i in range(3)] == [0, 1, 2]
    assert [chunks.get(i) for i in range(3)] == [0, 1, 2] and pulled == [0, 1, 2]  # replayed, not re-read
    chunks.seal()
    assert chunks.get(3) == 3 and chunks.get(4) == 4 and chunks.get(5) is None
    with pytest.raises(RuntimeError, match="already released"):
        chunks.get(0)


@pytest.fixture(scope="module")
def one_session_server(triton_server_factory):
    return triton_server_factory(include_services=True, max_sessions=1)


def test_a_refused_session_is_retried_and_then_served(one_session_server, portrait, speech16k):
    """The server admits one session. A second one is refused with "resource exhausted"; with
    retries the client opens it again (replaying the live source's chunks) until the first ends."""
    with DittoClient(one_session_server.grpc_url, busy_retries=0) as strict:
        avatar = strict.register_avatar(portrait)
        first = strict.open_session(avatar)
        first.send(speech16k[:3200])  # opens the only session and keeps it open
        deadline = time.monotonic() + 30
        while True:
            try:
                list(strict.stream(avatar, speech16k[:3200]))
            except ServerBusyError as exc:
                assert "resource exhausted" in str(exc)
                break
            assert time.monotonic() < deadline, "the second session was never refused"
        closer = threading.Timer(2.0, lambda: first.end(speech16k[3200:16000]))
        closer.start()

        def live_source():  # an iterator read once, like a microphone
            for i in range(0, 16000, 3200):
                yield speech16k[i : i + 3200]

        with DittoClient(one_session_server.grpc_url, busy_retries=8, retry_delay_s=0.25) as patient:
            patient.register_avatar(portrait)
            frames = list(patient.stream(avatar, live_source()))
        closer.join()
        assert len(list(first.frames())) == 25
        first.close()
    assert [f.index for f in frames] == list(range(25))


def test_container_runs_tritonserver_under_the_supervisor(tmp_path):
    """`ditto-container`'s last step: the child gets the drain file in its environment, the health
    port answers, SIGTERM drains (no sessions: at once) and stops the child, exit code 0."""
    import os
    import signal
    import sys

    from ditto_triton.model_repository import container
    from ditto_triton.model_repository.server import free_port

    port = free_port()
    mark = tmp_path / "draining"
    start_drain(mark)  # a mark left by an earlier run is cleared at start
    settings = container.Settings.from_env(
        {"DITTO_HEALTH_PORT": str(port), "DITTO_DRAIN_FILE": str(mark), "DITTO_DRAIN_TIMEOUT_S": "5"}
    )
    seen = tmp_path / "child-env"
    child = (
        "import os, signal, sys, time; "
        f"open({str(seen)!r}, 'w').write(os.environ['DITTO_DRAIN_FILE']); "
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(60)"
    )
    statuses: list[tuple[int, str]] = []

    def probe_then_stop() -> None:
        deadline = time.monotonic() + 10
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        statuses.append(_status(f"http://127.0.0.1:{port}/ready"))  # no Triton behind it: not ready
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=probe_then_stop, daemon=True).start()
    assert container.serve_supervised([sys.executable, "-c", child], settings) == 0
    assert seen.read_text() == str(mark) and is_draining(mark)
    assert statuses == [(503, "tritonserver is not ready")]


def test_container_settings_for_scale_out():
    from ditto_triton.model_repository import container

    remote = container.Settings.from_env({"DITTO_MODEL_REPOSITORY": "s3://bucket/ditto/full-tensorrt"})
    assert container.steps(remote, export_ready=False, server_args=["--log-verbose=1"]) == [
        [container.TRITONSERVER, "--model-repository=s3://bucket/ditto/full-tensorrt", "--log-verbose=1"]
    ]
    defaults = container.Settings.from_env({})
    assert (defaults.health_port, defaults.drain_timeout_s, str(defaults.drain_file)) == (
        8003,
        300.0,
        "/tmp/ditto-draining",
    )
    for env, words in (
        ({"DITTO_DRAIN_TIMEOUT_S": "soon"}, "DITTO_DRAIN_TIMEOUT_S"),
        ({"DITTO_DRAIN_TIMEOUT_S": "-1"}, ">= 0"),
        ({"DITTO_HEALTH_PORT": "x"}, "DITTO_HEALTH_PORT"),
    ):
        with pytest.raises(ValueError, match=words):
            container.Settings.from_env(env)
