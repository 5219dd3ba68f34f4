"""The synthetic weights' motion follows the speech (export/synthetic_speech.py, export/synthetic_face.py)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ditto_triton.client.motion_file import motion_file_from
from ditto_triton.client.motion_plot import motion_curves
from ditto_triton.export.registry import STAGE_NETWORKS
from ditto_triton.export.synthetic_face import LOWER_LIP_KP, UPPER_LIP_KP
from ditto_triton.export.synthetic_speech import ENERGY_CHANNELS, LIP_OPENING, energy_feature
from ditto_triton.export.weights import SYNTHETIC, load_stage
from ditto_triton.manifest import read_manifest, stale_reason
from ditto_triton.profiles import TINY
from ditto_triton.protocol import FPS, SAMPLE_RATE
from ditto_triton.stages import stage_specs

SPEECH_S, SILENCE_S = 2.6, 2.0
SETTLE_FRAMES = 8  # frames after the speech whose windows may still hold some of it


def synthetic(name: str, tmp_path: Path) -> torch.nn.Module:
    """The tiny stage's module with the export's synthetic weights (through the checkpoint round trip)."""
    net = STAGE_NETWORKS[name]
    loaded = load_stage(net, stage_specs(TINY)[name], TINY, SYNTHETIC, 0, tmp_path)
    net.prepare_export(loaded.module)
    return loaded.module.eval()


def sine(rms: float, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (rms * math.sqrt(2) * torch.sin(2 * math.pi * 220 * t))[None]


def test_hubert_hears_the_energy_and_nothing_in_silence(tmp_path):
    hubert = synthetic("hubert", tmp_path)
    with torch.no_grad():
        silence = energy_feature(hubert(torch.zeros(1, 6480)))
        levels = [energy_feature(hubert(sine(rms))).mean().item() for rms in (0.003, 0.01, 0.03, 0.1, 0.3)]
    assert silence.abs().max() < 1e-6
    assert levels == sorted(levels) and levels[0] < 0.01 and 0.2 < levels[3] < levels[4] < 1.0, levels


def test_lmdm_opens_the_lips_frame_by_frame_with_the_energy(tmp_path):
    lmdm = synthetic("lmdm", tmp_path)
    energy = torch.zeros(80)
    energy[20:40] = torch.linspace(0, 0.8, 20)
    energy[60] = 0.5
    cond = torch.zeros(1, 80, TINY.lmdm.cond_dim)
    scale = math.sqrt(TINY.lmdm.audio_dim / 2)  # the HuBERT output's units (energy_feature)
    cond[0, :, ENERGY_CHANNELS[0]], cond[0, :, ENERGY_CHANNELS[1]] = energy * scale, -energy * scale
    x, cond_frame, t = 0.2 * torch.randn(1, 80, 265), torch.zeros(1, 265), torch.tensor([37])  # t = 37: near x0
    with torch.no_grad():
        x0 = lmdm(x, cond_frame, cond, t, torch.tensor([2.0]))[1][0]
        unconditional = lmdm(x, cond_frame, cond, t, torch.tensor([0.0]))[1][0]
    for kps, opening in ((LOWER_LIP_KP, LIP_OPENING), (UPPER_LIP_KP, -LIP_OPENING / 3)):
        for kp in kps:  # y of the keypoint's expression; the LayerNorms squeeze loud frames a little
            moved = x0[:, 202 + 3 * kp + 1] - unconditional[:, 202 + 3 * kp + 1]
            np.testing.assert_allclose(moved, opening * energy, rtol=0.1, atol=0.005, err_msg=str(kp))
    quiet = x0[energy == 0]
    assert (quiet - quiet[0]).abs().max() < 0.01  # in silence only a small jitter (from x) remains


def test_motion_extractor_gives_a_frontal_unit_scale_face_inside_the_volume(tmp_path):
    extractor = synthetic("motion_extractor", tmp_path)
    with torch.no_grad():
        pitch, yaw, roll, t, exp, scale, kp = extractor(torch.rand(3, 3, 64, 64))
    degrees = [(torch.softmax(b, 1) * torch.arange(66)).sum(1) * 3 - 97.5 for b in (pitch, yaw, roll)]
    assert max(d.abs().max().item() for d in degrees) < 5
    assert kp.abs().max() < 0.6 and exp.abs().max() < 0.05 and t.abs().max() < 0.05
    assert (scale - 1).abs().max() < 0.05


@dataclass(frozen=True)
class Changes:
    speech: np.ndarray  # mean |frame - previous frame| in grey levels, frames inside the speech
    silence: np.ndarray  # the same in the digital silence after it (once it settled)
    mouth_speech: np.ndarray  # the motion plot's mouth opening (% of the crop)
    mouth_silence: np.ndarray


def frame_changes(export_dir: Path, portrait: bytes, speech16k: np.ndarray) -> Changes:
    """Render SPEECH_S of the sample speech, then SILENCE_S of digital silence, in process."""
    from ditto_triton.export.ort_runtime import OrtStages
    from ditto_triton.profiles import get_profile
    from ditto_triton.streaming.options import SessionOptions
    from ditto_triton.streaming.reference import register_avatar, render_audio

    profile = get_profile(read_manifest(export_dir)["profile"])
    stages = OrtStages(export_dir)
    avatar = register_avatar(stages, portrait, profile.appearance.image_size, {"max_size": 256})
    audio = np.concatenate([speech16k[: int(SPEECH_S * SAMPLE_RATE)], np.zeros(int(SILENCE_S * SAMPLE_RATE))])
    options = SessionOptions(return_motion=True)
    frames = render_audio(stages, avatar, audio.astype(np.float32), profile.render_size, options)
    rgb = [f.rgb.astype(np.int16) for f in frames]
    diffs = np.array([0.0] + [np.abs(b - a).mean() for a, b in zip(rgb, rgb[1:])])
    mouth = motion_curves(motion_file_from([f.motion for f in frames], {})).mouth
    speech, silence = slice(int(0.4 * FPS), int(SPEECH_S * FPS)), slice(int(SPEECH_S * FPS) + SETTLE_FRAMES, None)
    return Changes(diffs[speech], diffs[silence], mouth[speech], mouth[silence])


def test_frames_change_with_speech_and_stay_still_in_silence(tiny_export, portrait, speech16k):
    changes = frame_changes(tiny_export, portrait, speech16k)
    summary = {name: np.round(getattr(changes, name), 2).tolist() for name in ("speech", "silence")}
    # The frozen synthetic weights before this moved 0.01 grey levels per frame in speech as in silence.
    assert np.mean(changes.speech > 0.5) > 0.4, summary  # the speech has pauses, and loud stretches saturate
    assert changes.speech.mean() > 0.6, summary
    assert changes.silence.max() < 0.3, summary  # silence: no more than the small jitter, well below a grey level
    assert changes.speech.mean() > 8 * changes.silence.mean(), summary
    assert changes.mouth_speech.max() > 5 and np.abs(changes.mouth_silence).max() < 0.5


def test_an_export_with_older_synthetic_weights_is_stale(tiny_export, tmp_path):
    assert stale_reason(tiny_export, "tiny") is None
    manifest = read_manifest(tiny_export)
    for entry in manifest["stages"].values():
        assert entry["weights"]["kind"] == "synthetic"
        del entry["weights"]["synthetic_version"]  # what the frozen-motion synthetic weights recorded
        (tmp_path / entry["file"]).symlink_to(tiny_export / entry["file"])
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    reason = stale_reason(tmp_path, "tiny")
    assert reason is not None and "older synthetic weights" in reason
