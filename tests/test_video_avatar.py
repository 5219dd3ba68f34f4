"""Video avatars (in process, tiny profile): registration of every frame, Ditto's temporal smoothing,
frames that loop back and forth over the source, the video's own head motion with generated lips,
per-frame eye conditions and put-back into the right source frame, and bad videos."""

from __future__ import annotations

import numpy as np
import pytest

from ditto_triton.avatar.errors import InvalidOptionsError, NoFaceError, VideoDecodeError
from ditto_triton.avatar.video import decode_video
from ditto_triton.client.video import Mp4Writer
from ditto_triton.profiles import TINY
from ditto_triton.streaming.options import SessionOptions
from ditto_triton.streaming.reference import register_avatar
from ditto_triton.streaming.session import StreamingSession
from ditto_triton.streaming.smoothing import moving_average
from ditto_triton.streaming.stitch import LIP_KP, bin66_to_degree

FRAMES = 12


@pytest.fixture(scope="module")
def video_avatar(recording_stages, portrait_video):
    return register_avatar(recording_stages, portrait_video, TINY.appearance.image_size, {"max_size": 512}, video=True)


def test_every_frame_is_registered_and_motion_is_smoothed_over_time(recording_stages, portrait_video, video_avatar):
    a = video_avatar
    assert a.frames == FRAMES and a.is_video
    assert a.f_s.shape[0] == a.motion_info.shape[0] == a.eye_open.shape[0] == a.source_rgb.shape[0] == FRAMES
    assert not np.array_equal(a.source_rgb[0], a.source_rgb[5]) and not np.allclose(a.f_s[0], a.f_s[5])
    # the face drifts right: the crops' translation follows it
    assert a.crop_to_source[5, 0, 2] - a.crop_to_source[0, 0, 2] == pytest.approx(30, abs=4)
    raw = register_avatar(
        recording_stages,
        portrait_video,
        TINY.appearance.image_size,
        {"max_size": 512, "source_smooth_k": 1},
        video=True,
    )
    np.testing.assert_allclose(a.motion_info, moving_average(raw.motion_info, 13), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(a.f_s, raw.f_s)  # f_s and the crops are not smoothed
    short = register_avatar(
        recording_stages, portrait_video, TINY.appearance.image_size, {"max_size": 512, "max_frames": 4}, video=True
    )
    assert short.frames == 4


def test_frames_loop_back_and_forth_over_the_source(video_avatar):
    order = [video_avatar.source_index(g) for g in range(30)]
    assert order == [*range(12), *range(11, -1, -1), *range(6)]


@pytest.fixture(scope="module")
def session_rows(recording_stages, video_avatar, speech16k):
    session = StreamingSession(video_avatar, recording_stages, SessionOptions(delta_pitch=0.0), TINY.render_size)
    recording_stages.clear()
    rows = session.feed(speech16k[: 40 * 640]) + session.end()
    return session, rows, [c[0].copy() for c in recording_stages.window_conds()]


def test_video_keeps_its_own_head_motion_and_drives_the_lips(video_avatar, session_rows):
    session, rows, _ = session_rows
    assert len(rows) == 40
    lips = np.zeros((21, 3), bool)
    lips[list(LIP_KP)] = True
    lips = lips.reshape(1, -1)
    for g in (0, 5, 13, 30):
        src = video_avatar.info_at(video_avatar.source_index(g))
        info = session.driving_info(g, rows[g])
        for key in ("pitch", "yaw", "roll"):
            assert float(bin66_to_degree(info[key])[0]) == pytest.approx(
                float(bin66_to_degree(src[key])[0]), abs=1e-4
            ), (g, key)
        np.testing.assert_allclose(info["t"], src["t"], atol=1e-6)
        np.testing.assert_allclose(info["exp"][~lips], src["exp"][~lips], atol=1e-6)  # eyes and the rest: the video's
        assert not np.allclose(info["exp"][lips], src["exp"][lips], atol=1e-4)  # lips: generated


def test_eye_conditions_follow_the_source_frames(video_avatar, session_rows):
    _, _, conds = session_rows
    hidden = conds[-2].shape[-1] - 79
    # the last full window covers frames -40..39 (its first 40 rows are the prefill silence: frame 0's)
    frames = np.arange(-40, 40)
    want = video_avatar.eye_open[video_avatar.source_index(frames)]
    np.testing.assert_allclose(conds[-2][:, hidden + 8 : hidden + 10], want, atol=1e-6)
    assert len({tuple(np.round(r, 6)) for r in want}) > 1  # the eyes do change over the source frames


def test_each_frame_is_pasted_into_its_source_frame(recording_stages, video_avatar, session_rows):
    session, rows, _ = session_rows
    fresh = StreamingSession(video_avatar, recording_stages, SessionOptions(delta_pitch=0.0), TINY.render_size)
    fresh.feed(np.zeros(40 * 640, np.float32))
    fresh.end()
    frames = fresh.render_batch(rows[:16])
    for g in (0, 3, 11, 12, 15):  # 12 and 15 play backwards: source frames 11 and 8
        corner = frames[g].rgb[:24, :24]
        matches = [k for k in range(FRAMES) if np.array_equal(corner, video_avatar.source_rgb[k][:24, :24])]
        assert matches == [video_avatar.source_index(g)], g


def test_bad_videos_name_the_problem(recording_stages, portrait, portrait_video, tmp_path):
    with pytest.raises(VideoDecodeError, match="empty"):
        decode_video(b"", 10, 512)
    with pytest.raises(VideoDecodeError, match="cannot decode"):
        decode_video(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 5000, 10, 512)
    with pytest.raises(VideoDecodeError, match="not a supported video"):
        decode_video(portrait, 10, 512)  # a JPEG sent as a video
    path = tmp_path / "blank.mp4"
    writer = Mp4Writer(path)
    for _ in range(3):
        writer.add(np.full((128, 128, 3), 90, np.uint8))
    writer.close()
    with pytest.raises(NoFaceError, match="video's first frame"):
        register_avatar(recording_stages, path.read_bytes(), TINY.appearance.image_size, {}, video=True)
    with pytest.raises(InvalidOptionsError, match="max_frames"):
        register_avatar(recording_stages, portrait_video, TINY.appearance.image_size, {"max_frames": -1}, video=True)


def test_a_session_eye_option_spans_every_source_frame(recording_stages, video_avatar, speech16k):
    session = StreamingSession(video_avatar, recording_stages, SessionOptions(eye_open=(0.2, 0.3)), TINY.render_size)
    recording_stages.clear()
    assert len(session.feed(speech16k[: 20 * 640]) + session.end()) == 20
    cond = recording_stages.window_conds()[-2][0]
    hidden = cond.shape[-1] - 79
    np.testing.assert_allclose(cond[:, hidden + 8 : hidden + 10], np.tile([0.2, 0.3], (cond.shape[0], 1)), atol=1e-6)
    eye_ball = video_avatar.eye_ball[video_avatar.source_index(np.arange(-60, 20))]
    np.testing.assert_allclose(cond[:, hidden + 10 : hidden + 16], eye_ball, atol=1e-6)  # still the video's


def test_eye_f0_mode_holds_the_first_source_frame_s_eyes(recording_stages, video_avatar, speech16k):
    session = StreamingSession(video_avatar, recording_stages, SessionOptions(eye_f0_mode=True), TINY.render_size)
    recording_stages.clear()
    session.feed(speech16k[: 40 * 640])
    session.end()
    cond = recording_stages.window_conds()[-2][0]
    hidden = cond.shape[-1] - 79
    np.testing.assert_allclose(cond[:, hidden + 8 : hidden + 10], np.tile(video_avatar.eye_open[0], (80, 1)), atol=1e-6)
    np.testing.assert_allclose(
        cond[:, hidden + 10 : hidden + 16], np.tile(video_avatar.eye_ball[0], (80, 1)), atol=1e-6
    )
