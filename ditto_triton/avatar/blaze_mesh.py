"""Ditto's eye landmarks from the ONNX pair `blaze_face.onnx` + `face_mesh.onnx` (aux-models §5, §6).

BlazeFace runs on the 512 crop resized to 128 (NHWC, RGB / 127.5 - 1): 896 SSD anchors (strides
8, 16, 16, 16, fixed size 1, offset 0.5), boxes in 128-px units, keypoints normalised, scores
sigmoid(clip(logit, -50, 100)) >= 0.5, MediaPipe's weighted NMS at IoU 0.3; the first cluster is
the face. Its box (x scaled by H/128, y by W/128: Ditto's swap, harmless on a square crop) grown
1.5 x to a square, rotated by the eye keypoints, is warped to 256 for FaceMesh (NHWC RGB / 255);
the 478 points are projected back and normalised by (W, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ditto_triton.face_models import BLAZE_ANCHORS, BLAZE_SIZE, MESH_SIZE

SCORE_THRESHOLD = 0.5
NMS_IOU = 0.3
ROI_SCALE = 1.5
_STRIDES = (8, 16, 16, 16)
_MIN_SCALE, _MAX_SCALE = 0.1484375, 0.75


def blaze_anchors() -> np.ndarray:
    """(896, 4) float64 [x centre, y centre, 1, 1] in MediaPipe's SSD order (layer, y, x, anchor)."""
    anchors = []
    layer = 0
    while layer < len(_STRIDES):
        same = layer
        per_cell = 0
        while same < len(_STRIDES) and _STRIDES[same] == _STRIDES[layer]:
            per_cell += 2  # one aspect ratio plus the interpolated scale
            same += 1
        cells = int(np.ceil(BLAZE_SIZE / _STRIDES[layer]))
        for y in range(cells):
            for x in range(cells):
                anchors += [[(x + 0.5) / cells, (y + 0.5) / cells, 1.0, 1.0]] * per_cell
        layer = same
    return np.array(anchors)


_ANCHORS = blaze_anchors()
assert _ANCHORS.shape[0] == BLAZE_ANCHORS


def blaze_input(crop: np.ndarray) -> np.ndarray:
    """(1, 128, 128, 3) float32 NHWC in [-1, 1] from the RGB crop."""
    small = cv2.resize(crop, (BLAZE_SIZE, BLAZE_SIZE))
    return np.ascontiguousarray(small[None].astype(np.float32) / 127.5 - 1.0)


