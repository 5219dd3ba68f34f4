"""Stream the sample portrait + speech through a local tritonserver once and through the in-process
pipeline once; print frames, first-frame delay and frames/s of both as JSON.

    .venv/bin/python benchmarks/stream_once.py --export out/export/tiny
    .venv/bin/python benchmarks/stream_once.py --export out/export/full --seconds 0.2

First-frame delay is measured from the first request sent to the first frame received, with the
whole audio available up front (not paced); frames/s is frames / (last frame - first frame).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ditto_triton.client import DittoClient, load_audio
from ditto_triton.export.manifest import read_manifest
from ditto_triton.model_repository.render import render_repository
from ditto_triton.model_repository.server import TritonServer
from ditto_triton.profiles import get_profile
from ditto_triton.streaming.options import SessionOptions
from ditto_triton.streaming.reference import register_avatar
from ditto_triton.streaming.session import PipelinedSession, StreamingSession
from ditto_triton.streaming.stages import OrtStages

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def summarize(first_send: float, arrivals: list[float]) -> dict:
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    return {
        "frames": len(arrivals),
        "first_frame_delay_ms": round((arrivals[0] - first_send) * 1e3, 1),
        "fps": round((len(arrivals) - 1) / span, 2) if len(arrivals) > 1 else None,
        "total_s": round(arrivals[-1] - first_send, 2),
    }


def in_process(export: Path, image: bytes, audio, crop: dict, render_size: int, extractor_size: int) -> dict:
    stages = OrtStages(export)
    avatar = register_avatar(stages, image, extractor_size, crop)
    arrivals: list[float] = []
    done = []
    session = StreamingSession(avatar, stages, SessionOptions(), render_size)
    runner = PipelinedSession(session, lambda f, t: arrivals.append(time.perf_counter()), lambda t: done.append(t), lambda t, e: done.append(e))
    start = time.perf_counter()
    for i in range(0, audio.size, 3200):
        runner.submit_audio(audio[i : i + 3200], tag=None)
    runner.submit_end("end")
    while "end" not in done and not any(isinstance(d, BaseException) for d in done):
        time.sleep(0.005)
    runner.close()
    return summarize(start, arrivals)


def through_triton(export: Path, image: bytes, audio, crop: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        repo = render_repository(export, Path(tmp) / "repo", "python-ort", include_services=True)
        with TritonServer(repo) as server, DittoClient(server.grpc_url, timeout_s=600) as client:
            avatar = client.register_avatar(image, crop)
            session = client.open_session(avatar)
            start = time.perf_counter()
            for i in range(0, audio.size, 3200):
                chunk = audio[i : i + 3200]
                (session.end if i + 3200 >= audio.size else session.send)(chunk)
            arrivals = [f.received_s for f in session.frames()]
            session.close()
            return summarize(start, arrivals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, default=Path("out/export/tiny"))
    parser.add_argument("--seconds", type=float, default=None, help="cut the sample audio (default: all 15.8 s)")
    parser.add_argument("--max-size", type=int, default=512, help="source photo long side (default 512)")
    args = parser.parse_args()
    profile = get_profile(read_manifest(args.export)["profile"])
    audio = load_audio(SAMPLES / "ditto_example_audio.wav")
    if args.seconds:
        audio = audio[: int(args.seconds * 16000)]
    image = (SAMPLES / "ditto_example_image.jpg").read_bytes()
    crop = {"max_size": args.max_size}
    result = {
        "profile": profile.name,
        "audio_s": round(audio.size / 16000, 2),
        "triton": through_triton(args.export, image, audio, crop),
        "in_process": in_process(args.export, image, audio, crop, profile.render_size, profile.appearance.image_size),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
