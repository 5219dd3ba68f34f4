"""The wire contract between the Ditto Triton models and their callers, declared once.

Model names, audio framing, the prefixes that tell a caller what kind of error it got, the Prometheus
metric names and the base class of every error the caller must fix. The server's configs are
generated from these declarations; the client, the benchmarks and the docs read them. Standard
library and numpy only, so the client-only install can import it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Models a client calls.
ORCHESTRATOR = "orchestrator"
AVATAR_REGISTRY = "avatar_registry"

PER_PROFILE = None  # a dims entry the profile fills in (e.g. the appearance feature's C, D, H, W)


@dataclass(frozen=True)
class Tensor:
    """One input or output of a served model as a caller sees it (no batch axis for batched models)."""

    name: str
    datatype: str  # Triton's: FP32, INT16, UINT8, BYTES, ...
    dims: tuple[int | None, ...]  # -1 any size; PER_PROFILE: the rest of the shape comes from the profile
    optional: bool = False
    doc: str = ""


MOTION_DIM = 265  # Ditto's motion row: scale, pitch/yaw/roll bins, t, exp (reference §4.1)


def _text(name: str, doc: str) -> Tensor:
    return Tensor(name, "BYTES", (1,), optional=True, doc=doc)


# The streaming session model: decoupled, one sequence (correlation id) per session, with Triton's
# sequence controls START, END and CORRID.
ORCHESTRATOR_CONTROLS = ("START", "END", "CORRID")
ORCHESTRATOR_INPUTS = (
    Tensor("audio", "FP32", (-1,), optional=True, doc="16 kHz mono float32 samples in [-1, 1], any length"),
    Tensor("audio_int16", "INT16", (-1,), optional=True, doc="or int16 PCM"),
    Tensor("sample_rate", "INT32", (1,), optional=True, doc="the audio's rate when not 16 kHz"),
    _text("avatar_id", "START only: the registered avatar"),
    _text("options", "START only: session options (JSON)"),
    _text("controls", "per-frame controls (JSON list)"),
    Tensor("motion", "FP32", (-1, MOTION_DIM), optional=True, doc="a motion session's rows (option motion_d0)"),
    _text("avatar_image", "START only: the avatar's photo, so that any replica can open the session"),
    _text("avatar_video", "START only: or its video"),
    _text("avatar_options", "START only: the avatar's registration options (JSON)"),
    _text("avatar_file", "START only: or an avatar file written by ditto-register (.npz)"),
)
START_ONLY_INPUTS = ("avatar_id", "options", "avatar_image", "avatar_video", "avatar_options", "avatar_file")
ORCHESTRATOR_OUTPUTS = (
    Tensor("frame", "UINT8", (-1,), doc="one frame: raw RGB (H·W·3), JPEG or PNG bytes (option output_format)"),
    Tensor("frame_shape", "INT32", (3,), doc="H, W, 3"),
    Tensor("frame_index", "INT64", (1,)),
    Tensor("pts_s", "FP64", (1,), doc="presentation time from the start of the audio"),
    Tensor("motion", "FP32", (MOTION_DIM,), doc="with return_motion: the frame's generated motion row"),
    Tensor("kp_source", "FP32", (21, 3), doc="with return_motion: source keypoints"),
    Tensor("kp_driving", "FP32", (21, 3), doc="with return_motion: driving keypoints after stitching"),
    Tensor("motion_d0", "FP32", (MOTION_DIM,), doc="with return_motion: the session's d0"),
    Tensor("frame_controls", "BYTES", (1,), doc="with return_motion: the controls applied (JSON)"),
)
# How the orchestrator's `frame` output is encoded (session option output_format): raw RGB (H·W·3 bytes),
# JPEG or PNG; `frame_shape` gives H, W, 3 for every format.
OUTPUT_FORMATS = ("rgb", "jpeg", "png")

# Registers a photo or video once; looks a registered avatar up by id. One output row per source frame.
AVATAR_REGISTRY_INPUTS = (
    _text("image", "encoded photo (JPEG/PNG/...) to register"),
    _text("video", "or an encoded video"),
    _text("avatar_file", "or an avatar file written by ditto-register (.npz)"),
    _text("avatar_id", "an avatar to look up"),
    _text("options", "registration options (JSON)"),
)
AVATAR_REGISTRY_OUTPUTS = (
    Tensor("avatar_id", "BYTES", (1,)),
    Tensor("source_rgb", "UINT8", (-1, -1, -1, 3)),
    Tensor("crop_to_source", "FP32", (-1, 3, 3)),
    Tensor("f_s", "FP32", (-1, PER_PROFILE)),
    Tensor("motion_info", "FP32", (-1, PER_PROFILE)),
    Tensor("eye_open", "FP32", (-1, PER_PROFILE)),
    Tensor("eye_ball", "FP32", (-1, PER_PROFILE)),
    Tensor("shape_condition", "FP32", (PER_PROFILE,), doc="sc: source frame 0's keypoints, before smoothing"),
    Tensor("landmarks", "FP32", (-1, -1, 2), doc="per source frame: the points the crop came from"),
    Tensor("registration", "BYTES", (1,), doc="'ditto' (Ditto's face models) or 'mediapipe' (synthetic path)"),
)


def tensor(table: tuple[Tensor, ...], name: str) -> Tensor:
    for entry in table:
        if entry.name == name:
            return entry
    raise KeyError(f"no tensor {name!r} in {[t.name for t in table]}")


# Audio: 16 kHz mono float32 in, 25 frames/s out (640 samples a frame), sent in 200 ms chunks.
SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
CHUNK_SAMPLES = 3200

# Error prefixes: a message that starts with one of these tells the caller what to do next.
BUSY = "resource exhausted"  # retry later or on another replica
DRAINING = "this replica is draining (shutting down)"  # follows BUSY: retry on another replica
UNKNOWN_AVATAR = "unknown avatar id"  # register the avatar (or send it with START)

# Prometheus metrics the orchestrator writes (Triton's metrics port, `/metrics`).
METRIC_ACTIVE_SESSIONS = "ditto_active_sessions"
METRIC_FRAMES_SENT = "ditto_frames_sent_total"
METRIC_LATE_FRAMES = "ditto_late_frames_total"
METRIC_FIRST_FRAME_DELAY = "ditto_first_frame_delay_seconds"
METRIC_SESSIONS = "ditto_sessions_total"


class BadRequest(ValueError):
    """A request the caller must fix; answered with its message verbatim as INVALID_ARGUMENT."""