def blaze_detections(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """(n, 17) detections after weighted NMS: box (128-px units), 6 keypoints (normalised), score."""
    raw = np.asarray(outputs[0])
    logits = np.asarray(outputs[1])
    if raw.shape != (1, BLAZE_ANCHORS, 16) or logits.shape != (1, BLAZE_ANCHORS, 1):
        raise ValueError(f"BlazeFace outputs must be (1, 896, 16) and (1, 896, 1), got {raw.shape} and {logits.shape}")
    decoded = _decode_boxes(raw)[0]
    scores = 1 / (1 + np.exp(-np.clip(logits, -50, 100)))[0]
    keep = scores[:, 0] >= SCORE_THRESHOLD
    return np.array(_weighted_nms(np.concatenate([decoded[keep], scores[keep]], axis=-1)))


def _decode_boxes(raw: np.ndarray) -> np.ndarray:
    a = _ANCHORS
    boxes = np.zeros_like(raw)
    xc = raw[..., 0] / BLAZE_SIZE * a[:, 2] + a[:, 0]
    yc = raw[..., 1] / BLAZE_SIZE * a[:, 3] + a[:, 1]
    w = raw[..., 2] / BLAZE_SIZE * a[:, 2]
    h = raw[..., 3] / BLAZE_SIZE * a[:, 3]
    boxes[..., 0] = BLAZE_SIZE * (xc - w / 2.0)
    boxes[..., 1] = BLAZE_SIZE * (yc - h / 2.0)
    boxes[..., 2] = BLAZE_SIZE * (xc + w / 2.0)
    boxes[..., 3] = BLAZE_SIZE * (yc + h / 2.0)
    for k in range(6):
        boxes[..., 4 + 2 * k] = raw[..., 4 + 2 * k] / BLAZE_SIZE * a[:, 2] + a[:, 0]
        boxes[..., 5 + 2 * k] = raw[..., 5 + 2 * k] / BLAZE_SIZE * a[:, 3] + a[:, 1]
    return boxes


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    low = np.maximum(box[:2], others[:, :2])
    high = np.minimum(box[2:4], others[:, 2:4])
    inter = np.clip(high - low, 0, None).prod(axis=1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area + areas - inter)


def _weighted_nms(detections: np.ndarray) -> list[np.ndarray]:
    out = []
    remaining = np.argsort(detections[:, 16])[::-1] if len(detections) else np.array([], int)
    while len(remaining):
        detection = detections[remaining[0]].copy()
        overlap = _iou(detection[:4], detections[remaining, :4]) > NMS_IOU
        cluster, remaining = remaining[overlap], remaining[~overlap]
        if len(cluster) > 1:
            scores = detections[cluster, 16:17]
            detection[:16] = (detections[cluster, :16] * scores).sum(axis=0) / scores.sum()
            detection[16] = scores.sum() / len(cluster)
        out.append(detection)
    return out


def mesh_roi(detection: np.ndarray, width: int, height: int) -> np.ndarray:
    """[cx, cy, w, h, rotation] of the FaceMesh region for a BlazeFace detection on a W x H crop."""
    box = detection[:4].copy()
    box[0] *= height / BLAZE_SIZE
    box[1] *= width / BLAZE_SIZE
    box[2] *= height / BLAZE_SIZE
    box[3] *= width / BLAZE_SIZE
    # float32 scalars throughout, as Ditto's NumPy 2 computes them
    side = max(box[2] - box[0], box[3] - box[1]) * np.float32(ROI_SCALE)
    x0, y0, x1, y1 = detection[4:8]
    angle = -np.arctan2(y0 - y1, x1 - x0)
    two_pi = np.float32(2 * np.pi)
    rotation = angle - two_pi * np.floor((angle + np.float32(np.pi)) / two_pi)
    two = np.float32(2)
    return np.array([(box[0] + box[2]) / two, (box[1] + box[3]) / two, side, side, rotation])


def mesh_input(crop: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """(1, 256, 256, 3) float32 NHWC in [0, 1]: the rotated ROI warped to 256 x 256."""
    cx, cy, w, h, rotation = roi
    corners = np.array(
        [(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2), (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)]
    )
    s, c = np.sin(rotation), np.cos(rotation)
    src = ((corners - (cx, cy)) @ np.array([[c, s], [-s, c]]) + (cx, cy)).astype(np.float32)
    dst = np.array([[0, 0], [MESH_SIZE, 0], [MESH_SIZE, MESH_SIZE], [0, MESH_SIZE]], np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(crop, matrix, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR)
    return np.ascontiguousarray((warped / 255.0).astype(np.float32)[None])


def mesh_points(outputs: Sequence[np.ndarray], roi: np.ndarray, width: int, height: int) -> np.ndarray:
    """(478, 3) float32 landmarks normalised by (W, H, W) of the crop, from FaceMesh's first output.

    The points stay float32 between steps and the rotation is done in float64, as in Ditto."""
    raw = np.asarray(outputs[0], np.float32).reshape(-1)
    if raw.size != 478 * 3:
        raise ValueError(f"FaceMesh's first output holds {raw.size} values, expected 1434 (478 x 3)")
    points = raw.reshape(478, 3).copy()
    points /= (MESH_SIZE, MESH_SIZE, MESH_SIZE)
    s, c = np.sin(roi[4]), np.cos(roi[4])
    rotation = np.array([[c, s, 0.0], [-s, c, 0.0], [1.0, 1.0, 1.0]])
    points -= (0.5, 0.5, 0.0)
    rotated = (points * (1, 1, 0)) @ rotation
    points *= (0, 0, 1)
    points += rotated
    points *= (roi[2], roi[3], roi[2])
    points += (roi[0], roi[1], 0.0)
    return (points / (width, height, width)).astype(np.float32)
