"""`ditto-live`: the live browser demo. Starts (or joins) a Triton server and serves the page.

ditto-live                                  # embedded tritonserver, page on http://127.0.0.1:8080/
ditto-live --url 127.0.0.1:8001 --port 9000 # a running server
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn
from rich.console import Console

from ditto_triton.apps.server import add_server_arguments, server_url
from ditto_triton.client.errors import DittoClientError
from ditto_triton.gateway.app import create_app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ditto-live", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_server_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address the page is served on (default loopback only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--sample-image", type=Path, default=None, help="portrait offered as 'use the sample'")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    if args.sample_image is not None and not args.sample_image.is_file():
        console.print(f"error: {args.sample_image}: no such file")
        return 2
    try:
        with server_url(args, console) as url:
            app = create_app(url, args.sample_image)
            console.print(f"live demo: http://{args.host}:{args.port}/  (Triton at {url}; Ctrl-C stops)")
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except (DittoClientError, ValueError, RuntimeError) as exc:
        console.print(f"error: {exc}", markup=False)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
