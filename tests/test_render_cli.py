"""`ditto-render`: portrait + speech -> MP4 through a real tritonserver (tiny profile)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import av
import numpy as np
import pytest
import soundfile as sf
from frame_compare import psnr
from PIL import Image

from ditto_triton.apps.render import main as render_main
from ditto_triton.client import DittoClient, load_audio
from ditto_triton.model_repository.server import free_port


def cli_args(samples_dir, audio: str, out: str, *more: str) -> list[str]:
    """ditto-render's arguments for the sample portrait, `audio` and `out`, then `more`."""
    return ["--image", str(samples_dir / "ditto_example_image.jpg"), "--audio", audio, "--out", out, *more]


@pytest.fixture(scope="module")
def short_stereo_wav(samples_dir, tmp_path_factory):
    """1.3 s of the sample speech as 24 kHz stereo: exercises resampling and down-mixing."""
    audio, rate = sf.read(samples_dir / "ditto_example_audio.wav", dtype="float32")
    cut = audio[: int(1.3 * rate)]
    path = tmp_path_factory.mktemp("audio") / "speech_stereo.wav"
    sf.write(path, np.stack([cut, cut * 0.5], axis=1), rate)
    return path


def probe(path):
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        return {
            "fps": float(video.average_rate),
            "size": (video.width, video.height),
            "frames": video.frames,
            "video_s": float(video.duration * video.time_base),
            "audio_s": float(audio.duration * audio.time_base),
            "audio_channels": audio.channels,
        }


def test_mp4_has_video_and_audio_of_the_same_length(server, samples_dir, short_stereo_wav, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    sheet = tmp_path / "sheet.png"
    code = render_main(
        cli_args(
            samples_dir,
            str(short_stereo_wav),
            str(out),
            "--url",
            server.grpc_url,
            "--max-size",
            "512",
            "--contact-sheet",
            str(sheet),
        )
    )
    assert code == 0
    info = probe(out)
    assert info["fps"] == 25 and info["size"] == (512, 512)
    assert info["frames"] == 33  # ceil(1.3 s * 25)
    assert info["audio_channels"] == 2
    assert abs(info["video_s"] - 1.3) <= 1 / 25 and abs(info["audio_s"] - 1.3) <= 1 / 25
    assert Image.open(sheet).size[1] == 256
    err = capsys.readouterr().err
    assert "33 frames" in err and "first frame after" in err and "late frames" in err


def test_jpeg_frames_from_a_url_reach_the_mp4_in_rgb_order(server, samples_dir, short_stereo_wav, tmp_path):
    """--url asks for JPEG frames: decoded to H×W×3 RGB, they make the same picture as a raw RGB session's."""
    out = tmp_path / "jpeg.mp4"
    args = cli_args(samples_dir, str(short_stereo_wav), str(out), "--url", server.grpc_url, "--max-size", "256")
    assert render_main(args) == 0
    with av.open(str(out)) as container:
        written = next(container.decode(video=0)).to_ndarray(format="rgb24")
    with DittoClient(server.grpc_url) as client:
        avatar = client.register_avatar((samples_dir / "ditto_example_image.jpg").read_bytes(), {"max_size": 256})
        raw = list(client.stream(avatar, load_audio(short_stereo_wav), {"output_format": "rgb"}))[0].rgb
    assert written.shape == raw.shape == (256, 256, 3)
    assert psnr(written, raw) > 25 and psnr(written[..., ::-1], raw) < 20, (
        psnr(written, raw),
        psnr(written[..., ::-1], raw),
    )


# What `pip install .` (no extras) lacks, and the layers above the client: none may be imported.
NOT_IN_THE_BASE_INSTALL = (
    "torch",
    "onnx",
    "onnxruntime",
    "mediapipe",
    "cv2",
    "transformers",
    "triton_python_backend_utils",
    "matplotlib",
)
SERVER_SIDE = ("ditto_triton.export", "ditto_triton.model_repository", "ditto_triton.streaming", "ditto_triton.avatar")


def test_render_with_url_needs_only_the_base_install(server, samples_dir, short_stereo_wav, tmp_path):
    """ditto-render --url in a process where the extras' packages and the server-side layers cannot be imported."""
    blocker = textwrap.dedent(f"""
        import importlib.abc, sys

        class NotInstalled(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in {NOT_IN_THE_BASE_INSTALL!r} or name.startswith({SERVER_SIDE!r}):
                    raise ModuleNotFoundError(f"{{name}} is not in the base install")
                return None

        sys.meta_path.insert(0, NotInstalled())
        from ditto_triton.apps.render import main
        sys.exit(main(sys.argv[1:]))
    """)
    out, plot = tmp_path / "base.mp4", tmp_path / "motion.png"
    args = cli_args(samples_dir, str(short_stereo_wav), str(out), "--url", server.grpc_url, "--max-size", "256")
    args += ["--motion-plot", str(plot)]  # drawn with Pillow: no matplotlib in the base install
    run = subprocess.run([sys.executable, "-c", blocker, *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert probe(out)["frames"] == 33
    assert Image.open(plot).size == (1200, 800) and "motion plot" in run.stderr


def test_embedded_server_when_no_url(tiny_export, samples_dir, short_stereo_wav, tmp_path, capsys):
    out = tmp_path / "embedded.mp4"
    code = render_main(
        cli_args(
            samples_dir,
            str(short_stereo_wav),
            str(out),
            "--export-dir",
            str(tiny_export),
            "--max-size",
            "256",
            "--seed",
            "3",
        )
    )
    assert code == 0
    assert probe(out)["size"] == (256, 256)
    assert "synthetic weights" in capsys.readouterr().err


def run_error(args, capsys) -> str:
    assert render_main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) <= 2 and "Traceback" not in "\n".join(lines)  # one clear line (rich may wrap it)
    return " ".join(lines)


def test_server_down_is_one_line(samples_dir, short_stereo_wav, tmp_path, capsys):
    base = cli_args(samples_dir, str(short_stereo_wav), str(tmp_path / "x.mp4"))
    port = free_port()
    assert "cannot reach a Triton server" in run_error(base + ["--url", f"127.0.0.1:{port}", "--timeout", "2"], capsys)
    assert "error:" in run_error(base + ["--url", "no such host:::", "--timeout", "2"], capsys)
    assert "host:port, without a scheme" in run_error(base + ["--url", "http://127.0.0.1:8001"], capsys)
    assert "no such file" in run_error(
        ["--image", str(tmp_path / "none.jpg"), "--audio", str(short_stereo_wav), "--out", "x.mp4"], capsys
    )


def test_server_without_the_models_is_one_line(triton_stage_server, samples_dir, short_stereo_wav, tmp_path, capsys):
    args = cli_args(samples_dir, str(short_stereo_wav), str(tmp_path / "x.mp4"), "--url", triton_stage_server.grpc_url)
    assert "avatar_registry" in run_error(args, capsys)


def test_audio_without_samples_is_an_error_and_writes_nothing(samples_dir, tmp_path, capsys):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    out = tmp_path / "never.mp4"
    args = cli_args(samples_dir, str(empty), str(out))
    message = run_error(args + ["--url", f"127.0.0.1:{free_port()}"], capsys)  # fails before any server is asked
    assert "holds no audio samples" in message and "wrote" not in message
    assert not out.exists()
