"""`ditto-render`: portrait + speech -> talking-head MP4 (H.264, 25 fps, with the input audio as AAC).

    ditto-render --image face.jpg --audio speech.wav --out out.mp4
    ditto-render --image face.jpg --audio speech.wav --out out.mp4 --url 127.0.0.1:8001 --live

Without --url an embedded tritonserver is started on loopback from the export of --profile (exported
first if missing: tiny synthetic weights unless --weights points at Ditto's ditto_pytorch/) and stopped
afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ditto_triton.apps.register import add_registration_arguments, registration_options
from ditto_triton.apps.server import add_server_arguments, default_frame_format, server_url
from ditto_triton.client.audio import load_audio
from ditto_triton.client.errors import DittoClientError
from ditto_triton.client.session import DittoClient, ReceivedFrame
from ditto_triton.client.video import Mp4Writer, contact_sheet
from ditto_triton.protocol import OUTPUT_FORMATS, SAMPLE_RATE

SYNTHETIC_NOTE = (
    "note: these networks run with seeded synthetic weights, so the face is noise-like, not a talking person. "
    "Export with Ditto's released weights (--weights /path/to/ditto_pytorch) for the real model."
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ditto-render", description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="portrait (any format Pillow reads)")
    source.add_argument(
        "--video", type=Path, help="a short video of the face (MP4/MOV/WebM/MKV/AVI) to animate instead of a photo"
    )
    source.add_argument("--avatar", type=Path, help="an avatar file written by ditto-register (.npz)")
    p.add_argument(
        "--audio", type=Path, help="speech (WAV/FLAC/OGG/MP3, any rate, mono or stereo); optional with --motion-in"
    )
    p.add_argument("--motion-out", type=Path, help="also save the session's motion (.npz) to render again")
    p.add_argument("--motion-in", type=Path, help="render a saved motion (.npz from --motion-out): no audio, no LMDM")
    p.add_argument("--out", type=Path, required=True, help="output .mp4")
    add_server_arguments(p)
    p.add_argument("--live", action="store_true", help="send audio paced in real time (default: as fast as possible)")
    p.add_argument("--contact-sheet", type=Path, default=None, help="also write a PNG of a few frames side by side")
    p.add_argument(
        "--motion-plot",
        type=Path,
        default=None,
        help="also draw each frame's motion (mouth opening, eye openness, head pose) over the audio into a PNG",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds without a response before giving up")
    s = p.add_argument_group("session options")
    s.add_argument("--ditto-cfg", type=Path, help="take defaults from Ditto's cfg .pkl (read without running code)")
    s.add_argument(
        "--mode",
        choices=("online", "offline"),
        help="online: frames while audio streams (default); offline: whole clip first",
    )
    s.add_argument(
        "--overlap", type=int, help="LMDM window overlap (online 40..79, default 70; offline 1..79, default 10)"
    )
    s.add_argument("--steps", type=int, dest="sampling_steps", help="DDIM steps per window (default 10; offline 50)")
    s.add_argument("--guidance-weight", type=float, help="classifier-free guidance weight (default 2)")
    s.add_argument("--fade-in", type=int, help="frames rising from the source's pose (default 0)")
    s.add_argument("--fade-out", type=int, help="frames returning to the source at the end (default 0)")
    s.add_argument("--seed", type=int, help="noise seed (default 0)")
    s.add_argument(
        "--frame-format", dest="output_format", choices=OUTPUT_FORMATS, help="default: jpeg with --url, else rgb"
    )
    s.add_argument(
        "--emotion", type=int, help="0..7: angry disgust fear happy neutral sad surprise contempt (default 4)"
    )
    s.add_argument("--delta-pitch", type=float, help="degrees added to every frame's pitch (default 2)")
    s.add_argument("--delta-yaw", type=float)
    s.add_argument("--delta-roll", type=float)
    s.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="any session option (README table), e.g. --option 'emotion=[[3],[5]]'; repeatable",
    )
    s.add_argument("--controls", type=Path, help="JSON file: a list of per-frame controls, sent with the first audio")
    add_registration_arguments(p)
    return p


def _pick(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


SESSION_FLAGS = (
    "output_format",
    "mode",
    "overlap",
    "sampling_steps",
    "seed",
    "emotion",
    "guidance_weight",
    "fade_in",
    "fade_out",
    "delta_pitch",
    "delta_yaw",
    "delta_roll",
)


def _generic_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--option {pair!r}: expected NAME=JSON")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value  # a bare word such as offline or jpeg
    return options


def session_options(args: argparse.Namespace, from_cfg: dict) -> dict:
    """--ditto-cfg's session options, then the flags, then --option (later ones win); unless one names
    output_format, the frame format for the server asked (default_frame_format)."""
    options = {**from_cfg, **_pick(args, SESSION_FLAGS), **_generic_options(args.option)}
    return {"output_format": default_frame_format(args.url), **options}


def _cfg_options(args: argparse.Namespace, console: Console) -> tuple[dict, dict]:
    """(session options, registration options) from `--ditto-cfg` (explicit flags override them)."""
    if args.ditto_cfg is None:
        return {}, {}
    from ditto_triton.ditto_cfg import load_ditto_cfg, registration_options_from_cfg, session_options_from_cfg

    cfg = load_ditto_cfg(args.ditto_cfg)
    options, ignored = session_options_from_cfg(cfg)
    registration = registration_options_from_cfg(cfg)
    console.print(
        f"{args.ditto_cfg}: session options {', '.join(sorted(options)) or 'none'}; registration options "
        f"{', '.join(sorted(registration)) or 'none'}"
        + (f"; not applicable here: {', '.join(ignored)}" if ignored else "")
    )
    return options, registration


def late_frames(frames: list[ReceivedFrame]) -> int:
    """Frames that arrived after their presentation time, counted from the first frame's arrival."""
    if not frames:
        return 0
    t0, p0 = frames[0].received_s, frames[0].pts_s
    return sum(f.received_s - t0 > f.pts_s - p0 + 1e-3 for f in frames)


