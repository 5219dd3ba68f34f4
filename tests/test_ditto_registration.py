"""Ditto's registration path with stand-ins of its face models: decoding, geometry, file checks, avatar files."""

import hashlib
import math
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from ditto_triton.avatar import blaze_mesh, ditto_landmarks, scrfd
from ditto_triton.avatar.ditto_crop import crop_image, crop_rect
from ditto_triton.avatar.ditto_registration import DittoFaces
from ditto_triton.avatar.source import CropOptions, prepare_source
from ditto_triton.export import face_standins
from ditto_triton.export.face_models import FaceModelError, conform, ditto_faces, eyes_in, import_face_models
from ditto_triton.face_models import DETECTOR, FACE_MODELS, LANDMARK203
from ditto_triton.profiles import TINY
from ditto_triton.streaming.registered_avatar import AvatarFileError, RegisteredAvatar

FACE_BOX = (172.0, 150.0, 373.0, 352.0)  # the sample portrait's face in the 512 letterbox


def outputs_in_order(name, values):
    return [values[n] for n in FACE_MODELS[name].spec.output_names]


def test_known_anchor_outputs_decode_to_the_known_box():
    values = face_standins.detector_values((100.0, 120.0, 300.0, 340.0), score=0.8)
    det, kps = scrfd.decode_detections(outputs_in_order(DETECTOR, values), det_scale=0.5)
    assert det.shape == (1, 5) and kps.shape == (1, 5, 2)
    np.testing.assert_allclose(det[0], [200, 240, 600, 680, 0.8], rtol=1e-6)


def test_detections_keep_ditto_thresholds_nms_and_the_largest_box():
    det = np.array([[0, 0, 100, 100, 0.9], [5, 5, 105, 105, 0.8], [200, 200, 400, 400, 0.6]], np.float32)
    assert scrfd.nms(det, scrfd.NMS_IOU) == [0, 2]  # IoU(0, 1) = 0.82 > 0.4
    np.testing.assert_array_equal(scrfd.largest_face(det[[0, 2]]), [200, 200, 400, 400])
    values = face_standins.detector_values((10.0, 10.0, 60.0, 60.0), score=0.49)
    assert scrfd.decode_detections(outputs_in_order(DETECTOR, values), 1.0)[0].shape == (0, 5)


def test_detector_input_is_a_bgr_letterbox():
    red = np.zeros((500, 1000, 3), np.uint8)
    red[..., 0] = 255
    blob, det_scale = scrfd.detector_input(red)
    assert blob.shape == (1, 3, 512, 512) and det_scale == pytest.approx(256 / 500)
    assert blob[0, 2, 10, 10] == pytest.approx(127.5 / 128) and blob[0, 0, 10, 10] == pytest.approx(-127.5 / 128)
    assert blob[0, 2, 300, 10] == pytest.approx(-127.5 / 128)  # below the pasted image: black padding


def _upright_points(n=203):
    pts = np.zeros((n, 2), np.float32)
    pts[:] = (100, 115)
    pts[0], pts[1] = (80, 90), (120, 140)  # the box corners
    for i in (0, 6, 12, 18)[1:]:
        pts[i] = (90, 100)
    for i in (24, 30, 36, 42):
        pts[i] = (110, 100)
    pts[48], pts[66] = (100, 130), (100, 130)
    return pts


def test_a_known_set_of_203_points_gives_the_hand_computed_m_c2o():
    pts = _upright_points()
    # eye centre: left eye mean(0, 6, 12, 18) = (87.5, 97.5), right (110, 100) -> (98.75, 98.75); lip (100, 130)
    eye = np.array([98.75, 98.75])
    down = np.array([100, 130]) - eye
    uy = down / np.linalg.norm(down)
    ux = np.array([uy[1], -uy[0]])
    local = (pts - pts.mean(0)) @ np.stack([ux, uy]).T
    size = (local.max(0) - local.min(0)).max() * 2.3
    centre = pts.mean(0) + ux * (local.max(0) + local.min(0))[0] / 2 + uy * (local.max(0) + local.min(0))[1] / 2
    centre = centre + uy * (-0.125 * size)
    s = 512 / size
    rot = np.array([[ux[0], ux[1]], [uy[0], uy[1]]])
    m_o2c = np.eye(3)
    m_o2c[:2, :2] = s * rot
    m_o2c[:2, 2] = 256 - s * rot @ centre
    crop = crop_image(np.zeros((300, 300, 3), np.uint8), pts, 512, 2.3, -0.125)
    np.testing.assert_allclose(crop.M_c2o, np.linalg.inv(m_o2c), rtol=1e-5, atol=1e-4)
    assert crop.M_c2o.dtype == np.float32 and crop.image.shape == (512, 512, 3)


