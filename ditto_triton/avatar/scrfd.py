"""InsightFace SCRFD (`det_10g.onnx`) as Ditto runs it: the letterboxed input and the decoded faces.

Pre-processing: the RGB image is resized to fit 512 x 512 (INTER_LINEAR), pasted at the top left of
a black square and turned into a blob as OpenCV's `blobFromImage(img, 1/128, mean 127.5,
swapRB=True)` does, so the network sees B, G, R (Ditto passes RGB and asks for the swap).
Post-processing: anchor centres at the cell corners (x * stride, y * stride), two anchors per cell;
boxes and keypoints are distances in stride units; scores >= 0.5; sorted by score, scaled back to
the image, NMS at IoU 0.4 with InsightFace's +1 areas. Ditto then keeps the largest box.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ditto_triton.face_models import DETECTOR_ANCHORS, DETECTOR_SIZE, DETECTOR_STRIDES

SCORE_THRESHOLD = 0.5
NMS_IOU = 0.4
MEAN = 127.5
STD = 128.0


def detector_input(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """((1, 3, 512, 512) float32 BGR blob, det_scale = letterboxed height / image height)."""
    height, width = rgb.shape[:2]
    ratio = height / width
    if ratio > 1:
        new_h, new_w = DETECTOR_SIZE, int(DETECTOR_SIZE / ratio)
    else:
        new_w, new_h = DETECTOR_SIZE, int(DETECTOR_SIZE * ratio)
    canvas = np.zeros((DETECTOR_SIZE, DETECTOR_SIZE, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h))
    bgr = canvas[:, :, ::-1].astype(np.float32)
    blob = ((bgr - MEAN) / STD).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(blob, np.float32), new_h / height


def anchor_centres(stride: int) -> np.ndarray:
    """(cells * 2, 2) float32 anchor centres of one stride, in the detector's row order."""
    cells = DETECTOR_SIZE // stride
    ys, xs = np.mgrid[:cells, :cells]
    centres = (np.stack([xs, ys], axis=-1).astype(np.float32) * stride).reshape(-1, 2)
    return np.repeat(centres, DETECTOR_ANCHORS, axis=0)


def decode_detections(outputs: Sequence[np.ndarray], det_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Faces from the detector's nine outputs in file order (scores, boxes, keypoints per stride).

    Returns:
        det (n, 5) float32 [x1, y1, x2, y2, score] and kps (n, 5, 2), in image pixels, after NMS,
        highest score first.
    """
    if len(outputs) != 3 * len(DETECTOR_STRIDES):
        raise ValueError(f"the detector must give 9 outputs, got {len(outputs)}")
    scores, boxes, kpss = [], [], []
    for i, stride in enumerate(DETECTOR_STRIDES):
        centres = anchor_centres(stride)
        score = np.asarray(outputs[i], np.float32).reshape(-1)
        dist = np.asarray(outputs[i + 3], np.float32).reshape(-1, 4) * stride
        kp = np.asarray(outputs[i + 6], np.float32).reshape(-1, 10) * stride
        if score.shape[0] != centres.shape[0]:
            raise ValueError(f"stride {stride}: {score.shape[0]} scores for {centres.shape[0]} anchors")
        keep = np.where(score >= SCORE_THRESHOLD)[0]
        box = np.concatenate([centres - dist[:, :2], centres + dist[:, 2:]], axis=1)
        points = kp.reshape(-1, 5, 2) + centres[:, None, :]
        scores.append(score[keep])
        boxes.append(box[keep])
        kpss.append(points[keep])
    score = np.concatenate(scores)
    order = score.argsort()[::-1]
    det = np.hstack([np.concatenate(boxes) / det_scale, score[:, None]]).astype(np.float32)[order]
    kps = (np.concatenate(kpss) / det_scale)[order]
    keep = nms(det, NMS_IOU)
    return det[keep], kps[keep]


def nms(det: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS over score-sorted [x1, y1, x2, y2, score] rows, areas with the +1 convention."""
    x1, y1, x2, y2, score = det.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = score.argsort()[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        overlap = inter / (areas[i] + areas[rest] - inter)
        order = rest[overlap <= threshold]
    return keep


def largest_face(det: np.ndarray) -> np.ndarray | None:
    """The largest-area box [x1, y1, x2, y2] (Ditto's choice, not the best score), or None."""
    if det.shape[0] == 0:
        return None
    areas = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
    return det[np.argsort(-areas, kind="stable")[0], :4]
