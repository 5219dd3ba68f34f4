"""`ditto-register`: register a portrait or video once, offline, into an avatar file for every replica.

    ditto-register face.jpg --weights /path/to/ditto_pytorch --out avatar.npz
    ditto-render --avatar avatar.npz --audio speech.wav --out out.mp4

With a weights directory holding Ditto's `aux_models/` the face is found with Ditto's own face
models ("ditto" registration); with synthetic weights, with MediaPipe ("mediapipe"). The networks
run in this process with ONNX Runtime, from the export of --profile (exported first if needed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from ditto_triton.protocol import BadRequest

REGISTRATION_FLAGS = ("max_size", "crop_scale", "crop_vy_ratio", "max_frames")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ditto-register", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="portrait (JPEG/PNG/...) or video (MP4/MOV/WebM/MKV/AVI)")
    p.add_argument("--out", type=Path, required=True, help="avatar file to write (.npz)")
    p.add_argument("--weights", default="synthetic", help="'synthetic' or Ditto's ditto_pytorch/ directory")
    p.add_argument("--profile", choices=("tiny", "full"), default="tiny")
    p.add_argument("--export-dir", type=Path, default=None, help="default out/export/<profile>")
    add_registration_arguments(p)
    return p


def add_registration_arguments(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("registration options")
    r.add_argument("--max-size", type=int, help="long-side cap of the photo (default 1920)")
    r.add_argument("--crop-scale", type=float, help="crop size / face size (default 2.3)")
    r.add_argument("--crop-vy-ratio", type=float, help="vertical crop shift (default -0.125)")
    r.add_argument("--max-frames", type=int, help="video: frames registered from its start (default 0: all)")


def registration_options(args: argparse.Namespace) -> dict:
    return {n: getattr(args, n) for n in REGISTRATION_FLAGS if getattr(args, n) is not None}


def register(args: argparse.Namespace, console: Console):
    from ditto_triton.avatar.video import container_format
    from ditto_triton.export.current import export_from
    from ditto_triton.export.face_models import export_faces
    from ditto_triton.export.ort_runtime import OrtStages
    from ditto_triton.profiles import get_profile
    from ditto_triton.streaming.reference import registered_avatar

    export = export_from(
        args.export_dir or Path("out/export") / args.profile, args.profile, args.weights, console.print
    )
    data = args.source.read_bytes()
    video = container_format(data) is not None
    avatar = registered_avatar(
        OrtStages(export), data, get_profile(args.profile), registration_options(args), video, export_faces(export)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    avatar.save(args.out)
    return avatar


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    if not args.source.is_file():
        console.print(f"error: {args.source}: no such file")
        return 2
    try:
        avatar = register(args, console)
    except (BadRequest, ValueError, RuntimeError, OSError) as exc:
        console.print(f"error: {exc}", markup=False)
        return 2
    frames = avatar.frames["f_s"].shape[0]
    console.print(
        f"wrote {args.out}: {frames} source frame(s), registration {avatar.registration!r}, {args.profile} profile, "
        f"{args.out.stat().st_size / 2**20:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
