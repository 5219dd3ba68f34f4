"""The in-process baseline: the server's session logic (`PipelinedSession`) on ONNX Runtime in this
process, timed exactly like a session through tritonserver (same `SessionRecord`).

The default stages are `ServerLikeOrtStages`: `OrtStages`' job with the ONNX Runtime session options
the python-ort stage models use on the server (same intra-op thread count, idle worker threads not
spinning) in a process set up like theirs (`process_settings`: malloc thresholds, one OpenCV thread), so
the Triton ÷ in-process ratio measures serving overhead, not a different setup.
(`OrtStages` keeps ORT's default spinning threads, which on 2 cores shared by the motion and render
threads costs the in-process pipeline a lot of its speed.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from ditto_triton.benchmarks.session_stats import MODES, SessionRecord
from ditto_triton.export.ort_runtime import OrtStages
from ditto_triton.manifest import read_manifest
from ditto_triton.profiles import get_profile
from ditto_triton.protocol import CHUNK_SAMPLES, SAMPLE_RATE
from ditto_triton.streaming.audio import frames_for_samples
from ditto_triton.streaming.avatar_features import AvatarFeatures
from ditto_triton.streaming.options import SessionOptions
from ditto_triton.streaming.reference import register_avatar
from ditto_triton.streaming.session import Frame, PipelinedSession, StreamingSession
from ditto_triton.streaming.stages import Stages


class ServerLikeOrtStages(OrtStages):
    """Every stage of an export on ONNX Runtime CPU, configured like the python-ort stage models."""

    def __init__(self, export_dir: Path, threads: int | None = None) -> None:
        from ditto_triton.model_repository.process_settings import apply_to_this_process
        from ditto_triton.model_repository.render import default_ort_threads

        apply_to_this_process()  # the stage processes' malloc and OpenCV settings
        super().__init__(export_dir, threads=threads or default_ort_threads(), spinning=False)


class InProcessPipeline:
    """One avatar on `stages` (default: `ServerLikeOrtStages` of `export_dir`); `run` times one session."""

    def __init__(
        self,
        export_dir: Path,
        image: bytes,
        crop_options: dict | None = None,
        stages: Stages | None = None,
    ) -> None:
        profile = get_profile(read_manifest(export_dir)["profile"])
        self.render_size = profile.render_size
        self.stages: Stages = stages if stages is not None else ServerLikeOrtStages(export_dir)
        self.avatar: AvatarFeatures = register_avatar(self.stages, image, profile.appearance.image_size, crop_options)

    def run(
        self,
        audio: np.ndarray,
        mode: str,
        *,
        chunk_samples: int = CHUNK_SAMPLES,
        options: SessionOptions = SessionOptions(),
        timeout_s: float = 600.0,
    ) -> SessionRecord:
        """Stream `audio` (16 kHz mono float32) through a pipelined session; modes as in
        `triton_session.run_session` ("realtime" paces the chunks, "full" submits them at once).
        Times count from just before the session is created."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        record = SessionRecord(
            mode=mode, audio_s=audio.size / SAMPLE_RATE, expected_frames=frames_for_samples(audio.size)
        )
        arrivals: list[float] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def on_frame(frame: Frame, tag: object) -> None:
            arrivals.append(time.perf_counter())
            record.pts_s.append(frame.pts_s)

        t0 = time.perf_counter()
        runner = PipelinedSession(
            StreamingSession(self.avatar, self.stages, options, self.render_size),
            on_frame=on_frame,
            on_done=lambda tag: done.set() if tag == "end" else None,
            on_error=lambda tag, exc: (errors.append(exc), done.set()),
        )
        starts = range(0, audio.size, chunk_samples)
        for k, start in enumerate(starts):
            if mode == "realtime":
                time.sleep(max(0.0, t0 + k * chunk_samples / SAMPLE_RATE - time.perf_counter()))
            chunk = audio[start : start + chunk_samples]
            if k == len(starts) - 1:
                runner.submit_end("end", chunk)
            else:
                runner.submit_audio(chunk, tag=None)
        if not len(starts):
            runner.submit_end("end")
        if not done.wait(timeout_s):
            errors.append(TimeoutError(f"session not finished after {timeout_s:.0f} s"))
        runner.close(timeout=5)
        if errors:
            record.error = f"{type(errors[0]).__name__}: {errors[0]}"
        record.arrivals_s = [a - t0 for a in arrivals]
        return record
