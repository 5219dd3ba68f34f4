"""Frame formats (session option output_format): what raw RGB, JPEG and PNG cost per frame, at 512×512
and at 1920×1080 (the sample portrait in a 1080p photo), through a local tritonserver.

    python -m ditto_triton.benchmarks.frame_formats [--export-dir out/export/tiny] [--out FILE]

Two measurements per frame size, on the frames the server renders (tiny profile, pasted back into the photo):
1. codec, in this process: a sample of one rgb session's frames is encoded with the orchestrator's
   `encode_frame` (and, for comparison, with Pillow) and decoded with the client's `decode_frame`, every
   variant in turn, `--repeats` times alternated. CPU is `time.process_time()` (all threads of this
   process) per frame, median over the repeats; bytes per frame and the worst frame's PSNR are exact,
   and so is what a JPEG generation costs `ditto-render`'s MP4 (H.264, CRF 18): PSNR of the MP4 made from
   the raw frames and of the one made from their JPEGs, against the raw frames.
2. sessions, end to end: one session per format with the audio fully available, the formats alternated
   `--repeats` times. Frames/s and wall time as the client sees them (it decodes every frame), CPU per
   frame of the whole server (tritonserver and every python stub, user + system from /proc via psutil)
   and of this client process (`time.process_time()`: gRPC, protobuf, decoding). Client and server share
   the machine, as the embedded server of `ditto-render` does.
Writes JSON (default benchmarks/results/frame_formats.json) and prints the report's section.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from ditto_triton.benchmarks import RESULTS_DIR, process_cpu, provenance
from ditto_triton.benchmarks.fixtures import SAMPLE_AUDIO, SAMPLE_IMAGE, hd_frame, local_tritonserver
from ditto_triton.benchmarks.report import frame_formats_section
from ditto_triton.benchmarks.session_stats import summarize
from ditto_triton.benchmarks.triton_session import run_session
from ditto_triton.client import DittoClient, load_audio
from ditto_triton.client.frame_decoding import decode_frame
from ditto_triton.client.video import Mp4Writer
from ditto_triton.export.current import ensure_export
from ditto_triton.protocol import FPS, OUTPUT_FORMATS, SAMPLE_RATE
from ditto_triton.streaming.frame_encoding import encode_frame
from ditto_triton.streaming.options import SessionOptions

DEFAULTS = SessionOptions()  # the server's jpeg_quality and png_compression


@dataclass(frozen=True)
class Case:
    """A frame size: the photo registered and its registration options."""

    name: str
    photo: bytes
    registration: dict


def cases() -> list[Case]:
    buf = io.BytesIO()
    Image.fromarray(hd_frame()).save(buf, format="JPEG", quality=92)
    return [
        Case("512x512", SAMPLE_IMAGE.read_bytes(), {"max_size": 512}),  # `make demo`'s size
        Case("1920x1080", buf.getvalue(), {"max_size": 1920}),
    ]


@dataclass(frozen=True)
class Variant:
    """One way to encode a frame: a format, its setting (JPEG quality or PNG level) and the encoder."""

    name: str
    output_format: str
    setting: int | None = None
    encoder: str = "opencv"  # the orchestrator's; "pillow" for the comparison

    def encode(self, rgb: np.ndarray) -> bytes:
        if self.encoder == "pillow":
            buf = io.BytesIO()
            image = Image.fromarray(rgb)
            if self.output_format == "jpeg":
                image.save(buf, format="JPEG", quality=self.setting)
            else:
                image.save(buf, format="PNG", compress_level=self.setting)
            return buf.getvalue()
        setting = {"jpeg_quality": self.setting} if self.output_format == "jpeg" else {"png_compression": self.setting}
        return encode_frame(rgb, self.output_format, **(setting if self.setting is not None else {})).tobytes()


CODEC_VARIANTS = (
    Variant("rgb", "rgb"),
    Variant(f"jpeg q{DEFAULTS.jpeg_quality}", "jpeg", DEFAULTS.jpeg_quality),
    Variant("jpeg q85 (live page)", "jpeg", 85),
    Variant(f"png level {DEFAULTS.png_compression}", "png", DEFAULTS.png_compression),
    Variant("png level 6 (zlib's default)", "png", 6),
    Variant(f"jpeg q{DEFAULTS.jpeg_quality}, Pillow", "jpeg", DEFAULTS.jpeg_quality, "pillow"),
    Variant(f"png level {DEFAULTS.png_compression}, Pillow", "png", DEFAULTS.png_compression, "pillow"),
)


def psnr_db(a: np.ndarray, b: np.ndarray) -> float | None:
    """PSNR of b against a; None when they are identical (lossless)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return None if mse == 0 else round(10 * np.log10(255.0**2 / mse), 2)


