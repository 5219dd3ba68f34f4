"""The decoupled orchestrator: one Ditto streaming session per sequence (correlation id).

Thin adapter: it reads requests, keeps a `SessionTable`, and drives the Triton-free
`PipelinedSession` with stages called by BLS. Per request:
- START: `avatar_id` (required) and `options` (JSON, optional) open the session. `avatar_image` or
  `avatar_video` (+ `avatar_options`, the registration options) may come with it: behind a proxy
  the avatar may have been registered on another replica, so the orchestrator registers it here
  (content-addressed: it must give `avatar_id`, else the START is refused). On a draining replica
  (`DITTO_DRAIN_FILE` exists) the START is refused with "resource exhausted" (retry elsewhere).
- every request: optional audio (`audio` float32 or `audio_int16`, 16 kHz mono, any length).
- END: flushes the tail; the session is freed once its last frame is sent.
Frames caused by a request are sent on that request's response sender (`frame` flat bytes, raw RGB,
JPEG or PNG as the session chose, `frame_shape` H×W×3, `frame_index`, `pts_s`), then the request is
closed with the final flag. Errors close only the offending request (and end its session).
Prometheus metrics (`backends/metrics.py`): active sessions, frames sent, late frames, first-frame
delay, sessions by outcome.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from ditto_triton.avatar.cache import check_avatar_id
from ditto_triton.model_repository.backends.bls_stages import BlsStages, StageCallError, bls_infer
from ditto_triton.model_repository.backends.metrics import PrometheusSink
from ditto_triton.model_repository.backends.requests import (
    RequestError,
    flag,
    model_settings,
    optional,
    optional_bytes,
    optional_text,
)
from ditto_triton.model_repository.backends.responses import error_response
from ditto_triton.model_repository.drain import DRAIN_FILE_ENV, is_draining
from ditto_triton.profiles import get_profile
from ditto_triton.protocol import AVATAR_REGISTRY, BUSY, DRAINING, ORCHESTRATOR, SAMPLE_RATE, START_ONLY_INPUTS
from ditto_triton.streaming.audio_input import to_float32
from ditto_triton.streaming.avatar_features import AvatarFeatures
from ditto_triton.streaming.controls import parse_controls
from ditto_triton.streaming.frame_encoding import FrameEncoder, frame_encoder
from ditto_triton.streaming.options import SessionOptions
from ditto_triton.streaming.session import Frame, PipelinedSession, StreamingSession, silence_features
from ditto_triton.streaming.session_metrics import SessionMetrics
from ditto_triton.streaming.sessions import SessionLimitError, SessionStateError, SessionTable

# START input -> avatar_registry input
AVATAR_SOURCES = {"avatar_image": "image", "avatar_video": "video", "avatar_file": "avatar_file"}
AVATAR_FIELDS = (
    "f_s",
    "motion_info",
    "eye_open",
    "eye_ball",
    "source_rgb",
    "crop_to_source",
    "shape_condition",
    "landmarks",
    "registration",
)
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
CANCEL_CHECK_FRAMES = 5


class ClientGoneError(RuntimeError):
    """The request's client cancelled it or disconnected: its session stops and is freed."""


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config, params = model_settings(args)
        self.profile = get_profile(params["profile"])
        self.stages = BlsStages(self.profile)
        self.sessions = SessionTable(
            idle_timeout_s=float(params["idle_timeout_s"]), max_sessions=int(params["max_sessions"])
        )
        self._drain_file = os.environ.get(DRAIN_FILE_ENV)  # set by the replica's supervisor
        self._max_request_samples = round(float(params["max_request_audio_s"]) * SAMPLE_RATE)
        self._sink = PrometheusSink(args["model_name"], args["model_version"])
        self.metrics = SessionMetrics(self._sink)
        self._silence: np.ndarray | None = None
        self._silence_lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_idle, daemon=True, name="ditto-reaper")
        self._reaper.start()

    def execute(self, requests: list) -> None:
        arrived_s = time.monotonic()
        for request in requests:
            sender = request.get_response_sender()
            corrid = int(request.correlation_id())
            try:
                self._handle(request, corrid, sender, arrived_s)
            except Exception as exc:  # noqa: BLE001 - never let one request take the model down
                self._fail(sender, exc)
        return None

    def _handle(self, request: Any, corrid: int, sender: Any, arrived_s: float) -> None:
        start, end = flag(request, "START"), flag(request, "END")
        rate = optional(request, "sample_rate")
        audio = to_float32(
            optional(request, "audio"),
            optional(request, "audio_int16"),
            None if rate is None else int(rate.reshape(-1)[0]),
            self._max_request_samples,
        )
        if start:
            try:
                live = self._open(request, corrid)
            except Exception:
                self.metrics.session_rejected()
                raise
            self.metrics.session_opened(corrid, arrived_s)
        else:
            if any(optional(request, name) is not None for name in START_ONLY_INPUTS):
                raise RequestError("avatar_id, options and the avatar image/video are only read on the START request")
            live = self.sessions.get(corrid)
        controls = parse_controls(optional_text(request, "controls"))
        motion = optional(request, "motion")
        if motion is not None:
            if audio is not None and audio.size:
                raise RequestError("send 'audio' or 'motion' in a request, not both")
            audio = motion.reshape(-1, motion.shape[-1])  # the session feeds 2-D rows as motion
        if end:
            live.ending = True
            live.runner.submit_end(tag=(sender, corrid, True), samples=audio, controls=controls)
        else:
            live.runner.submit_audio(audio, tag=(sender, corrid, False), controls=controls)

    def _open(self, request: Any, corrid: int):
        avatar_id = optional_text(request, "avatar_id")
        if not avatar_id:
            raise RequestError(
                "the START request must carry 'avatar_id' (register the image with avatar_registry first)"
            )
        if is_draining(self._drain_file):
            raise SessionLimitError(f"{BUSY}: {DRAINING}; retry on another replica")
        options = SessionOptions.from_json(optional_text(request, "options"))
        self._register_carried_avatar(request, avatar_id)
        avatar = self._avatar(avatar_id)
        reference = None if options.ch_avatar is None else self._avatar(check_avatar_id(options.ch_avatar))
        session = StreamingSession(
            avatar, self.stages, options, self.profile.render_size, self._silence_features(), reference
        )
        encode = frame_encoder(options)
        runner = PipelinedSession(
            session,
            lambda frame, tag: self._send_frame(frame, tag, encode),
            self._close_request,
            self._fail_request,
        )
        try:
            return self.sessions.open(corrid, runner)
        except SessionStateError:
            runner.stop()
            raise

    def _register_carried_avatar(self, request: Any, avatar_id: str) -> None:
        """Register the image/video sent with START here (a no-op when this replica has it cached)."""
        carried = {name: data for name in AVATAR_SOURCES if (data := optional_bytes(request, name)) is not None}
        if not carried:
            return
        if len(carried) > 1:
            raise RequestError("send one of 'avatar_image', 'avatar_video' or 'avatar_file' with START, not several")
        ((name, data),) = carried.items()
        inputs = {AVATAR_SOURCES[name]: np.array([data], dtype=object)}
        registration = optional_text(request, "avatar_options")
        if registration:
            try:
                json.loads(registration)
            except json.JSONDecodeError as exc:
                raise RequestError(f"avatar_options is not valid JSON: {exc}") from None
            inputs["options"] = np.array([registration.encode()], dtype=object)
        try:
            registered = bls_infer(AVATAR_REGISTRY, inputs, ["avatar_id"])["avatar_id"].reshape(-1)[0].decode()
        except StageCallError as exc:
            raise RequestError(
                f"the {AVATAR_SOURCES[name]} sent with START: {str(exc).removeprefix('avatar_registry: ')}"
            ) from None
        if registered != avatar_id:
            raise RequestError(
                f"the {AVATAR_SOURCES[name]} sent with START registers as avatar {registered}, not {avatar_id}: "
                "send the same bytes and avatar_options that made avatar_id"
            )

    def _avatar(self, avatar_id: str) -> AvatarFeatures:
        try:
            out = bls_infer(
                AVATAR_REGISTRY, {"avatar_id": np.array([avatar_id.encode()], dtype=object)}, list(AVATAR_FIELDS)
            )
        except StageCallError as exc:
            raise RequestError(str(exc).removeprefix("avatar_registry: ")) from None
        return AvatarFeatures(**{name: out[name] for name in AVATAR_FIELDS})

    def _silence_features(self) -> np.ndarray:
        with self._silence_lock:
            if self._silence is None:
                self._silence = silence_features(self.stages, 79)
            return self._silence

    # -- callbacks from the session threads ---------------------------------------------------
    def _send_frame(self, frame: Frame, tag: tuple, encode: FrameEncoder) -> None:
        sender, corrid, _ = tag
        # is_cancelled() is a round trip to the server process: ask every CANCEL_CHECK_FRAMES frames.
        if frame.index % CANCEL_CHECK_FRAMES == 0 and sender.is_cancelled():
            raise ClientGoneError(f"session {corrid}: the client cancelled the request or went away")
        data = encode(frame.rgb)
        sent_s = time.monotonic()
        sender.send(
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor("frame", data[None]),
                    pb_utils.Tensor("frame_shape", np.array([frame.rgb.shape], np.int32)),
                    pb_utils.Tensor("frame_index", np.array([[frame.index]], np.int64)),
                    pb_utils.Tensor("pts_s", np.array([[frame.pts_s]], np.float64)),
                    *self._motion_tensors(frame),
                ]
            )
        )
        self.metrics.frame_sent(corrid, frame.pts_s, sent_s)

    @staticmethod
    def _motion_tensors(frame: Frame) -> list:
        m = frame.motion
        if m is None:
            return []
        return [
            pb_utils.Tensor("motion", np.asarray(m.row, np.float32)[None]),
            pb_utils.Tensor("kp_source", np.asarray(m.x_s, np.float32)[None]),
            pb_utils.Tensor("kp_driving", np.asarray(m.x_d, np.float32)[None]),
            pb_utils.Tensor("motion_d0", np.asarray(m.d0, np.float32)[None]),
            pb_utils.Tensor("frame_controls", np.array([[json.dumps(m.controls).encode()]], dtype=object)),
        ]

    def _close_request(self, tag: tuple) -> None:
        sender, corrid, is_end = tag
        sender.send(flags=FINAL)
        if is_end:
            self._free(corrid, "completed")

    def _fail_request(self, tag: tuple, exc: BaseException) -> None:
        sender, corrid, _ = tag
        try:
            if not isinstance(exc, ClientGoneError):
                self._fail(sender, f"session {corrid} failed: {exc}")
        finally:
            self._free(corrid, "client_gone" if isinstance(exc, ClientGoneError) else "failed")

    def _free(self, corrid: int, outcome: str) -> None:
        live = self.sessions.remove(corrid)
        if live is not None:
            live.runner.stop()
            self.metrics.session_closed(corrid, outcome)

    @staticmethod
    def _fail(sender: Any, error: BaseException | str) -> None:
        try:
            sender.send(error_response(error, ORCHESTRATOR), flags=FINAL)
        except Exception as exc:  # noqa: BLE001 - e.g. the client is gone; the session is freed regardless
            pb_utils.Logger.log_warn(f"[ditto] orchestrator: could not send an error ({error}): {exc}")

    def _reap_idle(self) -> None:
        while not self._stop.wait(1.0):
            self.metrics.flush()  # counts of sessions whose frames have paused
            for corrid in self.sessions.idle():
                pb_utils.Logger.log_info(f"[ditto] orchestrator: session {corrid} idle, freed")
                self._free(corrid, "idle_timeout")

    def finalize(self) -> None:
        self._stop.set()
        for corrid in self.sessions.ids():
            self._free(corrid, "shutdown")
        self._sink.close()
