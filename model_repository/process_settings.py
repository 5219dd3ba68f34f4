"""Settings of the processes that serve the models (tritonserver and its python stubs), declared once:
`ditto-serve`, the embedded server and the container start tritonserver with `SERVER_ENVIRONMENT`, and the
in-process benchmark applies the same to itself (`apply_to_this_process`) so the two are compared alike.

Measured with `make bench-profile` (docs/serving.md, "Threads and memory of the stage processes"):
- glibc returns freed blocks above its mmap threshold to the kernel; the orchestrator allocates and frees a
  frame-sized array several times per frame, so in some runs every frame paid page faults and zeroing
  (7-8 ms of CPU per frame in the orchestrator instead of 5). Fixed thresholds keep those blocks in the heap.
- OpenCV's worker pool spin-waits (sched_yield, ~110 000 calls per 16 s session in the orchestrator) between the
  put-back's small warps; on cores shared by nine processes one thread does the same work.
An operator's own environment wins over these (they are defaults).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping

MMAP_THRESHOLD_BYTES = 128 * 1024 * 1024  # frames and stage tensors stay far below
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
OPENCV_THREADS = 1

SERVER_ENVIRONMENT: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES),
    "OPENCV_FOR_THREADS_NUM": str(OPENCV_THREADS),
}

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def server_environment(base: Mapping[str, str]) -> dict[str, str]:
    """`base` (e.g. os.environ) with the serving defaults filled in where it does not set them."""
    return {**SERVER_ENVIRONMENT, **base}


def apply_to_this_process() -> None:
    """The same settings for a process already running (glibc reads MALLOC_* only at start)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "mallopt"):
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    import cv2

    cv2.setNumThreads(int(os.environ.get("OPENCV_FOR_THREADS_NUM", OPENCV_THREADS)))
