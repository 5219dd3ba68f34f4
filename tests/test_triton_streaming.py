"""The orchestrator on a real tritonserver (tiny profile, python-ort): streaming, parity with the
in-process pipeline, concurrent sessions, and clear errors that leave the server healthy."""

from __future__ import annotations

import json
import queue
import threading
import time
from math import gcd

import numpy as np
import pytest
import soundfile as sf
import tritonclient.grpc as grpcclient
from PIL import Image
from scipy.signal import resample_poly

from ditto_triton.model_repository.render import render_repository
from ditto_triton.model_repository.server import TritonServer
from ditto_triton.profiles import TINY
from ditto_triton.streaming.options import SessionOptions
from ditto_triton.streaming.reference import register_avatar, render_audio
from ditto_triton.streaming.stages import OrtStages

CHUNK = 3200  # 200 ms at 16 kHz
CROP = {"max_size": 512}


@pytest.fixture(scope="module")
def server(tiny_export, tmp_path_factory):
    repo = render_repository(tiny_export, tmp_path_factory.mktemp("repo"), "python-ort", include_services=True)
    with TritonServer(repo) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def portrait(samples_dir) -> bytes:
    return (samples_dir / "ditto_example_image.jpg").read_bytes()


@pytest.fixture(scope="module")
def speech16k(samples_dir) -> np.ndarray:
    audio, rate = sf.read(samples_dir / "ditto_example_audio.wav", dtype="float32")
    audio = audio if audio.ndim == 1 else audio.mean(axis=1)
    g = gcd(16000, rate)
    return resample_poly(audio, 16000 // g, rate // g).astype(np.float32)


@pytest.fixture(scope="module")
def stages(tiny_export):
    return OrtStages(tiny_export)


def bytes_input(name: str, value: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([value], dtype=object))
    return tensor


def register(client, image: bytes, options: dict | None = None) -> str:
    inputs = [bytes_input("image", image)]
    if options:
        inputs.append(bytes_input("options", json.dumps(options).encode()))
    result = client.infer("avatar_registry", inputs, outputs=[grpcclient.InferRequestedOutput("avatar_id")])
    return result.as_numpy("avatar_id")[0].decode()


class Stream:
    """One gRPC stream; sessions are told apart by sequence id."""

    def __init__(self, url: str) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.frames: dict[int, list[tuple[int, float, np.ndarray]]] = {}
        self.errors: dict[int, list[str]] = {}
        self.finals: dict[int, int] = {}
        self.events: queue.Queue = queue.Queue()
        self.client.start_stream(callback=self._on_response)

    def _on_response(self, result, error) -> None:
        if error is not None:
            seq = int(str(error).split("seq=")[-1]) if "seq=" in str(error) else -1
            self.events.put(("error", seq, str(error)))
            return
        response = result.get_response()
        seq = int(response.id.split(":")[0])
        if result.as_numpy("frame") is not None:
            shape = tuple(result.as_numpy("frame_shape").reshape(-1))
            rgb = result.as_numpy("frame").reshape(shape)
            self.frames.setdefault(seq, []).append(
                (int(result.as_numpy("frame_index").reshape(-1)[0]), float(result.as_numpy("pts_s").reshape(-1)[0]), rgb)
            )
        if response.parameters.get("triton_final_response") and response.parameters["triton_final_response"].bool_param:
            self.events.put(("final", seq, None))

    def send(self, seq: int, n: int, audio=None, *, start=False, end=False, avatar=None, options=None, sample_rate=None, dtype="FP32"):
        inputs = []
        if audio is not None:
            t = grpcclient.InferInput("audio" if dtype == "FP32" else "audio_int16", [1, audio.size], dtype)
            t.set_data_from_numpy(audio.reshape(1, -1))
            inputs.append(t)
        if avatar is not None:
            t = grpcclient.InferInput("avatar_id", [1, 1], "BYTES")
            t.set_data_from_numpy(np.array([[avatar.encode()]], dtype=object))
            inputs.append(t)
        if options is not None:
            t = grpcclient.InferInput("options", [1, 1], "BYTES")
            t.set_data_from_numpy(np.array([[json.dumps(options).encode()]], dtype=object))
            inputs.append(t)
        if sample_rate is not None:
            t = grpcclient.InferInput("sample_rate", [1, 1], "INT32")
            t.set_data_from_numpy(np.array([[sample_rate]], np.int32))
            inputs.append(t)
        self.client.async_stream_infer(
            "orchestrator", inputs, request_id=f"{seq}:{n}", sequence_id=seq, sequence_start=start,
            sequence_end=end, enable_empty_final_response=True,
        )

    def wait(self, expected: dict[int, int], timeout: float = 300) -> None:
        """Wait until each sequence got `expected[seq]` final responses (errors count as final)."""
        deadline = time.monotonic() + timeout
        got: dict[int, int] = {}
        while any(got.get(s, 0) < n for s, n in expected.items()):
            kind, seq, msg = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            if kind == "error":
                self.errors.setdefault(seq, []).append(msg)
                seq = seq if seq in expected else next(s for s, n in expected.items() if got.get(s, 0) < n)
            got[seq] = got.get(seq, 0) + 1

    def close(self):
        self.client.stop_stream()
        self.client.close()


def stream_session(url, seq, avatar, audio, options=None, chunk=CHUNK):
    s = Stream(url)
    try:
        pieces = [audio[i : i + chunk] for i in range(0, audio.size, chunk)]
        for n, piece in enumerate(pieces):
            s.send(seq, n, piece, start=n == 0, end=n == len(pieces) - 1, avatar=avatar if n == 0 else None,
                   options=options if n == 0 else None)
        s.wait({seq: len(pieces)})
        return s.frames.get(seq, []), s.errors.get(seq, [])
    finally:
        s.close()


def test_stream_equals_in_process_pipeline(server, client, portrait, speech16k, stages):
    avatar = register(client, portrait, CROP)
    frames, errors = stream_session(server.grpc_url, 101, avatar, speech16k)
    assert errors == []
    assert len(frames) == -(-speech16k.size // 640)  # 25 frames per second of audio, tail rounded up
    assert [f[0] for f in frames] == list(range(len(frames)))
    assert all(abs(pts - i / 25) < 1e-9 for i, pts, _ in frames)
    reference = render_audio(stages, register_avatar(stages, portrait, TINY.appearance.image_size, CROP), speech16k, TINY.render_size)
    assert len(reference) == len(frames)
    assert frames[0][2].shape == reference[0].rgb.shape == (512, 512, 3)
    worst = max(np.abs(f[2].astype(np.int16) - r.rgb.astype(np.int16)).max() for f, r in zip(frames, reference))
    assert worst == 0  # uint8 frames: within 1e-5 means identical


def test_two_concurrent_sessions_get_their_own_frames(server, client, portrait, speech16k, stages):
    mirrored = Image.open(__import__("io").BytesIO(portrait)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buf = __import__("io").BytesIO()
    mirrored.save(buf, format="PNG")
    ids = [register(client, portrait, CROP), register(client, buf.getvalue(), CROP)]
    assert ids[0] != ids[1]
    audio = [speech16k[: 16000 * 2], speech16k[16000 * 3 : 16000 * 5 + 1234]]
    results: dict[int, tuple] = {}
    threads = [
        threading.Thread(target=lambda k=k: results.__setitem__(k, stream_session(server.grpc_url, 200 + k, ids[k], audio[k], {"seed": k})))
        for k in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    images = [portrait, buf.getvalue()]
    refs = []
    for k in range(2):
        avatar = register_avatar(stages, images[k], TINY.appearance.image_size, CROP)
        refs.append(render_audio(stages, avatar, audio[k], TINY.render_size, SessionOptions(seed=k)))
    for k in range(2):
        frames, errors = results[k]
        assert errors == []
        assert len(frames) == len(refs[k]) == -(-audio[k].size // 640)
        # Frames of the two sessions meet in dynamically batched stage calls; batch-size-dependent
        # float rounding may move a pixel by one level, nothing more.
        diffs = np.stack([np.abs(f[2].astype(np.int16) - r.rgb.astype(np.int16)) for f, r in zip(frames, refs[k])])
        assert diffs.max() <= 1 and (diffs > 0).mean() < 1e-3
        other = refs[1 - k][0].rgb
        assert np.abs(frames[0][2].astype(np.int16) - other.astype(np.int16)).mean() > 10  # not the other session's


def one_request_error(url, seq, **kwargs) -> str:
    s = Stream(url)
    try:
        s.send(seq, 0, **kwargs)
        s.wait({seq: 1}, timeout=60)
        return " ".join(s.errors.get(seq, []) + s.errors.get(-1, []))
    finally:
        s.close()


def test_clear_errors_and_server_stays_healthy(server, client, portrait):
    audio = np.zeros(3200, np.float32)
    assert "START" in one_request_error(server.grpc_url, 301, audio=audio)
    assert "unknown avatar id" in one_request_error(server.grpc_url, 302, audio=audio, start=True, end=True, avatar="0" * 32)
    assert "malformed avatar id" in one_request_error(server.grpc_url, 303, audio=audio, start=True, end=True, avatar="../etc/passwd")
    avatar = register(client, portrait, CROP)
    assert "16000 Hz" in one_request_error(server.grpc_url, 304, audio=audio, start=True, end=True, avatar=avatar, sample_rate=24000)
    assert "unknown session option" in one_request_error(server.grpc_url, 305, audio=audio, start=True, end=True, avatar=avatar, options={"speed": 2})
    grey = __import__("io").BytesIO()
    Image.new("RGB", (256, 256), (128, 128, 128)).save(grey, format="JPEG")
    with pytest.raises(Exception, match="[Nn]o face"):
        register(client, grey.getvalue())
    with pytest.raises(Exception, match="image"):
        register(client, b"not an image at all")
    assert client.is_server_ready()
    frames, errors = stream_session(server.grpc_url, 306, avatar, np.zeros(6400, np.float32))
    assert errors == [] and len(frames) == 10
