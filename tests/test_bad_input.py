"""The bad-input matrix against a real tritonserver (tiny profile): registration, sessions and every
stage model. Each case gets a clear error naming the problem, or its documented handling; the
server stays healthy; and a healthy session streaming at the same time gets exactly the frames it
gets alone."""

from __future__ import annotations

import io
import json
import queue
import random
import re
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from frame_compare import assert_same_pictures
from PIL import Image
from triton_inputs import SPECS, infer_inputs, seeded_inputs, to_wire
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from ditto_triton.client import DittoClient

CROP = {"max_size": 512}
ORCH = "orchestrator"
HEALTHY_SECONDS = 12.0


@dataclass(frozen=True)
class Case:
    area: str
    name: str
    run: Callable[[], str]  # returns what was observed: "error: <message>" or "ok: <detail>"
    expect: str  # substring of the error message, or "ok:" plus what the documented handling gives


# -- raw requests ---------------------------------------------------------------------------------
def tensor(name: str, array: np.ndarray, dtype: str | None = None) -> grpcclient.InferInput:
    triton_dtype = "BYTES" if array.dtype == object else dtype or np_to_triton_dtype(array.dtype)
    t = grpcclient.InferInput(name, list(array.shape), triton_dtype)
    t.set_data_from_numpy(array)
    return t


def text(name: str, value: str | bytes, batched: bool = True) -> grpcclient.InferInput:
    raw = value.encode() if isinstance(value, str) else value
    return tensor(name, np.array([[raw]] if batched else [raw], dtype=object))


def audio(samples: np.ndarray, name: str = "audio") -> grpcclient.InferInput:
    return tensor(name, samples.reshape(1, -1) if samples.ndim == 1 else samples)


def sequence(url: str, steps: list[tuple[list, bool, bool]], sequence_id: int | None = None) -> tuple[int, list[str]]:
    """Send (inputs, start, end) requests on one stream; returns (frames received, error messages)."""
    events: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: events.put((result, error)))
    sid = sequence_id or random.SystemRandom().randrange(1, 2**63)
    try:
        for i, (inputs, start, end) in enumerate(steps):
            client.async_stream_infer(
                ORCH,
                inputs,
                request_id=str(i),
                sequence_id=sid,
                sequence_start=start,
                sequence_end=end,
                enable_empty_final_response=True,
            )
        frames, errors, answered = 0, [], 0
        while answered < len(steps):
            result, error = events.get(timeout=60)
            if error is not None:
                errors.append(error.message())
                answered += 1
                continue
            if result.as_numpy("frame") is not None:
                frames += 1
            final = result.get_response().parameters.get("triton_final_response")
            answered += bool(final is not None and final.bool_param)
        return frames, errors
    finally:
        client.stop_stream()
        client.close()


def failure(exc: InferenceServerException) -> str:
    """What a raw tritonclient saw: "error[<gRPC status>]: <message>"."""
    return f"error[{exc.status()}]: {exc.message()}"


def observed(frames: int, errors: list[str]) -> str:
    return f"error: {' | '.join(errors)}" if errors else f"ok: {frames} frames"


