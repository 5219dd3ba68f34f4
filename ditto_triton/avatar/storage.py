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


class FrameBlocks:
    """Equal-shaped frames appended one at a time into `frame_array` blocks of `per_block` frames."""

    def __init__(self, per_block: int = 64) -> None:
        self.per_block = per_block
        self._block: np.ndarray | None = None
        self._used = 0

    def add(self, frame: np.ndarray) -> np.ndarray:
        """A view of the stored copy of `frame`."""
        if self._block is None or self._used == self.per_block or self._block.shape[1:] != frame.shape:
            self._block = frame_array((self.per_block, *frame.shape), frame.dtype)
            self._used = 0
        self._block[self._used] = frame
        self._used += 1
        return self._block[self._used - 1]
