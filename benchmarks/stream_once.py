"""Stream the sample portrait + speech through a local tritonserver once and through the in-process
pipeline once; print frames, first-frame delay, frames/s and late frames of both as JSON.

    .venv/bin/python benchmarks/stream_once.py --export out/export/tiny
    .venv/bin/python benchmarks/stream_once.py --export out/export/full --seconds 0.2

The audio is fully available up front (not paced; `--realtime` paces it). The numbers are those of
`session_stats.summarize`; the full suite (`python -m ditto_triton.benchmarks.suite`) repeats such
sessions under load.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ditto_triton.benchmarks.fixtures import SAMPLE_AUDIO, SAMPLE_IMAGE, local_server
from ditto_triton.benchmarks.inprocess import InProcessPipeline
from ditto_triton.benchmarks.session_stats import summarize
from ditto_triton.benchmarks.triton_session import run_session
from ditto_triton.client import DittoClient, load_audio
from ditto_triton.manifest import read_manifest
from ditto_triton.protocol import SAMPLE_RATE

KEYS = ("frames", "ffd_ms", "fps", "late_frames", "rtf", "error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, default=Path("out/export/tiny"))
    parser.add_argument("--seconds", type=float, default=None, help="cut the sample audio (default: all 15.8 s)")
    parser.add_argument("--max-size", type=int, default=512, help="source photo long side (default 512)")
    parser.add_argument("--realtime", action="store_true", help="pace the audio in real time")
    args = parser.parse_args()
    audio = load_audio(SAMPLE_AUDIO)
    if args.seconds:
        audio = audio[: int(args.seconds * SAMPLE_RATE)]
    image = SAMPLE_IMAGE.read_bytes()
    crop = {"max_size": args.max_size}
    mode = "realtime" if args.realtime else "full"
    with local_server(args.export) as (url, _), DittoClient(url, timeout_s=600) as client:
        triton = summarize(run_session(client, client.register_avatar(image, crop), audio, mode))
    in_process = summarize(InProcessPipeline(args.export, image, crop).run(audio, mode))
    result = {
        "profile": read_manifest(args.export)["profile"],
        "audio_s": round(audio.size / SAMPLE_RATE, 2),
        "mode": mode,
        "triton": {k: triton[k] for k in KEYS},
        "in_process": {k: in_process[k] for k in KEYS},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