# -- images -----------------------------------------------------------------------------------------
def encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's shape)."""
    raw = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = struct.pack(">II", width, height) + raw[24:29]
    raw[16:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(raw)


def variants(portrait: bytes) -> tuple[Image.Image, Image.Image, Image.Image]:
    """The photo, with an alpha channel, and next to a smaller copy of itself (two faces)."""
    photo = Image.open(io.BytesIO(portrait)).convert("RGB")
    rgba = photo.convert("RGBA")
    rgba.putalpha(200)
    two = Image.new("RGB", (photo.width * 2, photo.height), "white")
    two.paste(photo, (0, 0))
    two.paste(photo.resize((photo.width // 2, photo.height // 2)), (photo.width, photo.height // 4))
    return photo, rgba, two


def register_raw(url: str, data: bytes, options_text: str) -> str:
    inputs = [text("image", data, batched=False), text("options", options_text, batched=False)]
    try:
        result = grpcclient.InferenceServerClient(url).infer("avatar_registry", inputs)
        return f"ok: avatar {result.as_numpy('avatar_id')[0].decode()[:8]}"
    except InferenceServerException as exc:
        return failure(exc)


def registration_cases(client: DittoClient, url: str, portrait: bytes) -> list[Case]:
    photo, rgba, two = variants(portrait)

    def register(data: bytes, options: dict | str | None = None) -> str:
        if isinstance(options, str):  # raw options text
            return register_raw(url, data, options)
        return register_raw(url, data, json.dumps(options or {}))

    def lookup(inputs: list) -> str:
        try:
            grpcclient.InferenceServerClient(url).infer("avatar_registry", inputs)
            return "ok: looked up"
        except InferenceServerException as exc:
            return failure(exc)

    return [
        Case("register", "0 bytes", lambda: register(b""), "image data is empty"),
        Case("register", "truncated JPEG", lambda: register(portrait[: len(portrait) // 3]), "cannot decode image"),
        Case(
            "register",
            "PNG with alpha (composited over white)",
            lambda: register(encode(rgba, "PNG"), CROP),
            "ok: avatar",
        ),
        Case(
            "register",
            "grayscale JPEG (converted to RGB)",
            lambda: register(encode(photo.convert("L"), "JPEG"), CROP),
            "ok: avatar",
        ),
        Case("register", "1x1 image", lambda: register(encode(Image.new("RGB", (1, 1)), "PNG")), "too small"),
        Case("register", "20000x20000 decode bomb", lambda: register(png_declaring(20000, 20000)), "too large"),
        Case(
            "register",
            "no face",
            lambda: register(encode(Image.new("RGB", (256, 256), (128, 128, 128)), "JPEG")),
            "no face",
        ),
        Case(
            "register", "several faces (the largest is used)", lambda: register(encode(two, "JPEG"), CROP), "ok: avatar"
        ),
        Case(
            "register", "not an image", lambda: register(b"hello, this is text"), "not an image in a supported format"
        ),
        Case(
            "register",
            "PostScript (format not admitted)",
            lambda: register(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"),
            "supported format",
        ),
        Case(
            "register",
            "over the byte limit",
            lambda: register(b"\xff\xd8" + bytes(25_000_001)),
            "the limit is 25000000 bytes",
        ),
    ] + registration_option_cases(register, lookup, portrait)


def registration_option_cases(register, lookup, portrait: bytes) -> list[Case]:
    """Cases about registration options and lookups."""
    return [
        Case("register", "options not JSON", lambda: register(portrait, "{crop_scale: 2"), "not valid JSON"),
        Case("register", "unknown crop option", lambda: register(portrait, {"zoom": 2}), "zoom"),
        Case("register", "crop option out of range", lambda: register(portrait, {"crop_scale": 9.0}), "crop_scale"),
        Case(
            "register",
            "neither image nor avatar_id",
            lambda: lookup([text("options", "{}", batched=False)]),
            "send 'image'",
        ),
        Case(
            "lookup",
            "avatar id with path characters",
            lambda: lookup([text("avatar_id", "../../etc/passwd", batched=False)]),
            "malformed avatar id",
        ),
        Case(
            "lookup",
            "unknown avatar id",
            lambda: lookup([text("avatar_id", "0" * 32, batched=False)]),
            "unknown avatar id",
        ),
    ]


def rate(hz: int):
    return tensor("sample_rate", np.array([[hz]], np.int32))


def opts(value):
    return text("options", value if isinstance(value, str) else json.dumps(value))


def reused_sequence_id(url: str, inputs: list) -> str:
    """Open a sequence and hold it, then START another on the same correlation id."""
    sid = random.SystemRandom().randrange(1, 2**63)
    holder = grpcclient.InferenceServerClient(url)
    holder.start_stream(callback=lambda result, error: None)
    holder.async_stream_infer(ORCH, inputs, sequence_id=sid, sequence_start=True)
    try:
        return observed(*sequence(url, [(inputs, True, True)], sequence_id=sid))
    finally:
        holder.async_stream_infer(ORCH, [], sequence_id=sid, sequence_end=True)
        holder.stop_stream()
        holder.close()


def session_cases(url: str, avatar: str) -> list[Case]:
    ident = lambda value=avatar: text("avatar_id", value)  # noqa: E731
    second = np.zeros(16000, np.float32)

    def one(inputs: list, start: bool = True, end: bool = True) -> str:
        return observed(*sequence(url, [(inputs, start, end)]))

    def steps(*items: tuple[list, bool, bool]) -> str:
        return observed(*sequence(url, list(items)))

    reused_id = lambda: reused_sequence_id(url, [ident(), audio(second[:3200])])  # noqa: E731
    sample = np.array([0.1], np.float32)
    return [
        Case("session", "24 kHz sample_rate", lambda: one([ident(), audio(second), rate(24000)]), "16000 Hz"),
        Case("session", "float64 audio", lambda: one([ident(), audio(second.astype(np.float64))]), "audio"),
        Case(
            "session",
            "int32 sent as audio_int16",
            lambda: one([ident(), audio(np.zeros(3200, np.int32), "audio_int16")]),
            "audio_int16",
        ),
        Case(
            "session", "stereo as (1, N, 2)", lambda: one([ident(), audio(np.zeros((1, 3200, 2), np.float32))]), "audio"
        ),
        Case(
            "session",
            "stereo as two rows (2, N)",
            lambda: one([ident(), audio(np.zeros((2, 3200), np.float32))]),
            "batch",
        ),
        Case(
            "session",
            "empty audio, START+END (no frames)",
            lambda: one([ident(), audio(np.zeros(0, np.float32))]),
            "ok: 0 frames",
        ),
        Case("session", "1 s of zeros", lambda: one([ident(), audio(second)]), "ok: 25 frames"),
        Case("session", "NaN samples", lambda: one([ident(), audio(np.full(3200, np.nan, np.float32))]), "NaN"),
        Case("session", "Inf samples", lambda: one([ident(), audio(np.full(3200, np.inf, np.float32))]), "infinite"),
        Case(
            "session",
            "int16 values sent as float",
            lambda: one([ident(), audio(np.full(3200, 12000.0, np.float32))]),
            "audio_int16",
        ),
        Case(
            "session",
            "61 s in one request",
            lambda: one([ident(), audio(np.zeros(61 * 16000, np.float32))]),
            "at most 960000 samples",
        ),
        Case(
            "session",
            "1-sample chunks (60 of them)",
            lambda: steps(
                ([ident(), audio(sample)], True, False), *[([audio(sample)], False, i == 58) for i in range(59)]
            ),
            "ok: 1 frames",
        ),
    ] + session_start_cases(one, steps, ident, reused_id, second, url, avatar)


def session_start_cases(one, steps, ident, reused_id, second: np.ndarray, url: str, avatar: str) -> list[Case]:
    """Cases about the START request, its avatar and its options."""
    return [
        Case("session", "sequence without START", lambda: one([audio(second)], start=False, end=True), "START"),
        Case(
            "session",
            "data after END",
            lambda: steps(([ident(), audio(second[:3200])], True, True), ([audio(second[:3200])], False, True)),
            "START flag",
        ),
        Case("session", "correlation id reused while live", reused_id, "already has a live session"),
        Case("session", "unknown avatar id", lambda: one([ident("f" * 32), audio(second)]), "unknown avatar id"),
        Case("session", "malformed avatar id", lambda: one([ident("../x"), audio(second)]), "malformed avatar id"),
        Case("session", "START without avatar id", lambda: one([audio(second)]), "must carry 'avatar_id'"),
        Case(
            "session",
            "avatar id after START",
            lambda: steps(
                ([ident(), audio(second[:3200])], True, False), ([ident(), audio(second[:3200])], False, True)
            ),
            "only read on the START",
        ),
        Case("session", "unknown option", lambda: one([ident(), opts({"speed": 2})]), "unknown session option"),
        Case("session", "option out of range", lambda: one([ident(), opts({"overlap": 10})]), "below 40"),
        Case("session", "option of the wrong type", lambda: one([ident(), opts({"seed": "one"})]), "must be int"),
        Case("session", "options not JSON", lambda: one([ident(), opts("{overlap")]), "not valid JSON"),
        Case("session", "options not an object", lambda: one([ident(), opts([1, 2])]), "must be a JSON object"),
        Case(
            "session",
            "both audio and audio_int16",
            lambda: one([ident(), audio(second), audio(np.zeros(10, np.int16), "audio_int16")]),
            "not both",
        ),
        Case(
            "session",
            "controls not JSON",
            lambda: one([ident(), audio(second), text("controls", "[{frame")]),
            "controls are not valid JSON",
        ),
        Case(
            "session",
            "control with an unknown field",
            lambda: one([ident(), audio(second), text("controls", '[{"frame": 3, "tilt": 1}]')]),
            "unknown field",
        ),
        Case(
            "session",
            "control out of range",
            lambda: one([ident(), audio(second), text("controls", '[{"frame": 3, "delta_yaw": 500}]')]),
            "-90..90",
        ),
        Case(
            "session", "unknown input name", lambda: one([ident(), tensor("speech", second.reshape(1, -1))]), "speech"
        ),
    ]


def stage_cases(url: str) -> list[Case]:
    client = grpcclient.InferenceServerClient(url)

    def call(model: str, arrays: dict[str, np.ndarray]) -> str:
        try:
            client.infer(model, infer_inputs(arrays))
            return "ok: answered"
        except InferenceServerException as exc:
            return failure(exc)

    cases = []
    for name, spec in SPECS.items():
        good = to_wire(spec, seeded_inputs(spec, batch=1, seed=0))
        first = spec.inputs[0].name
        shape = good[first].shape
        # a fixed last dimension made 3 longer; a dynamic one (HuBERT's samples) gets an extra axis
        bad_shape = (*shape, 1) if spec.inputs[0].shape[-1] == -1 else (*shape[:-1], shape[-1] + 3)
        wrong_shape = dict(good, **{first: np.zeros(bad_shape, good[first].dtype)})
        wrong_dtype = dict(
            good, **{first: good[first].astype(np.float64 if good[first].dtype != np.float64 else np.float32)}
        )
        cases.append(Case("stage", f"{name}: wrong shape", lambda n=name, a=wrong_shape: call(n, a), first))
        cases.append(Case("stage", f"{name}: wrong dtype", lambda n=name, a=wrong_dtype: call(n, a), first))
        if len(good) > 1:
            missing = {k: v for k, v in good.items() if k != first}
            cases.append(Case("stage", f"{name}: missing input", lambda n=name, a=missing: call(n, a), first))
    cases.append(
        Case(
            "stage",
            "hubert: 8 samples (too short)",
            lambda: call("hubert", {"input_values": np.zeros((1, 8), np.float32)}),
            "hubert",
        )
    )
    lmdm = to_wire(SPECS["lmdm"], seeded_inputs(SPECS["lmdm"], batch=1, seed=0))
    lmdm_nan = dict(lmdm, x=np.full_like(lmdm["x"], np.nan))
    cases.append(Case("stage", "lmdm: NaN input (computed, NaN out)", lambda: call("lmdm", lmdm_nan), "ok: answered"))
    chain = to_wire(SPECS["warp_network"], seeded_inputs(SPECS["warp_network"], 1, 0))
    cases.append(
        Case(
            "stage",
            "render_chain: missing kp_driving",
            lambda: call("render_chain", {k: v for k, v in chain.items() if k != "kp_driving"}),
            "kp_driving",
        )
    )
    cases.append(
        Case(
            "stage",
            "extractors: wrong image size",
            lambda: call("extractors", {"image": np.zeros((1, 3, 32, 32), np.float32)}),
            "image",
        )
    )
    return cases


def healthy_stream(client: DittoClient, avatar: str, speech: np.ndarray, realtime: bool) -> list[np.ndarray]:
    return [f.rgb for f in client.stream(avatar, speech, realtime=realtime)]


def test_bad_input_matrix(server, portrait, speech16k):
    speech = speech16k[: int(HEALTHY_SECONDS * 16000)]
    with DittoClient(server.grpc_url) as client:
        avatar = client.register_avatar(portrait, CROP)
        alone = healthy_stream(client, avatar, speech, realtime=False)
        cases = (
            registration_cases(client, server.grpc_url, portrait)
            + session_cases(server.grpc_url, avatar)
            + stage_cases(server.grpc_url)
        )
        assert len(cases) >= 40
        concurrent: dict[str, object] = {}

        def run_healthy() -> None:
            try:
                concurrent["frames"] = healthy_stream(client, avatar, speech, realtime=True)
            except Exception as exc:  # noqa: BLE001 - reported below
                concurrent["error"] = exc

        healthy = threading.Thread(target=run_healthy)
        healthy.start()
        rows = []
        for case in cases:
            got = case.run()
            rows.append((case, got, case.expect in got and (got.startswith("ok:") == case.expect.startswith("ok:"))))
            assert server.is_ready(), f"server not ready after {case.area}: {case.name}"
        still_running = healthy.is_alive()
        healthy.join(timeout=120)

    table = "\n".join(f"{'PASS' if ok else 'FAIL'} [{c.area}] {c.name}: {got[:160]}" for c, got, ok in rows)
    print(f"\n{len(rows)} cases\n{table}")
    assert all(ok for _, _, ok in rows), f"cases without the expected answer:\n{table}"
    assert_invalid_argument_everywhere(rows)
    assert still_running, "the healthy session ended before the matrix did; lengthen it"
    assert "error" not in concurrent, f"the healthy session failed: {concurrent.get('error')}"
    frames = concurrent["frames"]
    assert len(frames) == len(alone) == -(-speech.size // 640)
    assert_same_pictures(frames, alone)  # up to cross-session batching's rounding (frame_compare)


def assert_invalid_argument_everywhere(rows: list[tuple[Case, str, bool]]) -> None:
    """Every refused unary request came back as gRPC INVALID_ARGUMENT, from every model the matrix
    calls (stages, ensembles, avatar_registry). Errors on the orchestrator's stream carry only a
    message (Triton's gRPC stream response has no status field), so they are checked by text."""
    codes = [(case, re.match(r"error\[([^\]]*)\]", got)) for case, got, _ in rows]
    wrong = [
        f"[{c.area}] {c.name}: {m.group(1)}" for c, m in codes if m and m.group(1) != "StatusCode.INVALID_ARGUMENT"
    ]
    assert not wrong, "refused with another status than INVALID_ARGUMENT:\n" + "\n".join(wrong)
    refusing = {c.name.split(":")[0] for c, m in codes if m and c.area == "stage"}
    assert refusing >= {*SPECS, "render_chain", "extractors"}, f"no refused request for {set(SPECS) - refusing}"
    assert any(m for c, m in codes if c.area == "register"), "no refused registration"


def test_a_bad_request_answers_invalid_argument(server):
    """Caller errors carry gRPC's INVALID_ARGUMENT (backends/responses.py), not INTERNAL."""
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        with pytest.raises(InferenceServerException, match="image data is empty") as err:
            client.infer("avatar_registry", [text("image", b"", batched=False)])
    assert str(err.value.status()) == "StatusCode.INVALID_ARGUMENT"
