"""The replica supervisor: tritonserver as a child process, a drain-aware health port, drain on SIGTERM.

Triton's own shutdown fails every live session at once: on SIGTERM it refuses the next request of
a running sequence and the orchestrator's stage calls ("Server not ready"). So tritonserver never
gets the signal first. The supervisor (PID 1 of the container, or `ditto-serve`) takes SIGTERM or
SIGINT, drains (`model_repository/drain.py`: new sessions refused, live ones finish, bounded by the drain
timeout), and only then stops tritonserver. A second signal skips the rest of the wait.

Its health port answers `GET /ready` (200 when Triton is ready and the replica is not draining,
else 503: the readiness probe and Envoy's health check) and `GET /live` (Triton's liveness).
`run_supervised` is the whole sequence, shared by `ditto-serve` and `ditto-container`.
"""

from __future__ import annotations

import http.server
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ditto_triton.model_repository.drain import (
    DRAIN_FILE_ENV,
    active_sessions,
    clear_drain,
    is_draining,
    start_drain,
    wait_for_sessions,
)
from ditto_triton.model_repository.server import triton_health

DEFAULT_HEALTH_PORT = 8003


class Child(Protocol):
    def is_running(self) -> bool: ...

    def stop(self, grace_s: float = ...) -> int | None: ...


class ServedChild(Child, Protocol):
    """A started tritonserver and where it answers (`TritonServer`, `ProcessChild`)."""

    @property
    def http_url(self) -> str: ...

    @property
    def metrics_url(self) -> str: ...


class ProcessChild:
    """A started tritonserver process (NVIDIA's container): SIGTERM, then SIGKILL after the grace.
    Its URLs are Triton's default ports on loopback."""

    def __init__(
        self,
        process: subprocess.Popen,
        http_url: str = "127.0.0.1:8000",
        metrics_url: str = "http://127.0.0.1:8002/metrics",
    ) -> None:
        self.process = process
        self.http_url = http_url
        self.metrics_url = metrics_url

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = 30.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class HealthServer:
    """`/ready` and `/live` on `host:port` (0 picks a free port), in a daemon thread."""

    def __init__(self, host: str, port: int, triton_http: str, drain_path: Path) -> None:
        supervisor = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                route = self.path.split("?")[0]
                if route == "/ready":
                    ok, reason = supervisor.ready()
                elif route == "/live":
                    ok = triton_health(supervisor.triton_http, "live")
                    reason = "live" if ok else "tritonserver is not live"
                else:
                    self.send_error(404, "GET /ready or /live")
                    return
                body = (reason + "\n").encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # probes every 2 s: keep the log quiet
                pass

        self.triton_http = triton_http
        self.drain_path = drain_path
        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="ditto-health")

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def ready(self) -> tuple[bool, str]:
        if is_draining(self.drain_path):
            return False, "draining"
        if not triton_health(self.triton_http, "ready"):
            return False, "tritonserver is not ready"
        return True, "ready"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def supervise(
    child: Child,
    *,
    metrics_url: str,
    drain_path: Path,
    drain_timeout_s: float,
    stop_grace_s: float = 30.0,
    log: Callable[[str], None] = print,
) -> int:
    """Run until SIGTERM/SIGINT, drain, stop the child; returns the exit code for the supervisor.

    0 after a drain that finished every session and a clean stop; 1 when sessions were still live
    at the drain timeout or the child died on its own (its log says why)."""
    signalled = threading.Event()
    force = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if signalled.is_set():
            force.set()
            log(f"ditto-replica: {signal.Signals(signum).name} again: stopping without waiting for sessions")
        signalled.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not signalled.wait(1.0):
            if not child.is_running():
                log("ditto-replica: tritonserver exited on its own")
                return 1
        log("ditto-replica: stop requested: draining")
        start_drain(drain_path)

        def count() -> int:
            return 0 if force.is_set() or not child.is_running() else active_sessions(metrics_url)

        left = wait_for_sessions(count, drain_timeout_s, log=log)
        code = child.stop(stop_grace_s)
        log(f"ditto-replica: tritonserver stopped (exit code {code})")
        return 0 if left == 0 and code == 0 and not force.is_set() else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_line(line: str) -> None:
    print(line, flush=True)


def run_supervised(
    start: Callable[[dict[str, str]], ServedChild],
    *,
    drain_path: Path,
    drain_timeout_s: float,
    health_host: str = "127.0.0.1",
    health_port: int | None = None,
    on_ready: Callable[[ServedChild, HealthServer | None], None] | None = None,
    on_exit: Callable[[ServedChild], None] | None = None,
) -> int:
    """Clear a stale drain mark, start tritonserver, open the health port, supervise, stop.

    `start` gets the environment entry that points the replica's processes at `drain_path` and
    returns the started server. `health_port` None: no health port (0: a free one). `on_ready` runs
    once the health port is open; `on_exit` after `supervise` returns, before the server is stopped
    (a server that died on its own is still there to read). Returns `supervise`'s exit code."""
    clear_drain(drain_path)
    child = start({DRAIN_FILE_ENV: str(drain_path)})
    health = None
    try:
        if health_port is not None:
            health = HealthServer(health_host, health_port, child.http_url, drain_path).start()
        if on_ready is not None:
            on_ready(child, health)
        code = supervise(
            child,
            metrics_url=child.metrics_url,
            drain_path=drain_path,
            drain_timeout_s=drain_timeout_s,
            log=_print_line,
        )
        if on_exit is not None:
            on_exit(child)
        return code
    finally:
        if health is not None:
            health.close()
        child.stop()
