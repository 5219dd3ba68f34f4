"""Start and stop a real `tritonserver` (the one bundled in the `nvidia-pytriton` wheel) on CPU.

The wheel ships the server binary and the python backend, but not the python backend stub in
place: a backend directory holding `python/` (backend library, `triton_python_backend_utils.py`
and the stub built for this interpreter's Python) is prepared once in a cache directory. The
server runs with this environment's `bin/` first on `PATH`, which is how the stub finds the
environment's packages (numpy, onnxruntime, ditto_triton), and with the wheel's bundled libraries
on `LD_LIBRARY_PATH` for the copied stub. See the reference `triton-on-cpu.md`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ditto_triton.model_repository.process_settings import server_environment

log = logging.getLogger(__name__)

_LOOPBACK = "127.0.0.1"
_ERROR_LINE = re.compile(r"^E\d{4} ")
_GPU_NOISE = re.compile(r"CUDA|NVML|DCGM|CudaDriverHelper", re.IGNORECASE)
_WILDCARD = ("", "0.0.0.0", "::")


class TritonServerError(RuntimeError):
    """The server could not be found, prepared, started or reached."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the pip-installed tritonserver lives."""

    binary: Path
    python_backend: Path
    stubs: Path
    libs: Path
    version: str


def find_tritonserver() -> TritonInstall:
    """Locate `tritonserver` inside the installed `pytriton` package."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonServerError(
            "the tritonserver binary comes from the `nvidia-pytriton` package, which is not installed; run `make setup`"
        )
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stubs=root / "python_backend_stubs",
        # auditwheel's bundled libraries; the copied backend/stub find them through LD_LIBRARY_PATH.
        libs=root.parent.parent / "nvidia_pytriton.libs",
        version=importlib.metadata.version("nvidia-pytriton"),
    )
    for path in (install.binary, install.python_backend / "libtriton_python.so", install.libs):
        if not path.exists():
            raise TritonServerError(f"{path} is missing from the pytriton package; reinstall it with `make setup`")
    return install


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ditto_triton"


def prepare_backend_dir(install: TritonInstall, cache_dir: Path | None = None) -> Path:
    """A backend directory whose `python/` holds the backend and this Python's stub (made once)."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = install.stubs / py / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonServerError(f"{stub}: pytriton {install.version} has no python backend stub for Python {py}")
    target = Path(cache_dir or default_cache_dir()) / f"triton-backends-pytriton{install.version}-py{py}"
    if (target / "python" / "triton_python_backend_stub").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place, so concurrent starts never see half a directory.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        shutil.copytree(install.python_backend, staging / "python", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, staging / "python" / "triton_python_backend_stub")
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "python" / "triton_python_backend_stub").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("prepared the tritonserver backend directory %s", target)
    return target


