"""Synthetic motion-extractor and stitching weights that give a plausible face: a stand-in, not Ditto's.

With seeded random weights the motion extractor reports keypoints up to 2.5 units from the centre,
translations of 2 and negative scales, so every keypoint lies outside the warp's [-1, 1] feature
volume and no frame changes however the keypoints move. On top of the seeded initializer
(`synthetic.py`) the synthetic export therefore sets the extractor's seven heads: their biases give
a fixed, face-like layout of the 21 canonical keypoints (`FACE_LAYOUT`), no expression, no
translation, scale 1 and a frontal pose, and their random weights are scaled down so the photo still
moves the values a little. The stitching network's last layer is scaled down likewise, so its
correction stays small, as a trained one does.

Keypoint groups are Ditto's (reference §4.4): lips 6, 12, 14, 17, 19, 20 and eyes 11, 13, 15, 16, 18.
The layout (x right, y down, in the crop's [-1, 1] units) is ours.
"""

from __future__ import annotations

import torch
from torch import nn

UPPER_LIP_KP = (12,)
LOWER_LIP_KP = (17, 19, 20)
UPPER_EYELID_KP = (13, 16)
FACE_LAYOUT = (
    (0.00, -0.36, 0.00),  # 0 forehead
    (-0.32, -0.20, -0.08),  # 1 left temple
    (0.32, -0.20, -0.08),  # 2 right temple
    (-0.34, 0.05, -0.08),  # 3 left cheek
    (0.34, 0.05, -0.08),  # 4 right cheek
    (-0.26, 0.28, -0.08),  # 5 left jaw
    (-0.11, 0.20, 0.04),  # 6 left mouth corner (lips)
    (0.26, 0.28, -0.08),  # 7 right jaw
    (0.00, 0.38, 0.00),  # 8 chin
    (0.00, 0.06, 0.14),  # 9 nose tip
    (0.00, 0.12, 0.10),  # 10 nose base
    (-0.17, -0.06, 0.04),  # 11 left eye, lower lid (eyes)
    (0.00, 0.16, 0.07),  # 12 upper lip (lips)
    (-0.17, -0.11, 0.04),  # 13 left eye, upper lid (eyes)
    (0.11, 0.20, 0.04),  # 14 right mouth corner (lips)
    (0.17, -0.06, 0.04),  # 15 right eye, lower lid (eyes)
    (0.17, -0.11, 0.04),  # 16 right eye, upper lid (eyes)
    (-0.06, 0.23, 0.06),  # 17 lower lip, left (lips)
    (0.00, -0.08, 0.08),  # 18 between the eyes (eyes)
    (0.00, 0.24, 0.07),  # 19 lower lip, centre (lips)
    (0.06, 0.23, 0.06),  # 20 lower lip, right (lips)
)
POSE_BIN_CENTRE = 32.5  # Ditto's bins: degrees = 3 * E[bin] - 97.5, so E[bin] = 32.5 is 0 degrees
POSE_BIN_WIDTH = 3.0  # bins: the standard deviation of the frontal pose's softmax
_HEAD_WEIGHT_SCALE = {"fc_kp": 0.02, "fc_exp": 0.005, "fc_t": 0.01, "fc_scale": 0.01, "pose": 0.3}
_STITCH_SCALE = 0.05


def frontal_pose_logits(num_bins: int) -> torch.Tensor:
    """(num_bins,) logits whose softmax is a Gaussian around 0 degrees."""
    bins = torch.arange(num_bins, dtype=torch.float32)
    return -((bins - POSE_BIN_CENTRE) ** 2) / (2 * POSE_BIN_WIDTH**2)


@torch.no_grad()
def face_motion_extractor_(extractor: nn.Module, gen: torch.Generator) -> None:
    """`MotionExtractor` heads: a face-like, frontal, unit-scale keypoint set, nudged a little by the photo."""
    detector = extractor.detector
    for name in ("fc_kp", "fc_exp", "fc_t", "fc_scale"):
        getattr(detector, name).weight.mul_(_HEAD_WEIGHT_SCALE[name])
    detector.fc_kp.bias.copy_(torch.tensor(FACE_LAYOUT).reshape(-1))
    detector.fc_exp.bias.zero_()
    detector.fc_t.bias.zero_()
    detector.fc_scale.bias.fill_(1.0)
    for name in ("fc_pitch", "fc_yaw", "fc_roll"):
        head = getattr(detector, name)
        head.weight.mul_(_HEAD_WEIGHT_SCALE["pose"])
        head.bias.copy_(frontal_pose_logits(head.bias.shape[0]))


@torch.no_grad()
def gentle_stitching_(stitching: nn.Module, gen: torch.Generator) -> None:
    """`StitchingNetwork`: its correction scaled down to a few hundredths of the keypoint units."""
    last = stitching.mlp[-1]
    last.weight.mul_(_STITCH_SCALE)
    last.bias.mul_(_STITCH_SCALE)
