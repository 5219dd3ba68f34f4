"""Registration time per stage: a 1080p photo and a 10 s 1080p video, through Ditto's path (its face models:
stand-ins with the released files' I/O, since the real ones cannot be downloaded here) and MediaPipe's.

    python -m ditto_triton.benchmarks.registration [--out benchmarks/results/registration.json]

Stages: decode + crops + eye features (everything on the CPU around the models), each face model (SCRFD, 106, 203, BlazeFace, FaceMesh: model time from the
`infer` callable), stacking the crops for the extractors (resize to the extractors' input), the two
extractors, and the total. The MediaPipe path's photo time includes creating its graphs (first use). The
networks run in this process with ONNX Runtime on the tiny export (the extractors' cost is profile-dependent;
the face models' is not). The stand-ins answer with constants, so their model times are lower bounds.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from PIL import Image

from ditto_triton.avatar.ditto_registration import DittoFaces
from ditto_triton.avatar.source import CropOptions, prepare_source, prepare_video_sources, stack_sources
from ditto_triton.benchmarks.fixtures import HD_FRAME as FRAME
from ditto_triton.benchmarks.fixtures import hd_frame
from ditto_triton.benchmarks.provenance import detect_device, git_sha, now_iso, versions
from ditto_triton.client.video import Mp4Writer
from ditto_triton.export.current import ensure_export
from ditto_triton.export.face_models import OrtFaceModels, import_face_models
from ditto_triton.export.face_standins import write_standin_release
from ditto_triton.export.ort_runtime import OrtStages
from ditto_triton.streaming.avatar_features import run_extractors

VIDEO_FRAMES = 250  # 10 s at 25 fps


def letterbox_box() -> tuple[float, float, float, float]:
    """Where the sample's face lands in the detector's 512 letterbox of `hd_frame()`."""
    s = 512 / FRAME[1]
    x0, y0, x1, y1 = (v * FRAME[0] / 1432 for v in (482, 420, 1047, 988))  # the face in the 1432² sample
    return ((x0 + 420) * s, y0 * s, (x1 + 420) * s, y1 * s)


class Timed:
    """Wraps an `infer` callable and adds each model's wall time to `times`."""

    def __init__(self, infer, times: dict[str, float]) -> None:
        self.infer, self.times = infer, times

    def __call__(self, name: str, inputs: dict) -> dict:
        start = time.perf_counter()
        try:
            return self.infer(name, inputs)
        finally:
            self.times[name] += time.perf_counter() - start


def measure(data: bytes, video: bool, faces_infer, stages: OrtStages, ditto: bool) -> dict[str, float]:
    times: dict[str, float] = defaultdict(float)
    faces = DittoFaces(Timed(faces_infer, times)) if ditto else None
    start = time.perf_counter()
    options = CropOptions()
    sources = prepare_video_sources(data, options, faces) if video else [prepare_source(data, options, faces)]
    registered = time.perf_counter()
    stacked = stack_sources(sources, stages.manifest["profile_config"]["appearance"]["image_size"])
    times["stack_crops"] = time.perf_counter() - registered
    run_extractors(Timed(stages.infer, times), stacked["extractor_input"])
    total = time.perf_counter() - start
    face_models = sum(v for k, v in times.items() if k.startswith("face_"))
    result = {f"{k}_ms": round(v * 1e3, 1) for k, v in sorted(times.items())}
    result["decode_crop_eyes_ms"] = round((registered - start - face_models) * 1e3, 1)
    result["total_ms"] = round(total * 1e3, 1)
    result["frames"] = len(sources)
    return result


def encode_video() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        writer = Mp4Writer(path, crf=23)
        for i in range(VIDEO_FRAMES):
            writer.add(hd_frame(shift=i % 40))
        writer.close()
        return path.read_bytes()


def run(export_dir: Path) -> dict:
    stages = OrtStages(ensure_export(export_dir, "tiny", parity=False))
    buf = io.BytesIO()
    Image.fromarray(hd_frame()).save(buf, format="JPEG", quality=92)
    photo, clip = buf.getvalue(), encode_video()
    with tempfile.TemporaryDirectory() as tmp:
        release = write_standin_release(Path(tmp) / "ditto_pytorch", letterbox_box())
        entry = import_face_models(release, Path(tmp) / "faces")
        face_infer = OrtFaceModels(Path(tmp) / "faces", entry).infer
        results = {}
        for path, ditto in (("ditto", True), ("mediapipe", False)):
            results[path] = {
                "photo_1080p": measure(photo, False, face_infer, stages, ditto),
                "video_1080p_10s": measure(clip, True, face_infer, stages, ditto),
            }
    meta = {"device": detect_device(), "git_sha": git_sha(), "date": now_iso(), "versions": versions()}
    return {"benchmark": "registration", **meta, "profile": "tiny", "registration": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export-dir", type=Path, default=Path("out/export/tiny"))
    p.add_argument("--out", type=Path, default=Path("out/bench/registration.json"))
    args = p.parse_args(argv)
    result = run(args.export_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["registration"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
