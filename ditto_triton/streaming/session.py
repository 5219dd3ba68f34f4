"""One talking-head session: audio in, frames out. Plain numpy; networks run through `Stages`.

`StreamingSession` is the synchronous core (audio -> motion rows -> frames). `PipelinedSession`
runs it on two threads so the next LMDM window is sampled while frames of the current one render;
the Triton orchestrator and the in-process reference both drive it the same way.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ditto_triton.streaming.audio import FPS, WINDOW_SAMPLES, AudioChunker, features_from_encoding, frames_for_samples
from ditto_triton.streaming.avatar_features import AvatarFeatures
from ditto_triton.streaming.conditions import ConditionBuilder
from ditto_triton.streaming.motion import MotionSettings, OnlineMotion
from ditto_triton.streaming.options import SessionOptions
from ditto_triton.streaming.putback import PutBack
from ditto_triton.streaming.stages import Stages
from ditto_triton.streaming.stitch import MotionStitcher


@dataclass(frozen=True)
class Frame:
    index: int
    pts_s: float  # presentation time from the start of the audio
    rgb: np.ndarray  # (H, W, 3) uint8

    def encode(self, fmt: str, quality: int = 90) -> bytes:
        if fmt == "rgb":
            return self.rgb.tobytes()
        buf = io.BytesIO()
        Image.fromarray(self.rgb).save(buf, format="JPEG", quality=quality)
        return buf.getvalue()


def silence_features(stages: Stages, rows: int) -> np.ndarray:
    """Features of encoded silence, `rows` of them: Ditto's online prefill (reference §3.7)."""
    enc = stages.infer("hubert", {"input_values": np.zeros((1, WINDOW_SAMPLES), np.float32)})["encoding_out"]
    block = features_from_encoding(enc)
    return np.tile(block, (-(-rows // block.shape[0]), 1))[:rows]


class StreamingSession:
    def __init__(
        self,
        avatar: AvatarFeatures,
        stages: Stages,
        options: SessionOptions,
        render_size: int,
        silence: np.ndarray | None = None,
    ) -> None:
        self.options = options
        self._stages = stages
        settings = MotionSettings(overlap=options.overlap, steps=options.sampling_steps, smooth_k=options.smooth_k)
        rng = np.random.default_rng(options.seed)
        silence = silence_features(stages, settings.overlap) if silence is None else silence[: settings.overlap]
        conditions = ConditionBuilder(options.emotion, avatar.eye_open, avatar.eye_ball, avatar.shape_condition)
        self._motion = OnlineMotion(settings, self._lmdm, conditions, avatar.source_vector, silence, rng)
        self._avatar = avatar
        self._chunker = AudioChunker()
        self._stitcher: MotionStitcher | None = None
        self._putback = PutBack(avatar.source_rgb, avatar.crop_to_source, render_size)
        self.frames_rendered = 0
        self.ended = False

    @property
    def frames_per_window(self) -> int:
        """Frames each LMDM window releases (80 - overlap)."""
        return self._motion.s.valid

    @property
    def total_frames(self) -> int:
        return frames_for_samples(self._chunker.total_samples)

    def feed(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add 16 kHz mono float32 samples; return the motion rows now ready to render."""
        if self.ended:
            raise RuntimeError("audio after the end of the session")
        return self._motion.push(self._encode(self._chunker.push(samples)))

    def end(self) -> list[np.ndarray]:
        """Flush the tail; returns the last motion rows. The session then has produced exactly
        ceil(samples / 640) rows in all."""
        if self.ended:
            return []
        self.ended = True
        return self._motion.finish(self._encode(self._chunker.flush()), self.total_frames)

    def render(self, row: np.ndarray) -> Frame:
        """Motion row -> stitched keypoints -> warp -> decode -> put-back."""
        return self.render_batch([row])[0]

    def render_batch(self, rows: list[np.ndarray]) -> list[Frame]:
        """Several frames through the render chain as one batch per stage (fewer, larger calls)."""
        if self._stitcher is None:
            self._stitcher = MotionStitcher(
                self._avatar.info,
                self._motion.d0,
                {"delta_pitch": self.options.delta_pitch, "delta_yaw": self.options.delta_yaw, "delta_roll": self.options.delta_roll},
            )
        pairs = [self._stitcher.keypoints(row) for row in rows]
        x_s = np.concatenate([p[0] for p in pairs])
        x_d = np.concatenate([p[1] for p in pairs])
        x_d = self._stages.infer("stitch_network", {"kp_source": x_s, "kp_driving": x_d})["out"]
        f_s = np.repeat(self._avatar.f_s, len(rows), axis=0) if len(rows) > 1 else self._avatar.f_s
        feature = self._stages.infer("warp_network", {"feature_3d": f_s, "kp_source": x_s, "kp_driving": x_d})["out"]
        renders = self._stages.infer("decoder", {"feature": feature})["output"]
        frames = []
        for render in renders:
            index = self.frames_rendered
            self.frames_rendered += 1
            frames.append(Frame(index=index, pts_s=index / FPS, rgb=self._putback(render)))
        return frames

    def _encode(self, windows: list[np.ndarray]) -> np.ndarray:
        feats = [features_from_encoding(self._stages.infer("hubert", {"input_values": w[None]})["encoding_out"]) for w in windows]
        if not feats:
            return np.zeros((0, self._motion._features.shape[1]), np.float32)
        return np.concatenate(feats)

    def _lmdm(self, x: np.ndarray, cond_frame: np.ndarray, cond: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._stages.infer("lmdm", {"x": x, "cond_frame": cond_frame, "cond": cond.astype(np.float32), "time_cond": t})
        return out["pred_noise"], out["x_start"]


_END = object()


def render_batch_end(index: int, window: int, batch: int) -> int:
    """End (exclusive) of the render batch starting at frame `index`.

    Batches depend only on frame indices, never on how audio was chunked, so frames are the same
    however a client sends its audio: frame 0 alone (first-frame delay), then runs of `batch` that
    never cross a window's block of `window` released frames.
    """
    if index == 0:
        return 1
    block_start = max(index // window * window, 1)
    block_end = (index // window + 1) * window
    return min(block_start + ((index - block_start) // batch + 1) * batch, block_end)


class PipelinedSession:
    """Runs a StreamingSession on a motion thread and a render thread.

    Every submitted item carries a `tag` (the Triton adapter uses the request's response sender).
    Frames caused by an item are passed to `on_frame(frame, tag)`; once all of them are out,
    `on_done(tag)` is called, in submission order. After an error every pending and later item gets
    `on_error(tag, exc)` and no more frames. Frames render `batch_size` at a time (one call per
    stage for the batch), except the session's first frame, which goes alone.
    """

    def __init__(
        self,
        session: StreamingSession,
        on_frame: Callable[[Frame, Any], None],
        on_done: Callable[[Any], None],
        on_error: Callable[[Any, BaseException], None],
        batch_size: int = 4,
    ) -> None:
        self.session = session
        self.batch_size = batch_size
        self._on_frame, self._on_done, self._on_error = on_frame, on_done, on_error
        self._audio: queue.Queue = queue.Queue()
        self._rows: queue.Queue = queue.Queue()
        self.failed: BaseException | None = None
        self._motion_thread = threading.Thread(target=self._motion_loop, daemon=True, name="ditto-motion")
        self._render_thread = threading.Thread(target=self._render_loop, daemon=True, name="ditto-render")
        self._motion_thread.start()
        self._render_thread.start()

    def submit_audio(self, samples: np.ndarray, tag: Any) -> None:
        self._audio.put(("audio", samples, tag))

    def submit_end(self, tag: Any, samples: np.ndarray | None = None) -> None:
        """The last item: optional final audio, then the flush; its frames all go to `tag`."""
        self._audio.put(("end", samples, tag))

    def stop(self) -> None:
        """Let both threads finish what was submitted, then exit (does not wait; safe from callbacks)."""
        self._audio.put((_END, None, None))

    def close(self, timeout: float | None = None) -> None:
        """Stop both threads and wait for them."""
        self.stop()
        self._motion_thread.join(timeout)
        self._render_thread.join(timeout)

    @property
    def busy(self) -> bool:
        return self._audio.unfinished_tasks > 0 or self._rows.unfinished_tasks > 0

    def _motion_loop(self) -> None:
        while True:
            kind, samples, tag = self._audio.get()
            if kind is _END:
                self._rows.put((_END, None))
                self._audio.task_done()
                return
            rows: list = []
            if self.failed is None:
                try:
                    rows = self.session.feed(samples) if samples is not None and samples.size else []
                    if kind == "end":
                        rows = rows + self.session.end()
                except BaseException as exc:  # noqa: BLE001 - reported to the client, session stops
                    self.failed = exc
            self._rows.put((rows, tag))
            self._audio.task_done()

    def _render_loop(self) -> None:
        while True:
            rows, tag = self._rows.get()
            if rows is _END:
                self._rows.task_done()
                return
            try:
                start = 0
                while self.failed is None and start < len(rows):
                    first = self.session.frames_rendered
                    size = render_batch_end(first, self.session.frames_per_window, self.batch_size) - first
                    for frame in self.session.render_batch(rows[start : start + size]):
                        self._on_frame(frame, tag)
                    start += size
            except BaseException as exc:  # noqa: BLE001
                self.failed = exc
            if tag is not None:
                if self.failed is not None:
                    self._on_error(tag, self.failed)
                else:
                    self._on_done(tag)
            self._rows.task_done()
