"""Ditto's controls, tested by their effect on the motion and the frames (in process, tiny profile):
per-frame pose offsets and fades on exactly the frames named, fade-in/out to the source, emotion and
eye conditions as the LMDM sees them, relative vs absolute driving, output size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ditto_triton.profiles import TINY
from ditto_triton.streaming.conditions import emotion_vector
from ditto_triton.streaming.controls import ControlsError, parse_controls
from ditto_triton.streaming.motion_vector import vector_to_info
from ditto_triton.streaming.options import OptionsError, SessionOptions
from ditto_triton.streaming.session import StreamingSession
from ditto_triton.streaming.stitch import bin66_to_degree

SECONDS = 3.2  # 80 frames


@pytest.fixture(scope="module")
def speech(speech16k):
    return speech16k[: int(SECONDS * 16000)]


def run(recording_stages, photo_avatar, audio, controls=None, **options):
    session = StreamingSession(photo_avatar, recording_stages, SessionOptions.from_dict(options), TINY.render_size)
    if controls:
        session.add_controls(parse_controls(json.dumps(controls)))
    rows = session.feed(audio) + session.end()
    return session, rows


def degrees(info, key):
    return float(bin66_to_degree(info[key])[0])


def test_delta_pitch_applies_to_exactly_the_frames_named(recording_stages, photo_avatar, speech):
    base, rows = run(recording_stages, photo_avatar, speech)
    steered, rows2 = run(
        recording_stages,
        photo_avatar,
        speech,
        controls=[{"from": 30, "to": 40, "delta_pitch": 10}, {"frame": 50, "delta_yaw": -5}],
    )
    assert len(rows) == len(rows2) == 80
    assert all(np.array_equal(a, b) for a, b in zip(rows, rows2))  # controls steer rendering, not the motion
    for i, row in enumerate(rows):
        a, b = base.driving_info(i, row), steered.driving_info(i, row)
        # Ditto's merge: the frame's delta_pitch 10 replaces the session's 2 (online default), not adds to it
        assert degrees(b, "pitch") - degrees(a, "pitch") == pytest.approx(8.0 if 30 <= i < 40 else 0.0, abs=1e-4), i
        assert degrees(b, "yaw") - degrees(a, "yaw") == pytest.approx(-5.0 if i == 50 else 0.0, abs=1e-4), i


def test_session_delta_pitch_is_on_every_frame(recording_stages, photo_avatar, speech):
    base, rows = run(recording_stages, photo_avatar, speech, delta_pitch=0.0)
    tilted, _ = run(recording_stages, photo_avatar, speech, delta_pitch=12.0)
    for i in (0, 40, 79):
        assert degrees(tilted.driving_info(i, rows[i]), "pitch") - degrees(
            base.driving_info(i, rows[i]), "pitch"
        ) == pytest.approx(12.0, abs=1e-4)


GAZE_EXP = [33, 34, 45, 46]  # expression entries the gaze fix moves after the fade


def not_gaze(exp):
    return np.delete(np.asarray(exp).reshape(-1), GAZE_EXP)


def test_fade_s_moves_only_the_fade_keys_towards_the_source(recording_stages, photo_avatar, speech):
    """Ditto's fade: fade_alpha i/fade_in at the start, down to 0 over the last fade_out frames, on
    fade_out_keys (default exp) only; with fade_type "s" the target is the source."""
    base, rows = run(recording_stages, photo_avatar, speech)
    faded, rows2 = run(recording_stages, photo_avatar, speech, fade_in=10, fade_out=8, fade_type="s")
    assert len(rows2) == len(rows)
    src_exp = faded.stitcher.sources[0]["exp"]
    for i in (0, len(rows) - 1):  # the first and the last frame show the source's expression
        np.testing.assert_allclose(not_gaze(faded.driving_info(i, rows[i])["exp"]), not_gaze(src_exp), atol=1e-6)
    for i in range(len(rows)):
        for key in ("pitch", "yaw", "roll", "t"):  # the pose is never faded with the default keys
            np.testing.assert_array_equal(faded.driving_info(i, rows[i])[key], base.driving_info(i, rows[i])[key])
    for i in range(10, len(rows) - 9):  # untouched between the fades
        np.testing.assert_array_equal(faded.driving_info(i, rows[i])["exp"], base.driving_info(i, rows[i])["exp"])
    halfway = not_gaze(faded.driving_info(5, rows[5])["exp"])
    np.testing.assert_allclose(
        halfway, 0.5 * not_gaze(base.driving_info(5, rows[5])["exp"]) + 0.5 * not_gaze(src_exp), atol=1e-6
    )


def test_fade_d0_and_fade_keys(recording_stages, photo_avatar, speech):
    """fade_type "d0" fades towards the first frame's driving info; fade_out_keys picks what moves."""
    base, rows = run(recording_stages, photo_avatar, speech)
    faded, _ = run(recording_stages, photo_avatar, speech, fade_in=10, fade_type="d0", fade_out_keys=["exp", "yaw"])
    first = faded.driving_info(0, rows[0])
    for key in ("pitch", "t"):
        np.testing.assert_array_equal(faded.driving_info(3, rows[3])[key], base.driving_info(3, rows[3])[key])
    want = 0.3 * base.driving_info(3, rows[3])["yaw"] + 0.7 * first["yaw"]
    np.testing.assert_allclose(faded.driving_info(3, rows[3])["yaw"], want, atol=1e-5)


