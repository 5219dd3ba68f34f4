"""The 106- and 203-point landmark models as Ditto runs them (aux-models §2, §3): inputs and decoding.

106 points (`2d106det.onnx`): a 192 x 192 crop centred on the face box at 192 / (1.5 * its longer
side), no rotation, black border; fed as B, G, R in 0..255 (OpenCV blob with swapRB, no scaling).
The first output's first row is 106 (x, y) in [-1, 1]: (p + 1) * 96, then back through the inverse
crop. They only seed the 224 crop of the 203-point model.

203 points (`landmark203.onnx`): the 224 crop from the 106 points (or, in a video, from the previous
frame's 203 points) at scale 1.5, vy -0.1, rotation on; fed as R, G, B / 255. The third output is 203
(x, y) in [0, 1] of the crop: * 224, then through the crop's M_c2o into the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ditto_triton.avatar.ditto_crop import DittoCrop, crop_image, transform_points
from ditto_triton.face_models import LANDMARK106_SIZE, LANDMARK203_SIZE

BOX_SCALE = 1.5
TRACK_SCALE = 1.5
TRACK_VY_RATIO = -0.1


def landmark106_input(rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((1, 3, 192, 192) float32 BGR 0..255 blob, (2, 3) float64 crop matrix) for a face box."""
    box = np.asarray(box, np.float32)
    width, height = box[2] - box[0], box[3] - box[1]
    two = np.float32(2)  # float32 scalars throughout, as under Ditto's NumPy 2
    cx, cy = (box[2] + box[0]) / two, (box[3] + box[1]) / two
    s = np.float32(LANDMARK106_SIZE) / (max(width, height) * np.float32(BOX_SCALE))
    half = LANDMARK106_SIZE / 2
    matrix = np.array([[s, 0, half - float(cx * s)], [0, s, half - float(cy * s)]], np.float64)
    crop = cv2.warpAffine(rgb, matrix, (LANDMARK106_SIZE, LANDMARK106_SIZE), borderValue=0.0)
    blob = crop[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(blob), matrix


def landmark106_points(outputs: Sequence[np.ndarray], matrix: np.ndarray) -> np.ndarray:
    """(106, 2) float32 image points from the model's outputs (first output, first row)."""
    pred = np.asarray(outputs[0])[0].reshape(-1, 2).astype(np.float32)
    if pred.shape[0] < 106:
        raise ValueError(f"the 106-point model gave {pred.shape[0]} points")
    pred = (pred[-106:] + 1) * (LANDMARK106_SIZE // 2)
    inverse = cv2.invertAffineTransform(matrix)
    homogeneous = np.concatenate([pred, np.ones((106, 1), np.float32)], axis=1)
    return (homogeneous.astype(np.float64) @ inverse.T).astype(np.float32)


def landmark203_crop(rgb: np.ndarray, seed_points: np.ndarray) -> DittoCrop:
    """The 224 crop the 203-point model sees, from 106 points or the previous frame's 203."""
    return crop_image(rgb, seed_points, LANDMARK203_SIZE, TRACK_SCALE, TRACK_VY_RATIO, rotate=True)


def landmark203_input(crop: DittoCrop) -> np.ndarray:
    """(1, 3, 224, 224) float32 RGB in [0, 1]."""
    return np.ascontiguousarray((crop.image.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])


def landmark203_points(outputs: Sequence[np.ndarray], crop: DittoCrop) -> np.ndarray:
    """(203, 2) float32 image points from the model's third output."""
    if len(outputs) < 3:
        raise ValueError(f"the 203-point model must give 3 outputs (landmarks third), got {len(outputs)}")
    pts = np.asarray(outputs[2], np.float32)[0].reshape(-1, 2) * LANDMARK203_SIZE
    if pts.shape != (203, 2):
        raise ValueError(f"the 203-point model's third output holds {pts.shape[0]} points, expected 203")
    return transform_points(pts, crop.M_c2o)
