"""The in-process pipeline: the same session logic as the server, with ONNX Runtime in this process.

Tests compare the Triton server's frames against it, and benchmarks use it as the baseline.
"""

from __future__ import annotations

import threading

import numpy as np

from ditto_triton.streaming.audio import HOP_SAMPLES
from ditto_triton.streaming.avatar_features import AvatarFeatures, extract_features
from ditto_triton.streaming.options import SessionOptions
from ditto_triton.streaming.session import Frame, PipelinedSession, StreamingSession
from ditto_triton.streaming.stages import Stages


def register_avatar(
    stages: Stages, data: bytes, extractor_size: int, crop_options: dict | None = None, video: bool = False
) -> AvatarFeatures:
    """Face detection, Ditto's crop, eye features and the two extractors, as the server's registry
    does; `data` is an encoded photo, or a video with `video`."""
    from ditto_triton.avatar.source import CropOptions, prepare_source, prepare_video_sources, stack_sources

    options = CropOptions.from_dict(crop_options or {})
    sources = prepare_video_sources(data, options) if video else [prepare_source(data, options)]
    return extract_features(stages, **stack_sources(sources, extractor_size), smooth_k=options.source_smooth_k)


def render_audio(
    stages: Stages,
    avatar: AvatarFeatures,
    audio: np.ndarray,
    render_size: int,
    options: SessionOptions = SessionOptions(),
    chunk_samples: int = HOP_SAMPLES,
    silence: np.ndarray | None = None,
) -> list[Frame]:
    """Stream `audio` (16 kHz mono float32) in chunks through a pipelined session; all frames in order."""
    frames: list[Frame] = []
    errors: list[BaseException] = []
    done = threading.Event()
    session = StreamingSession(avatar, stages, options, render_size, silence)
    runner = PipelinedSession(
        session,
        on_frame=lambda frame, tag: frames.append(frame),
        on_done=lambda tag: done.set() if tag == "end" else None,
        on_error=lambda tag, exc: (errors.append(exc), done.set()),
    )
    for start in range(0, audio.size, chunk_samples):
        runner.submit_audio(audio[start : start + chunk_samples], tag=start)
    runner.submit_end("end")
    done.wait()
    runner.close()
    if errors:
        raise errors[0]
    return frames
