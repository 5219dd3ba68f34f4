"""`ditto-serve`: render the model repository from an export, validate it and serve it.

    ditto-serve                                   # tiny export, python-ort, Triton on 127.0.0.1:8000/8001/8002
    ditto-serve --export out/export/full --render-only
    ditto-serve --flavor tensorrt --render-only   # configs for NVIDIA's container + the docker line
    ditto-serve --flavor torch                    # PyTorch on the GPU (fp16), the pip tritonserver
    ditto-serve --flavor torch --instance-kind cpu
    ditto-serve --health-port 8003 --drain-timeout-s 300   # as one replica of a scale-out deployment

The pip tritonserver has only the python backend, so it serves python-ort and torch; the
onnxruntime and tensorrt flavors are rendered for NVIDIA's container (deploy/, which builds the
TensorRT plans) and the command to serve them is printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from ditto_triton.limits import DEFAULT_LIMITS
from ditto_triton.manifest import MANIFEST_NAME, read_manifest, stale_reason
from ditto_triton.model_repository import gpu_flavors
from ditto_triton.model_repository.drain import DEFAULT_TIMEOUT_S
from ditto_triton.model_repository.render import FLAVORS, render_repository
from ditto_triton.model_repository.replica import HealthServer, run_supervised
from ditto_triton.model_repository.server import TritonServer, TritonServerError
from ditto_triton.model_repository.validate import validate_repository

DEFAULT_EXPORT = Path("out/export/tiny")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ditto-serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, default=DEFAULT_EXPORT, help="export directory (default %(default)s)")
    parser.add_argument("--flavor", choices=FLAVORS, default="python-ort", help="default %(default)s")
    parser.add_argument(
        "--repo", type=Path, default=None, help="where to render (default out/model_repository/<profile>-<flavor>)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address the server binds (default %(default)s)")
    parser.add_argument("--http-port", type=int, default=8000, help="0 picks a free port (default %(default)s)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="0 picks a free port (default %(default)s)")
    parser.add_argument("--metrics-port", type=int, default=8002, help="0 picks a free port (default %(default)s)")
    parser.add_argument("--render-only", action="store_true", help="render and validate, do not start a server")
    _add_repository_arguments(parser)
    _add_drain_arguments(parser)
    parser.add_argument("--log-verbose", type=int, default=0, help="tritonserver --log-verbose level")
    parser.add_argument(
        "tritonserver_args",
        nargs="*",
        metavar="-- TRITONSERVER_FLAG",
        help="after --: more tritonserver flags, e.g. -- --grpc-restricted-protocol=inference:ditto-key=TOKEN",
    )
    return parser


def _add_repository_arguments(parser: argparse.ArgumentParser) -> None:
    """How the repository is rendered: instances, batching, runners, limits."""
    parser.add_argument("--instance-kind", choices=("cpu", "gpu"), default=None, help="default: per flavor")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULT_LIMITS.max_batch_size,
        help="per-frame stages and LMDM (default %(default)s)",
    )
    parser.add_argument("--no-services", action="store_true", help="stages and ensembles only, no orchestrator")
    parser.add_argument(
        "--warp-runner",
        choices=("torch", "plugin", "onnxruntime"),
        default=None,
        help="GPU flavors: what serves the warp network (default torch; tensorrt: plugin, onnxruntime: onnxruntime)",
    )
    parser.add_argument(
        "--cpu-runners",
        default="ort",
        help="python-ort: 'ort' (ONNX Runtime for every stage), 'auto' (PyTorch where the export's --timing found "
        "it faster) or STAGE=RUNNER[,...] (default %(default)s)",
    )
    parser.add_argument("--engines", type=Path, default=None, help="tensorrt: ditto-trt-build's plans directory")
    parser.add_argument("--cuda-graphs", action="store_true", help="torch runner on GPU: replay CUDA graphs")
    parser.add_argument(
        "--queue-delay-us",
        type=int,
        default=None,
        help="dynamic batching delay of the batched stages (default: per flavor)",
    )
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=DEFAULT_LIMITS.max_sessions,
        help="live sessions the orchestrator admits (default %(default)s)",
    )


def _add_drain_arguments(parser: argparse.ArgumentParser) -> None:
    """Health endpoints and graceful drain."""
    parser.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="serve GET /ready (503 while draining) and /live on this port, for a proxy or probe (0: a free port)",
    )
    parser.add_argument(
        "--drain-timeout-s",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="on SIGTERM/Ctrl-C, refuse new sessions and wait this long for the live ones (default %(default)s)",
    )
    parser.add_argument("--drain-file", type=Path, default=None, help="the drain mark (default: one per server)")


def export_profile(export: Path) -> str | None:
    """The profile of a current export in `export`; None (and why, on stderr) when there is none."""
    if not (export / MANIFEST_NAME).is_file():
        print(
            f"ditto-serve: no {MANIFEST_NAME} in {export}; export the networks first, e.g.\n"
            f"  ditto-export --profile tiny --weights synthetic --out {export}",
            file=sys.stderr,
        )
        return None
    profile = read_manifest(export)["profile"]
    reason = stale_reason(export, profile)
    if reason is not None:
        print(
            f"ditto-serve: {reason}; export it again (ditto-export --profile {profile} ... --out {export})",
            file=sys.stderr,
        )
        return None
    return profile


def render_and_validate(args: argparse.Namespace, repo: Path) -> bool:
    """Render the repository the flags ask for into `repo` and validate it; False (and why) if either fails."""
    try:
        render_repository(
            args.export,
            repo,
            args.flavor,
            instance_kind=args.instance_kind,
            include_services=not args.no_services,
            max_batch_size=args.max_batch_size,
            max_sessions=args.max_sessions,
            warp_runner=args.warp_runner,
            engines_dir=args.engines,
            cuda_graphs=args.cuda_graphs,
            queue_delay_us=args.queue_delay_us,
            cpu_runner_choice=args.cpu_runners if args.flavor == "python-ort" else None,
        )
        validate_repository(repo, args.export)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"ditto-serve: {err}", file=sys.stderr)
        return False
    return True


def print_container_command(args: argparse.Namespace, repo: Path) -> None:
    """The onnxruntime and tensorrt backends run only in NVIDIA's container: how to serve `repo` there."""
    print(f"the {args.flavor} backend runs only in NVIDIA's Triton container (deploy/); serve the repository with:")
    print("  " + gpu_flavors.docker_run_command(repo, host=args.host, plugin=args.warp_runner == "plugin"))
    if args.flavor == "tensorrt" and args.engines is None:
        print("first build every stage's model.plan on the serving GPU (see <stage>/1/README.txt)")
    if not args.no_services:
        print(
            "the python service models (avatar_registry, orchestrator) need this package (Python 3.11) in the "
            "container's python backend environment"
        )


