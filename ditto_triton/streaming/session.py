"""One talking-head session: audio in, frames out. Plain numpy; networks run through `Stages`.

`StreamingSession` is the synchronous core (audio -> motion rows -> frames). `PipelinedSession`
runs it on two threads so the next LMDM window is sampled while frames of the current one render;
the Triton orchestrator and the in-process reference both drive it the same way.
"""

from __future__ import annotations

import functools
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ditto_triton.chains import run_chain
from ditto_triton.ensembles import RENDER_CHAIN, UNSTITCHED_CHAIN
from ditto_triton.protocol import FPS, SAMPLE_RATE
from ditto_triton.streaming.audio import (
    OFFLINE_PAST_SAMPLES,
    WINDOW_SAMPLES,
    AudioChunker,
    features_from_encoding,
    frames_for_samples,
)
from ditto_triton.streaming.avatar_features import AvatarFeatures
from ditto_triton.streaming.conditions import ConditionBuilder
from ditto_triton.streaming.controls import ControlsError, FrameControls
from ditto_triton.streaming.motion import MotionSettings, OfflineMotion, OnlineMotion
from ditto_triton.streaming.motion_vector import MOTION_DIM
from ditto_triton.streaming.options import SessionOptions
from ditto_triton.streaming.putback import PutBack
from ditto_triton.streaming.stages import Stages, infer_chain
from ditto_triton.streaming.stitch import MotionStitcher, StitchOptions

OFFLINE_MAX_SECONDS = 600  # offline mode keeps the whole clip's features until END


class OfflineClipTooLong(ValueError):
    """More audio than an offline session keeps."""


@dataclass(frozen=True)
class MotionRecord:
    """What drove one frame: the generated row (Ditto's 265-d layout, clipped), the keypoints after
    stitching, and the per-frame controls applied (the session's fade ramps included)."""

    row: np.ndarray  # (265,)
    x_s: np.ndarray  # (21, 3)
    x_d: np.ndarray  # (21, 3)
    controls: dict
    d0: np.ndarray  # (265,) the session's relative-motion reference (a replay needs it)


@dataclass(frozen=True)
class Frame:
    index: int
    pts_s: float  # presentation time from the start of the audio
    rgb: np.ndarray  # (H, W, 3) uint8
    motion: MotionRecord | None = None  # with the session option return_motion


@dataclass(frozen=True)
class RenderedCrop:
    index: int
    render: np.ndarray  # (3, S, S) float32 in [0, 1], the decoder's output
    motion: MotionRecord | None = None


