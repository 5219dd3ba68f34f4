"""What every benchmark starts from: the sample portrait and speech, the crop options, and a fresh
local tritonserver on an export."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ditto_triton.benchmarks import SAMPLES_DIR

SAMPLE_IMAGE = SAMPLES_DIR / "ditto_example_image.jpg"
SAMPLE_AUDIO = SAMPLES_DIR / "ditto_example_audio.wav"
CROP = {"max_size": 512}


@contextlib.contextmanager
def local_tritonserver(export_dir: Path, flavor: str = "python-ort", **render_kwargs):
    """A fresh tritonserver (`TritonServer`) on loopback serving `export_dir` with its service models
    (`render_kwargs` go to `render_repository`); stopped (and its repository removed) on exit."""
    from ditto_triton.model_repository.render import render_repository
    from ditto_triton.model_repository.server import TritonServer

    with tempfile.TemporaryDirectory(prefix="ditto-bench-") as tmp:
        repo = render_repository(export_dir, Path(tmp) / "repo", flavor, include_services=True, **render_kwargs)
        with TritonServer(repo, log_path=Path(tmp) / "tritonserver.log") as server:
            yield server


@contextlib.contextmanager
def local_server(export_dir: Path, flavor: str = "python-ort", **render_kwargs) -> Iterator[tuple[str, str]]:
    """(grpc_url, metrics_url) of a `local_tritonserver`."""
    with local_tritonserver(export_dir, flavor, **render_kwargs) as server:
        yield server.grpc_url, server.metrics_url
