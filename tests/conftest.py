"""Shared fixtures: one tiny synthetic export per test session (about 15 s), reused by every suite."""

from pathlib import Path

import pytest

from ditto_triton.export.pipeline import ExportOptions, export_all
from ditto_triton.profiles import TINY

SAMPLES = Path(__file__).resolve().parents[1] / "examples"

# Fixtures that export networks or start servers: a test that uses one (directly or through another
# fixture) is an integration test. So is every test of a module that starts processes itself.
INTEGRATION_FIXTURES = {"tiny_export", "triton_server_factory", "portrait_video"}
INTEGRATION_MODULES = {
    "test_admission",
    "test_bad_input",
    "test_capacity",
    "test_cross_session_batching",
    "test_deploy_chart",
    "test_faults",
    "test_layering",
    "test_live_page",
    "test_metrics",
    "test_perf_analyzer",
    "test_protocol_doc",
    "test_server_lifetime",
    "test_render_cli",
    "test_repository",
    "test_scale_out",
    "test_security",
    "test_soak",
    "test_torch_runner",
    "test_triton_stages",
    "test_triton_streaming",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test unit or integration unless it says (slow tests stay slow only)."""
    for item in items:
        if any(item.get_closest_marker(name) for name in ("unit", "integration", "slow")):
            continue
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        heavy = INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())) or module in INTEGRATION_MODULES
        item.add_marker(pytest.mark.integration if heavy else pytest.mark.unit)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    """Directory holding every tiny stage's ONNX file, synthetic checkpoints and manifest.json."""
    out = tmp_path_factory.mktemp("export_tiny")
    export_all(ExportOptions(profile=TINY, weights="synthetic", seed=0, out=out))
    return out


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    if not (SAMPLES / "ditto_example_image.jpg").is_file():
        pytest.fail(f"sample files not found in {SAMPLES}")
    return SAMPLES


@pytest.fixture(scope="session")
def portrait(samples_dir) -> bytes:
    """The sample portrait's JPEG bytes."""
    return (samples_dir / "ditto_example_image.jpg").read_bytes()


@pytest.fixture(scope="session")
def speech16k(samples_dir):
    """The sample speech as 16 kHz mono float32."""
    from ditto_triton.client import load_audio

    return load_audio(samples_dir / "ditto_example_audio.wav")


@pytest.fixture(scope="session")
def mirrored(portrait) -> bytes:
    """The sample portrait flipped left-right, as PNG: a second face with its own avatar id."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(portrait)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def triton_server_factory(tiny_export, tmp_path_factory):
    """Start real tritonservers (python-ort flavor of the tiny export) on free loopback ports.

    `start(repo=None, *, include_services=False, **render_kwargs) -> TritonServer`: renders a fresh
    repository unless `repo` is given, waits until the server is ready and returns it; every server
    started this way is stopped when the test module ends.
    """
    from ditto_triton.model_repository.render import render_repository
    from ditto_triton.model_repository.server import TritonServer

    servers = []

    def start(repo: Path | None = None, *, include_services: bool = False, **render_kwargs):
        if repo is None:
            repo = render_repository(
                tiny_export,
                tmp_path_factory.mktemp("model_repository"),
                "python-ort",
                include_services=include_services,
                **render_kwargs,
            )
        server = TritonServer(repo, log_path=tmp_path_factory.mktemp("tritonserver") / "tritonserver.log")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def server(triton_server_factory):
    """One tritonserver per module with every stage and the service models (a module may override it)."""
    return triton_server_factory(include_services=True)


@pytest.fixture(scope="module")
def triton_stage_server(triton_server_factory):
    """One server per test module with every stage and the ensembles (no service models)."""
    return triton_server_factory(include_services=False)


@pytest.fixture(scope="session")
def portrait_video(portrait, tmp_path_factory) -> bytes:
    """A 12-frame MP4 of the sample portrait (fitted to 512 px) drifting right by 6 px a frame:
    a source video whose frames can be told apart."""
    import io

    import numpy as np
    from PIL import Image

    from ditto_triton.client.video import Mp4Writer

    photo = Image.open(io.BytesIO(portrait)).convert("RGB")
    photo.thumbnail((512, 512))
    rgb = np.asarray(photo)[: photo.height // 2 * 2, : photo.width // 2 * 2]
    path = tmp_path_factory.mktemp("video") / "portrait.mp4"
    writer = Mp4Writer(path, crf=10)
    for i in range(12):
        writer.add(np.ascontiguousarray(np.roll(rgb, 6 * i, axis=1)))
    writer.close()
    return path.read_bytes()


@pytest.fixture(scope="module")
def recording_stages(tiny_export):
    """In-process stages that keep what every LMDM call was given and returned (recording_stages.py)."""
    from recording_stages import RecordingStages

    return RecordingStages(tiny_export)


@pytest.fixture(scope="module")
def photo_avatar(recording_stages, portrait):
    """The sample portrait registered in process (512 px)."""
    from ditto_triton.profiles import TINY
    from ditto_triton.streaming.reference import register_avatar

    return register_avatar(recording_stages, portrait, TINY.appearance.image_size, {"max_size": 512})