def test_the_crop_is_de_rolled_and_vx_is_ignored_as_in_ditto():
    pts = _upright_points()
    angle = math.radians(20)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], np.float32)
    turned = (pts - 100) @ rot.T + 100
    _, size, _ = crop_rect(pts, 2.3, -0.125)
    upright = crop_image(np.zeros((300, 300, 3), np.uint8), pts, 512, 2.3, -0.125)
    crop = crop_image(np.zeros((300, 300, 3), np.uint8), turned, 512, 2.3, -0.125)
    np.testing.assert_allclose(crop.M_c2o[:2, :2], rot @ upright.M_c2o[:2, :2], atol=1e-5)
    assert np.linalg.det(crop.M_c2o[:2, :2]) == pytest.approx((size / 512) ** 2, rel=1e-5)
    flat = crop_image(np.zeros((300, 300, 3), np.uint8), turned, 512, 2.3, -0.125, rotate=False)
    np.testing.assert_allclose(flat.M_c2o[:2, :2], np.eye(2) * (size / 512), atol=1e-5)


def test_106_points_come_back_through_the_inverse_crop():
    box = np.array([100, 50, 300, 250], np.float32)
    blob, matrix = ditto_landmarks.landmark106_input(np.zeros((400, 400, 3), np.uint8), box)
    assert blob.shape == (1, 3, 192, 192)
    zeros = np.zeros((1, 212), np.float32)  # (0, 0) in [-1, 1] crop units is the crop centre = box centre
    np.testing.assert_allclose(ditto_landmarks.landmark106_points([zeros], matrix), np.tile([200, 150], (106, 1)))


def test_203_points_are_the_third_output_through_m_c2o():
    values = face_standins.landmark203_values()
    crop = ditto_landmarks.landmark203_crop(np.zeros((400, 400, 3), np.uint8), _upright_points())
    pts = ditto_landmarks.landmark203_points(outputs_in_order(LANDMARK203, values), crop)
    expected = values["856"].reshape(203, 2) * 224 @ crop.M_c2o[:2, :2].T + crop.M_c2o[:2, 2]
    np.testing.assert_allclose(pts, expected, rtol=1e-6)


def test_blaze_face_decodes_one_face_and_its_mesh_roi():
    values = face_standins.blaze_values()
    detections = blaze_mesh.blaze_detections([values["regressors"], values["classificators"]])
    assert len(detections) == 1
    np.testing.assert_allclose(detections[0][:4], [64 - 28, 64 - 28, 64 + 28, 64 + 28], atol=1e-4)
    roi = blaze_mesh.mesh_roi(detections[0], 512, 512)
    np.testing.assert_allclose(roi, [256, 256, 56 * 4 * 1.5, 56 * 4 * 1.5, 0.0], atol=1e-3)


def test_mesh_points_are_projected_back_onto_the_crop():
    roi = np.array([256.0, 256.0, 300.0, 300.0, 0.0])
    centre = np.full((1, 1, 1, 1434), 128.0, np.float32)  # the ROI's centre in 256-px units
    np.testing.assert_allclose(blaze_mesh.mesh_points([centre], roi, 512, 512)[:, :2], 0.5, atol=1e-6)


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    return face_standins.write_standin_release(tmp_path_factory.mktemp("release"), FACE_BOX)


def test_a_missing_face_model_is_an_error_that_names_it(standins, tmp_path):
    partial = tmp_path / "w"
    (partial / "aux_models").mkdir(parents=True)
    (partial / "aux_models" / "det_10g.onnx").write_bytes((standins / "aux_models" / "det_10g.onnx").read_bytes())
    with pytest.raises(FaceModelError, match="aux_models/2d106det.onnx, aux_models/landmark203.onnx"):
        eyes_in(partial)
    assert eyes_in(tmp_path) is None  # no face models at all: the MediaPipe path


def test_a_malformed_face_model_is_an_error_that_says_what_was_expected(standins, tmp_path):
    garbage = tmp_path / "det.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(FaceModelError, match="det.onnx: not an ONNX model"):
        conform(garbage, FACE_MODELS[DETECTOR].spec, tmp_path / "out.onnx")
    wrong = tmp_path / "lmk203.onnx"  # the 106 model where the 203 one should be
    wrong.write_bytes((standins / "aux_models" / "2d106det.onnx").read_bytes())
    with pytest.raises(FaceModelError, match=r"lmk203.onnx: expected 1 input and 3 outputs \(output \[1, 214\]"):
        conform(wrong, FACE_MODELS[LANDMARK203].spec, tmp_path / "out.onnx")


