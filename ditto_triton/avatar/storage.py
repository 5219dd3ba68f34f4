"""Per-source-frame arrays that may be large: in memory when small, else memory-mapped temporary files.

A video avatar keeps one appearance volume f_s (8 MiB at full size) and one full-resolution frame per
source frame, for every frame of the clip (Ditto registers them all). Above `IN_MEMORY_BYTES` such an
array lives in an unlinked temporary file mapped into memory, so the page cache, not the process's
heap, holds it and the kernel can drop pages that are not being read.
"""

from __future__ import annotations

import tempfile

import numpy as np

IN_MEMORY_BYTES = 256 * 2**20


def frame_array(shape: tuple[int, ...], dtype) -> np.ndarray:
    """A writable zeroed array of `shape`, memory-mapped from a temporary file when it is large."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes <= IN_MEMORY_BYTES:
        return np.zeros(shape, dtype)
    with tempfile.TemporaryFile(prefix="ditto-avatar-") as backing:
        return np.memmap(backing, dtype=dtype, mode="w+", shape=shape)


def stored_like(array: np.ndarray) -> np.ndarray:
    """`array` copied into a `frame_array` (a no-op copy for small arrays)."""
    out = frame_array(array.shape, array.dtype)
    out[...] = array
    return out
