"""A release-layout weights directory (synthetic checkpoints + face-model stand-ins) registers through
Ditto's path in process, in a running server (face models as Triton models called by BLS), and by
ditto-register / ditto-render --weights, with the same results."""

import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from ditto_triton.apps import register as register_cli
from ditto_triton.apps import render as render_cli
from ditto_triton.client import DittoClient
from ditto_triton.export.face_models import export_faces
from ditto_triton.export.face_standins import write_standin_release
from ditto_triton.export.ort_runtime import OrtStages
from ditto_triton.export.pipeline import ExportOptions, export_all
from ditto_triton.face_models import FACE_MODELS
from ditto_triton.manifest import read_manifest
from ditto_triton.model_repository.render import render_repository
from ditto_triton.profiles import TINY
from ditto_triton.streaming.reference import registered_avatar
from ditto_triton.streaming.registered_avatar import RegisteredAvatar

FACE_BOX = (172.0, 150.0, 373.0, 352.0)
LOOKUP = ("f_s", "motion_info", "eye_open", "eye_ball", "crop_to_source", "shape_condition", "landmarks")


@pytest.fixture(scope="module")
def release(tiny_export, tmp_path_factory):
    """ditto_pytorch/ layout: the tiny synthetic checkpoints plus aux_models/ stand-ins."""
    root = tmp_path_factory.mktemp("ditto_pytorch")
    shutil.copytree(tiny_export / "synthetic_weights" / "models", root / "models")
    return write_standin_release(root, FACE_BOX)