def silence_features(stages: Stages, rows: int) -> np.ndarray:
    """Features of encoded silence, `rows` of them: Ditto's online prefill (reference §3.7)."""
    enc = stages.infer("hubert", {"input_values": np.zeros((1, WINDOW_SAMPLES), np.float32)})["encoding_out"]
    block = features_from_encoding(enc)
    return np.tile(block, (-(-rows // block.shape[0]), 1))[:rows]


def lmdm_step(
    stages: Stages, guidance_weight: float, x: np.ndarray, cond_frame: np.ndarray, cond: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One guided LMDM call: (pred_noise, x_start)."""
    inputs = {"x": x, "cond_frame": cond_frame, "cond": cond.astype(np.float32), "time_cond": t}
    inputs["guidance_weight"] = np.full(t.shape, guidance_weight, np.float32)
    out = stages.infer("lmdm", inputs)
    return out["pred_noise"], out["x_start"]


class StreamingSession:
    def __init__(
        self,
        avatar: AvatarFeatures,
        stages: Stages,
        options: SessionOptions,
        render_size: int,
        silence: np.ndarray | None = None,
        reference: AvatarFeatures | None = None,
    ) -> None:
        """`reference`: the avatar `options.ch_avatar` names (Ditto's ch_info): its frame 0's motion,
        shape and eye conditions condition the LMDM, and its scale over this avatar's weights the
        driven expression and pose."""
        if (reference is None) != (options.ch_avatar is None):
            raise ValueError("give the reference avatar's features exactly when options.ch_avatar names one")
        self.options = options
        self._reference = reference
        conditioning = reference or avatar
        self._stages = stages
        online = options.mode == "online"
        settings = MotionSettings(
            overlap=options.overlap,
            steps=options.sampling_steps,
            smooth_k=options.smooth_k,
            online=online,
            fix_kp_cond=options.fix_kp_cond,
            fix_kp_cond_dims=options.fix_kp_cond_dim,
            emit_first_window=options.first_window == "emit",
        )
        rng = np.random.default_rng(options.seed)
        eye_open = conditioning.eye_open if options.eye_open is None else np.asarray(options.eye_open, np.float32)
        eye_ball = conditioning.eye_ball if options.eye_ball is None else np.asarray(options.eye_ball, np.float32)
        emotion = options.emotion if options.emotion_array is None else np.asarray(options.emotion_array, np.float32)
        self.conditions = ConditionBuilder(
            emotion, eye_open, eye_ball, conditioning.shape_condition, options.eye_f0_mode
        )
        clip = options.v_min_max_for_clip
        self._clip = None if clip is None else np.asarray(clip, np.float32)
        # functools.partial over the stages, not a bound method: the motion must not point back at the
        # session, or every ended session (frames, noise, avatar copies) waits for the cyclic GC.
        lmdm = functools.partial(lmdm_step, stages, options.guidance_weight)
        self._motion: OnlineMotion | OfflineMotion
        if online:
            silence = silence_features(stages, settings.overlap) if silence is None else silence[: settings.overlap]
            self._motion = OnlineMotion(settings, lmdm, self.conditions, conditioning.source_vector, silence, rng)
            self._chunker = AudioChunker()
        else:
            self._motion = OfflineMotion(settings, lmdm, self.conditions, conditioning.source_vector, rng)
            self._chunker = AudioChunker(OFFLINE_PAST_SAMPLES)
        self._avatar = avatar
        self._stitcher: MotionStitcher | None = None
        self._render_size = render_size
        # A photo's put-back (mask, background) is made once; a video's differs per source frame and is
        # made per frame (caching n of them would hold n backgrounds per session).
        self._putback = None if avatar.is_video else self._make_putback(0)
        self._controls = FrameControls()
        self._held: list[np.ndarray] = []  # the last fade_out rows, released once the end is known
        self._motion_rows = 0  # rows received by a motion session
        self.rows_out = 0
        self.frames_rendered = 0
        self.ended = False

    @property
    def frames_per_window(self) -> int:
        """Frames each LMDM window releases (80 - overlap)."""
        return self._motion.s.valid

    @property
    def total_frames(self) -> int:
        if self.options.motion_d0 is not None:
            return self._motion_rows
        return frames_for_samples(self._chunker.total_samples)

    def add_controls(self, entries: list) -> None:
        """Per-frame controls (see `controls.parse_controls`) for frames not yet released."""
        fading = [i for i, (_, fields) in enumerate(entries) if {"fade_alpha", "fade_out_keys"} & set(fields)]
        if fading and not self.options.fade_type:
            raise ControlsError(
                f"controls[{fading[0]}]: fade_alpha moves nothing unless the session's fade_type is 'd0' or 's', "
                "as in Ditto"
            )
        self._controls.add(entries, self.rows_out)
        for frames, fields in entries:
            if "eye_open" in fields:
                self.conditions.set_eye_open(frames, fields["eye_open"])

    def feed(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add 16 kHz mono float32 samples; return the motion rows now ready to render."""
        if self.options.motion_d0 is not None:
            raise ControlsError("a motion session (option motion_d0) takes motion rows, not audio")
        if self.ended:
            raise RuntimeError("audio after the end of the session")
        if (
            self.options.mode == "offline"
            and self._chunker.total_samples + np.size(samples) > OFFLINE_MAX_SECONDS * SAMPLE_RATE
        ):
            raise OfflineClipTooLong(
                f"offline mode keeps the whole clip until END: at most {OFFLINE_MAX_SECONDS} s of audio; "
                "use mode 'online' for longer streams"
            )
        return self._release(self._motion.push(self._encode(self._chunker.push(samples))))

    def feed_motion(self, rows: np.ndarray) -> list[np.ndarray]:
        """A motion session (option `motion_d0`): (n, 265) rows of a saved motion, rendered as they are
        (no audio, no LMDM); returns them as ready to render."""
        if self.options.motion_d0 is None:
            raise ControlsError("this session streams audio; open it with the option motion_d0 to send motion")
        if self.ended:
            raise RuntimeError("motion after the end of the session")
        rows = np.asarray(rows, np.float32).reshape(-1, MOTION_DIM)
        self._motion_rows += rows.shape[0]
        return self._release(list(rows))

    def end(self) -> list[np.ndarray]:
        """Flush the tail; returns the last motion rows. The session then has produced exactly
        ceil(samples / 640) rows in all."""
        if self.ended:
            return []
        self.ended = True
        if self.options.motion_d0 is not None:
            return self._release([])
        return self._release(self._motion.finish(self._encode(self._chunker.flush()), self.total_frames))

    def _release(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        rows = self._held + [self.clipped(r) for r in rows]
        keep = 0 if self.ended else min(self.options.fade_out, len(rows))
        out, self._held = rows[: len(rows) - keep], rows[len(rows) - keep :]
        self.rows_out += len(out)
        return out

    def clipped(self, row: np.ndarray) -> np.ndarray:
        """A generated row clipped to `v_min_max_for_clip` (Ditto clips what it hands to the stitching)."""
        return row if self._clip is None else np.clip(row, self._clip[0], self._clip[1])

    def frame_control(self, index: int, consume: bool = True) -> dict:
        """Frame `index`'s controls (Ditto's ctrl_info[index]) with the fade ramps of `setup_Nd`
        written over them: fade_alpha i / fade_in at the start, falling to 0 over the last fade_out."""
        control, o = self._controls.get(index, consume), self.options
        if o.fade_in and index < o.fade_in:
            control["fade_alpha"] = index / o.fade_in
        last = self.total_frames - 1
        if o.fade_out and self.ended and index >= last - o.fade_out:
            control["fade_alpha"] = max((last - index) / o.fade_out, 0)
        return control

    def render(self, row: np.ndarray) -> Frame:
        """Motion row -> stitched keypoints -> warp -> decode -> put-back."""
        return self.render_batch([row])[0]

    def render_batch(self, rows: list[np.ndarray]) -> list[Frame]:
        """Several frames through the render chain (stitch -> warp -> decode) as one batch, pasted
        back into the source photo."""
        return [self.compose(raw) for raw in self.render_crops(rows)]

    def render_crops(self, rows: list[np.ndarray]) -> list[RenderedCrop]:
        """The networks' part of `render_batch`: the rendered face crops, not yet pasted back."""
        first = self.frames_rendered
        stitcher, avatar = self.stitcher, self._avatar
        sources = [avatar.source_index(first + k) for k in range(len(rows))]
        controls = [self.frame_control(first + k) for k in range(len(rows))]
        pairs = [stitcher.keypoints(row, controls[k], sources[k], first + k) for k, row in enumerate(rows)]
        x_s = np.concatenate([p[0] for p in pairs]).astype(np.float32)
        x_d = np.concatenate([p[1] for p in pairs]).astype(np.float32)
        f_s = avatar.f_s if len(rows) == 1 and not avatar.is_video else avatar.f_s[sources]  # one row per frame
        inputs = {"feature_3d": f_s, "kp_source": x_s, "kp_driving": x_d}
        if self.options.flag_stitching:
            renders = infer_chain(self._stages, RENDER_CHAIN, inputs)["output"]
        else:
            renders = run_chain(UNSTITCHED_CHAIN, self._stages.infer, inputs)["output"]
        self.frames_rendered += len(renders)
        records = [None] * len(rows)
        if self.options.return_motion:
            if self.options.flag_stitching:  # the stitched keypoints the ensemble used (one more stage call)
                x_d = self._stages.infer("stitch_network", {"kp_source": x_s, "kp_driving": x_d})["out"]
            d0 = self.stitcher.d0_vector
            records = [MotionRecord(rows[k], x_s[k], x_d[k], controls[k], d0) for k in range(len(rows))]
        return [RenderedCrop(first + k, render, records[k]) for k, render in enumerate(renders)]

    @property
    def stitcher(self) -> MotionStitcher:
        """Motion rows -> keypoints; made once the first window has fixed d0."""
        if self._stitcher is None:
            d0 = self._motion.d0 if self.options.motion_d0 is None else np.asarray(self.options.motion_d0, np.float32)
            if d0 is None:
                raise RuntimeError("no motion generated yet")
            o = self.options
            weighted = bool(o.use_d_keys) and isinstance(o.use_d_keys[0], tuple)
            settings = StitchOptions(
                use_d_keys=dict(o.use_d_keys) if weighted else o.use_d_keys,
                relative_d=o.relative_d,
                drive_eye=o.drive_eye,
                delta_eye_arr=None if o.delta_eye_arr is None else np.asarray(o.delta_eye_arr, np.float32),
                delta_eye_open_n=o.delta_eye_open_n,
                fade_type=o.fade_type,
                fade_out_keys=o.fade_out_keys,
                overall_ctrl_info=o.overall_ctrl_info,
                scale_ratio=self._scale_ratio(),
            )
            infos = [self._avatar.info_at(i) for i in range(self._avatar.frames)]
            frames = self.total_frames if o.mode == "offline" else -1  # online the clip's length is unknown
            d0 = self.clipped(d0)
            self._stitcher = MotionStitcher(infos, d0, settings, random.Random(o.seed), frames)
        return self._stitcher

    def _scale_ratio(self) -> float:
        """Ditto's ch_info scale ratio: the reference's frame-0 scale over this avatar's."""
        if self._reference is None:
            return 1.0
        return self._reference.info["scale"].item() / self._avatar.info["scale"].item()

    def driving_info(self, index: int, row: np.ndarray) -> dict[str, np.ndarray]:
        """What frame `index` (motion `row`) drives, controls and fades applied (for inspection and tests;
        peeks at the frame's controls without consuming them)."""
        return self.stitcher.driving_info(
            row, self.frame_control(index, consume=False), self._avatar.source_index(index), index
        )

    def compose(self, crop: RenderedCrop) -> Frame:
        """Paste a rendered crop back into its source frame (feathered)."""
        putback = self._putback or self._make_putback(self._avatar.source_index(crop.index))
        return Frame(index=crop.index, pts_s=crop.index / FPS, rgb=putback(crop.render), motion=crop.motion)

    def _make_putback(self, source: int) -> PutBack:
        a = self._avatar
        return PutBack(
            a.source_rgb[source], a.crop_to_source[source], self._render_size, max_size=self.options.output_max_size
        )

    def _encode(self, windows: list[np.ndarray]) -> np.ndarray:
        feats = [
            features_from_encoding(self._stages.infer("hubert", {"input_values": w[None]})["encoding_out"])
            for w in windows
        ]
        return np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)


_END = object()


def render_batch_end(index: int, window: int, batch: int) -> int:
    """End (exclusive) of the render batch starting at frame `index`.

    Batches depend only on frame indices, never on how audio was chunked, so frames are the same
    however a client sends its audio. Frames are released a window's block of `window` at a time,
    and playback is timed from the first frame, so every later block's first frame must not take
    longer than the session's first frame did: block 0 renders in runs of `batch` (the first frame
    waits for its whole batch), every later block renders its first frame alone, then runs of
    `batch`. That leaves each block the difference as jitter slack. Batches never cross a block.
    """
    block_start = index // window * window
    block_end = block_start + window
    if block_start > 0:
        if index == block_start:
            return index + 1
        block_start += 1
    return min(block_start + ((index - block_start) // batch + 1) * batch, block_end)


class PipelinedSession:
    """Runs a StreamingSession on three threads: motion, render and delivery.

    The motion thread samples the next LMDM window while the render thread runs the render chain
    on frames of the current one; the delivery thread pastes each rendered crop back into the photo
    and hands the frame to the caller, so neither the put-back nor a slow `on_frame` (the Triton
    adapter's response send) stalls the networks.

    Every submitted item carries a `tag` (the Triton adapter uses the request's response sender).
    Frames caused by an item are passed to `on_frame(frame, tag)`; once all of them are out,
    `on_done(tag)` is called, in submission order. After an error (in a network call or in
    `on_frame`) every pending and later item gets `on_error(tag, exc)` and no more frames. Frames
    render `batch_size` at a time (one call per stage for the batch; see `render_batch_end`).
    All callbacks run on the delivery thread, one at a time.
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
        self._out: queue.Queue = queue.Queue()
        self.failed: BaseException | None = None
        self._threads = [
            threading.Thread(target=loop, daemon=True, name=f"ditto-{name}")
            for name, loop in (
                ("motion", self._motion_loop),
                ("render", self._render_loop),
                ("delivery", self._delivery_loop),
            )
        ]
        for thread in self._threads:
            thread.start()

    def submit_audio(self, samples: np.ndarray, tag: Any, controls: list | None = None) -> None:
        """Audio (and the per-frame controls sent with it, applied before the audio is fed)."""
        self._audio.put(("audio", (samples, controls), tag))

    def submit_motion(self, rows: np.ndarray, tag: Any, controls: list | None = None) -> None:
        """(n, 265) motion rows of a motion session (`StreamingSession.feed_motion`), with their controls."""
        self._audio.put(("audio", (np.asarray(rows, np.float32).reshape(-1, MOTION_DIM), controls), tag))

    def submit_end(self, tag: Any, samples: np.ndarray | None = None, controls: list | None = None) -> None:
        """The last item: optional final audio (or (n, 265) motion rows), then the flush; its frames all
        go to `tag`."""
        self._audio.put(("end", (samples, controls), tag))

    def stop(self) -> None:
        """Let the threads finish what was submitted, then exit (does not wait; safe from callbacks)."""
        self._audio.put((_END, None, None))

    def close(self, timeout: float | None = None) -> None:
        """Stop the threads and wait for them."""
        self.stop()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    @property
    def busy(self) -> bool:
        return any(q.unfinished_tasks > 0 for q in (self._audio, self._rows, self._out))

    def _motion_loop(self) -> None:
        while True:
            kind, item, tag = self._audio.get()
            if kind is _END:
                self._rows.put((_END, None, True))
                self._audio.task_done()
                return
            samples, controls = item
            rows: list = []
            if self.failed is None:
                try:
                    if controls:
                        self.session.add_controls(controls)
                    feed = self.session.feed_motion if samples is not None and samples.ndim == 2 else self.session.feed
                    rows = feed(samples) if samples is not None and samples.size else []
                    if kind == "end":
                        # what the last audio completed renders while the stream's last window is sampled
                        self._rows.put((rows, tag, False))
                        rows = []
                        rows = self.session.end()
                except BaseException as exc:  # noqa: BLE001 - reported to the client, session stops
                    self.failed = exc
            self._rows.put((rows, tag, True))
            self._audio.task_done()

    def _render_loop(self) -> None:
        while True:
            rows, tag, last = self._rows.get()  # last: the item's final rows (then its "done")
            if rows is _END:
                self._out.put((_END, None, None))
                self._rows.task_done()
                return
            try:
                start = 0
                while self.failed is None and start < len(rows):
                    first = self.session.frames_rendered
                    size = render_batch_end(first, self.session.frames_per_window, self.batch_size) - first
                    for crop in self.session.render_crops(rows[start : start + size]):
                        self._out.put(("frame", crop, tag))
                    start += size
            except BaseException as exc:  # noqa: BLE001
                self.failed = exc
            if tag is not None and last:
                self._out.put(("done", None, tag))
            self._rows.task_done()

    def _delivery_loop(self) -> None:
        while True:
            kind, crop, tag = self._out.get()
            try:
                if kind is _END:
                    return
                if kind == "frame":
                    if self.failed is None:
                        try:
                            self._on_frame(self.session.compose(crop), tag)
                        except BaseException as exc:  # noqa: BLE001 - e.g. the client went away
                            self.failed = exc
                elif self.failed is not None:
                    self._on_error(tag, self.failed)
                else:
                    self._on_done(tag)
            except BaseException as exc:  # noqa: BLE001 - a failed final send ends the session
                self.failed = self.failed or exc
            finally:
                self._out.task_done()
