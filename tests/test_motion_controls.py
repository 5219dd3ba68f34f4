"""Ditto's motion controls by their effect, in process (tiny profile): scripted blinks, expression and pose
controls, driven keys, stitching, clipping, LMDM condition resets, emotion arrays, per-mode defaults, the
stream's end. The stitching arithmetic itself was compared with Ditto's MotionStitch on 864 configurations
(bit-identical); these tests pin the behaviour each option is for."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ditto_triton.profiles import TINY
from ditto_triton.streaming.options import SessionOptions
from ditto_triton.streaming.session import StreamingSession
from ditto_triton.streaming.stitch import EYE_KP, LIP_KP, bin66_to_degree, blink_schedule

FRAMES = 100
GAZE_EXP = [33, 34, 45, 46]


@pytest.fixture(scope="module")
def speech(speech16k):
    return speech16k[: FRAMES * 640]


def run(stages, avatar, audio, **options):
    session = StreamingSession(avatar, stages, SessionOptions.from_dict(options), TINY.render_size)
    rows = session.feed(audio) + session.end()
    return session, rows


def exp_at(session, rows, i):
    return session.driving_info(i, rows[i])["exp"].reshape(21, 3)


def kp_mask(indices) -> np.ndarray:
    mask = np.zeros((21, 3), bool)
    mask[list(indices)] = True
    return mask


def blink_arr(scale: float = 0.02) -> list[list[float]]:
    """15 blink frames; row 0 (the open eye) zero, the others close the eye keypoints."""
    arr = np.zeros((15, 21, 3))
    arr[1:, list(EYE_KP), 1] = scale
    return arr.reshape(15, 63).tolist()


def test_a_scripted_blink_changes_exactly_the_eye_expression_on_the_scheduled_frames(
    recording_stages, photo_avatar, speech
):
    still, rows = run(recording_stages, photo_avatar, speech, delta_eye_arr=np.zeros((15, 63)).tolist())
    blinking, _ = run(recording_stages, photo_avatar, speech, delta_eye_arr=blink_arr(), delta_eye_open_n=20)
    schedule = blink_schedule(3000, 15, 20, random.Random(0))
    assert schedule[20:35] == list(range(15)) and schedule[35:55] == [0] * 20  # fixed gaps of 20 frames
    eyes = kp_mask(EYE_KP)
    for i in range(FRAMES):
        diff = exp_at(blinking, rows, i) - exp_at(still, rows, i)
        assert np.all(diff[~eyes] == 0), i  # nothing but the eyes
        assert (np.abs(diff[eyes]).max() > 0) == (schedule[i] > 0), i  # on exactly the blink frames


def test_blink_gaps_are_random_per_session_seed_or_cycled(recording_stages, photo_avatar, speech):
    a, _ = run(recording_stages, photo_avatar, speech[:640], delta_eye_arr=blink_arr(), seed=1)
    b, _ = run(recording_stages, photo_avatar, speech[:640], delta_eye_arr=blink_arr(), seed=1)
    c, _ = run(recording_stages, photo_avatar, speech[:640], delta_eye_arr=blink_arr(), seed=2)
    assert a.stitcher.blinks == b.stitcher.blinks != c.stitcher.blinks
    starts = [i for i, v in enumerate(a.stitcher.blinks) if v == 1]
    gaps = np.diff(starts) - 15
    assert gaps.min() >= 60 and gaps.max() <= 100
    cycled = blink_schedule(400, 15, [10, 30], random.Random(0))
    assert [i for i, v in enumerate(cycled) if v == 1][:4] == [11, 56, 81, 126]  # blinks at 10, then gaps 30, 10, 30
    assert blink_schedule(200, 15, -1, random.Random(0)) == [0] * 200


def test_offline_blinks_stop_before_the_end_of_the_clip(recording_stages, photo_avatar, speech):
    session, rows = run(
        recording_stages, photo_avatar, speech, mode="offline", sampling_steps=2, delta_eye_arr=blink_arr(),
        delta_eye_open_n=30,
    )  # fmt: skip
    assert len(session.stitcher.blinks) == FRAMES  # the schedule covers the clip (N_d), not 3000 frames
    assert all(v == 0 for v in session.stitcher.blinks[FRAMES - 30 :])  # none in the last stretch


def test_vad_alpha_zero_gives_the_source_expression(recording_stages, photo_avatar, speech):
    session, rows = run(recording_stages, photo_avatar, speech, vad_alpha=0.0)
    source = np.delete(photo_avatar.info["exp"].reshape(-1), GAZE_EXP)
    for i in (0, 40, 99):
        np.testing.assert_allclose(np.delete(exp_at(session, rows, i).reshape(-1), GAZE_EXP), source, atol=1e-6)


def test_alpha_scales_the_pose_and_a_frame_value_replaces_the_session_value(recording_stages, photo_avatar, speech):
    flat, rows = run(recording_stages, photo_avatar, speech, alpha_yaw=0.0)
    for i in (0, 50):  # logits times 0: a uniform bin distribution, 0 degrees
        assert float(bin66_to_degree(flat.driving_info(i, rows[i])["yaw"])[0]) == pytest.approx(0.0, abs=1e-4)
    session = StreamingSession(photo_avatar, recording_stages, SessionOptions(alpha_yaw=0.0), TINY.render_size)
    session.feed(speech)
    assert session.stitcher.controls({"alpha_yaw": 0.5}) == {"alpha_yaw": 0.5, "delta_pitch": 2.0}


def test_use_d_keys_and_drive_eye(recording_stages, photo_avatar, speech):
    src = photo_avatar.info
    lips_only, rows = run(recording_stages, photo_avatar, speech, use_d_keys=["exp"], drive_eye=False)
    for i in (10, 60):
        info = lips_only.driving_info(i, rows[i])
        for key in ("yaw", "roll"):  # the pose is not driven (pitch gets the online delta of 2 degrees)
            assert float(bin66_to_degree(info[key])[0]) == pytest.approx(float(bin66_to_degree(src[key])[0]), abs=1e-4)
        np.testing.assert_array_equal(info["t"], src["t"])
        exp = info["exp"].reshape(21, 3)
        np.testing.assert_array_equal(exp[~kp_mask(LIP_KP)], src["exp"].reshape(21, 3)[~kp_mask(LIP_KP)])
    weighted, rows = run(recording_stages, photo_avatar, speech, use_d_keys={"exp": 0.0, "yaw": 1.0})
    np.testing.assert_allclose(  # exp weighted 0: no relative expression motion, the source's
        np.delete(weighted.driving_info(50, rows[50])["exp"].reshape(-1), GAZE_EXP),
        np.delete(src["exp"].reshape(-1), GAZE_EXP),
        atol=1e-6,
    )


def test_flag_stitching_off_skips_the_stitching_network(recording_stages, photo_avatar, speech):
    stitched, rows = run(recording_stages, photo_avatar, speech[: 20 * 640])
    plain, _ = run(recording_stages, photo_avatar, speech[: 20 * 640], flag_stitching=False)
    recording_stages.calls = []
    a, b = stitched.render_crops(rows[:2]), plain.render_crops(rows[:2])
    assert not np.allclose(a[0].render, b[0].render, atol=1e-4)


def test_v_min_max_for_clip_clips_the_generated_motion(recording_stages, photo_avatar, speech):
    low, high = np.full(265, -1e3), np.full(265, 1e3)
    low[202:], high[202:] = -0.001, 0.001  # the expression held near 0
    clipped, rows = run(recording_stages, photo_avatar, speech, v_min_max_for_clip=[low.tolist(), high.tolist()])
    _, free = run(recording_stages, photo_avatar, speech)
    rows, free = np.stack(rows), np.stack(free)
    assert np.abs(rows[:, 202:]).max() <= np.float32(0.001) < np.abs(free[:, 202:]).max()
    np.testing.assert_array_equal(rows[:, :202], free[:, :202])  # the clip acts after generation only
    assert np.abs(clipped.stitcher.d0["exp"]).max() <= np.float32(0.001)  # d0 comes clipped too


def test_fix_kp_cond_defaults_per_mode_and_changes_the_motion(recording_stages, photo_avatar, speech):
    assert SessionOptions().fix_kp_cond == 1 and SessionOptions().fix_kp_cond_dim == (0, 202)
    assert SessionOptions(mode="offline").fix_kp_cond == 0 and SessionOptions(mode="offline").fix_kp_cond_dim is None
    _, reset = run(recording_stages, photo_avatar, speech)
    _, carried = run(recording_stages, photo_avatar, speech, fix_kp_cond=0)
    assert not np.allclose(np.stack(reset), np.stack(carried), atol=1e-5)


def test_delta_pitch_is_the_online_cfg_s_and_absent_offline():
    assert SessionOptions().overall_ctrl_info == {"delta_pitch": 2.0}
    assert SessionOptions(mode="offline").overall_ctrl_info == {}
    options = SessionOptions.from_dict({"vad_alpha": 0.5, "delta_exp": [0.0] * 63, "alpha_roll": 2})
    assert set(options.overall_ctrl_info) == {"delta_pitch", "vad_alpha", "delta_exp", "alpha_roll"}


def test_an_emotion_array_is_what_lmdm_sees_frame_by_frame(recording_stages, photo_avatar, speech):
    probs = np.eye(8)[[3, 5, 0]] * 0.9 + 0.0125
    recording_stages.clear()
    run(recording_stages, photo_avatar, speech, emotion_array=probs.tolist())
    cond = recording_stages.window_conds()[-2][0]  # the last full window: frames 20..99
    hidden = cond.shape[-1] - 79
    want = probs[np.arange(20, 100) % 3]
    np.testing.assert_allclose(cond[:, hidden : hidden + 8], want, atol=1e-6)


def test_the_last_window_is_sampled_and_fused_at_the_end(recording_stages, photo_avatar, speech16k):
    """Ditto's end of stream: the features left are padded and run as one more window, whose join is
    cross-faded like every other (the expression dims, which are not smoothed, show the crossfade
    exactly); the frame count stays ceil(samples / 640)."""
    alpha = (np.arange(10, dtype=np.float32) / 10)[:, None]
    for frames, extra in ((100, 0), (103, 3)):
        recording_stages.clear()
        _, rows = run(recording_stages, photo_avatar, speech16k[: frames * 640 - 100])
        assert len(rows) == frames
        previous, last = recording_stages.windows(10)[-2:]  # x0 of the last full window and of the final one
        faded = np.stack(rows[frames - extra - 10 : frames - extra])[:, 202:]
        want = previous[70:80, 202:] * (1 - alpha) + last[60:70, 202:] * alpha
        np.testing.assert_allclose(faded, want, atol=1e-6)
        if extra:  # then the final window's own rows, up to the audio's end
            np.testing.assert_allclose(np.stack(rows[-extra:])[:, 202:], last[70 : 70 + extra, 202:], atol=1e-6)


@pytest.fixture(scope="module")
def mirrored_avatar(recording_stages, mirrored):
    from ditto_triton.streaming.reference import register_avatar

    return register_avatar(recording_stages, mirrored, TINY.appearance.image_size, {"max_size": 512})


def test_a_reference_character_conditions_the_motion_and_scales_it(
    recording_stages, photo_avatar, mirrored_avatar, speech
):
    """ch_info: the reference's frame-0 motion, sc and eyes condition the LMDM; the driven exp and pose
    are weighted by its scale over the avatar's."""
    options = SessionOptions(ch_avatar="0" * 32)
    with pytest.raises(ValueError, match="reference"):
        StreamingSession(photo_avatar, recording_stages, options, TINY.render_size)
    recording_stages.clear()
    session = StreamingSession(photo_avatar, recording_stages, options, TINY.render_size, reference=mirrored_avatar)
    session.feed(speech)
    cond = recording_stages.conds[-1][0]
    hidden = cond.shape[-1] - 79
    np.testing.assert_allclose(cond[:, hidden + 16 :], np.tile(mirrored_avatar.shape_condition, (80, 1)), atol=1e-6)
    np.testing.assert_allclose(cond[:, hidden + 8 : hidden + 10], np.tile(mirrored_avatar.eye_open, (80, 1)), atol=1e-6)
    ratio = mirrored_avatar.info["scale"].item() / photo_avatar.info["scale"].item()
    assert ratio != 1.0
    assert session.stitcher.use_d_keys == {"exp": ratio, "pitch": ratio, "yaw": ratio, "roll": ratio, "t": 1.0}


