"""The orchestrator on a real tritonserver (tiny profile, python-ort), driven by the project's client:
streaming, parity with the in-process pipeline, concurrent sessions, clear errors, idle timeout."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from frame_compare import assert_same_pictures, psnr
from PIL import Image
from support import active_sessions, wait_for

from ditto_triton.client import DittoClient, ServerError, ServerUnavailableError
from ditto_triton.export.ort_runtime import OrtStages
from ditto_triton.model_repository.render import render_repository
from ditto_triton.model_repository.server import TritonServer, free_port
from ditto_triton.profiles import TINY
from ditto_triton.protocol import OUTPUT_FORMATS
from ditto_triton.streaming.avatar_features import AvatarFeatures
from ditto_triton.streaming.options import SessionOptions
from ditto_triton.streaming.reference import register_avatar, render_audio

CROP = {"max_size": 512}


@pytest.fixture(scope="module")
def client(server):
    with DittoClient(server.grpc_url) as c:
        yield c


@pytest.fixture(scope="module")
def stages(tiny_export):
    return OrtStages(tiny_export)


def reference(stages, image, audio, **options):
    avatar = register_avatar(stages, image, TINY.appearance.image_size, CROP)
    return render_audio(stages, avatar, audio, TINY.render_size, SessionOptions(**options))


def server_avatar(server, avatar_id: str) -> AvatarFeatures:
    """The features the server cached for `avatar_id`, read back through avatar_registry."""
    names = ["f_s", "motion_info", "eye_open", "eye_ball", "source_rgb", "crop_to_source", "shape_condition"]
    ident = grpcclient.InferInput("avatar_id", [1], "BYTES")
    ident.set_data_from_numpy(np.array([avatar_id.encode()], dtype=object))
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        out = c.infer("avatar_registry", [ident], outputs=[grpcclient.InferRequestedOutput(n) for n in names])
    return AvatarFeatures(**{n: out.as_numpy(n) for n in names})


def test_registration_equals_in_process(server, client, portrait, stages):
    served = server_avatar(server, client.register_avatar(portrait, CROP))
    local = register_avatar(stages, portrait, TINY.appearance.image_size, CROP)
    np.testing.assert_array_equal(served.source_rgb, local.source_rgb)  # (1, H, W, 3): one source frame
    np.testing.assert_allclose(served.crop_to_source, local.crop_to_source, rtol=1e-6, atol=1e-4)
    for name in ("f_s", "motion_info", "eye_open", "eye_ball"):
        np.testing.assert_allclose(getattr(served, name), getattr(local, name), rtol=1e-5, atol=1e-5, err_msg=name)


def test_stream_equals_in_process_pipeline(server, client, portrait, speech16k, stages):
    avatar = client.register_avatar(portrait, CROP)
    frames = list(client.stream(avatar, speech16k))  # 200 ms chunks
    assert len(frames) == -(-speech16k.size // 640)  # 25 frames per second of audio, tail rounded up
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(abs(f.pts_s - f.index / 25) < 1e-9 for f in frames)
    # Same avatar features on both sides (registration parity is its own test above).
    ref = render_audio(stages, server_avatar(server, avatar), speech16k, TINY.render_size)
    assert len(ref) == len(frames)
    assert frames[0].rgb.shape == ref[0].rgb.shape == (512, 512, 3)
    # One session alone: the same graphs at the same batch sizes, so uint8 frames are identical
    # (the 1e-5 tolerance of the acceptance criterion, on uint8 pixels).
    assert all(np.array_equal(f.rgb, r.rgb) for f, r in zip(frames, ref))


def test_two_concurrent_sessions_get_their_own_frames(client, portrait, mirrored, speech16k, stages):
    images = [portrait, mirrored]
    ids = [client.register_avatar(img, CROP) for img in images]
    assert ids[0] != ids[1]
    audio = [speech16k[: 16000 * 2], speech16k[16000 * 3 : 16000 * 5 + 1234]]
    results: dict[int, list] = {}
    threads = [
        threading.Thread(target=lambda k=k: results.__setitem__(k, list(client.stream(ids[k], audio[k], {"seed": k}))))
        for k in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refs = [reference(stages, images[k], audio[k], seed=k) for k in range(2)]
    for k in range(2):
        frames = results[k]
        assert len(frames) == len(refs[k]) == -(-audio[k].size // 640)
        # Frames of the two sessions meet in dynamically batched stage calls (frame_compare).
        assert_same_pictures([f.rgb for f in frames], [r.rgb for r in refs[k]])
        other = refs[1 - k][0].rgb
        assert np.abs(frames[0].rgb.astype(np.int16) - other.astype(np.int16)).mean() > 10  # not the other session's


def test_jpeg_output_and_int16_audio(client, portrait, speech16k):
    avatar = client.register_avatar(portrait, CROP)
    pcm = (speech16k[:8000] * 32767).astype(np.int16)
    frames = list(client.stream(avatar, pcm, {"output_format": "jpeg", "jpeg_quality": 80}))
    assert len(frames) == 13 and frames[0].rgb.shape == (512, 512, 3)


def test_png_frames_are_the_rgb_frames_and_jpeg_frames_are_close(client, portrait, speech16k):
    avatar = client.register_avatar(portrait, CROP)
    audio = speech16k[:16000]  # 25 frames
    by_format = {
        fmt: [f.rgb for f in client.stream(avatar, audio, {"output_format": fmt, "seed": 7})] for fmt in OUTPUT_FORMATS
    }
    rgb = by_format["rgb"]
    assert len(rgb) == len(by_format["png"]) == len(by_format["jpeg"]) == 25 and rgb[0].shape == (512, 512, 3)
    assert all(np.array_equal(png, raw) for png, raw in zip(by_format["png"], rgb))  # lossless
    jpeg_psnr = [psnr(jpeg, raw) for jpeg, raw in zip(by_format["jpeg"], rgb)]
    assert 30 < min(jpeg_psnr) and max(jpeg_psnr) < float("inf"), jpeg_psnr  # close, and really JPEG


def test_encoded_frames_are_kept_with_decode_false(client, portrait):
    avatar = client.register_avatar(portrait, CROP)
    first: dict[tuple, bytes] = {}
    for fmt, compression in (("png", 0), ("png", 9), ("jpeg", 1)):
        options = {"output_format": fmt, "png_compression": compression}
        with client.open_session(avatar, options, decode=False) as session:
            session.end(np.zeros(1280, np.float32))  # 2 frames
            frames = list(session.frames())
        assert len(frames) == 2 and all(f.rgb.size == 0 and f.encoded for f in frames)
        first[fmt, compression] = frames[0].encoded
    assert first["png", 0].startswith(b"\x89PNG") and first["jpeg", 1].startswith(b"\xff\xd8")
    assert len(first["png", 9]) < len(first["png", 0])  # png_compression reaches the encoder
    assert "'output_format' must be one of" in session_error(
        client, avatar, np.zeros(640, np.float32), {"output_format": "bmp"}
    )


def session_error(client, avatar, audio=None, options=None, end=True, first_start=True) -> str:
    with client.open_session(avatar, options) as session:
        if not first_start:
            session._sent = 1  # pretend START went out earlier: the server must refuse the sequence
        session.end(audio) if end else session.send(audio)
        with pytest.raises(ServerError) as err:
            list(session.frames())
        return str(err.value)


def test_clear_errors_and_server_stays_healthy(server, client, portrait):
    audio = np.zeros(3200, np.float32)
    avatar = client.register_avatar(portrait, CROP)
    assert "START" in session_error(client, avatar, audio, first_start=False)
    assert "unknown avatar id" in session_error(client, "0" * 32, audio)
    assert "malformed avatar id" in session_error(client, "../etc/passwd", audio)
    assert "unknown session option" in session_error(client, avatar, audio, {"speed": 2})
    assert "overlap" in session_error(client, avatar, audio, {"overlap": 10})
    with pytest.raises(ValueError, match="float32 or int16"):
        client.open_session(avatar).send(np.zeros(10, np.float64))
    grey = io.BytesIO()
    Image.new("RGB", (256, 256), (128, 128, 128)).save(grey, format="JPEG")
    with pytest.raises(ServerError, match="no face"):
        client.register_avatar(grey.getvalue())
    with pytest.raises(ServerError, match="image"):
        client.register_avatar(b"not an image at all")
    assert client._client.is_server_ready()
    frames = list(client.stream(avatar, np.zeros(6400, np.float32)))
    assert len(frames) == 10


def test_wrong_sample_rate_is_refused(server, client, portrait):
    import tritonclient.grpc as grpcclient

    avatar = client.register_avatar(portrait, CROP)
    session = client.open_session(avatar)
    rate = grpcclient.InferInput("sample_rate", [1, 1], "INT32")
    rate.set_data_from_numpy(np.array([[24000]], np.int32))
    ident = grpcclient.InferInput("avatar_id", [1, 1], "BYTES")
    ident.set_data_from_numpy(np.array([[avatar.encode()]], dtype=object))
    session._client.async_stream_infer(
        "orchestrator",
        [rate, ident],
        request_id="0",
        sequence_id=session.sequence_id,
        sequence_start=True,
        sequence_end=True,
        enable_empty_final_response=True,
    )
    session._sent, session._ended = 1, True
    with pytest.raises(ServerError, match="16000 Hz"):
        list(session.frames())
    session.close()


def test_unreachable_server_is_one_clear_line():
    port = free_port()
    with pytest.raises(ServerUnavailableError, match=f"cannot reach a Triton server at 127.0.0.1:{port}"):
        DittoClient(f"127.0.0.1:{port}", timeout_s=2)


def test_idle_session_is_freed(tiny_export, tmp_path, portrait):
    repo = render_repository(tiny_export, tmp_path / "repo", "python-ort", include_services=True, idle_timeout_s=2)
    with TritonServer(repo) as srv, DittoClient(srv.grpc_url) as c:
        avatar = c.register_avatar(portrait, CROP)
        abandoned = c.open_session(avatar)
        abandoned.send(np.zeros(3200, np.float32))  # START, then silence: the client goes away
        abandoned.close()
        again = c.open_session(avatar)
        again.sequence_id = abandoned.sequence_id
        again.send(np.zeros(3200, np.float32))
        again._ended = True
        with pytest.raises(ServerError, match="already has a live session"):
            list(again.frames())
        again.close()
        wait_for(lambda: active_sessions(srv) == 0, "the idle session to be freed", 10)
        later = c.open_session(avatar)
        later.sequence_id = abandoned.sequence_id
        later.end(np.zeros(3200, np.float32))
        assert len(list(later.frames())) == 5
        later.close()


def test_audio_from_a_file_an_iterator_and_a_callback(client, portrait, samples_dir, speech16k):
    avatar = client.register_avatar(portrait, CROP)
    cut = speech16k[:12000]
    chunks = (cut[i : i + 1000] for i in range(0, cut.size, 1000))  # e.g. a microphone: 62.5 ms pieces
    received = []
    assert client.render(avatar, chunks, received.append) == 19 == len(received)
    from_array = list(client.stream(avatar, cut))
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(received, from_array))
    from_file = list(client.stream(avatar, samples_dir / "ditto_example_audio.wav", chunk_samples=16000))
    assert len(from_file) == -(-speech16k.size // 640)


def test_per_frame_controls_change_exactly_their_frames(client, portrait, speech16k):
    avatar = client.register_avatar(portrait, CROP)
    audio = speech16k[: 3 * 16000]

    def frames(controls=None):
        session = client.open_session(avatar, {"fade_type": "s"})  # fades towards the source
        session.send(audio[:3200], controls=controls)  # controls travel with the first chunk
        session.end(audio[3200:])
        out = [f.rgb for f in session.frames()]
        session.close()
        return out

    base = frames()
    # Fading pose, translation and expression to the source moves the keypoints far enough to show in the
    # synthetic networks' frames (their generated motion is far off, so a few degrees of yaw leave the warp
    # unchanged; the degrees themselves are checked on the motion in test_controls.py).
    to_source = {"fade_alpha": 0.0, "fade_out_keys": ["exp", "pitch", "yaw", "roll", "t"]}
    steered = frames([{"from": 30, "to": 40, **to_source, "delta_yaw": 20}, {"frame": 60, **to_source}])
    assert len(base) == len(steered) == 75
    assert [i for i, (a, b) in enumerate(zip(base, steered)) if not np.array_equal(a, b)] == [*range(30, 40), 60]


def test_session_options_reach_the_server(client, portrait, speech16k):
    avatar = client.register_avatar(portrait, CROP)
    options = {
        "emotion": [[0], [5]],
        "fade_in": 5,
        "fade_out": 5,
        "fade_type": "s",
        "output_max_size": 256,
        "relative_d": False,
    }
    frames = list(client.stream(avatar, speech16k[:32000], options))
    assert len(frames) == 50 and all(max(f.rgb.shape[:2]) == 256 for f in frames)
    session = client.open_session(avatar)
    session.send(speech16k[:32000])
    got = session.frames()
    next(got)
    session.end(controls=[{"frame": 0, "vad_alpha": 0.5}])  # frame 0 is long generated: refused by name
    with pytest.raises(ServerError, match="controls for frame 0 arrived after its motion was generated"):
        list(got)
    session.close()


def test_dittos_motion_controls_through_the_server_equal_in_process(client, portrait, speech16k, stages):
    """Blinks, fades, pose and expression controls, driven keys, emotion arrays, the clip, condition
    resets and the stream's last window, through tritonserver: the frames are the in-process ones."""
    from ditto_triton.streaming.controls import parse_controls

    eye = np.zeros((15, 63))
    eye[1:, 34] = 0.03
    low, high = np.full(265, -50.0), np.full(265, 50.0)
    options = {
        "delta_eye_arr": eye.tolist(),
        "delta_eye_open_n": 12,
        "fade_type": "d0",
        "fade_in": 5,
        "fade_out": 6,
        "alpha_roll": 0.5,
        "vad_alpha": 0.8,
        "emotion_array": (np.eye(8)[[3, 6]] * 0.9 + 0.0125).tolist(),
        "v_min_max_for_clip": [low.tolist(), high.tolist()],
        "use_d_keys": {"exp": 1.0, "yaw": 0.5, "pitch": 1.0},
        "fix_kp_cond": 2,
        "output_max_size": 256,
    }
    controls = [{"from": 20, "to": 30, "fade_alpha": 0.3, "delta_exp": [0.01] * 63}, {"frame": 40, "alpha_yaw": 0.0}]
    audio = speech16k[: 3 * 16000 + 100]
    avatar = client.register_avatar(portrait, CROP)
    served = [f.rgb for f in client.stream(avatar, audio, options, controls=controls)]  # 200 ms chunks, as below
    local = register_avatar(stages, portrait, TINY.appearance.image_size, CROP)
    parsed = parse_controls(json.dumps(controls))
    ref = render_audio(stages, local, audio, TINY.render_size, SessionOptions.from_dict(options), controls=parsed)
    assert len(served) == len(ref) == 76
    assert all(np.array_equal(a, b.rgb) for a, b in zip(served, ref))
    plain = list(client.stream(avatar, audio, {"output_max_size": 256}))
    assert sum(not np.array_equal(a, b.rgb) for a, b in zip(served, plain)) > 60  # the options did change them