def free_port(host: str = _LOOPBACK) -> int:
    """A TCP port free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def environment_bin_dir() -> Path:
    """The running environment's `bin/` (the venv's when run from one)."""
    candidate = Path(sys.prefix) / "bin"
    return candidate if candidate.is_dir() else Path(sys.executable).parent


def triton_health(http_url: str, which: str, timeout_s: float = 1.0) -> bool:
    """Whether Triton's `GET /v2/health/<which>` (ready or live) answers 200; `http_url` is host:port
    (proxies bypassed: this is a local server)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{http_url}/v2/health/{which}", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class TritonServer:
    """A `tritonserver` process serving `model_repository`; use as a context manager.

    Ports left at 0 are picked free on loopback. The server binds `host` (loopback unless told
    otherwise); `http_url`/`grpc_url` are `host:port` strings as tritonclient takes them,
    `metrics_url` a full URL. stdout and stderr go to `log_path`.
    """

    def __init__(
        self,
        model_repository: Path,
        *,
        host: str = _LOOPBACK,
        http_port: int = 0,
        grpc_port: int = 0,
        metrics_port: int = 0,
        log_path: Path | None = None,
        startup_timeout_s: float = 120.0,
        log_verbose: int = 0,
        extra_args: Sequence[str] = (),
        cache_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        if not self.model_repository.is_dir():
            raise TritonServerError(f"{self.model_repository}: model repository not found")
        self.host = host
        self._requested_ports = (http_port, grpc_port, metrics_port)
        self._ports = (http_port, grpc_port, metrics_port)
        self.startup_timeout_s = startup_timeout_s
        self.log_verbose = log_verbose
        self.extra_args = list(extra_args)
        self.cache_dir = cache_dir
        self.env = dict(env or {})  # added to this process's environment for the server and its stubs
        self._log_path = Path(log_path) if log_path else None
        self._process: subprocess.Popen | None = None
        self._log_file = None

    # -- addresses ------------------------------------------------------------------------------
    @property
    def _connect_host(self) -> str:
        return _LOOPBACK if self.host in _WILDCARD else self.host

    @property
    def http_port(self) -> int:
        return self._ports[0]

    @property
    def grpc_port(self) -> int:
        return self._ports[1]

    @property
    def metrics_port(self) -> int:
        return self._ports[2]

    @property
    def http_url(self) -> str:
        return f"{self._connect_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._connect_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._connect_host}:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            self._log_path = Path(tempfile.mkdtemp(prefix="tritonserver-")) / "tritonserver.log"
        return self._log_path

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    # -- lifecycle --------------------------------------------------------------------------------
    def command(self, backend_dir: Path, binary: Path) -> list[str]:
        http, grpc, metrics = self._ports
        return [
            str(binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--http-address={self.host}",
            f"--http-port={http}",
            f"--grpc-address={self.host}",
            f"--grpc-port={grpc}",
            f"--metrics-address={self.host}",
            f"--metrics-port={metrics}",
            f"--log-verbose={self.log_verbose}",
            # Shorter than stop()'s grace period, so in-flight requests end before SIGKILL.
            "--exit-timeout-secs=10",
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        """Start the server and wait until `/v2/health/ready`; raise with the log tail if it dies."""
        if self._process is not None:
            raise TritonServerError("server already started")
        install = find_tritonserver()
        backend_dir = prepare_backend_dir(install, self.cache_dir)
        auto_ports = 0 in self._requested_ports
        for attempt in range(3 if auto_ports else 1):
            self._ports = tuple(p or free_port(self._connect_host) for p in self._requested_ports)
            self._launch(install, backend_dir)
            try:
                self._wait_ready()
                return self
            except TritonServerError:
                tail = self.log_tail()
                self.stop()
                # A port picked free may be taken before the server binds it: pick again.
                if auto_ports and attempt < 2 and "already in use" in tail.lower():
                    log.warning("tritonserver port clash, retrying with other ports")
                    continue
                raise
        raise AssertionError("unreachable")

    def _launch(self, install: TritonInstall, backend_dir: Path) -> None:
        env = server_environment({**os.environ, **self.env})
        env["PATH"] = os.pathsep.join([str(environment_bin_dir()), env.get("PATH", "")])
        # The stub and backend library were copied away from their RPATH ($ORIGIN/../../../../...).
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(install.libs), env.get("LD_LIBRARY_PATH")) if p)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = self.command(backend_dir, install.binary)
        log.info("starting %s", " ".join(cmd))
        self._process = subprocess.Popen(
            cmd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_terminate_with_parent,
        )

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise TritonServerError(
                    f"tritonserver exited with code {code} during startup; log {self.log_path}\n"
                    f"errors:\n{self.log_errors()}\nlast lines:\n{self.log_tail(15)}"
                )
            if self.is_ready():
                log.info("tritonserver ready: grpc %s, http %s (pid %d)", self.grpc_url, self.http_url, self.pid)
                return
            time.sleep(0.2)
        raise TritonServerError(
            f"tritonserver not ready after {self.startup_timeout_s:.0f} s; log {self.log_path}\n"
            f"errors:\n{self.log_errors()}\nlast lines:\n{self.log_tail(15)}"
        )

    def is_ready(self, timeout_s: float = 2.0) -> bool:
        """Whether `GET /v2/health/ready` answers 200."""
        return triton_health(self.http_url, "ready", timeout_s)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM the server, SIGKILL its process group after `grace_s`; returns its exit code."""
        process, self._process = self._process, None
        code = None
        if process is not None:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    log.warning("tritonserver (pid %d) ignored SIGTERM for %.0f s; killing it", process.pid, grace_s)
                    # start_new_session made the server its group's leader: this also ends its stubs.
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            code = process.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def log_errors(self, limit: int = 20) -> str:
        """The log's error lines, without the GPU-less machine's harmless CUDA/NVML/DCGM complaints."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        found = [
            line
            for line in text.splitlines()
            if (_ERROR_LINE.match(line) or line.startswith("error:")) and not _GPU_NOISE.search(line)
        ]
        return "\n".join(found[-limit:]) or "<none>"

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM the server when the process that launched it dies, so a
    killed test run or benchmark never leaves a server (and its stubs) holding ports and memory."""
    import ctypes

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
