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
    from ditto_triton.manifest import stale_reason
    from ditto_triton.model_repository.render import render_repository
    from ditto_triton.model_repository.server import TritonServer

    export = export_dir or Path("out/export") / profile
    reason = stale_reason(export, profile)
    if reason is not None:
        console.print(f"exporting the {profile} networks to {export} ({reason}) ...")
        from ditto_triton.export.pipeline import ExportOptions, export_all
        from ditto_triton.profiles import get_profile

        export_all(ExportOptions(profile=get_profile(profile), weights=weights, out=export))
    with tempfile.TemporaryDirectory(prefix="ditto-repo-") as tmp:
        repo = render_repository(export, Path(tmp) / "repo", "python-ort", include_services=True)
        console.print("starting tritonserver on 127.0.0.1 ...")
        with TritonServer(repo) as server:
            yield server.grpc_url
