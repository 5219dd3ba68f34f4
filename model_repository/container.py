"""`ditto-container`: the entrypoint of the GPU image (deploy/Dockerfile).

On start it (1) exports the networks into the cache volume unless an export of the wanted profile
is already there, (2) for the tensorrt flavor builds the plans on this GPU or reuses cached ones
(`ditto-trt-build`), (3) renders and validates the model repository (`ditto-serve --render-only`)
and (4) runs NVIDIA's `tritonserver` under the replica supervisor (`model_repository/replica.py`: health
port, drain on SIGTERM), loading the GridSample3D plugin when the warp network is a plan. With
DITTO_MODEL_REPOSITORY (an s3://, gs:// or as:// URL, or a path) steps 1-3 are skipped and Triton
serves that pre-rendered repository. Settings come from the environment (see `Settings`);
`--dry-run` prints the steps without running them. Extra arguments go to tritonserver.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ditto_triton.export.engine_plan import GRID_PLUGIN_LIBRARY
from ditto_triton.limits import DEFAULT_LIMITS
from ditto_triton.model_repository.drain import DEFAULT_DRAIN_FILE, DEFAULT_TIMEOUT_S, DRAIN_FILE_ENV
from ditto_triton.model_repository.gpu_flavors import PLUGIN_DIR, check_warp_runner
from ditto_triton.model_repository.process_settings import server_environment
from ditto_triton.model_repository.replica import DEFAULT_HEALTH_PORT, ProcessChild, run_supervised

TRITONSERVER = "/opt/tritonserver/bin/tritonserver"
GPU_FLAVORS = ("tensorrt", "onnxruntime", "torch")


@dataclass(frozen=True)
class Settings:
    flavor: str = "tensorrt"  # DITTO_FLAVOR
    profile: str = "full"  # DITTO_PROFILE: Ditto's real sizes
    weights: str = "synthetic"  # DITTO_WEIGHTS: "synthetic" or a mounted ditto_pytorch/ directory
    cache: Path = Path("/cache")  # DITTO_CACHE: export, plans and repository (a volume)
    warp_runner: str | None = None  # DITTO_WARP_RUNNER: torch (default) or plugin/onnxruntime
    max_batch_size: int = DEFAULT_LIMITS.max_batch_size  # DITTO_MAX_BATCH_SIZE
    max_sessions: int = DEFAULT_LIMITS.max_sessions  # DITTO_MAX_SESSIONS
    cuda_graphs: bool = False  # DITTO_CUDA_GRAPHS (torch runner)
    model_repository: str | None = None  # DITTO_MODEL_REPOSITORY: serve this rendered repository as is
    health_port: int = DEFAULT_HEALTH_PORT  # DITTO_HEALTH_PORT: GET /ready (503 while draining), /live
    drain_timeout_s: float = DEFAULT_TIMEOUT_S  # DITTO_DRAIN_TIMEOUT_S: how long live sessions may finish
    drain_file: Path = DEFAULT_DRAIN_FILE  # DITTO_DRAIN_FILE: shared with the preStop hook (ditto-drain)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str, default: object) -> str:
            return env.get(f"DITTO_{name}", str(default))

        base = cls()
        flavor = get("FLAVOR", base.flavor)
        if flavor not in GPU_FLAVORS:
            raise ValueError(f"DITTO_FLAVOR must be one of {GPU_FLAVORS}, not {flavor!r}")
        profile = get("PROFILE", base.profile)
        if profile not in ("tiny", "full"):
            raise ValueError(f"DITTO_PROFILE must be 'tiny' or 'full', not {profile!r}")
        warp = env.get("DITTO_WARP_RUNNER") or None
        try:
            check_warp_runner(flavor, warp)
            numbers = {
                n: int(get(n.upper(), getattr(base, n))) for n in ("max_batch_size", "max_sessions", "health_port")
            }
            drain_timeout_s = float(get("DRAIN_TIMEOUT_S", base.drain_timeout_s))
        except ValueError as err:
            raise ValueError(
                f"DITTO_WARP_RUNNER / DITTO_MAX_* / DITTO_HEALTH_PORT / DITTO_DRAIN_TIMEOUT_S: {err}"
            ) from None
        if drain_timeout_s < 0:
            raise ValueError(f"DITTO_DRAIN_TIMEOUT_S must be >= 0, not {drain_timeout_s:g}")
        graphs = get("CUDA_GRAPHS", "false").lower()
        if graphs not in ("true", "false", "1", "0"):
            raise ValueError(f"DITTO_CUDA_GRAPHS must be true or false, not {graphs!r}")
        return cls(
            flavor=flavor,
            profile=profile,
            weights=get("WEIGHTS", base.weights),
            cache=Path(get("CACHE", base.cache)),
            warp_runner=warp,
            cuda_graphs=graphs in ("true", "1"),
            model_repository=env.get("DITTO_MODEL_REPOSITORY") or None,
            drain_timeout_s=drain_timeout_s,
            drain_file=Path(env.get(DRAIN_FILE_ENV) or DEFAULT_DRAIN_FILE),
            **numbers,
        )

    @property
    def export_dir(self) -> Path:
        return self.cache / "export" / self.profile

    @property
    def engines_dir(self) -> Path:
        return self.cache / "engines" / self.profile

    @property
    def repo_dir(self) -> Path:
        return self.cache / "model_repository" / f"{self.profile}-{self.flavor}"

    @property
    def plugin_plan(self) -> bool:
        return self.flavor == "tensorrt" and self.warp_runner == "plugin"


def steps(settings: Settings, export_ready: bool, server_args: list[str]) -> list[list[str]]:
    """The commands the container runs, in order; the last one is tritonserver (supervised)."""
    s = settings
    if s.model_repository:
        return [[TRITONSERVER, f"--model-repository={s.model_repository}", *server_args]]
    out = []
    if not export_ready:
        out.append(
            ["ditto-export", "--profile", s.profile, "--weights", s.weights, "--out", str(s.export_dir), "--no-parity"]
        )
    batch = ["--max-batch-size", str(s.max_batch_size)]
    plugin = f"{PLUGIN_DIR}/{GRID_PLUGIN_LIBRARY}"
    if s.flavor == "tensorrt":
        build = ["ditto-trt-build", "--export", str(s.export_dir), "--engines", str(s.engines_dir), *batch]
        build += ["--warp-runner", s.warp_runner or "torch"] + (["--plugin", plugin] if s.plugin_plan else [])
        out.append(build)
    render = [
        "ditto-serve",
        "--export",
        str(s.export_dir),
        "--flavor",
        s.flavor,
        "--repo",
        str(s.repo_dir),
        "--render-only",
    ]
    render += [*batch, "--max-sessions", str(s.max_sessions)]
    if s.warp_runner:
        render += ["--warp-runner", s.warp_runner]
    if s.flavor == "tensorrt":
        render += ["--engines", str(s.engines_dir)]
    if s.cuda_graphs:
        render.append("--cuda-graphs")
    out.append(render)
    serve = [TRITONSERVER, f"--model-repository={s.repo_dir}"]
    if s.plugin_plan:
        serve.append(f"--backend-config=tensorrt,plugins={plugin}")
    out.append(serve + server_args)
    return out


def export_ready(settings: Settings) -> bool:
    """An export of the wanted profile whose stage I/O matches this code (else it is redone)."""
    from ditto_triton.manifest import stale_reason

    return (settings.export_dir / "manifest.json").is_file() and stale_reason(
        settings.export_dir, settings.profile
    ) is None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ditto-container", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the steps, run nothing")
    parser.add_argument("server_args", nargs="*", metavar="-- TRITONSERVER_FLAG")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except ValueError as err:
        print(f"ditto-container: {err}", file=sys.stderr)
        return 2
    plan = steps(settings, export_ready(settings), args.server_args)
    for command in plan:
        print("+ " + shlex.join(command), flush=True)
    if args.dry_run:
        return 0
    for command in plan[:-1]:
        code = subprocess.run(command, check=False).returncode
        if code != 0:
            print(f"ditto-container: {command[0]} failed (exit {code})", file=sys.stderr)
            return code
    return serve_supervised(plan[-1], settings)


def serve_supervised(command: list[str], settings: Settings) -> int:
    """Run tritonserver as a child (its own session: a terminal's Ctrl-C reaches only us) under
    the replica supervisor: health port, drain on SIGTERM, then stop it."""

    def start(drain_env: dict[str, str]) -> ProcessChild:
        env = server_environment({**os.environ, **drain_env})
        return ProcessChild(subprocess.Popen(command, env=env, start_new_session=True))

    return run_supervised(
        start,
        drain_path=settings.drain_file,
        drain_timeout_s=settings.drain_timeout_s,
        health_host="0.0.0.0",
        health_port=settings.health_port,
    )


if __name__ == "__main__":
    sys.exit(main())
