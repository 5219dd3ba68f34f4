"""The Triton-free session on the tiny export, with a synthetic avatar (no face detection needed)."""

import numpy as np
import pytest

from ditto_triton.export.ort_runtime import OrtStages
from ditto_triton.profiles import TINY
from ditto_triton.streaming.audio import FRAMES_PER_WINDOW, HOP_SAMPLES, PAST_SAMPLES, WINDOW_SAMPLES
from ditto_triton.streaming.avatar_features import extract_features
from ditto_triton.streaming.options import SessionOptions
from ditto_triton.streaming.reference import render_audio
from ditto_triton.streaming.session import PipelinedSession, StreamingSession, silence_features

SR = 16000


@pytest.fixture(scope="module")
def stages(tiny_export):
    return OrtStages(tiny_export)


@pytest.fixture(scope="module")
def avatar(stages):
    rng = np.random.default_rng(1)
    size = TINY.appearance.image_size
    photo = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    crop_to_source = np.array([[0.3, 0.0, 80.0], [0.0, 0.3, 40.0], [0, 0, 1]], np.float32)  # 512 crop -> 154 px face
    image = rng.random((1, 3, size, size), dtype=np.float32)
    return extract_features(stages, image, np.array([0.3, 0.3]), np.zeros(6), photo, crop_to_source)


@pytest.fixture(scope="module")
def silence(stages):
    return silence_features(stages, 80)


def speech(seconds, seed=0):
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    return (
        0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.normal(size=t.size)
    ).astype(np.float32)


def run(stages, avatar, silence, audio, chunk=3200, **opts):
    return render_audio(stages, avatar, audio, TINY.render_size, SessionOptions(**opts), chunk, silence)


@pytest.mark.parametrize("seconds", [0.01, 0.5, 1.0, 2.37])
def test_exactly_25_frames_per_second_of_audio(stages, avatar, silence, seconds):
    audio = speech(seconds)
    frames = run(stages, avatar, silence, audio)
    assert len(frames) == -(-audio.size // 640)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(abs(f.pts_s - f.index / 25) < 1e-9 for f in frames)
    assert all(f.rgb.shape == (240, 320, 3) and f.rgb.dtype == np.uint8 for f in frames)


def test_chunking_does_not_change_the_frames(stages, avatar, silence):
    audio = speech(1.3)
    a = run(stages, avatar, silence, audio, chunk=3200)
    b = run(stages, avatar, silence, audio, chunk=777)
    c = run(stages, avatar, silence, audio, chunk=audio.size)
    assert len(a) == len(b) == len(c)
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x.rgb, y.rgb)
        np.testing.assert_array_equal(x.rgb, z.rgb)


def test_seed_decides_the_motion(stages, avatar, silence):
    audio = speech(0.8)
    a = run(stages, avatar, silence, audio, seed=1)
    b = run(stages, avatar, silence, audio, seed=1)
    c = run(stages, avatar, silence, audio, seed=2)
    assert all(np.array_equal(x.rgb, y.rgb) for x, y in zip(a, b))
    assert any(not np.array_equal(x.rgb, z.rgb) for x, z in zip(a, c))


def test_frames_change_only_inside_the_face_box(stages, avatar, silence):
    frames = run(stages, avatar, silence, speech(0.5))
    outside = frames[0].rgb.copy()
    outside[40:200, 80:240] = 0
    photo = avatar.source_rgb[0].copy()
    photo[40:200, 80:240] = 0
    np.testing.assert_array_equal(outside, photo)


def test_audio_after_end_is_refused(stages, avatar, silence):
    session = StreamingSession(avatar, stages, SessionOptions(), TINY.render_size, silence)
    session.feed(speech(0.2))
    session.end()
    with pytest.raises(RuntimeError, match="after the end"):
        session.feed(speech(0.1))


