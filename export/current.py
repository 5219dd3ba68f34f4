"""Whether an export still matches the code (profile sizes, stage I/O, files), and making one that does.

The CLI's embedded server, `ditto-serve` and the benchmarks use it, so an export left over from an
older version is re-made (synthetic weights) or refused with the reason (real weights), never served
with tensors the configs no longer declare."""

from __future__ import annotations

import logging
from pathlib import Path

from ditto_triton.manifest import read_manifest, stale_reason
from ditto_triton.profiles import get_profile

log = logging.getLogger(__name__)


def ensure_export(export_dir: Path, profile_name: str, *, parity: bool = True, seed: int = 0) -> Path:
    """`export_dir` with a current synthetic-weights export of `profile_name` (exported if needed).

    An export made from real weights is used as it is when it matches the profile; it is never
    replaced by a synthetic one.
    """
    export_dir = Path(export_dir)
    reason = stale_reason(export_dir, profile_name)
    if reason is None:
        return export_dir
    try:
        weights = read_manifest(export_dir).get("weights", "synthetic")
    except (FileNotFoundError, ValueError):
        weights = "synthetic"
    if weights != "synthetic":
        raise RuntimeError(f"{reason}; re-export it from {weights} (`make export PROFILE={profile_name} WEIGHTS=...`)")
    from ditto_triton.export.pipeline import ExportOptions, export_all

    log.info("exporting the %s profile to %s (%s)", profile_name, export_dir, reason)
    export_all(
        ExportOptions(profile=get_profile(profile_name), weights="synthetic", seed=seed, out=export_dir, parity=parity)
    )
    return export_dir


def export_from(export_dir: Path, profile_name: str, weights: str, on_status=None) -> Path:
    """`export_dir` holding a current export of `profile_name` from `weights` ("synthetic" or Ditto's
    `ditto_pytorch/` directory), exported now when it holds none (or one from other weights)."""
    export_dir = Path(export_dir)
    reason = stale_reason(export_dir, profile_name, weights)
    if reason is None:
        return export_dir
    from ditto_triton.export.pipeline import ExportOptions, export_all

    if on_status is not None:
        on_status(f"exporting the {profile_name} networks to {export_dir} ({reason}) ...")
    export_all(ExportOptions(profile=get_profile(profile_name), weights=weights, out=export_dir))
    return export_dir
