"""An embedded tritonserver for the CLI and the live demo: export if needed, render the repository,
serve it on free loopback ports for as long as the context lasts."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console


@contextlib.contextmanager
def embedded_server(profile: str, weights: str, export_dir: Path | None, console: Console) -> Iterator[str]:
    """Yields the server's gRPC address (host:port). The networks are exported to `export_dir`
    (default out/export/<profile>) when that holds no export matching this version."""
    from ditto_triton.export.current import export_from
    from ditto_triton.model_repository.render import render_repository
    from ditto_triton.model_repository.server import TritonServer

    export = export_from(export_dir or Path("out/export") / profile, profile, weights, console.print)
    with tempfile.TemporaryDirectory(prefix="ditto-repo-") as tmp:
        repo = render_repository(export, Path(tmp) / "repo", "python-ort", include_services=True)
        console.print("starting tritonserver on 127.0.0.1 ...")
        with TritonServer(repo) as server:
            yield server.grpc_url