def test_a_fade_without_fade_type_is_refused(recording_stages, photo_avatar):
    with pytest.raises(OptionsError, match="fade_type"):
        SessionOptions.from_dict({"fade_in": 5})
    session = StreamingSession(photo_avatar, recording_stages, SessionOptions(), TINY.render_size)
    with pytest.raises(ControlsError, match="fade_type"):
        session.add_controls(parse_controls('[{"frame": 3, "fade_alpha": 0.5}]'))


def test_fade_out_holds_back_only_its_frames_until_the_end(recording_stages, photo_avatar, speech):
    options = SessionOptions(fade_out=8, fade_type="s")
    session = StreamingSession(photo_avatar, recording_stages, options, TINY.render_size)
    early = session.feed(speech)
    plain = StreamingSession(photo_avatar, recording_stages, SessionOptions(), TINY.render_size).feed(speech)
    assert len(early) == max(0, len(plain) - 8)
    assert len(early) + len(session.end()) == 80


def test_emotion_is_the_condition_lmdm_sees(recording_stages, photo_avatar, speech):
    recording_stages.clear()
    run(recording_stages, photo_avatar, speech, emotion=3)
    conds = recording_stages.conds
    hidden = conds[0].shape[-1] - 79  # audio | emotion 8 | eye_open 2 | eye_ball 6 | sc 63
    for cond in conds:
        np.testing.assert_allclose(
            cond[0, :, hidden : hidden + 8], np.tile(emotion_vector(3), (cond.shape[1], 1)), atol=1e-6
        )
    recording_stages.clear()
    run(recording_stages, photo_avatar, speech, emotion=[[0], [5]])  # a per-frame sequence: angry, sad, angry, ...
    last = recording_stages.conds[-1][0, :, hidden : hidden + 8]
    rows = {tuple(np.round(r, 5)) for r in last}
    assert rows == {tuple(np.round(emotion_vector(0), 5)), tuple(np.round(emotion_vector(5), 5))}
    assert not np.allclose(last[1:], last[:-1])  # it alternates frame by frame


def test_eye_conditions_can_be_set(recording_stages, photo_avatar, speech):
    recording_stages.clear()
    run(recording_stages, photo_avatar, speech, eye_open=[0.1, 0.2], eye_ball=[0, 0, 0, 0, 0, 0.5])
    cond = recording_stages.conds[-1][0]
    hidden = cond.shape[-1] - 79
    np.testing.assert_allclose(cond[:, hidden + 8 : hidden + 10], np.tile([0.1, 0.2], (cond.shape[0], 1)), atol=1e-6)
    np.testing.assert_allclose(
        cond[:, hidden + 10 : hidden + 16], np.tile([0, 0, 0, 0, 0, 0.5], (cond.shape[0], 1)), atol=1e-6
    )