def test_a_motion_file_renders_back_to_the_same_frames(recording_stages, photo_avatar, speech16k, tmp_path):
    """return_motion records each frame's row, keypoints and controls; a motion session (motion_d0)
    renders the saved rows without audio or LMDM into the same frames."""
    import json

    from ditto_triton.client.motion_file import MotionFile, motion_file_from
    from ditto_triton.streaming.controls import parse_controls
    from ditto_triton.streaming.reference import render_audio
    from ditto_triton.streaming.session import PipelinedSession

    audio = speech16k[: 40 * 640]
    options = {"return_motion": True, "vad_alpha": 0.7}
    controls = [{"from": 5, "to": 9, "delta_yaw": 10.0}]
    original = render_audio(
        recording_stages, photo_avatar, audio, TINY.render_size, SessionOptions.from_dict(options),
        controls=parse_controls(json.dumps(controls)),
    )  # fmt: skip
    motion_file_from([f.motion for f in original], options).save(tmp_path / "m.npz")
    saved = MotionFile.load(tmp_path / "m.npz")
    assert saved.frames == 40 and saved.controls[6]["delta_yaw"] == 10.0
    replay = StreamingSession(
        photo_avatar, recording_stages, SessionOptions.from_dict(saved.replay_options(return_motion=True)),
        TINY.render_size,
    )  # fmt: skip
    frames, done = [], []
    runner = PipelinedSession(
        replay, lambda f, t: frames.append(f), lambda t: done.append(t), lambda t, e: done.append(e)
    )
    runner.submit_motion(saved.motion[:10], "first", parse_controls(json.dumps(saved.replay_controls())))
    for start in range(10, 40, 10):
        runner.submit_motion(saved.motion[start : start + 10], start)
    runner.submit_end("end")
    runner.close(timeout=120)
    assert len(frames) == 40 and all(np.array_equal(a.rgb, b.rgb) for a, b in zip(frames, original))
    np.testing.assert_array_equal(np.stack([f.motion.x_d for f in frames]), saved.x_d)
    with pytest.raises(Exception, match="takes motion rows, not audio"):
        replay.feed(audio)


def test_delta_exp_adds_to_the_expression(recording_stages, photo_avatar, speech):
    base, rows = run(recording_stages, photo_avatar, speech[: 20 * 640])
    shifted, _ = run(recording_stages, photo_avatar, speech[: 20 * 640], delta_exp=[0.01] * 63)
    for i in (0, 15):
        diff = shifted.driving_info(i, rows[i])["exp"] - base.driving_info(i, rows[i])["exp"]
        np.testing.assert_allclose(np.delete(diff.reshape(-1), GAZE_EXP), 0.01, atol=1e-6)