def _register(client: DittoClient, args: argparse.Namespace, from_cfg: dict) -> str:
    registration = registration_options(args)
    if args.avatar:
        if registration:
            raise ValueError("an avatar file is registered as it is: drop the registration options")
        return client.register_avatar_file(args.avatar.read_bytes())
    registration = {**from_cfg, **registration}
    if args.video:
        return client.register_video(args.video.read_bytes(), registration)
    return client.register_avatar(args.image.read_bytes(), registration)


def _frame_stream(client: DittoClient, args: argparse.Namespace, avatar: str, audio16: np.ndarray, options: dict):
    """(frames as they arrive, how many to expect, the options sent): from the audio, or with
    --motion-in from a motion file (its options and controls, overridden by explicit flags)."""
    if args.motion_in:
        from ditto_triton.client.motion_file import MotionFile

        motion = MotionFile.load(args.motion_in)
        replay = motion.replay_options(**options)
        replay = {**replay, "return_motion": True} if args.motion_plot else replay
        return client.stream_motion(avatar, motion.motion, replay, motion.replay_controls()), motion.frames, replay
    if args.motion_out or args.motion_plot:
        options = {**options, "return_motion": True}
    controls = json.loads(args.controls.read_text()) if args.controls else None
    frames = client.stream(avatar, audio16, options, realtime=args.live, controls=controls)
    return frames, -(-audio16.size // 640), options


def _write_motion_plot(args: argparse.Namespace, frames: list[ReceivedFrame], audio16: np.ndarray, console) -> None:
    from ditto_triton.client.motion_plot import write_motion_plot

    synthetic = not args.url and args.weights == "synthetic"
    title = f"{args.out.name}: motion per frame" + (" (synthetic weights: a stand-in motion)" if synthetic else "")
    write_motion_plot(args.motion_plot, [f.motion for f in frames], audio16, title)
    console.print(f"motion plot: {args.motion_plot}")


def render(args: argparse.Namespace, url: str, console: Console, audio16: np.ndarray) -> dict:
    original, rate = sf.read(str(args.audio), dtype="float32", always_2d=False) if args.audio else (None, SAMPLE_RATE)
    with DittoClient(url, timeout_s=args.timeout) as client:
        cfg_session, cfg_registration = _cfg_options(args, console)
        avatar = _register(client, args, cfg_registration)
        console.print(f"avatar {avatar}: registration {client.registration(avatar)!r}")
        options = session_options(args, cfg_session)
        stream, expected, options = _frame_stream(client, args, avatar, audio16, options)
        writer = Mp4Writer(args.out, original, rate)
        frames: list[ReceivedFrame] = []
        sheet: list[np.ndarray] = []
        stride = max(1, expected // 12)
        start = time.perf_counter()
        with Progress(
            TextColumn("rendering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
        ) as bar:
            task = bar.add_task("frames", total=expected)
            try:
                for frame in stream:
                    writer.add(frame.rgb)
                    frames.append(
                        ReceivedFrame(frame.index, frame.pts_s, np.empty(0), frame.received_s, b"", frame.motion)
                    )
                    if frame.index % stride == 0:
                        sheet.append(frame.rgb)
                    bar.advance(task)
            finally:
                writer.close()
    if not frames:
        args.out.unlink(missing_ok=True)
        raise RuntimeError(f"the server sent no frames; {args.out} was not written")
    if args.motion_out:
        from ditto_triton.client.motion_file import motion_file_from

        motion_file_from([f.motion for f in frames], options).save(args.motion_out)
        console.print(f"motion: {args.motion_out} ({len(frames)} frames)")
    if args.motion_plot:
        _write_motion_plot(args, frames, audio16, console)
    if args.contact_sheet and sheet:
        args.contact_sheet.parent.mkdir(parents=True, exist_ok=True)
        contact_sheet(sheet).save(args.contact_sheet)
    span = frames[-1].received_s - frames[0].received_s if len(frames) > 1 else 0.0
    return {
        "frames": len(frames),
        "expected_frames": expected,
        "first_frame_delay_ms": round((frames[0].received_s - start) * 1e3, 1) if frames else None,
        "fps": round((len(frames) - 1) / span, 2) if span > 0 else None,
        "late_frames": late_frames(frames),
        "audio_s": round(audio16.size / SAMPLE_RATE, 3),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)  # one summary line, never wrapped mid-number
    if args.audio is None and args.motion_in is None:
        console.print("error: give --audio (or --motion-in to render a saved motion)")
        return 2
    for path in (args.image or args.video or args.avatar, args.audio, args.motion_in):
        if path is not None and not path.is_file():
            console.print(f"error: {path}: no such file")
            return 2
    try:
        # before a server starts: an unusable file fails at once
        audio16 = load_audio(args.audio) if args.audio else np.zeros(0, np.float32)
        with server_url(args, console) as url:
            summary = render(args, url, console, audio16)
    except (DittoClientError, ValueError, TimeoutError, RuntimeError) as exc:
        console.print(f"error: {exc}", markup=False)
        return 2
    console.print(
        f"wrote {args.out}: {summary['frames']} frames ({summary['audio_s']} s of audio), first frame after "
        f"{summary['first_frame_delay_ms']} ms, {summary['fps']} frames/s, {summary['late_frames']} late frames"
    )
    if args.contact_sheet:
        console.print(f"contact sheet: {args.contact_sheet}")
    if not args.url and args.weights == "synthetic":
        console.print(SYNTHETIC_NOTE)
    return 0 if summary["frames"] == summary["expected_frames"] else 1


if __name__ == "__main__":
    sys.exit(main())