def test_motion_is_continuous_across_windows(stages, avatar, silence):
    """Overlap fusion: frame-to-frame pose change at window joins is no larger than inside windows."""
    session = StreamingSession(avatar, stages, SessionOptions(overlap=70), TINY.render_size, silence)
    rows = session.feed(speech(3.0)) + session.end()
    pose = np.array(rows)[:, :202]
    steps = np.abs(np.diff(pose, axis=0)).max(axis=1)
    joins = steps[9::10]  # V = 10: frames 9->10, 19->20, ...
    assert joins.max() <= 3 * np.median(steps) + 1e-6


def test_render_batches_depend_only_on_frame_indices():
    from ditto_triton.streaming.session import render_batch_end

    spans, i = [], 0
    while i < 30:
        end = render_batch_end(i, window=10, batch=4)
        spans.append((i, end))
        i = end
    # Block 0 in runs of 4 (the first frame waits for its batch); later blocks' first frames alone,
    # so none of them takes longer after its release than the session's first frame did.
    assert spans[:7] == [(0, 4), (4, 8), (8, 10), (10, 11), (11, 15), (15, 19), (19, 20)]
    assert spans[7:11] == [(20, 21), (21, 25), (25, 29), (29, 30)]
    assert all(e - s <= 4 and s // 10 == (e - 1) // 10 for s, e in spans)  # never across a window block


def test_render_chain_equals_its_three_stages(stages, avatar):
    from ditto_triton.chains import run_chain
    from ditto_triton.ensembles import RENDER_CHAIN

    rng = np.random.default_rng(3)
    kp_s = rng.normal(scale=0.1, size=(2, 21, 3)).astype(np.float32)
    kp_d = kp_s + rng.normal(scale=0.02, size=kp_s.shape).astype(np.float32)
    f_s = np.repeat(avatar.f_s, 2, axis=0)
    stitched = stages.infer("stitch_network", {"kp_source": kp_s, "kp_driving": kp_d})["out"]
    warped = stages.infer("warp_network", {"feature_3d": f_s, "kp_source": kp_s, "kp_driving": stitched})["out"]
    expected = stages.infer("decoder", {"feature": warped})["output"]
    got = run_chain(RENDER_CHAIN, stages.infer, {"feature_3d": f_s, "kp_source": kp_s, "kp_driving": kp_d})
    assert list(got) == ["output"]
    np.testing.assert_array_equal(got["output"], expected)
    with pytest.raises(ValueError, match="missing input"):
        run_chain(RENDER_CHAIN, stages.infer, {"feature_3d": f_s, "kp_source": kp_s})


def _pipelined(stages, avatar, silence, on_frame):
    done, errors = [], []
    session = StreamingSession(avatar, stages, SessionOptions(), TINY.render_size, silence)
    runner = PipelinedSession(session, on_frame, done.append, lambda tag, exc: errors.append((tag, exc)))
    return runner, done, errors


def test_pipelined_session_delivers_the_synchronous_frames_in_order(stages, avatar, silence):
    audio = speech(1.6)
    sync = StreamingSession(avatar, stages, SessionOptions(), TINY.render_size, silence)
    rows = sync.feed(audio) + sync.end()
    from ditto_triton.streaming.session import render_batch_end

    expected = []
    while len(expected) < len(rows):
        end = render_batch_end(len(expected), sync.frames_per_window, 4)
        expected += sync.render_batch(rows[len(expected) : end])
    frames = []
    runner, done, errors = _pipelined(stages, avatar, silence, lambda frame, tag: frames.append((frame, tag)))
    for i in range(0, audio.size, 3200):
        runner.submit_audio(audio[i : i + 3200], tag=i)
    runner.submit_end("end")
    runner.close(timeout=60)
    assert errors == [] and done[-1] == "end" and done == sorted(done[:-1]) + ["end"]
    assert [f.index for f, _ in frames] == list(range(40))
    for (got, _), want in zip(frames, expected):
        np.testing.assert_array_equal(got.rgb, want.rgb)


def test_a_failing_frame_callback_ends_the_session_with_an_error(stages, avatar, silence):
    def on_frame(frame, tag):
        if frame.index == 5:
            raise ConnectionError("client went away")

    runner, done, errors = _pipelined(stages, avatar, silence, on_frame)
    runner.submit_audio(speech(1.6), tag="a")
    runner.submit_end("end")
    runner.close(timeout=60)
    assert done == []
    assert [tag for tag, _ in errors] == ["a", "end"]
    assert all(isinstance(exc, ConnectionError) for _, exc in errors)


def test_a_failing_network_call_ends_the_session_with_an_error(stages, avatar, silence):
    class FailingDecoder:
        calls = 0

        def infer(self, name, inputs):
            if name == "decoder":
                FailingDecoder.calls += 1
                if FailingDecoder.calls == 3:
                    raise RuntimeError("decoder: out of memory")
            return stages.infer(name, inputs)

    frames = []
    runner, done, errors = _pipelined(FailingDecoder(), avatar, silence, lambda frame, tag: frames.append(frame.index))
    runner.submit_audio(speech(1.6), tag="a")
    runner.submit_end("end")
    runner.close(timeout=60)
    assert frames == list(range(8))  # the two batches before the failing one, in order, nothing after
    assert [tag for tag, _ in errors] == ["a", "end"] and done == []
    assert "out of memory" in str(errors[0][1])


def test_an_ended_session_is_freed_without_the_cycle_collector(stages, avatar):
    """Reference cycles would keep every ended session's buffers (noise, avatar copies, frames) until
    a full GC pass; the soak showed that as steadily growing server memory."""
    import gc
    import weakref

    done: list = []
    gc.disable()
    try:
        session = StreamingSession(avatar, stages, SessionOptions(), TINY.render_size)
        runner = PipelinedSession(session, lambda f, t: None, done.append, lambda t, e: done.append(e))
        runner.submit_end("end", np.zeros(16000, np.float32))
        runner.close(timeout=60)
        refs = weakref.ref(session), weakref.ref(runner)
        del session, runner
        assert done == ["end"]
        assert all(r() is None for r in refs)
    finally:
        gc.enable()


def _samples_before_each_row(stages, avatar, silence, audio, **opts):
    """For every motion row released while `audio` streams in 640-sample chunks: the samples fed by then."""
    session = StreamingSession(avatar, stages, SessionOptions(**opts), TINY.render_size, silence)
    fed = []
    for end in range(640, audio.size + 640, 640):
        fed += [end] * len(session.feed(audio[end - 640 : end]))
    return fed


def test_first_window_emit_halves_the_wait_and_keeps_every_later_frame(stages, avatar, silence):
    """first_window "emit": window 0's last V frames go out at once, uncrossfaded (V + 2 frames of audio
    instead of Ditto's 2V + 2); from frame V on the frames are Ditto's, bit for bit."""
    audio, v = speech(2.0), 10

    def samples_for_rows(rows):  # the encoder window that completes feature row `rows` - 1, in whole frames
        needed = WINDOW_SAMPLES - PAST_SAMPLES + HOP_SAMPLES * (rows // FRAMES_PER_WINDOW - 1)
        return -(-needed // 640) * 640

    dittos = _samples_before_each_row(stages, avatar, silence, audio)
    early = _samples_before_each_row(stages, avatar, silence, audio, first_window="emit")
    assert dittos[0] == samples_for_rows(2 * v) and early[0] == samples_for_rows(v)  # 885 ms -> 485 ms
    assert early[v:] == dittos[v:]  # later frames wait for the same audio
    fused = run(stages, avatar, silence, audio)
    emitted = run(stages, avatar, silence, audio, first_window="emit")
    assert len(emitted) == len(fused) == 50
    for a, b in zip(fused[v:], emitted[v:]):
        np.testing.assert_array_equal(a.rgb, b.rgb)
    assert any(not np.array_equal(a.rgb, b.rgb) for a, b in zip(fused[:v], emitted[:v]))  # unfused, as documented


def test_first_window_emit_is_for_streaming_only():
    with pytest.raises(ValueError, match="first_window"):
        SessionOptions.from_dict({"mode": "offline", "first_window": "emit"})
    with pytest.raises(ValueError, match="first_window"):
        SessionOptions.from_dict({"first_window": "now"})
