"""The motion plot (`ditto-render --motion-plot`): its quantities and the PNG."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ditto_triton.client.motion_file import motion_file_from
from ditto_triton.client.motion_plot import (
    SIZE,
    MotionCurves,
    draw_motion_plot,
    motion_curves,
    pose_degrees,
    write_motion_plot,
)
from ditto_triton.protocol import MOTION_DIM, SAMPLE_RATE
from ditto_triton.streaming.stitch import bin66_to_degree

LOWER_LIP = 19  # the lowest lip keypoint of the layout below
UPPER_EYELIDS = (13, 16)


def keypoints() -> np.ndarray:
    """21 keypoints: lips around y = 0.2 (lower lip 19 lowest), eyes around y = -0.1 (13, 16 highest)."""
    kp = np.zeros((21, 3), np.float32)
    kp[:, 1] = np.linspace(-0.4, 0.4, 21)
    kp[[6, 12, 14, 17, 20], 1] = [0.2, 0.16, 0.2, 0.22, 0.22]
    kp[LOWER_LIP, 1] = 0.24
    kp[[11, 15, 18], 1] = -0.06
    kp[list(UPPER_EYELIDS), 1] = -0.11
    return kp


def records(frames: int, mouth: np.ndarray | None = None, pitch_bin: float = 32.5) -> list[dict]:
    """Motion records as a session returns them: the lower lip moved down by `mouth[i]` in frame i, and
    every row's pitch bins peaked at `pitch_bin` while d0's are at 32.5 (0 degrees)."""
    bins = np.arange(66, dtype=np.float32)
    d0 = np.zeros(MOTION_DIM, np.float32)
    d0[1:199] = np.tile(-((bins - 32.5) ** 2) / 18, 3)
    out = []
    for i in range(frames):
        row = d0.copy()
        row[1:67] = -((bins - pitch_bin) ** 2) / 18
        x_d = keypoints()
        x_d[LOWER_LIP, 1] += 0.0 if mouth is None else mouth[i]
        out.append({"row": row, "x_s": keypoints(), "x_d": x_d, "d0": d0, "controls": {}})
    return out


def test_mouth_opening_is_the_lip_extent_over_the_photo_s_in_percent_of_the_crop():
    motion = motion_file_from(records(3, mouth=np.array([0.0, 0.1, -0.02])), {})
    curves = motion_curves(motion)
    np.testing.assert_allclose(curves.mouth, [0.0, 5.0, -1.0], atol=1e-5)  # 0.1 of the crop's 2 units = 5 %
    np.testing.assert_allclose(curves.eyes, 0.0, atol=1e-6)
    np.testing.assert_allclose(curves.seconds, [0.0, 0.04, 0.08])


def test_head_pose_is_the_rows_degrees_from_d0_s():
    curves = motion_curves(motion_file_from(records(2, pitch_bin=34.5), {}))
    np.testing.assert_allclose(curves.pose["pitch"], 6.0, atol=1e-3)  # two 3-degree bins
    np.testing.assert_allclose(curves.pose["yaw"], 0.0, atol=1e-6)


def test_pose_degrees_is_dittos_bin66_to_degree():
    logits = np.random.default_rng(0).normal(size=(5, 66)).astype(np.float32) * 3
    np.testing.assert_allclose(pose_degrees(logits), bin66_to_degree(logits), rtol=1e-5, atol=1e-4)


def test_plot_is_a_png_of_the_expected_size(tmp_path):
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    speech = (0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    mouth = np.clip(np.sin(2 * np.pi * 2 * np.arange(50) / 25), 0, None) * 0.1
    path = write_motion_plot(tmp_path / "plots" / "motion.png", records(50, mouth), speech, "a title")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == SIZE
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels.reshape(-1, 3) != 255).any(axis=1).mean() > 0.02  # something was drawn


def test_silence_and_a_still_face_draw_flat_curves(tmp_path):
    path = write_motion_plot(tmp_path / "still.png", records(25), np.zeros(SAMPLE_RATE, np.float32))
    assert Image.open(path).size == SIZE
    path = write_motion_plot(tmp_path / "no_audio.png", records(1), np.zeros(0, np.float32))  # --motion-in, no audio
    assert Image.open(path).size == SIZE


def test_zero_frames_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no frames carried motion"):
        write_motion_plot(tmp_path / "none.png", [], np.zeros(100, np.float32))
    empty = MotionCurves(np.zeros(0), np.zeros(0), np.zeros(0), {"pitch": np.zeros(0)})
    with pytest.raises(ValueError, match="no frames"):
        draw_motion_plot(empty, np.zeros(100, np.float32))
    assert not (tmp_path / "none.png").exists()
