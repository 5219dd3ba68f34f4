"""The streaming client: one gRPC bidirectional stream per session (a Triton sequence)."""

from __future__ import annotations

import dataclasses
import json
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from ditto_triton.client.audio import load_audio
from ditto_triton.client.errors import (
    ConnectionLostError,
    ServerBusyError,
    ServerError,
    ServerUnavailableError,
    UnknownAvatarError,
)
from ditto_triton.client.frame_decoding import decode_frame
from ditto_triton.protocol import (
    AVATAR_REGISTRY,
    BUSY,
    CHUNK_SAMPLES,
    MOTION_DIM,
    ORCHESTRATOR,
    ORCHESTRATOR_INPUTS,
    SAMPLE_RATE,
    UNKNOWN_AVATAR,
    tensor,
)

MOTION_OUTPUTS = {"row": "motion", "x_s": "kp_source", "x_d": "kp_driving", "d0": "motion_d0"}  # record key -> output
REMEMBERED_AVATARS = 16  # avatar sources a client keeps to send with START
_AUDIO_INPUTS = {
    np.dtype(np.float32): tensor(ORCHESTRATOR_INPUTS, "audio"),
    np.dtype(np.int16): tensor(ORCHESTRATOR_INPUTS, "audio_int16"),
}


@dataclass(frozen=True)
class AvatarSource:
    """What registered an avatar: sent with a session's START, any replica can open the session."""

    kind: str  # "image", "video" or "file" (sent with START as avatar_image, avatar_video, avatar_file)
    data: bytes
    options: dict | None = None

    @property
    def registry_input(self) -> str:
        return "avatar_file" if self.kind == "file" else self.kind


class _Replayable:
    """Chunks of an audio source, kept until `seal()` so that a refused session can be restarted
    elsewhere from the first chunk (a live source is read once: the next session replays them)."""

    def __init__(self, chunks: Iterator[np.ndarray]) -> None:
        self._source = chunks
        self._kept: list[np.ndarray] = []
        self._base = 0  # index of _kept[0]
        self._done = False
        self._lock = threading.Lock()

    def get(self, index: int) -> np.ndarray | None:
        """Chunk `index` (None past the end)."""
        with self._lock:
            while not self._done and self._base + len(self._kept) <= index:
                try:
                    self._kept.append(next(self._source))
                except StopIteration:
                    self._done = True
            if index < self._base:
                raise RuntimeError(f"audio chunk {index} was already released")
            local = index - self._base
            return self._kept[local] if local < len(self._kept) else None

    def seal(self) -> None:
        """The session was accepted: stop keeping chunks (a long stream would hold all its audio)."""
        with self._lock:
            self._base += len(self._kept)
            self._kept.clear()


AudioSource = str | Path | np.ndarray | Iterable[np.ndarray]


def _chunks(audio: AudioSource, chunk_samples: int) -> Iterator[np.ndarray]:
    if isinstance(audio, (str, Path)):
        audio = load_audio(audio)
    if isinstance(audio, np.ndarray):
        audio = audio.reshape(-1)
        for i in range(0, audio.size, chunk_samples):
            yield audio[i : i + chunk_samples]
        return
    for chunk in audio:
        yield np.asarray(chunk).reshape(-1)


@dataclass(frozen=True)
class ReceivedFrame:
    index: int
    pts_s: float  # presentation time from the start of the audio
    rgb: np.ndarray  # (H, W, 3) uint8 (empty when the session keeps JPEG/PNG frames encoded)
    received_s: float  # time.perf_counter() when it arrived
    encoded: bytes = b""  # the JPEG or PNG as sent, with output_format "jpeg"/"png" and decode=False
    motion: dict | None = None  # with return_motion: row, x_s, x_d, d0 (arrays) and controls (dict)


def _motion_of(result) -> dict | None:
    """The frame's motion record when the session returns motion (option return_motion)."""
    if result.as_numpy("motion") is None:
        return None
    record = {name: result.as_numpy(out)[0] for name, out in MOTION_OUTPUTS.items()}
    record["controls"] = json.loads(result.as_numpy("frame_controls").reshape(-1)[0].decode())
    return record


def _bytes_input(name: str, value: bytes, batched: bool) -> grpcclient.InferInput:
    shape = [1, 1] if batched else [1]
    item = grpcclient.InferInput(name, shape, "BYTES")
    item.set_data_from_numpy(np.array([value], dtype=object).reshape(shape))
    return item