def serve(args: argparse.Namespace, repo: Path) -> int:
    """The pip tritonserver on `repo` under the replica supervisor, until Ctrl-C/SIGTERM has drained it."""

    def start(drain_env: dict[str, str]) -> TritonServer:
        server = TritonServer(
            repo,
            env=drain_env,
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            log_verbose=args.log_verbose,
            extra_args=args.tritonserver_args,
        )
        return server.start()

    drain_path = args.drain_file or Path(tempfile.mkdtemp(prefix="ditto-serve-")) / "draining"
    try:
        return run_supervised(
            start,
            drain_path=drain_path,
            drain_timeout_s=args.drain_timeout_s,
            health_host=args.host,
            health_port=args.health_port,
            on_ready=print_ready,
            on_exit=print_log_if_died,
        )
    except TritonServerError as err:
        print(f"ditto-serve: {err}", file=sys.stderr)
        return 1


def print_ready(server: TritonServer, health: HealthServer | None) -> None:
    print(f"tritonserver ready (pid {server.pid}); log: {server.log_path}")
    print(f"  gRPC     {server.grpc_url}")
    print(f"  HTTP     http://{server.http_url}")
    print(f"  metrics  {server.metrics_url}")
    if health is not None:
        print(f"  health   http://{server.http_url.rsplit(':', 1)[0]}:{health.port}/ready")
    print("Ctrl-C drains the sessions and stops it (twice: stops at once).", flush=True)


def print_log_if_died(server: TritonServer) -> None:
    if server.pid is not None and not server.is_running():  # it died on its own (supervise did not stop it)
        print(f"ditto-serve: log tail:\n{server.log_tail()}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    profile = export_profile(args.export)
    if profile is None:
        return 2
    repo = args.repo or Path("out/model_repository") / f"{profile}-{args.flavor}"
    if not render_and_validate(args, repo):
        return 2
    print(f"model repository ({profile}, {args.flavor}): {repo}")
    if args.flavor in ("onnxruntime", "tensorrt"):
        print_container_command(args, repo)
        return 0
    if args.render_only:
        return 0
    return serve(args, repo)


if __name__ == "__main__":
    sys.exit(main())
