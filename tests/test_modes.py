"""Online and offline modes (in process, tiny profile): Ditto's frame counts, window fusion checked
against the LMDM windows actually sampled, continuity at the joins, offline's first window and d0."""

from __future__ import annotations

import numpy as np
import pytest

from ditto_triton.profiles import TINY
from ditto_triton.streaming.audio import frames_for_samples
from ditto_triton.streaming.options import OptionsError, SessionOptions
from ditto_triton.streaming.session import OFFLINE_MAX_SECONDS, OfflineClipTooLong, StreamingSession


def generate(recording_stages, photo_avatar, audio, **options):
    session = StreamingSession(photo_avatar, recording_stages, SessionOptions.from_dict(options), TINY.render_size)
    recording_stages.clear()
    early = session.feed(audio)
    return session, early, early + session.end()


@pytest.mark.parametrize("mode", ["online", "offline"])
@pytest.mark.parametrize("samples", [1, 640, 639 * 80, 640 * 80, 640 * 80 + 1, 640 * 151 + 17])
def test_both_modes_give_one_frame_per_640_samples(recording_stages, photo_avatar, speech16k, mode, samples):
    audio = np.resize(speech16k, samples)
    _, early, rows = generate(recording_stages, photo_avatar, audio, mode=mode)
    assert len(rows) == frames_for_samples(samples) == -(-samples // 640)
    if mode == "offline":
        assert early == []  # nothing before END: offline needs the whole clip


def test_offline_defaults_are_dittos_and_online_refuses_small_overlaps():
    offline = SessionOptions.from_dict({"mode": "offline"})
    assert (offline.overlap, offline.sampling_steps) == (10, 50)
    assert SessionOptions.from_dict({"mode": "offline", "overlap": 20, "sampling_steps": 5}).overlap == 20
    assert (SessionOptions().overlap, SessionOptions().sampling_steps) == (70, 10)
    with pytest.raises(OptionsError, match="below 40"):
        SessionOptions.from_dict({"overlap": 10})
    with pytest.raises(OptionsError, match="'mode' must be one of"):
        SessionOptions.from_dict({"mode": "batch"})


def test_offline_fuses_windows_as_documented(recording_stages, photo_avatar, speech16k):
    """smooth_k 1 (no smoothing) exposes the fusion: the first window is output, every later one
    crossfades its first `overlap` frames into the result and appends the rest."""
    n, overlap, steps = 200, 10, 4
    _, _, rows = generate(
        recording_stages,
        photo_avatar,
        speech16k[: n * 640],
        mode="offline",
        overlap=overlap,
        sampling_steps=steps,
        smooth_k=1,
    )
    rows, windows = np.stack(rows), recording_stages.windows(steps)
    valid = 80 - overlap
    assert len(windows) == -(-n // valid) == 3  # windows start at frames 0, 70, 140
    np.testing.assert_allclose(rows[:valid], windows[0][:valid], atol=1e-6)  # first window emitted
    alpha = (np.arange(overlap) / overlap)[:, None]
    for w in range(1, len(windows)):
        start = w * valid
        want_fused = windows[w - 1][valid:] * (1 - alpha) + windows[w][:overlap] * alpha
        np.testing.assert_allclose(rows[start : start + overlap], want_fused, atol=1e-5)
        end = n if w == len(windows) - 1 else start + valid  # up to where the next window fuses in
        np.testing.assert_allclose(rows[start + overlap : end], windows[w][overlap : end - start], atol=1e-6)


def test_online_fuses_windows_as_documented(recording_stages, photo_avatar, speech16k):
    """Online: window n's block of V frames is window n-1's tail crossfaded into window n."""
    steps = 3
    _, _, rows = generate(
        recording_stages, photo_avatar, speech16k[: 60 * 640], overlap=70, sampling_steps=steps, smooth_k=1
    )
    rows, windows = np.stack(rows), recording_stages.windows(steps)
    alpha = (np.arange(10) / 10)[:, None]
    for n in range(1, len(windows) - 1):  # the last (padded) window's frames come out unfused
        block = rows[(n - 1) * 10 : n * 10]
        np.testing.assert_allclose(block, windows[n - 1][70:] * (1 - alpha) + windows[n][60:70] * alpha, atol=1e-5)


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_windows_join_without_jumps(recording_stages, photo_avatar, speech16k, mode):
    """At every join the frame-to-frame step is no larger than the steps inside windows, and smaller
    than cutting from one window straight to the next (no crossfade) would give."""
    steps = 4
    session, _, rows = generate(recording_stages, photo_avatar, speech16k[: 8 * 16000], mode=mode, sampling_steps=steps)
    pose = np.stack(rows)[:, :202]
    step = np.abs(np.diff(pose, axis=0)).mean(axis=1)  # step[j]: frame j -> j + 1
    windows = [w[:, :202] for w in recording_stages.windows(steps)]
    valid = session.frames_per_window
    overlap = 80 - valid
    if mode == "offline":  # window w+1 starts at frame (w+1)V and is crossfaded in over `overlap` frames
        pairs = range(len(windows) - 1)
        joins = [j for w in pairs for j in ((w + 1) * valid - 1, (w + 1) * valid + overlap - 1)]
        cut = [np.abs(windows[w][valid - 1] - windows[w + 1][0]).mean() for w in pairs]
    else:  # block n (frames (n-1)V ..) is window n-1's tail crossfaded into window n
        pairs = range(1, len(windows) - 2)
        joins = [n * valid - 1 for n in pairs]
        cut = [np.abs(windows[n][overlap - 1] - windows[n + 1][overlap - valid]).mean() for n in pairs]
    inside = np.delete(step, joins)
    assert step[joins].max() <= inside.max()
    assert step[joins].mean() < np.mean(cut)


def test_offline_d0_is_the_first_generated_frame(recording_stages, photo_avatar, speech16k):
    from ditto_triton.streaming.stitch import bin66_to_degree

    session, _, rows = generate(
        recording_stages, photo_avatar, speech16k[: 100 * 640], mode="offline", sampling_steps=2, delta_pitch=0.0
    )
    # relative driving: frame 0 (= d0) shows the source's pose and translation, later frames do not
    first, later = session.driving_info(0, rows[0]), session.driving_info(50, rows[50])
    for key in ("pitch", "yaw", "roll"):
        assert float(bin66_to_degree(first[key])[0]) == pytest.approx(
            float(bin66_to_degree(photo_avatar.info[key])[0]), abs=1e-4
        )
    np.testing.assert_allclose(first["t"], photo_avatar.info["t"], atol=1e-6)
    assert not np.allclose(later["t"], photo_avatar.info["t"], atol=1e-4)


def test_offline_refuses_a_clip_it_cannot_keep(recording_stages, photo_avatar):
    session = StreamingSession(photo_avatar, recording_stages, SessionOptions(mode="offline"), TINY.render_size)
    with pytest.raises(OfflineClipTooLong, match=f"at most {OFFLINE_MAX_SECONDS} s"):
        session.feed(np.zeros(OFFLINE_MAX_SECONDS * 16000 + 1, np.float32))


@pytest.mark.parametrize("overlap, steps", [(70, 3), (60, 2), (50, 1)])
def test_overlap_and_steps_set_the_windows_and_lmdm_calls(recording_stages, photo_avatar, speech16k, overlap, steps):
    n = 120
    session, _, rows = generate(
        recording_stages, photo_avatar, speech16k[: n * 640], overlap=overlap, sampling_steps=steps
    )
    valid = 80 - overlap
    assert session.frames_per_window == valid and len(rows) == n
    # online: one window per `valid` new feature rows (the prefill silence is `overlap` rows), then at END
    # Ditto's final window over the rest padded with the last row; each `steps` calls
    assert len(recording_stages.x_starts) == (-(-n // valid) + 1) * steps


def test_smooth_k_smooths_the_pose_and_never_the_expression(recording_stages, photo_avatar, speech16k):
    audio = speech16k[: 60 * 640]
    _, _, rough = generate(
        recording_stages, photo_avatar, audio, mode="offline", overlap=10, sampling_steps=2, smooth_k=1
    )
    _, _, smooth = generate(
        recording_stages, photo_avatar, audio, mode="offline", overlap=10, sampling_steps=2, smooth_k=9
    )
    rough, smooth = np.stack(rough), np.stack(smooth)  # 60 frames: one window, so the same prediction
    np.testing.assert_array_equal(rough[:, 202:], smooth[:, 202:])  # exp (dims 202..264) untouched

    def roughness(rows):
        return np.abs(np.diff(rows[:, :202], 2, axis=0)).mean()

    assert roughness(smooth) < 0.5 * roughness(rough)
