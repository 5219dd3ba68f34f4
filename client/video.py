"""Write frames and the input audio into an H.264 + AAC MP4 with PyAV, and contact sheets."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from ditto_triton.protocol import FPS, SAMPLE_RATE

AAC_FRAME = 1024


class Mp4Writer:
    """Frames are added as they arrive; `audio` ((N,) or (N, channels) float32 in [-1, 1] at
    `rate`) is muxed in as AAC at `close`."""

    def __init__(
        self, path: Path, audio: np.ndarray | None = None, rate: int = SAMPLE_RATE, fps: int = FPS, crf: int = 18
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.crf = crf
        self._audio = None if audio is None or not np.asarray(audio).size else np.asarray(audio, np.float32)
        self._rate = rate
        self._container = av.open(str(self.path), mode="w")
        self._video = None
        self._audio_stream = None
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        if self._video is None:
            h, w = rgb.shape[:2]
            if h % 2 or w % 2:
                raise ValueError(f"H.264 (yuv420p) needs even frame sizes, got {w}x{h}")
            self._video = self._container.add_stream("libx264", rate=self.fps, options={"crf": str(self.crf)})
            self._video.width, self._video.height, self._video.pix_fmt = w, h, "yuv420p"
            if self._audio is not None:  # every stream must exist before the first packet
                self._audio_stream = self._container.add_stream("aac", rate=self._rate, layout=self._layout)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        self.frames += 1
        self._container.mux(self._video.encode(frame))

    @property
    def _layout(self) -> str:
        return "mono" if self._audio.ndim == 1 or self._audio.shape[1] == 1 else "stereo"

    def close(self) -> None:
        """Flush the video, mux the audio, finish the file."""
        if self._video is not None:
            self._container.mux(self._video.encode())
        if self._audio_stream is not None:
            self._mux_audio()
        self._container.close()

    def _mux_audio(self) -> None:
        planar = (self._audio[None] if self._audio.ndim == 1 else self._audio.T)[:2]
        if self._layout == "mono":
            planar = planar[:1]
        for start in range(0, planar.shape[1], AAC_FRAME):
            block = np.ascontiguousarray(planar[:, start : start + AAC_FRAME])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=self._layout)
            frame.sample_rate = self._rate
            frame.pts = start
            frame.time_base = Fraction(1, self._rate)
            self._container.mux(self._audio_stream.encode(frame))
        self._container.mux(self._audio_stream.encode())


def contact_sheet(frames: list[np.ndarray], count: int = 6, height: int = 256) -> Image.Image:
    """`count` evenly spaced frames side by side, each scaled to `height` pixels."""
    if not frames:
        raise ValueError("no frames for a contact sheet")
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    tiles = []
    for i in picks:
        img = Image.fromarray(frames[i])
        tiles.append(img.resize((max(1, round(img.width * height / img.height)), height)))
    sheet = Image.new("RGB", (sum(t.width for t in tiles), height))
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width
    return sheet