def cpu_ms_per_item(fn: Callable[[Any], Any], items: list) -> tuple[float, list]:
    """(process CPU ms per item, results) of `fn` over `items`."""
    start = time.process_time()
    out = [fn(item) for item in items]
    return (time.process_time() - start) * 1e3 / len(items), out


def time_variant(variant: Variant, frames: list[np.ndarray]) -> dict[str, Any]:
    encode_ms, encoded = cpu_ms_per_item(variant.encode, frames)
    pairs = list(zip(encoded, frames))
    decode_ms, decoded = cpu_ms_per_item(
        lambda pair: decode_frame(np.frombuffer(pair[0], np.uint8), variant.output_format, pair[1].shape), pairs
    )
    psnr = [psnr_db(f, d) for f, d in zip(frames, decoded)]
    lossy = [p for p in psnr if p is not None]
    return {
        "encode_cpu_ms": encode_ms,
        "decode_cpu_ms": decode_ms,
        "bytes_per_frame": round(float(np.mean([len(e) for e in encoded]))),
        "lossless": not lossy,
        "psnr_db_worst": min(lossy) if lossy else None,
    }


def measure_codec(frames: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """Every CODEC_VARIANT on `frames`, the variants alternated `repeats` times; CPU as medians."""
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in CODEC_VARIANTS}
    for _ in range(repeats):
        for variant in CODEC_VARIANTS:
            runs[variant.name].append(time_variant(variant, frames))
    out = {}
    for variant in CODEC_VARIANTS:
        done = runs[variant.name]
        out[variant.name] = {
            **done[0],
            "format": variant.output_format,
            "setting": variant.setting,
            "encoder": variant.encoder,
            "encode_cpu_ms": round(statistics.median(r["encode_cpu_ms"] for r in done), 3),
            "decode_cpu_ms": round(statistics.median(r["decode_cpu_ms"] for r in done), 3),
            "mbit_per_s_at_25fps": round(done[0]["bytes_per_frame"] * 8 * FPS / 1e6, 1),
        }
    return out


def mp4_psnr_db(frames: list[np.ndarray], written: list[np.ndarray]) -> float:
    """Mean PSNR against `frames` of `written` after ditto-render's MP4 writer (H.264, CRF 18) and back."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frames.mp4"
        writer = Mp4Writer(path)
        for frame in written:
            writer.add(frame)
        writer.close()
        with av.open(str(path)) as container:
            back = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return round(float(np.mean([psnr_db(a, b) or 99.0 for a, b in zip(frames, back)])), 2)


def measure_mp4_generation_loss(frames: list[np.ndarray]) -> dict[str, float]:
    """The MP4's PSNR from raw frames and from their JPEGs at the server's default quality."""
    jpeg = Variant("jpeg", "jpeg", DEFAULTS.jpeg_quality)
    decoded = [decode_frame(np.frombuffer(jpeg.encode(f), np.uint8), "jpeg", f.shape) for f in frames]
    return {
        "from_rgb": mp4_psnr_db(frames, frames),
        f"from_jpeg_q{DEFAULTS.jpeg_quality}": mp4_psnr_db(frames, decoded),
    }


def server_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of tritonserver and every process under it (the python stubs)."""
    return None if pid is None else process_cpu.total_cpu_seconds(process_cpu.server_processes(pid).values())


def time_session(client: DittoClient, avatar: str, audio: np.ndarray, fmt: str, pid: int | None) -> dict[str, Any]:
    """One session in `fmt`, audio fully available: frames/s, wall time and CPU per frame."""
    server0, client0, wall0 = server_cpu_s(pid), time.process_time(), time.perf_counter()
    record = run_session(client, avatar, audio, "full", options={"output_format": fmt})
    wall, client_s, server1 = time.perf_counter() - wall0, time.process_time() - client0, server_cpu_s(pid)
    summary = summarize(record)
    if not summary["complete"]:
        raise RuntimeError(f"{fmt} session incomplete: {summary['error'] or summary['frames']} frames")
    frames = summary["frames"]
    return {
        "fps": summary["fps"],
        "wall_s": round(wall, 3),
        "ffd_ms": summary["ffd_ms"],
        "server_cpu_ms_per_frame": None if pid is None else round((server1 - server0) * 1e3 / frames, 2),
        "client_cpu_ms_per_frame": round(client_s * 1e3 / frames, 2),
    }