def test_per_frame_eye_open_conditions_exactly_the_frames_named(recording_stages, photo_avatar, speech):
    recording_stages.clear()
    session, _ = run(recording_stages, photo_avatar, speech, controls=[{"from": 20, "to": 25, "eye_open": [0.05, 0.1]}])
    hidden = recording_stages.conds[0].shape[-1] - 79
    # the second-to-last window covers feature rows of frames 0..79; the last one is the padded final window
    eyes = recording_stages.window_conds()[-2][0, :, hidden + 8 : hidden + 10]
    for frame in range(80):
        want = [0.05, 0.1] if 20 <= frame < 25 else photo_avatar.eye_open[0]
        np.testing.assert_allclose(eyes[frame], want, atol=1e-6, err_msg=str(frame))


def test_guidance_weight_is_what_lmdm_sees_and_changes_the_motion(recording_stages, photo_avatar, speech):
    recording_stages.clear()
    _, default = run(recording_stages, photo_avatar, speech)
    assert {float(w) for ws in recording_stages.weights for w in ws} == {2.0}  # Ditto's fixed weight
    recording_stages.clear()
    _, weak = run(recording_stages, photo_avatar, speech, guidance_weight=0.5)
    assert {float(w) for ws in recording_stages.weights for w in ws} == {0.5}
    assert not np.allclose(np.stack(default), np.stack(weak), atol=1e-3)


def test_absolute_driving_uses_the_generated_pose(recording_stages, photo_avatar, speech):
    session, rows = run(recording_stages, photo_avatar, speech, relative_d=False, delta_pitch=0.0)
    for i in (0, 40):
        generated = vector_to_info(rows[i])
        assert degrees(session.driving_info(i, rows[i]), "yaw") == pytest.approx(degrees(generated, "yaw"), abs=1e-4)
    relative, _ = run(recording_stages, photo_avatar, speech, delta_pitch=0.0)
    assert degrees(relative.driving_info(40, rows[40]), "yaw") != pytest.approx(
        degrees(session.driving_info(40, rows[40]), "yaw"), abs=1e-3
    )


def test_output_max_size_caps_the_frame(recording_stages, photo_avatar, speech):
    session, rows = run(recording_stages, photo_avatar, speech[:6400], output_max_size=256)
    frame = session.render(rows[0])
    assert max(frame.rgb.shape[:2]) == 256 and frame.rgb.shape[2] == 3


def test_controls_for_frames_already_generated_are_refused(recording_stages, photo_avatar, speech):
    session = StreamingSession(photo_avatar, recording_stages, SessionOptions(), TINY.render_size)
    released = session.feed(speech)
    assert released
    with pytest.raises(
        ControlsError, match=f"frame 0 arrived after its motion was generated; frames from {len(released)} on"
    ):
        session.add_controls(parse_controls('[{"frame": 0, "vad_alpha": 0.5}]'))
    session.add_controls(parse_controls(json.dumps([{"frame": len(released), "vad_alpha": 0.5}])))  # still open: fine


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not valid JSON"),
        ('{"frame": 1}', "JSON list of objects"),
        ('[{"frame": -1, "vad_alpha": 0}]', "frame index >= 0"),
        ('[{"from": 5, "to": 5, "vad_alpha": 0}]', "must be greater"),
        ('[{"frame": 1, "from": 0, "to": 2, "vad_alpha": 0}]', "not both"),
        ('[{"frame": 1}]', "no control"),
        ('[{"frame": 1, "tilt": 3}]', "unknown field"),
        ('[{"frame": 1, "delta_pitch": 400}]', "-90..90"),
        ('[{"frame": 1, "delta_exp": [1, 2]}]', "63 numbers"),
        ('[{"frame": 1, "fade_alpha": 2}]', "0..1"),
        ('[{"frame": 1, "eye_open": [0.3]}]', "eye_open must be"),
        ('[{"frame": 1, "eye_open": [0.3, 9]}]', "0.0..3.0"),
    ],
)
def test_malformed_controls_name_the_problem(text, message):
    with pytest.raises(ControlsError, match=message):
        parse_controls(text)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"emotion": 9}, "outside 0..7"),
        ({"emotion": [[1], "x"]}, "list of lists"),
        ({"eye_open": [1]}, "list of 2 numbers"),
        ({"fade_in": -1}, "outside 0..250"),
        ({"relative_d": "yes"}, "must be bool"),
        ({"output_max_size": 8}, "at least 16"),
        ({"guidance_weight": 11}, "outside 0.0..10.0"),
    ],
)
def test_bad_options_name_the_option(options, message):
    with pytest.raises(OptionsError, match=message):
        SessionOptions.from_dict(options)
