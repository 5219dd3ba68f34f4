"""What every benchmark starts from: the sample portrait and speech (and the portrait in a 1080p frame),
the crop options, and a fresh local tritonserver on an export."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ditto_triton.benchmarks import SAMPLES_DIR

SAMPLE_IMAGE = SAMPLES_DIR / "ditto_example_image.jpg"
SAMPLE_AUDIO = SAMPLES_DIR / "ditto_example_audio.wav"
CROP = {"max_size": 512}
HD_FRAME = (1080, 1920)  # height, width


def hd_frame(shift: int = 0) -> np.ndarray:
    """The sample portrait at 1080 px high on a 1920-wide grey canvas, moved `shift` px right."""
    face = Image.open(SAMPLE_IMAGE).convert("RGB").resize((HD_FRAME[0], HD_FRAME[0]))
    canvas = np.full((*HD_FRAME, 3), 128, np.uint8)
    left = 420 + shift
    canvas[:, left : left + HD_FRAME[0]] = np.asarray(face)
    return canvas


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