def measure_sessions(
    client: DittoClient, avatar: str, audio: np.ndarray, repeats: int, pid: int | None
) -> dict[str, Any]:
    """Each format's session, formats alternated `repeats` times: medians, runs and ratios to rgb per repeat."""
    runs: dict[str, list[dict[str, Any]]] = {fmt: [] for fmt in OUTPUT_FORMATS}
    for _ in range(repeats):
        for fmt in OUTPUT_FORMATS:
            runs[fmt].append(time_session(client, avatar, audio, fmt, pid))
    out = {}
    for fmt, done in runs.items():
        medians = {k: _median([r[k] for r in done]) for k in done[0]}
        fps_ratio = [r["fps"] / base["fps"] for r, base in zip(done, runs["rgb"])]
        out[fmt] = {**medians, "fps_over_rgb": round(statistics.median(fps_ratio), 3), "runs": done}
    return out


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def sample_frames(client: DittoClient, avatar: str, audio: np.ndarray, count: int) -> list[np.ndarray]:
    """`count` evenly spaced rgb frames of one session (it also warms the server up)."""
    total = -(-audio.size // (SAMPLE_RATE // FPS))
    stride = max(1, total // count)
    kept = [f.rgb.copy() for f in client.stream(avatar, audio) if f.index % stride == 0]
    return kept[:count]


def measure_case(client: DittoClient, case: Case, audio: np.ndarray, repeats: int, pid: int | None, count: int):
    avatar = client.register_avatar(case.photo, case.registration)
    frames = sample_frames(client, avatar, audio, count)
    return {
        "frame_shape": list(frames[0].shape),
        "codec_frames": len(frames),
        "registration": case.registration,
        "codec": measure_codec(frames, repeats),
        "mp4_psnr_db": measure_mp4_generation_loss(frames),
        "sessions": measure_sessions(client, avatar, audio, repeats, pid),
    }


def measure(
    url: str,
    server_pid: int | None,
    audio: np.ndarray,
    repeats: int = 3,
    codec_frames: int = 16,
    only: tuple[str, ...] | None = None,
) -> dict:
    """Every case (or those named in `only`) against the server at `url` (its process id for the server's
    CPU; None: not measured)."""
    chosen = [c for c in cases() if only is None or c.name in only]
    with DittoClient(url, timeout_s=300, busy_retries=0) as client:
        by_case = {c.name: measure_case(client, c, audio, repeats, server_pid, codec_frames) for c in chosen}
    return {
        "audio_s": round(audio.size / SAMPLE_RATE, 3),
        "repeats": repeats,
        "codec_frames": codec_frames,
        "defaults": {"jpeg_quality": DEFAULTS.jpeg_quality, "png_compression": DEFAULTS.png_compression},
        "cases": by_case,
    }


def run(
    export_dir: Path, seconds: float, repeats: int, codec_frames: int, only: tuple[str, ...] | None = None
) -> dict[str, Any]:
    audio = load_audio(SAMPLE_AUDIO)[: int(seconds * SAMPLE_RATE)]
    meta = {
        "benchmark": "frame_formats",
        "device": provenance.detect_device(),
        "host": provenance.host(),
        "cpu_count": os.cpu_count(),
        "date": provenance.now_iso(),
        "git_sha": provenance.git_sha(),
        "versions": {**provenance.versions(), "pillow": Image.__version__, "opencv": _opencv_version()},
        "profile": "tiny",
    }
    with local_tritonserver(ensure_export(export_dir, "tiny")) as server:
        return {**meta, **measure(server.grpc_url, server.pid, audio, repeats, codec_frames, only)}


def _opencv_version() -> str:
    import cv2

    return cv2.__version__


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export-dir", type=Path, default=Path("out/export/tiny"))
    p.add_argument("--seconds", type=float, default=4.0, help="audio per session (default 4 s: 100 frames)")
    p.add_argument("--repeats", type=int, default=3, help="times each format is measured, alternated")
    p.add_argument("--codec-frames", type=int, default=16, help="frames the codec part encodes and decodes")
    p.add_argument("--cases", type=lambda s: tuple(s.split(",")), default=None, help="e.g. 512x512 (default: all)")
    p.add_argument("--note", default=None, help="recorded with the results, e.g. 'shared machine'")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "frame_formats.json")
    args = p.parse_args(argv)
    result = run(args.export_dir, args.seconds, args.repeats, args.codec_frames, args.cases)
    if args.note:
        result["note"] = args.note
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(frame_formats_section(result)))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