def test_other_output_names_and_shapes_are_conformed_by_position(tmp_path):
    spec = FACE_MODELS[LANDMARK203].spec
    values = face_standins.landmark203_values()
    model = face_standins.constant_model(spec, values, input_name="img")
    model.graph.output[2].type.tensor_type.shape.dim[1].dim_value = 406  # same shape, other name below
    for node in model.graph.node:
        node.output[:] = ["landmarks" if n == "856" else n for n in node.output]
    model.graph.output[2].name = "landmarks"
    onnx.save(model, str(tmp_path / "renamed.onnx"))
    changes = conform(tmp_path / "renamed.onnx", spec, tmp_path / "out.onnx")
    assert changes == ["input 'img' -> 'input'", "output 2 'landmarks' [1, 406] -> '856' [1, 406]"]
    fixed = onnx.load(str(tmp_path / "out.onnx"))
    assert [o.name for o in fixed.graph.output] == spec.output_names and fixed.graph.input[0].name == "input"


def test_ditto_registration_of_the_sample_portrait(standins, tmp_path, portrait):
    entry = import_face_models(standins, tmp_path)
    assert entry["eyes"] == "onnx" and set(entry["models"]) == {m for m in FACE_MODELS}
    faces = ditto_faces(tmp_path, entry)
    source = prepare_source(portrait, CropOptions(), faces)
    assert source.registration == "ditto" and source.landmarks.shape == (203, 2)
    # Ditto's chain by hand: detection -> 106 -> 224 crop -> 203 -> 512 crop
    rgb = source.rgb
    seed = faces.detect(rgb)
    points = faces.landmarks203(rgb, seed)
    np.testing.assert_array_equal(points, source.landmarks)
    np.testing.assert_array_equal(crop_image(rgb, points, 512, 2.3, -0.125).M_c2o, source.M_c2o)
    assert np.isfinite(source.eye_open).all() and source.eye_open[0, 0] == pytest.approx(1.4, rel=1e-4)


def test_registration_names_the_face_models_that_found_nothing(standins, tmp_path):
    faces = DittoFaces(
        lambda name, inputs: {
            n: np.zeros(o.shape, np.float32)
            for n, o in zip(FACE_MODELS[name].spec.output_names, FACE_MODELS[name].spec.outputs)
        }
    )
    with pytest.raises(Exception, match="det_10g found no box"):
        faces.detect(np.zeros((64, 64, 3), np.uint8))


def _avatar(frames=2):
    p = TINY
    kp = 3 * p.motion.num_kp
    per = {
        "landmarks": np.zeros((frames, 203, 2), np.float32),
        "M_c2o": np.tile(np.eye(3, dtype=np.float32), (frames, 1, 1)),
        "crop": np.zeros((frames, 512, 512, 3), np.uint8),
        "source_rgb": np.zeros((frames, 32, 48, 3), np.uint8),
        **{
            k: np.full((frames, w), 0.1 * i, np.float32)
            for i, (k, w) in enumerate(
                {
                    "pitch": p.motion.num_bins,
                    "yaw": p.motion.num_bins,
                    "roll": p.motion.num_bins,
                    "t": 3,
                    "exp": kp,
                    "scale": 1,
                    "kp": kp,
                }.items()
            )
        },
        "f_s": np.random.default_rng(0).random((frames, *p.appearance.feature_shape), dtype=np.float32),
        "eye_open": np.full((frames, 2), 0.3, np.float32),
        "eye_ball": np.zeros((frames, 6), np.float32),
    }
    per["kp"][1] += 1.0  # frame 1 differs, so smoothing changes frame 0 but sc does not
    return RegisteredAvatar(frames=per, sc=per["kp"][0].copy(), profile="tiny", registration="ditto", smooth_k=13)


