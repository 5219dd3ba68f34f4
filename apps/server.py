"""The server an app talks to: `--url` names a running one, otherwise an embedded tritonserver is
started from the export of `--profile` for as long as the app runs.

`--url` needs only the base install (the client); the embedded server needs the `server` and `export`
extras, and says so when they are missing."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

EMBEDDED_EXTRAS = "pip install 'ditto-triton[server,export]' (and nvidia-pytriton for tritonserver)"


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=None, help="gRPC address of a running Ditto Triton server (default: start one)"
    )
    parser.add_argument("--profile", choices=("tiny", "full"), default="tiny", help="embedded server only")
    parser.add_argument(
        "--weights", default="synthetic", help="embedded server only: 'synthetic' or ditto_pytorch/ dir"
    )
    parser.add_argument(
        "--export-dir", type=Path, default=None, help="embedded server only (default out/export/<profile>)"
    )


def default_frame_format(url: str | None) -> str:
    """The frame encoding (session option output_format) an app asks for unless told: JPEG from a server
    named by --url, which may be across a network (raw RGB is 11-24x the bytes), raw RGB from the
    embedded server on loopback, where encoding and decoding would cost CPU and save nothing
    (docs/benchmarks.md#frame-formats)."""
    return "jpeg" if url else "rgb"


@contextlib.contextmanager
def server_url(args: argparse.Namespace, console: Console) -> Iterator[str]:
    """Yields the gRPC address (host:port) of `args.url`, or of an embedded server while the context lasts."""
    if args.url:
        yield args.url
        return
    with contextlib.ExitStack() as stack:
        try:
            from ditto_triton.model_repository.embedded import embedded_server

            url = stack.enter_context(embedded_server(args.profile, args.weights, args.export_dir, console))
        except ModuleNotFoundError as exc:
            raise RuntimeError(
                f"no --url given and the embedded server cannot start ({exc}); {EMBEDDED_EXTRAS}"
            ) from exc
        yield url
