"""The project's .npz files (avatar files, motion files): plain arrays, read without pickle."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np


def read_npz(data: bytes | Path, error: type[Exception], what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz (its bytes or its path); anything unreadable raises `error` naming `what`."""
    try:
        source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else Path(data)
        with np.load(source, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise error(f"not {what}: {exc}") from None
