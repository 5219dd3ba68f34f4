"""The in-process pipeline: the same session logic as the server, with ONNX Runtime in this process.

Tests compare the Triton server's frames against it, and benchmarks use it as the baseline.
"""

from __future__ import annotations

import threading

import numpy as np

from ditto_triton.profiles import PROFILES, Profile
from ditto_triton.streaming.audio import HOP_SAMPLES
from ditto_triton.streaming.avatar_features import AvatarFeatures, run_extractors
from ditto_triton.streaming.options import SessionOptions
from ditto_triton.streaming.registered_avatar import RegisteredAvatar, register_source
from ditto_triton.streaming.session import Frame, PipelinedSession, StreamingSession
from ditto_triton.streaming.stages import Stages


def registered_avatar(
    stages: Stages,
    data: bytes,
    profile: Profile,
    crop_options: dict | None = None,
    video: bool = False,
    faces=None,
) -> RegisteredAvatar:
    """Registration as the server's registry does it: the face found and cropped (with `faces`, a
    `DittoFaces`, through Ditto's face models; else MediaPipe), the eye features, both extractors.
    `data` is an encoded photo, or a video with `video`."""
    from ditto_triton.avatar.source import CropOptions

    options = CropOptions.from_dict(crop_options or {})
    return register_source(data, options, video, faces, profile, lambda crops: run_extractors(stages.infer, crops))


def register_avatar(
    stages: Stages, data: bytes, extractor_size: int, crop_options: dict | None = None, video: bool = False, faces=None
) -> AvatarFeatures:
    """`registered_avatar`'s session features, for the profile whose extractors take `extractor_size`."""
    profile = next(p for p in PROFILES.values() if p.appearance.image_size == extractor_size)
    return registered_avatar(stages, data, profile, crop_options, video, faces).features()


def render_audio(
    stages: Stages,
    avatar: AvatarFeatures,
    audio: np.ndarray,
    render_size: int,
    options: SessionOptions = SessionOptions(),
    chunk_samples: int = HOP_SAMPLES,
    silence: np.ndarray | None = None,
    controls: list | None = None,
    reference: AvatarFeatures | None = None,
) -> list[Frame]:
    """Stream `audio` (16 kHz mono float32) in chunks through a pipelined session; all frames in order.
    `controls` (parsed, `controls.parse_controls`) go with the first chunk, as a client sends them."""
    frames: list[Frame] = []
    errors: list[BaseException] = []
    done = threading.Event()
    session = StreamingSession(avatar, stages, options, render_size, silence, reference)
    runner = PipelinedSession(
        session,
        on_frame=lambda frame, tag: frames.append(frame),
        on_done=lambda tag: done.set() if tag == "end" else None,
        on_error=lambda tag, exc: (errors.append(exc), done.set()),
    )
    for start in range(0, audio.size, chunk_samples):
        runner.submit_audio(audio[start : start + chunk_samples], tag=start, controls=None if start else controls)
    runner.submit_end("end")
    done.wait()
    runner.close()
    if errors:
        raise errors[0]
    return frames