def test_a_reference_character_through_the_server_equals_in_process(client, portrait, mirrored, speech16k, stages):
    avatar, reference = client.register_avatar(portrait, CROP), client.register_avatar(mirrored, CROP)
    audio = speech16k[:32000]
    options = {"ch_avatar": reference, "output_max_size": 256}
    served = [f.rgb for f in client.stream(avatar, audio, options)]
    local = register_avatar(stages, portrait, TINY.appearance.image_size, CROP)
    local_ref = register_avatar(stages, mirrored, TINY.appearance.image_size, CROP)
    ref = render_audio(stages, local, audio, TINY.render_size, SessionOptions.from_dict(options), reference=local_ref)
    assert len(served) == len(ref) == 50 and all(np.array_equal(a, b.rgb) for a, b in zip(served, ref))
    with pytest.raises(ServerError, match="unknown avatar id"):
        list(client.stream(avatar, audio, {"ch_avatar": "f" * 32}))


def test_offline_mode_through_the_server_equals_in_process(server, client, portrait, speech16k, stages):
    avatar = client.register_avatar(portrait, CROP)
    audio = speech16k[: 4 * 16000 + 100]
    options = {"mode": "offline", "sampling_steps": 5}
    frames = list(client.stream(avatar, audio, options))
    assert [f.index for f in frames] == list(range(-(-audio.size // 640)))
    ref = render_audio(
        stages, server_avatar(server, avatar), audio, TINY.render_size, SessionOptions.from_dict(options)
    )
    assert all(np.array_equal(f.rgb, r.rgb) for f, r in zip(frames, ref))
    online = list(client.stream(avatar, audio, {"sampling_steps": 5}))
    assert len(online) == len(frames) and not np.array_equal(online[40].rgb, frames[40].rgb)


def test_video_avatar_through_the_server_equals_in_process(server, client, portrait, portrait_video, speech16k, stages):
    avatar = client.register_video(portrait_video, {"max_size": 512, "max_frames": 8})
    served = server_avatar(server, avatar)
    assert served.frames == 8 and served.source_rgb.shape[0] == 8
    local = register_avatar(
        stages, portrait_video, TINY.appearance.image_size, {"max_size": 512, "max_frames": 8}, video=True
    )
    np.testing.assert_allclose(served.motion_info, local.motion_info, rtol=1e-5, atol=1e-5)
    audio = speech16k[: 2 * 16000]
    frames = list(client.stream(avatar, audio))
    ref = render_audio(stages, served, audio, TINY.render_size)
    assert len(frames) == len(ref) == 50
    assert all(np.array_equal(f.rgb, r.rgb) for f, r in zip(frames, ref))
    assert client.register_video(portrait_video, {"max_size": 512, "max_frames": 8}) == avatar  # cached by content
    assert client.register_avatar(portrait, CROP) != avatar
    with pytest.raises(ServerError, match="not a supported video"):
        client.register_video(portrait, CROP)


def test_motion_out_and_motion_in_through_the_server(client, portrait, speech16k, server, samples_dir, tmp_path):
    from ditto_triton.apps import render as render_cli
    from ditto_triton.client.motion_file import MotionFile, motion_file_from

    avatar = client.register_avatar(portrait, CROP)
    options = {"return_motion": True, "output_max_size": 256, "delta_eye_arr": [[0.0] * 63] * 3, "delta_eye_open_n": 5}
    original = list(client.stream(avatar, speech16k[: 30 * 640], options))
    assert all(f.motion is not None and f.motion["x_d"].shape == (21, 3) for f in original)
    saved = motion_file_from([f.motion for f in original], options)
    replayed = list(client.stream_motion(avatar, saved.motion, saved.replay_options(), saved.replay_controls(), 10))
    assert len(replayed) == 30 and all(np.array_equal(a.rgb, b.rgb) for a, b in zip(original, replayed))
    with pytest.raises(ServerError, match="takes motion rows, not audio"):
        list(client.stream(avatar, speech16k[:3200], saved.replay_options()))
    out, motion, again = tmp_path / "a.mp4", tmp_path / "m.npz", tmp_path / "b.mp4"
    image, audio = tmp_path / "face.jpg", samples_dir / "ditto_example_audio.wav"
    image.write_bytes(portrait)
    common = ["--image", str(image), "--url", server.grpc_url, "--max-size", "512"]
    assert render_cli.main([*common, "--audio", str(audio), "--out", str(out), "--motion-out", str(motion)]) == 0
    assert MotionFile.load(motion).frames == -(-speech16k.size // 640)
    assert render_cli.main([*common, "--motion-in", str(motion), "--out", str(again)]) == 0
    assert again.stat().st_size > 0
