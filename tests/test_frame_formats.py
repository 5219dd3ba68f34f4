"""Frame formats (session option output_format), without a server: the option's validation, the
orchestrator's encoder against the client's decoder, and the format ditto-render asks for."""

from __future__ import annotations

import io

import numpy as np
import pytest
from frame_compare import psnr
from PIL import Image

from ditto_triton.apps.render import build_parser, session_options
from ditto_triton.apps.server import default_frame_format
from ditto_triton.client.frame_decoding import decode_frame
from ditto_triton.protocol import OUTPUT_FORMATS
from ditto_triton.streaming.frame_encoding import encode_frame, frame_encoder
from ditto_triton.streaming.options import OptionsError, SessionOptions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


@pytest.fixture(scope="module")
def photo(samples_dir) -> np.ndarray:
    """A real picture (the sample portrait at 240×320, not square) to encode."""
    return np.asarray(Image.open(samples_dir / "ditto_example_image.jpg").convert("RGB").resize((240, 320)))


def wire(data: np.ndarray) -> np.ndarray:
    """Bytes as the client gets the `frame` output: a flat uint8 array."""
    return np.frombuffer(data, np.uint8)


def test_every_declared_format_is_a_valid_option():
    assert OUTPUT_FORMATS == ("rgb", "jpeg", "png")
    for fmt in OUTPUT_FORMATS:
        assert SessionOptions.from_dict({"output_format": fmt}).output_format == fmt
    options = SessionOptions.from_dict({"output_format": "png", "png_compression": 9})
    assert (options.png_compression, SessionOptions().png_compression, SessionOptions().output_format) == (9, 1, "rgb")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"output_format": "bmp"}, r"'output_format' must be one of \('rgb', 'jpeg', 'png'\), got 'bmp'"),
        ({"output_format": "PNG"}, "got 'PNG'"),
        ({"png_compression": 10}, "'png_compression'=10 outside 0..9"),
        ({"png_compression": -1}, "'png_compression'=-1 outside 0..9"),
        ({"png_compression": "fast"}, "'png_compression' must be int, got 'fast'"),
        ({"png_compression": 1.5}, "'png_compression' must be int"),
        ({"jpeg_quality": 0}, "'jpeg_quality'=0 outside 1..100"),
    ],
)
def test_bad_frame_options_are_refused_naming_the_value(options, message):
    with pytest.raises(OptionsError, match=message):
        SessionOptions.from_dict(options)


def test_png_is_lossless_and_rgb_is_the_raw_pixels(photo):
    png = encode_frame(photo, "png")
    assert png.tobytes().startswith(PNG_MAGIC)
    np.testing.assert_array_equal(decode_frame(wire(png), "png", photo.shape), photo)
    raw = encode_frame(photo, "rgb")
    assert len(raw) == photo.size
    np.testing.assert_array_equal(decode_frame(wire(raw), "rgb", photo.shape), photo)


def test_jpeg_is_close_in_rgb_order_and_quality_sets_the_size(photo):
    jpeg = encode_frame(photo, "jpeg", jpeg_quality=90)
    assert jpeg.tobytes().startswith(JPEG_MAGIC)
    decoded = decode_frame(wire(jpeg), "jpeg", photo.shape)
    assert decoded.shape == photo.shape and decoded.dtype == np.uint8
    assert psnr(decoded, photo) > 30
    assert psnr(decoded[..., ::-1], photo) < 20  # channels in RGB order, not OpenCV's BGR
    assert len(encode_frame(photo, "jpeg", jpeg_quality=30)) < len(jpeg)


def test_png_compression_reaches_the_encoder(photo):
    stored = frame_encoder(SessionOptions(output_format="png", png_compression=0))(photo)
    smallest = frame_encoder(SessionOptions(output_format="png", png_compression=9))(photo)
    assert len(smallest) < len(stored)
    np.testing.assert_array_equal(decode_frame(wire(stored), "png", photo.shape), photo)
    np.testing.assert_array_equal(decode_frame(wire(smallest), "png", photo.shape), photo)


def test_a_frame_that_does_not_match_its_shape_or_format_is_refused(photo):
    jpeg = wire(encode_frame(photo, "jpeg"))
    with pytest.raises(ValueError, match=r"for a frame_shape of \(128, 128, 3\)"):
        decode_frame(jpeg, "jpeg", (128, 128, 3))
    with pytest.raises(ValueError, match="expected a png frame, got JPEG"):
        decode_frame(jpeg, "png", photo.shape)
    with pytest.raises(ValueError, match="undecodable jpeg frame"):
        decode_frame(jpeg[:100], "jpeg", photo.shape)
    with pytest.raises(ValueError, match="bytes of raw RGB"):
        decode_frame(wire(encode_frame(photo, "rgb"))[:-3], "rgb", photo.shape)
    grey = io.BytesIO()
    Image.fromarray(photo[..., 0]).save(grey, format="PNG")  # a one-channel PNG becomes H×W×3
    assert decode_frame(wire(grey.getvalue()), "png", photo.shape).shape == photo.shape


def test_ditto_render_asks_for_jpeg_from_a_url_and_rgb_from_the_embedded_server():
    def sent(*more: str) -> dict:
        base = ["--image", "face.jpg", "--audio", "speech.wav", "--out", "out.mp4"]
        return session_options(build_parser().parse_args([*base, *more]), {})

    assert sent()["output_format"] == "rgb"
    assert sent("--url", "10.0.0.5:8001")["output_format"] == "jpeg"
    assert default_frame_format("127.0.0.1:8001") == "jpeg"  # a loopback URL may be a tunnel to another machine
    assert sent("--url", "10.0.0.5:8001", "--frame-format", "png")["output_format"] == "png"
    assert sent("--frame-format", "jpeg", "--option", "jpeg_quality=70") == {
        "output_format": "jpeg",
        "jpeg_quality": 70,
    }
    assert sent("--url", "10.0.0.5:8001", "--option", "output_format=rgb")["output_format"] == "rgb"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--image", "f.jpg", "--out", "o.mp4", "--frame-format", "bmp"])