def test_an_avatar_file_round_trips(tmp_path):
    avatar = _avatar()
    avatar.save(tmp_path / "a.npz")
    loaded = RegisteredAvatar.load((tmp_path / "a.npz").read_bytes(), TINY)
    for key, value in avatar.frames.items():
        np.testing.assert_array_equal(loaded.frames[key], value)
    features = loaded.features()
    assert features.registration == "ditto" and features.frames == 2
    np.testing.assert_array_equal(features.shape_condition, avatar.frames["kp"][0])  # sc before smoothing
    assert not np.array_equal(features.info["kp"].reshape(-1), avatar.frames["kp"][0])  # x_s_info smoothed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(version=np.array(2)), "version 2.*reads version 1"),
        (lambda a: a.update(extra=np.zeros(1)), r"unexpected key\(s\) \['extra'\]"),
        (lambda a: a.pop("f_s"), r"missing key\(s\) \['f_s'\]"),
        (
            lambda a: a.update(eye_open=np.zeros((2, 3), np.float32)),
            r"'eye_open' is \(2, 3\) float32; expected \(2, 2\)",
        ),
        (lambda a: a.update(crop=np.zeros((2, 512, 512, 3), np.float32)), r"'crop' is .* float32; expected .* uint8"),
        (lambda a: a.update(profile=np.array("full")), "made for the full profile"),
    ],
)
def test_a_wrong_avatar_file_is_a_clear_error(tmp_path, change, message):
    _avatar().save(tmp_path / "a.npz")
    with np.load(tmp_path / "a.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    np.savez(tmp_path / "b.npz", **arrays)
    with pytest.raises(AvatarFileError, match=message):
        RegisteredAvatar.load((tmp_path / "b.npz").read_bytes(), TINY)
    with pytest.raises(AvatarFileError, match="not an avatar file"):
        RegisteredAvatar.load(b"PK\x03\x04 broken", TINY)


def test_eyes_from_face_landmarker_task(standins, tmp_path, portrait):
    """The .task path: MediaPipe Tasks' FaceLandmarker (a bundle of the wheel's own models) on the crop."""
    release = tmp_path / "w"
    (release / "aux_models").mkdir(parents=True)
    for path in (standins / "aux_models").iterdir():
        (release / "aux_models" / path.name).write_bytes(path.read_bytes())
    face_standins.write_task_standin(release / "aux_models" / "face_landmarker.task")
    entry = import_face_models(release, tmp_path / "export")
    assert entry["eyes"] == "task" and set(entry["models"]) == {"face_det_10g", "face_landmark106", "face_landmark203"}
    faces = ditto_faces(tmp_path / "export", entry)
    source = prepare_source(portrait, CropOptions(), faces)
    landmarks = faces.eye_landmarks(source.crop)
    assert landmarks.shape == (478, 3) and np.isfinite(landmarks).all()
    assert 0 < source.eye_open.min() and np.isfinite(source.eye_ball).all()


REFERENCE = Path(__file__).parent / "data" / "ditto_registration_reference.npz"


EYE_STEPS = ("pts", "eo", "eb")  # after FaceMesh's points are rotated back (see below)


@pytest.mark.parametrize(("case", "roll"), [("level", 0.0), ("rolled", 17.0)])
def test_every_step_equals_dittos_own_code(tmp_path, samples_dir, case, roll):
    """Bit for bit (the eye steps within a float32 step or a few, see below) against numbers Ditto's own code produced (commit e9191cf's RetinaFace, Landmark106,
    Landmark203, crop_image, Landmark478 ONNX path and EyeAttrUtilsByMP, under its pinned NumPy 2.0.1 and
    OpenCV 4.10.0.84) on these stand-ins and this image; recorded once, kept in tests/data."""
    ref = np.load(REFERENCE)
    release = face_standins.write_standin_release(tmp_path / "w", FACE_BOX, roll_degrees=roll)
    faces = ditto_faces(tmp_path / "export", import_face_models(release, tmp_path / "export"))
    rgb = cv2.cvtColor(cv2.imread(str(samples_dir / "ditto_example_image.jpg")), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (1200, 1400))
    blob, det_scale = scrfd.detector_input(rgb)
    det, _ = scrfd.decode_detections(faces.run(DETECTOR, blob), det_scale)
    seed = faces.detect(rgb)
    frame = faces.register_frame(rgb, None, 2.3, -0.125, True)
    steps = {
        "det": det,
        "p106": seed,
        "p203": frame.landmarks,
        "M": frame.M_c2o,
        "pts": faces.eye_landmarks(frame.crop),
        "eo": frame.eye_open,
        "eb": frame.eye_ball,
    }
    for name, value in steps.items():
        if name in EYE_STEPS:
            # The mesh's rotation is a float64 matmul: OpenBLAS picks its kernel by CPU, so on another CPU than
            # the reference's a point may land one float32 step away (seen on an AVX-512 machine: 67 of 1434
            # values, and eye_open 7 steps off), as Ditto's own `@` would there. Anything the registration
            # computes differently moves them by far more; the steps before the mesh stay bit for bit.
            np.testing.assert_allclose(value, ref[f"{case}_{name}"], rtol=2e-6, atol=1e-7, err_msg=name)
        else:
            np.testing.assert_array_equal(value, ref[f"{case}_{name}"], err_msg=name)
    assert hashlib.sha256(np.ascontiguousarray(frame.crop).tobytes()).hexdigest() == str(ref[f"{case}_crop_sha256"])


def test_large_per_frame_arrays_are_memory_mapped(monkeypatch):
    from ditto_triton.avatar import storage

    monkeypatch.setattr(storage, "IN_MEMORY_BYTES", 1000)
    assert isinstance(storage.frame_array((10, 10), np.uint8), np.ndarray)
    big = storage.stored_like(np.arange(2000, dtype=np.float32))
    assert isinstance(big, np.memmap) and big[1999] == 1999
    blocks = storage.FrameBlocks(per_block=4)
    frames = [blocks.add(np.full((16, 16, 3), i, np.uint8)) for i in range(6)]
    assert [int(f[0, 0, 0]) for f in frames] == list(range(6)) and isinstance(frames[5].base, np.memmap)
