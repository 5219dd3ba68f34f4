"""Avatar registration: decoding, face landmarks, Ditto crop, eye features, options."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ditto_triton.avatar import face as face_mod
from ditto_triton.avatar import source as source_mod
from ditto_triton.avatar.crop import anchor_points, crop_face, crop_rect, transform_points
from ditto_triton.avatar.errors import (
    AvatarError,
    ImageDecodeError,
    ImageTooLargeError,
    InvalidOptionsError,
    NoFaceError,
)
from ditto_triton.avatar.eyes import eye_features
from ditto_triton.avatar.face import close_face_models, detect_face, detect_faces, detect_landmarks
from ditto_triton.avatar.image_io import decode_image, fit_source
from ditto_triton.avatar.source import AvatarSource, CropOptions, prepare_source


@pytest.fixture(scope="module")
def sample_bytes(samples_dir: Path) -> bytes:
    return (samples_dir / "ditto_example_image.jpg").read_bytes()


@pytest.fixture(scope="module")
def sample_rgb(sample_bytes: bytes) -> np.ndarray:
    return decode_image(sample_bytes)


@pytest.fixture(scope="module")
def sample_source(sample_bytes: bytes) -> AvatarSource:
    return prepare_source(sample_bytes)


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height (1-bit grey) with a tiny, incomplete IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _jpeg_with_declared_size(width: int, height: int) -> bytes:
    """A tiny real JPEG whose SOF0 frame header is patched to declare width x height."""
    data = bytearray(_encode(Image.new("RGB", (16, 16), (90, 90, 90)), "JPEG", quality=80))
    sof = data.index(b"\xff\xc0")
    # SOF0: marker(2) length(2) precision(1) height(2) width(2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# ----------------------------------------------------------------------------------------------
# the sample portrait


def test_sample_has_one_face(sample_rgb: np.ndarray) -> None:
    faces = detect_faces(sample_rgb)
    assert len(faces) == 1
    lmk = detect_landmarks(sample_rgb)
    assert lmk.shape == (478, 3) and lmk.dtype == np.float32
    box = faces[0]
    # the mesh lies on the detected face
    x, y = lmk[:, 0], lmk[:, 1]
    assert ((x > box.x0 - 50) & (x < box.x1 + 50) & (y > box.y0 - 100) & (y < box.y1 + 50)).all()
    face = detect_face(sample_rgb)
    h, w = sample_rgb.shape[:2]
    np.testing.assert_allclose(face.normalised[:, :2] * (w, h), face.px[:, :2], rtol=1e-5)


def test_sample_crop_is_centred_and_upright(sample_source: AvatarSource) -> None:
    src = sample_source
    assert src.rgb.shape == (1432, 1432, 3) and src.crop.shape == (512, 512, 3)
    assert src.M_c2o.shape == (3, 3) and src.M_c2o.dtype == np.float32
    lmk = detect_landmarks(src.rgb)
    m_o2c = np.linalg.inv(src.M_c2o.astype(np.float64))
    (eye, lip) = transform_points(np.stack(anchor_points(lmk)), m_o2c)
    assert abs(eye[0] - lip[0]) < 0.5  # de-rolled: the eye->lip axis is vertical
    assert abs(eye[0] - 256) < 20 and abs(lip[0] - 256) < 20
    assert 225 < eye[1] < 290 and 310 < lip[1] < 380  # Ditto's framing: eyes near the middle
    # the whole face mesh is inside the crop with a margin (scale 2.3)
    mapped = transform_points(lmk, m_o2c)
    assert mapped.min() > 100 and mapped.max() < 430
    # M_c2o maps crop pixels to the source pixels they were sampled from
    rng = np.random.default_rng(0)
    pts = rng.uniform(150, 360, size=(50, 2))
    orig = transform_points(pts, src.M_c2o)
    crop_vals = src.crop[np.rint(pts[:, 1]).astype(int), np.rint(pts[:, 0]).astype(int)].astype(float)
    orig_at = transform_points(np.rint(pts), src.M_c2o)
    src_vals = src.rgb[np.rint(orig_at[:, 1]).astype(int), np.rint(orig_at[:, 0]).astype(int)].astype(float)
    assert np.median(np.abs(crop_vals - src_vals)) < 12
    assert orig.min() > 0 and orig.max() < 1432


def test_sample_eye_features_plausible(sample_source: AvatarSource) -> None:
    eye_open, eye_ball = sample_source.eye_open, sample_source.eye_ball
    assert eye_open.shape == (1, 2) and eye_open.dtype == np.float32
    assert eye_ball.shape == (1, 6) and eye_ball.dtype == np.float32
    left, right = eye_open[0]
    assert 0.4 < left < 1.6 and 0.4 < right < 1.6  # open eyes
    assert abs(left - right) / max(left, right) < 0.2
    assert np.isfinite(eye_ball).all() and np.abs(eye_ball).max() < 0.1


def test_extractor_input(sample_source: AvatarSource) -> None:
    x = sample_source.extractor_input(64)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    expected = cv2.resize(sample_source.crop, (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(x[0, 0], expected[:, :, 0] / 255.0, atol=1e-6)  # channel 0 is R
    with pytest.raises(ValueError, match="size"):
        sample_source.extractor_input(0)
    with pytest.raises(ValueError):
        sample_source.crop[0, 0, 0] = 1  # arrays are frozen


def test_rolled_portrait_is_derolled(sample_rgb: np.ndarray) -> None:
    h, w = sample_rgb.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0)  # counter-clockwise on screen
    rolled = cv2.warpAffine(sample_rgb, rot, (w, h), borderMode=cv2.BORDER_REFLECT)
    lmk = detect_landmarks(rolled)
    rect_upright = crop_rect(detect_landmarks(sample_rgb))
    rect_rolled = crop_rect(lmk)
    assert np.degrees(rect_rolled.roll - rect_upright.roll) == pytest.approx(-20, abs=2)
    assert rect_rolled.size == pytest.approx(rect_upright.size, rel=0.05)
    crop, m_c2o = crop_face(rolled, lmk)
    eye, lip = transform_points(np.stack(anchor_points(lmk)), np.linalg.inv(m_c2o.astype(np.float64)))
    assert abs(eye[0] - lip[0]) < 0.5 and lip[1] > eye[1]
    # without rotation the crop is axis-aligned and the face stays tilted
    _, m_flat = crop_face(rolled, lmk, rotate=False)
    assert abs(m_flat[0, 1]) < 1e-6 and abs(m_flat[1, 0]) < 1e-6


def test_crop_options_shift_and_scale(sample_rgb: np.ndarray) -> None:
    lmk = detect_landmarks(sample_rgb)
    base = crop_rect(lmk)
    wider = crop_rect(lmk, scale=3.0)
    assert wider.size == pytest.approx(base.size * 3.0 / 2.3)
    lower = crop_rect(lmk, vy_ratio=0.0)
    assert lower.center[1] - base.center[1] == pytest.approx(0.125 * base.size * base.uy[1], rel=1e-6)


def test_crop_face_rejects_bad_landmarks(sample_rgb: np.ndarray) -> None:
    with pytest.raises(ValueError, match="468"):
        crop_face(sample_rgb, np.zeros((106, 2)))
    bad = np.zeros((478, 2))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        crop_face(sample_rgb, bad)


def test_crop_landmark_fallback_close_to_mesh_on_crop(sample_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = prepare_source(sample_bytes)
    monkeypatch.setattr(source_mod, "landmarks_in_box", lambda *a, **k: None)
    fallback = prepare_source(sample_bytes)
    np.testing.assert_allclose(fallback.eye_open, reference.eye_open, rtol=0.15)
    np.testing.assert_allclose(fallback.eye_ball, reference.eye_ball, atol=0.01)


def test_face_models_are_thread_safe_and_reloadable(sample_rgb: np.ndarray) -> None:
    small = cv2.resize(sample_rgb, (480, 480), interpolation=cv2.INTER_AREA)
    expected = detect_landmarks(small)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(detect_landmarks(small))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-3)
    close_face_models()
    assert face_mod._MODELS is None
    np.testing.assert_allclose(detect_landmarks(small), expected, atol=1e-3)


def test_small_face_in_large_photo(sample_rgb: np.ndarray) -> None:
    canvas = np.full((1080, 1920, 3), 120, np.uint8)
    canvas[600:850, 1300:1550] = cv2.resize(sample_rgb, (250, 250), interpolation=cv2.INTER_AREA)
    lmk = detect_landmarks(canvas)
    assert 1300 < lmk[:, 0].min() and lmk[:, 0].max() < 1550
    assert 600 < lmk[:, 1].min() and lmk[:, 1].max() < 850


def test_largest_of_two_faces(sample_rgb: np.ndarray) -> None:
    canvas = np.full((1000, 1600, 3), 120, np.uint8)
    canvas[100:700, 100:700] = cv2.resize(sample_rgb, (600, 600), interpolation=cv2.INTER_AREA)
    canvas[500:800, 1100:1400] = cv2.resize(sample_rgb, (300, 300), interpolation=cv2.INTER_AREA)
    lmk = detect_landmarks(canvas)
    assert lmk[:, 0].max() < 700


# ----------------------------------------------------------------------------------------------
# no face, bad bytes


def test_uniform_grey_has_no_face() -> None:
    grey = _encode(Image.new("RGB", (640, 480), (128, 128, 128)), "PNG")
    with pytest.raises(NoFaceError, match="no face was found"):
        prepare_source(grey)
    assert issubclass(NoFaceError, ValueError)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(np.random.default_rng(0).bytes(5000), id="random"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, id="broken-png"),
    ],
)
def test_undecodable_bytes(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_truncated_jpeg(sample_bytes: bytes) -> None:
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(sample_bytes[: len(sample_bytes) // 2])


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(TypeError):
        decode_image("image.jpg")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# size limits (checked from the header, before decoding)


@pytest.mark.parametrize("make", [_png_header_only, _jpeg_with_declared_size], ids=["png", "jpeg"])
def test_huge_declared_size_refused_quickly(make, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make(20000, 20000)
    assert len(data) < 2000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # our limit must not depend on Pillow's
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="20000x20000"):
        decode_image(data)
    assert time.perf_counter() - start < 0.5


def test_huge_declared_size_refused_by_default() -> None:
    for data in (_png_header_only(20000, 20000), _jpeg_with_declared_size(20000, 20000)):
        with pytest.raises(ImageTooLargeError):
            decode_image(data)


def test_pixel_limit_is_ours(sample_bytes: bytes) -> None:
    with pytest.raises(ImageTooLargeError, match="pixels"):
        decode_image(_png_header_only(8000, 8000))  # 64 MP: under Pillow's own bomb limit
    with pytest.raises(ImageTooLargeError):
        decode_image(sample_bytes, max_pixels=1_000_000)
    with pytest.raises(ImageTooLargeError, match="bytes"):
        decode_image(sample_bytes, max_bytes=len(sample_bytes) - 1)
    assert decode_image(sample_bytes, max_pixels=1432 * 1432).shape == (1432, 1432, 3)


# ----------------------------------------------------------------------------------------------
# colour modes and orientation


def test_png_with_alpha_is_accepted(sample_rgb: np.ndarray) -> None:
    small = cv2.resize(sample_rgb, (716, 716), interpolation=cv2.INTER_AREA)
    alpha = np.full(small.shape[:2], 255, np.uint8)
    alpha[:, :60] = 0
    data = _encode(Image.fromarray(np.dstack([small, alpha]), "RGBA"), "PNG")
    rgb = decode_image(data)
    assert rgb.shape == (716, 716, 3) and rgb.dtype == np.uint8
    assert (rgb[:, :60] == 255).all()  # transparent -> white
    np.testing.assert_array_equal(rgb[:, 60:], small[:, 60:])
    assert prepare_source(data).crop.shape == (512, 512, 3)


def test_grayscale_is_accepted(sample_rgb: np.ndarray) -> None:
    grey = Image.fromarray(cv2.resize(sample_rgb, (716, 716), interpolation=cv2.INTER_AREA)).convert("L")
    data = _encode(grey, "JPEG", quality=90)
    rgb = decode_image(data)
    assert rgb.shape == (716, 716, 3)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    src = prepare_source(data)
    assert (src.eye_open > 0.3).all()


def test_palette_and_sixteen_bit_images() -> None:
    pal = Image.new("P", (32, 16))
    pal.putpalette([10, 20, 30] * 256)
    assert (decode_image(_encode(pal, "PNG")) == (10, 20, 30)).all()
    ramp = (np.arange(64, dtype=np.uint16)[None, :] * 1000).repeat(8, axis=0)
    rgb = decode_image(_encode(Image.fromarray(ramp), "PNG"))
    assert rgb.shape == (8, 64, 3)
    np.testing.assert_allclose(rgb[0, :, 0], np.clip(np.rint(ramp[0] / 257), 0, 255), atol=1)


def test_exif_orientation_applied() -> None:
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 10, 20))  # red band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rgb = decode_image(_encode(im, "JPEG", exif=exif, quality=95))
    assert rgb.shape == (40, 20, 3)
    assert rgb[2, 10, 0] > 200 and rgb[2, 10, 2] < 60  # the left band is now on top


# ----------------------------------------------------------------------------------------------
# fit_source


@pytest.mark.parametrize(
    ("shape", "max_size", "expected"),
    [
        ((1432, 1432), 1920, (1432, 1432)),
        ((1001, 3001), 1920, (640, 1920)),
        ((3001, 1001), 1920, (1920, 640)),
        ((2000, 1999), 1920, (1920, 1918)),
        ((7, 9), 1920, (6, 8)),
        ((1433, 801), 1920, (1432, 800)),
        ((600, 300), 256, (256, 128)),
    ],
)
def test_fit_source(shape: tuple[int, int], max_size: int, expected: tuple[int, int]) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    out = fit_source(rgb, max_size)
    assert out.shape == (*expected, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert out.shape[0] % 2 == 0 and out.shape[1] % 2 == 0 and max(out.shape[:2]) <= max_size
    if max(shape) <= max_size:
        np.testing.assert_array_equal(out, rgb[: expected[0], : expected[1]])


def test_fit_source_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        fit_source(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        fit_source(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="max_size"):
        fit_source(np.zeros((10, 10, 3), np.uint8), 0)
    with pytest.raises(AvatarError, match="too small"):
        fit_source(np.zeros((1, 10, 3), np.uint8))


# ----------------------------------------------------------------------------------------------
# options


def test_crop_options_defaults_and_from_dict() -> None:
    assert CropOptions() == CropOptions(crop_scale=2.3, crop_vy_ratio=-0.125, crop_rotate=True, max_size=1920)
    opts = CropOptions.from_dict({"crop_scale": 2, "crop_rotate": False, "max_size": 1024})
    assert (opts.crop_scale, opts.crop_vy_ratio, opts.crop_rotate, opts.max_size) == (2, -0.125, False, 1024)
    assert CropOptions.from_dict({}) == CropOptions()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"crop_vx_ratio": 0.1}, "unknown crop option"),
        ({"crop_scale": "2.3"}, "crop_scale must be a number"),
        ({"crop_scale": True}, "crop_scale must be a number"),
        ({"crop_scale": 0.5}, r"crop_scale must be in \[1.0, 4.0\]"),
        ({"crop_scale": float("nan")}, "crop_scale must be in"),
        ({"crop_vy_ratio": -0.9}, "crop_vy_ratio must be in"),
        ({"crop_rotate": 1}, "crop_rotate must be a bool"),
        ({"max_size": 1920.0}, "max_size must be an int"),
        ({"max_size": 10_000}, "max_size must be in"),
    ],
)
def test_crop_options_validation(values: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidOptionsError, match=message):
        CropOptions.from_dict(values)


def test_crop_options_affect_registration(sample_bytes: bytes, sample_source: AvatarSource) -> None:
    small = prepare_source(sample_bytes, CropOptions(max_size=716))
    assert small.rgb.shape == (716, 716, 3)
    # same framing at half resolution: M_c2o's scale halves
    assert np.linalg.det(small.M_c2o[:2, :2]) ** 0.5 == pytest.approx(
        np.linalg.det(sample_source.M_c2o[:2, :2]) ** 0.5 / 2, rel=0.03
    )


# ----------------------------------------------------------------------------------------------
# eye features on synthetic landmarks


def test_eye_features_formula() -> None:
    lmk = np.zeros((478, 3))
    # left eye: outer 33 at (0,0,0), inner 133 at (1,0,0); three lid pairs 0.1, 0.2, 0.3 apart
    lmk[33], lmk[133] = (0, 0, 0), (1, 0, 0)
    for (lo, up), d in zip(((145, 159), (144, 160), (153, 158)), (0.1, 0.2, 0.3)):
        lmk[lo], lmk[up] = (0.5, d / 2, 0), (0.5, -d / 2, 0)
    # right eye: outer 263 at (3,0,0), inner 362 at (2,0,0) (width 1); lids 0.2 each
    lmk[263], lmk[362] = (3, 0, 0), (2, 0, 0)
    for lo, up in ((374, 386), (373, 387), (380, 385)):
        lmk[lo], lmk[up] = (2.5, 0.1, 0), (2.5, -0.1, 0)
    lmk[468] = (0.5, 0.0, 0.2)  # left iris straight "behind" the eye centre
    lmk[473] = (2.5, 0.3, 0.0)  # right iris below the centre
    eye_open, eye_ball = eye_features(lmk)
    np.testing.assert_allclose(eye_open, [[0.6, 0.6]], rtol=1e-6)
    # L: offset (0,0,0.2), unit (0,0,1); eye dir outer-inner = (-1,0,0) -> ((0,0,1)-(-1,0,0))*0.2
    left = np.array([0.2, 0.0, 0.2])
    # R: offset (0,0.3,0), unit (0,1,0); eye dir = (1,0,0) -> ((0,1,0)-(1,0,0))*0.3
    right = np.array([-0.3, 0.3, 0.0])
    expected = np.array([[left[0], right[0], left[1], right[1], left[2], right[2]]])
    np.testing.assert_allclose(eye_ball, expected, atol=1e-6)
    assert eye_open.dtype == np.float32 and eye_ball.dtype == np.float32
    with pytest.raises(ValueError, match="478"):
        eye_features(np.zeros((468, 3)))


def test_avatar_cache_is_bounded_by_count_and_bytes():
    from ditto_triton.avatar.cache import AvatarCache, UnknownAvatarError

    cache: AvatarCache[bytes] = AvatarCache(3, max_bytes=100, size_of=len)
    keys = [f"{i:032x}" for i in range(5)]
    for key in keys[:3]:
        cache.put(key, b"x" * 30)
    assert len(cache) == 3 and cache.bytes == 90
    cache.get(keys[0])  # now the most recently used
    cache.put(keys[3], b"x" * 30)  # 120 bytes > 100: the least recently used (keys[1]) goes
    assert keys[1] not in cache and keys[0] in cache and cache.bytes == 90
    cache.put(keys[4], b"x" * 500)  # larger than the budget alone: kept, everything else goes
    assert len(cache) == 1 and keys[4] in cache
    with pytest.raises(UnknownAvatarError, match="register"):
        cache.get(keys[0])