@pytest.fixture(scope="module")
def ditto_export(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("export_ditto")
    export_all(ExportOptions(profile=TINY, weights=release, out=out, parity=False))
    return out


@pytest.fixture(scope="module")
def ditto_server(ditto_export, triton_server_factory, tmp_path_factory):
    repo = render_repository(ditto_export, tmp_path_factory.mktemp("repo"), "python-ort", include_services=True)
    return triton_server_factory(repo)


def lookup(url: str, avatar_id: str) -> dict[str, np.ndarray]:
    ident = grpcclient.InferInput("avatar_id", [1], "BYTES")
    ident.set_data_from_numpy(np.array([avatar_id.encode()], dtype=object))
    names = [*LOOKUP, "registration"]
    with grpcclient.InferenceServerClient(url) as c:
        out = c.infer("avatar_registry", [ident], outputs=[grpcclient.InferRequestedOutput(n) for n in names])
    return {n: out.as_numpy(n) for n in names}


def in_process(export, data, video=False):
    return registered_avatar(OrtStages(export), data, TINY, {}, video, export_faces(export))


def assert_same(served: dict, local) -> None:
    features = local.features()
    assert served["registration"].reshape(-1)[0].decode() == "ditto"
    for name in LOOKUP:
        np.testing.assert_allclose(served[name], getattr(features, name), rtol=1e-5, atol=1e-5, err_msg=name)


def test_the_export_records_ditto_registration(ditto_export):
    entry = read_manifest(ditto_export)["registration"]
    assert entry["kind"] == "ditto" and entry["eyes"] == "onnx"
    assert set(entry["models"]) == set(FACE_MODELS)


def test_the_repository_serves_the_face_models(ditto_server):
    with grpcclient.InferenceServerClient(ditto_server.grpc_url) as c:
        for name in FACE_MODELS:
            assert c.is_model_ready(name), name
        config = c.get_model_config("avatar_registry", as_json=True)["config"]["parameters"]
    assert config["registration"]["string_value"] == "ditto" and config["eyes"]["string_value"] == "onnx"


def test_server_registration_equals_in_process(ditto_server, ditto_export, portrait):
    with DittoClient(ditto_server.grpc_url) as client:
        avatar_id = client.register_avatar(portrait)
        assert client.registration(avatar_id) == "ditto"
    local = in_process(ditto_export, portrait)
    assert local.registration == "ditto" and local.frames["landmarks"].shape == (1, 203, 2)
    assert_same(lookup(ditto_server.grpc_url, avatar_id), local)


def test_a_video_registers_every_frame_through_ditto_tracking(ditto_server, ditto_export, portrait_video):
    with DittoClient(ditto_server.grpc_url) as client:
        avatar_id = client.register_video(portrait_video)
    local = in_process(ditto_export, portrait_video, video=True)
    assert local.frames["f_s"].shape[0] == 12  # all frames, none dropped
    assert_same(lookup(ditto_server.grpc_url, avatar_id), local)


def test_ditto_register_writes_a_file_the_server_and_render_accept(
    ditto_server, ditto_export, release, portrait, samples_dir, tmp_path
):
    image = tmp_path / "face.jpg"
    image.write_bytes(portrait)
    out = tmp_path / "avatar.npz"
    args = [str(image), "--weights", str(release), "--export-dir", str(ditto_export), "--out", str(out)]
    assert register_cli.main(args) == 0
    written = RegisteredAvatar.load(out, TINY)
    assert written.registration == "ditto"
    with DittoClient(ditto_server.grpc_url) as client:
        from_file = client.register_avatar_file(out.read_bytes())
        from_image = client.register_avatar(portrait)
    served_file, served_image = lookup(ditto_server.grpc_url, from_file), lookup(ditto_server.grpc_url, from_image)
    for name in LOOKUP:
        np.testing.assert_allclose(served_file[name], served_image[name], rtol=1e-5, atol=1e-5, err_msg=name)
    audio = samples_dir / "ditto_example_audio.wav"
    video = tmp_path / "out.mp4"
    code = render_cli.main(
        ["--avatar", str(out), "--audio", str(audio), "--out", str(video), "--url", ditto_server.grpc_url]
    )
    assert code == 0 and video.stat().st_size > 0


def test_a_bad_avatar_file_is_invalid_argument(ditto_server):
    data = grpcclient.InferInput("avatar_file", [1], "BYTES")
    data.set_data_from_numpy(np.array([b"not an npz"], dtype=object))
    with grpcclient.InferenceServerClient(ditto_server.grpc_url) as c:
        with pytest.raises(grpcclient.InferenceServerException) as err:
            c.infer("avatar_registry", [data])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "not an avatar file" in err.value.message()


def test_ditto_render_with_the_weights_directory_registers_through_ditto(
    release, ditto_export, portrait, speech16k, tmp_path, capsys
):
    import soundfile as sf

    image, audio, video = tmp_path / "face.jpg", tmp_path / "speech.wav", tmp_path / "out.mp4"
    image.write_bytes(portrait)
    sf.write(audio, speech16k[: 640 * 30], 16000)
    args = ["--image", str(image), "--audio", str(audio), "--out", str(video)]
    assert render_cli.main([*args, "--weights", str(release), "--export-dir", str(ditto_export)]) == 0
    assert "registration 'ditto'" in capsys.readouterr().err


@pytest.mark.parametrize(("flavor", "platform"), [("onnxruntime", "onnxruntime_onnx"), ("tensorrt", "tensorrt_plan")])
def test_gpu_flavors_serve_the_face_models(ditto_export, tmp_path, flavor, platform):
    from ditto_triton.export.engine_plan import plan_builds
    from ditto_triton.model_repository import pbtxt

    repo = render_repository(ditto_export, tmp_path / flavor, flavor, include_services=True)
    for name, model in FACE_MODELS.items():
        config = pbtxt.read_config(repo / name)
        assert config.platform == platform and config.max_batch_size == 0, name
        assert [t.name for t in config.output] == model.spec.output_names
        artifact = "README.txt" if flavor == "tensorrt" else "model.onnx"
        assert (repo / name / "1" / artifact).is_file(), name
    if flavor == "tensorrt":
        builds = {b.stage: b for b in plan_builds(ditto_export)}
        assert all(builds[name].precision == "fp16" and builds[name].max_batch_size == 0 for name in FACE_MODELS)
    registry = pbtxt.get_parameters(pbtxt.read_config(repo / "avatar_registry"))
    assert registry["registration"] == "ditto" and registry["eyes"] == "onnx"


def test_start_may_carry_an_avatar_file_the_replica_has_not_seen(ditto_server, ditto_export, mirrored, tmp_path):
    from ditto_triton.avatar.cache import avatar_id
    from ditto_triton.client.session import AvatarSource, StreamSession

    path = tmp_path / "mirrored.npz"
    in_process(ditto_export, mirrored).save(path)
    data = path.read_bytes()
    key = avatar_id(data, {"avatar_file": True}, "tiny")
    with StreamSession(ditto_server.grpc_url, key, avatar_source=AvatarSource("file", data)) as session:
        session.end(np.zeros(640 * 5, np.float32))
        frames = list(session.frames())
    assert len(frames) == 5
    assert lookup(ditto_server.grpc_url, key)["registration"].reshape(-1)[0] == b"ditto"


def test_eyes_from_the_task_file_through_the_server(release, triton_server_factory, portrait, tmp_path_factory):
    from ditto_triton.export.face_standins import write_task_standin

    with_task = tmp_path_factory.mktemp("ditto_pytorch_task")
    shutil.copytree(release, with_task, dirs_exist_ok=True)
    write_task_standin(with_task / "aux_models" / "face_landmarker.task")
    export = tmp_path_factory.mktemp("export_task")
    export_all(ExportOptions(profile=TINY, weights=with_task, out=export, parity=False))
    repo = render_repository(export, tmp_path_factory.mktemp("repo_task"), "python-ort", include_services=True)
    assert (repo / "avatar_registry" / "1" / "face_landmarker.task").is_file()
    assert not (repo / "face_mesh").exists()
    server = triton_server_factory(repo)
    with DittoClient(server.grpc_url) as client:
        avatar_id = client.register_avatar(portrait)
    local = in_process(export, portrait)
    assert_same(lookup(server.grpc_url, avatar_id), local)