def _server_message(exc: InferenceServerException) -> str:
    return (exc.message() if callable(getattr(exc, "message", None)) else str(exc)).strip()


class StreamSession:
    """Send audio chunks, then `end()`; iterate `frames()` to receive every frame in order.

    Audio is 16 kHz mono, float32 in [-1, 1] or int16 PCM, in chunks of any length. The first
    request opens the session (START, avatar id, options); `end()` flushes the tail.
    """

    def __init__(
        self,
        url: str,
        avatar_id: str,
        options: dict | None = None,
        timeout_s: float = 60.0,
        sequence_id: int | None = None,
        headers: dict[str, str] | None = None,
        decode: bool = True,
        avatar_source: AvatarSource | None = None,
    ):
        self.url = url
        self.avatar_source = avatar_source
        self.decode = decode
        self.avatar_id = avatar_id
        self.options = dict(options or {})
        self.output_format = self.options.get("output_format", "rgb")
        self.timeout_s = timeout_s
        self.sequence_id = sequence_id or random.SystemRandom().randrange(1, 2**63)
        self._client = grpcclient.InferenceServerClient(url)
        self._events: queue.Queue = queue.Queue()
        self._sent = 0
        self._finished = 0
        self._ended = False
        self._failed = False
        self._lock = threading.Lock()
        self._finals = 0  # final responses seen by the callback (frames() counts its own)
        self._all_final = threading.Event()
        self.first_send_s: float | None = None
        try:
            self._client.start_stream(callback=self._on_response, headers=headers)
        except InferenceServerException as exc:
            raise ServerUnavailableError(f"cannot open a stream to {url}: {_server_message(exc)}") from None

    # -- sending -------------------------------------------------------------------------------
    def send(self, audio: np.ndarray, controls: list[dict] | None = None) -> None:
        """Send an audio chunk; `controls` steer frames by index (see the README's per-frame controls)."""
        self._send(audio, end=False, controls=controls)

    def end(self, audio: np.ndarray | None = None, controls: list[dict] | None = None) -> None:
        self._send(audio, end=True, controls=controls)

    def send_motion(self, rows: np.ndarray, controls: list[dict] | None = None, end: bool = False) -> None:
        """A motion session's (n, 265) rows (options with motion_d0), instead of audio."""
        rows = np.ascontiguousarray(np.asarray(rows, np.float32).reshape(1, -1, MOTION_DIM))
        self._send(None, end=end, controls=controls, motion=rows)

    def _send(
        self, audio: np.ndarray | None, end: bool, controls: list[dict] | None = None, motion: np.ndarray | None = None
    ) -> None:
        with self._lock:
            if self._ended:
                raise ValueError("this session has already ended")
            start = self._sent == 0
            inputs = []
            if motion is not None and motion.size:
                motion_input = grpcclient.InferInput("motion", list(motion.shape), "FP32")
                motion_input.set_data_from_numpy(motion)
                inputs.append(motion_input)
            if audio is not None and np.asarray(audio).size:
                audio = np.asarray(audio)
                if audio.dtype not in _AUDIO_INPUTS:
                    raise ValueError(f"audio must be float32 or int16 16 kHz mono, got {audio.dtype}")
                spec = _AUDIO_INPUTS[audio.dtype]
                audio_input = grpcclient.InferInput(spec.name, [1, audio.size], spec.datatype)
                audio_input.set_data_from_numpy(np.ascontiguousarray(audio.reshape(1, -1)))
                inputs.append(audio_input)
            if controls:
                inputs.append(_bytes_input("controls", json.dumps(controls).encode(), batched=True))
            if start:
                inputs.append(_bytes_input("avatar_id", self.avatar_id.encode(), batched=True))
                if self.options:
                    inputs.append(_bytes_input("options", json.dumps(self.options).encode(), batched=True))
                if self.avatar_source is not None:
                    source = self.avatar_source
                    inputs.append(_bytes_input(f"avatar_{source.kind}", source.data, batched=True))
                    if source.options:
                        inputs.append(_bytes_input("avatar_options", json.dumps(source.options).encode(), batched=True))
                self.first_send_s = time.perf_counter()
            self._client.async_stream_infer(
                ORCHESTRATOR,
                inputs,
                request_id=str(self._sent),
                sequence_id=self.sequence_id,
                sequence_start=start,
                sequence_end=end,
                enable_empty_final_response=True,
            )
            self._sent += 1
            self._ended = end
            if end and self._finals >= self._sent:
                self._all_final.set()

    # -- receiving -----------------------------------------------------------------------------
    def _on_response(self, result, error) -> None:
        now = time.perf_counter()
        if error is not None:
            # A transport failure carries a gRPC status; an error the server sent in a response does not.
            # (tritonserver refuses a stream without its access token with UNAVAILABLE too: that is an answer.)
            message = _server_message(error)
            kind = "error" if error.status() is None or "protocol is restricted" in message else "lost"
            self._events.put((kind, message.splitlines()[0] if kind == "lost" else message))
            return
        response = result.get_response()
        if result.as_numpy("frame") is not None:
            data = result.as_numpy("frame").reshape(-1)
            shape = tuple(int(v) for v in result.as_numpy("frame_shape").reshape(-1))
            index = int(result.as_numpy("frame_index").reshape(-1)[0])
            pts = float(result.as_numpy("pts_s").reshape(-1)[0])
            frame = ReceivedFrame(index, pts, np.empty((0, 0, 3), np.uint8), now, motion=_motion_of(result))
            self._events.put(("frame", (frame, data, shape)))  # decoded by frames(), off gRPC's thread
        final = response.parameters.get("triton_final_response")
        if final is not None and final.bool_param:
            self._events.put(("final", None))
            with self._lock:
                self._finals += 1
                if self._ended and self._finals >= self._sent:
                    self._all_final.set()

    def frames(self) -> Iterator[ReceivedFrame]:
        """Frames as they arrive, until `end()` was sent and every request is answered.

        Raises ServerError with the server's message on an error response, and TimeoutError when
        nothing arrives for `timeout_s`.
        """
        while True:
            with self._lock:
                if self._ended and self._finished >= self._sent:
                    return
            try:
                kind, value = self._events.get(timeout=self.timeout_s)
            except queue.Empty:
                raise TimeoutError(f"no response from the server for {self.timeout_s:.0f} s") from None
            if kind == "frame":
                yield self._with_pixels(*value)
            elif kind == "cancelled":
                return
            elif kind == "final":
                self._finished += 1
            elif kind == "lost":
                self._failed = True
                raise ConnectionLostError(
                    f"lost the connection to the Triton server at {self.url} mid-session: {value}"
                )
            else:
                self._finished += 1
                self._failed = True
                if value.startswith(BUSY):
                    raise ServerBusyError(value)
                raise (UnknownAvatarError if UNKNOWN_AVATAR in value else ServerError)(value)

    def _with_pixels(self, frame: ReceivedFrame, data: np.ndarray, shape: tuple[int, ...]) -> ReceivedFrame:
        """The frame with its pixels decoded, or (decode False) its JPEG/PNG bytes as sent."""
        if self.output_format != "rgb" and not self.decode:
            return dataclasses.replace(frame, encoded=data.tobytes())
        try:
            return dataclasses.replace(frame, rgb=decode_frame(data, self.output_format, shape))
        except ValueError as exc:
            self._failed = True
            raise ServerError(f"frame {frame.index}: {exc}") from None

    def cancel(self, grace_s: float = 2.0) -> None:
        """Give up on the session (e.g. its viewer went away): END if not sent yet; if the server has
        not answered everything within `grace_s`, cancel the stream's requests, so that it frees the
        session at its next frame instead of rendering the rest. `frames()` returns.

        The grace lets END reach the server first: cancelling a stream drops requests not yet sent,
        and a session whose END never arrives would wait for the idle timeout."""
        if not self._ended:
            try:
                self.end()
            except Exception:  # noqa: BLE001 - best effort: the stream may be gone already
                pass
        self._all_final.wait(grace_s)
        self._events.put(("cancelled", None))
        try:
            self._client.stop_stream(cancel_requests=True)
        finally:
            self._client.close()

    def close(self) -> None:
        """Close the stream. A session that failed before END gets a bare END first, so that Triton's
        sequence batcher frees its slot now rather than at the idle timeout."""
        if self._failed and not self._ended:
            try:
                self.end()
            except Exception:  # noqa: BLE001 - best effort: the stream may be gone already
                pass
        self._client.stop_stream()
        self._client.close()

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DittoClient:
    """Connection to a Ditto Triton server (gRPC, e.g. "127.0.0.1:8001").

    `headers` go with every call: e.g. {"triton-grpc-protocol-ditto-key": "<token>"} for a server
    started with `--grpc-restricted-protocol=inference:ditto-key=<token>` (README, Security)."""

    def __init__(
        self,
        url: str = "127.0.0.1:8001",
        timeout_s: float = 60.0,
        headers: dict[str, str] | None = None,
        carry_avatar: bool = True,
        busy_retries: int = 3,
        retry_delay_s: float = 0.5,
    ) -> None:
        """Behind a proxy (several replicas) two things keep sessions working:

        - `carry_avatar`: a session whose avatar this client registered sends the image (or video)
          with START, so a replica that has not seen the avatar registers it first (the id is
          content-addressed, the same on every replica). Off, such a session fails with
          UnknownAvatarError.
        - `busy_retries`: a session refused with "resource exhausted" (replica full or draining)
          before its first frame is opened again, up to this many times, `retry_delay_s` x attempt
          apart; the proxy routes each new stream afresh, and the audio sent so far is sent again.
        """
        if busy_retries < 0 or retry_delay_s < 0:
            raise ValueError("busy_retries and retry_delay_s must be >= 0")
        self.url = url
        self.timeout_s = timeout_s
        self.headers = dict(headers or {}) or None
        self.carry_avatar = carry_avatar
        self.busy_retries = busy_retries
        self.retry_delay_s = retry_delay_s
        self._avatar_sources: OrderedDict[str, AvatarSource] = OrderedDict()
        self._registrations: dict[str, str] = {}
        if "://" in url:
            raise ServerUnavailableError(
                f"invalid server URL {url!r}: give the gRPC endpoint as host:port, without a scheme"
            )
        try:
            self._client = grpcclient.InferenceServerClient(url)
            ready = self._client.is_server_ready(headers=self.headers, client_timeout=timeout_s)
        except InferenceServerException as exc:
            raise ServerUnavailableError(f"cannot reach a Triton server at {url}: {_server_message(exc)}") from None
        except ValueError as exc:  # malformed URL
            raise ServerUnavailableError(f"invalid server URL {url!r}: {exc}") from None
        if not ready:
            raise ServerUnavailableError(f"the Triton server at {url} is not ready")
        for model in (AVATAR_REGISTRY, ORCHESTRATOR):
            try:
                model_ready = self._client.is_model_ready(model, headers=self.headers)
            except InferenceServerException as exc:
                raise ServerUnavailableError(f"{url}: {_server_message(exc)}") from None
            if not model_ready:
                raise ServerUnavailableError(f"the server at {url} does not serve a ready '{model}' model")

    def register_avatar(self, image: bytes, options: dict | None = None) -> str:
        """Register an encoded portrait (JPEG/PNG/...); returns its avatar id."""
        return self._register("image", image, options)

    def register_video(self, video: bytes, options: dict | None = None) -> str:
        """Register an encoded video (MP4/MOV/WebM/MKV/AVI); returns its avatar id. Frames then use
        the video's frames, forwards and backwards as long as the audio lasts, with its own head
        motion and generated lips (registration option `max_frames`, default 0: every frame)."""
        return self._register("video", video, options)

    def register_avatar_file(self, data: bytes) -> str:
        """Register an avatar file written by `ditto-register` (its bytes); returns its avatar id."""
        return self._register("file", data, None)

    def registration(self, avatar_id: str) -> str | None:
        """How the server found the face of an avatar this client registered: "ditto" (Ditto's face
        models) or "mediapipe" (the path for synthetic weights)."""
        return self._registrations.get(avatar_id)

    def _register(self, kind: str, data: bytes, options: dict | None) -> str:
        source = AvatarSource(kind, data, dict(options) if options else None)
        inputs = [_bytes_input(source.registry_input, data, batched=False)]
        if options:
            inputs.append(_bytes_input("options", json.dumps(options).encode(), batched=False))
        try:
            result = self._client.infer(
                AVATAR_REGISTRY,
                inputs,
                outputs=[grpcclient.InferRequestedOutput(n) for n in ("avatar_id", "registration")],
                headers=self.headers,
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as exc:
            raise ServerError(_server_message(exc)) from None
        avatar_id = result.as_numpy("avatar_id").reshape(-1)[0].decode()
        self._registrations[avatar_id] = result.as_numpy("registration").reshape(-1)[0].decode()
        self._avatar_sources[avatar_id] = source
        self._avatar_sources.move_to_end(avatar_id)
        while len(self._avatar_sources) > REMEMBERED_AVATARS:
            forgotten, _ = self._avatar_sources.popitem(last=False)
            self._registrations.pop(forgotten, None)
        return avatar_id

    def open_session(self, avatar_id: str, options: dict | None = None, decode: bool = True) -> StreamSession:
        """A session to stream to; with `decode` False and output_format "jpeg" or "png", frames keep
        their encoded bytes (`ReceivedFrame.encoded`) instead of being decoded."""
        source = self._avatar_sources.get(avatar_id) if self.carry_avatar else None
        return StreamSession(
            self.url, avatar_id, options, self.timeout_s, headers=self.headers, decode=decode, avatar_source=source
        )

    def stream(
        self,
        avatar_id: str,
        audio: AudioSource,
        options: dict | None = None,
        chunk_samples: int = CHUNK_SAMPLES,
        realtime: bool = False,
        controls: list[dict] | None = None,
    ) -> Iterator[ReceivedFrame]:
        """Send audio and yield the frames as they arrive.

        `audio` is a file path (any format soundfile reads, resampled to 16 kHz mono), a 16 kHz mono
        array (float32 or int16, sent in `chunk_samples` pieces) or an iterable of such chunks (e.g.
        a microphone). With `realtime` the sender paces itself to the audio's duration. `controls`
        (per-frame controls, README) go with the first chunk.
        """
        chunks = _Replayable(_chunks(audio, chunk_samples))
        started = time.perf_counter()
        for attempt in range(self.busy_retries + 1):
            session = self.open_session(avatar_id, options)
            failure: list[BaseException] = []
            abandoned = threading.Event()
            sender = threading.Thread(
                target=self._feed,
                args=(session, chunks, started, realtime, controls, failure, abandoned),
                daemon=True,
                name="ditto-audio-sender",
            )
            sender.start()
            accepted = refused = False
            try:
                for frame in session.frames():
                    if not accepted:
                        accepted = True
                        chunks.seal()
                    yield frame
            except ServerBusyError:
                if accepted or attempt == self.busy_retries:
                    raise
                refused = True
            finally:
                abandoned.set()
                sender.join(timeout=1)
                session.close()
            if refused:
                time.sleep(self.retry_delay_s * (attempt + 1))
                continue
            if failure:
                raise failure[0]
            return

    @staticmethod
    def _feed(
        session: StreamSession,
        chunks: _Replayable,
        started: float,
        realtime: bool,
        controls: list[dict] | None,
        failure: list[BaseException],
        abandoned: threading.Event,
    ) -> None:
        """Send every chunk (the last one with END), paced to the audio's clock with `realtime`."""
        try:
            sent = 0
            index = 0
            pending = chunks.get(0)
            first_controls = controls
            while pending is not None:
                upcoming = chunks.get(index + 1)
                if abandoned.is_set():
                    return
                if realtime:
                    time.sleep(max(0.0, started + sent / SAMPLE_RATE - time.perf_counter()))
                sent += pending.size
                if upcoming is None:
                    break
                session.send(pending, first_controls)
                first_controls = None
                pending, index = upcoming, index + 1
            session.end(pending, first_controls)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            if abandoned.is_set():
                return
            failure.append(exc)
            session._events.put(("error", f"sending audio failed: {exc}"))

    def stream_motion(
        self,
        avatar_id: str,
        rows: np.ndarray,
        options: dict | None = None,
        controls: list[dict] | None = None,
        chunk_rows: int = 25,
    ) -> Iterator[ReceivedFrame]:
        """Render (n, 265) saved motion rows (a motion file's) without audio or LMDM; `options` must
        carry motion_d0 (`MotionFile.replay_options()`). Yields the frames as they arrive."""
        rows = np.asarray(rows, np.float32)
        with self.open_session(avatar_id, options) as session:
            for start in range(0, rows.shape[0], chunk_rows):
                last = start + chunk_rows >= rows.shape[0]
                session.send_motion(rows[start : start + chunk_rows], controls if start == 0 else None, end=last)
            yield from session.frames()

    def render(
        self,
        avatar_id: str,
        audio: AudioSource,
        on_frame: Callable[[ReceivedFrame], None],
        options: dict | None = None,
        chunk_samples: int = CHUNK_SAMPLES,
        realtime: bool = False,
        controls: list[dict] | None = None,
    ) -> int:
        """Like `stream`, but hands every frame to `on_frame`; returns the number of frames."""
        count = 0
        for frame in self.stream(avatar_id, audio, options, chunk_samples, realtime, controls):
            on_frame(frame)
            count += 1
        return count

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DittoClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
