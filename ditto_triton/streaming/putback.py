"""Paste the rendered face crop back into the source photo with a feathered mask (reference §6.5)."""

from __future__ import annotations

import cv2
import numpy as np


def feather_mask(size: int, ratio: float = 0.9) -> np.ndarray:
    """(size, size) float32: 1 inside, linear ramps over the outer (1 - ratio)/2 of each side, round corners."""
    ramp = max(size * (1 - ratio) / 2, 1.0)
    idx = np.arange(size, dtype=np.float32)
    edge = np.clip(np.minimum(idx, size - 1 - idx) / ramp, 0, 1)
    dx, dy = 1 - edge[None, :], 1 - edge[:, None]
    return (1 - np.clip(np.sqrt(dx**2 + dy**2), 0, 1)).astype(np.float32)


class PutBack:
    """Per-avatar put-back: the mask is warped once; each frame only touches the face's bounding box."""

    def __init__(
        self,
        source_rgb: np.ndarray,
        crop_to_source: np.ndarray,
        render_size: int,
        crop_size: int = 512,
        max_size: int = 0,
    ):
        self.source = np.ascontiguousarray(source_rgb, np.uint8)
        h, w = self.source.shape[:2]
        # Output frames are downscaled (area) so that their long side is at most max_size (0: as the photo).
        scale = max_size / max(h, w) if max_size and max(h, w) > max_size else 1.0
        self.output_size = (w, h) if scale == 1.0 else (max(2, round(w * scale)), max(2, round(h * scale)))
        # crop_to_source maps 512-crop pixels to the photo; the network renders render_size pixels.
        m = np.asarray(crop_to_source, np.float64) @ np.diag([crop_size / render_size, crop_size / render_size, 1.0])
        corners = np.array(
            [[0, 0, 1], [render_size, 0, 1], [0, render_size, 1], [render_size, render_size, 1]], np.float64
        )
        pts = corners @ m.T
        x0, y0 = np.floor(pts[:, :2].min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts[:, :2].max(axis=0)).astype(int)
        self.x0, self.y0 = max(x0, 0), max(y0, 0)
        self.x1, self.y1 = min(x1 + 1, w), min(y1 + 1, h)
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError("the face crop does not overlap the source image")
        shift = np.array([[1, 0, -self.x0], [0, 1, -self.y0], [0, 0, 1]], np.float64)
        self._affine = (shift @ m)[:2].astype(np.float32)
        self._roi_size = (self.x1 - self.x0, self.y1 - self.y0)
        mask = cv2.warpAffine(feather_mask(render_size), self._affine, self._roi_size, flags=cv2.INTER_LINEAR)
        self._mask = np.clip(mask, 0, 1)[..., None]
        self._background = self.source[self.y0 : self.y1, self.x0 : self.x1].astype(np.float32) * (1 - self._mask)

    def __call__(self, render: np.ndarray) -> np.ndarray:
        """render: (3, R, R) float in [0, 1] -> the (H, W, 3) uint8 frame (photo size, or capped by max_size)."""
        face = np.clip(np.transpose(render, (1, 2, 0)), 0, 1).astype(np.float32) * 255
        warped = cv2.warpAffine(face, self._affine, self._roi_size, flags=cv2.INTER_LINEAR, borderValue=0)
        blended = np.clip(warped * self._mask + self._background, 0, 255).astype(np.uint8)  # truncates, as Ditto
        frame = self.source.copy()
        frame[self.y0 : self.y1, self.x0 : self.x1] = blended
        if self.output_size != (frame.shape[1], frame.shape[0]):
            frame = cv2.resize(frame, self.output_size, interpolation=cv2.INTER_AREA)
        return frame
