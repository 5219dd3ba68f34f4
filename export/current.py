"""Whether an export still matches the code (profile sizes, stage I/O, files), and making one that does.

The CLI's embedded server, `ditto-serve` and the benchmarks use it, so an export left over from an
older version is re-made (synthetic weights) or refused with the reason (real weights), never served
with tensors the configs no longer declare."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from ditto_triton.export.manifest import read_manifest, tensor_entry
from ditto_triton.profiles import get_profile
from ditto_triton.stages import stage_specs

log = logging.getLogger(__name__)


def stale_reason(export_dir: Path, profile_name: str) -> str | None:
    """Why `export_dir` cannot be used for `profile_name` (missing, other profile or sizes, missing
    files), or None when it can."""
    try:
        manifest = read_manifest(export_dir)
    except (FileNotFoundError, ValueError) as exc:
        return str(exc)
    if manifest.get("profile") != profile_name:
        return f"{export_dir} holds the {manifest.get('profile')!r} profile"
    current = json.loads(json.dumps(asdict(get_profile(profile_name))))
    if manifest.get("profile_config") != current:
        return f"{export_dir} was exported with other {profile_name} sizes than the current profile"
    specs = stage_specs(get_profile(profile_name))
    changed = [
        name for name, entry in manifest["stages"].items()
        if name in specs and (entry.get("inputs"), entry.get("outputs"))
        != ([tensor_entry(t) for t in specs[name].inputs], [tensor_entry(t) for t in specs[name].outputs])
    ]
    if changed:
        return f"{export_dir} was exported with other inputs or outputs of {changed} than this version declares"
    missing = [e["file"] for e in manifest["stages"].values() if not (Path(export_dir) / e["file"]).is_file()]
    if missing:
        return f"{export_dir} lacks {missing}"
    return None


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
    export_all(ExportOptions(profile=get_profile(profile_name), weights="synthetic", seed=seed, out=export_dir, parity=parity))
    return export_dir
