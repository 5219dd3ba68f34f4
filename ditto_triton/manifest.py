"""The export manifest: what was exported, from which weights, with which I/O. Later stages
(Triton repository rendering, the server, benchmarks) read it instead of re-deriving anything."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ditto_triton.profiles import Profile, get_profile
from ditto_triton.stages import StageSpec, TensorSpec, stage_specs

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
# What the synthetic weights compute (export/synthetic*.py); an export with other synthetic weights is
# stale. 2: the synthetic motion follows the speech (1, unrecorded: nearly frozen frames).
SYNTHETIC_WEIGHTS_VERSION = 2


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_entry(t: TensorSpec) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype}


def stage_entry(spec: StageSpec, onnx_path: Path, weight_source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "bytes": onnx_path.stat().st_size,
        "inputs": [tensor_entry(t) for t in spec.inputs],
        "outputs": [tensor_entry(t) for t in spec.outputs],
        "batch_dynamic": spec.batch_dynamic,
        "per_frame": spec.per_frame,
        "description": spec.description,
        "weights": weight_source,
        **extra,
    }


def new_manifest(profile: Profile, versions: dict[str, str], opset: int) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "profile": profile.name,
        "profile_config": asdict(profile),
        "opset": opset,
        "versions": versions,
        "stages": {},
    }


def write_manifest(manifest: dict[str, Any], out_dir: Path) -> Path:
    path = Path(out_dir) / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no export manifest; run `ditto-export` first")
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: manifest format {manifest.get('format_version')} != {FORMAT_VERSION}")
    return manifest


def checkpoint_of(entry: dict[str, Any], export_dir: Path) -> Path | None:
    """The checkpoint a manifest stage entry was exported from, found as recorded (relative to the
    working directory at export time) or inside `export_dir`, and checked by sha256; None when the
    stage came from a user-supplied ONNX file (Ditto's HuBERT) and has no PyTorch weights."""
    source = entry.get("weights", {})
    if source.get("kind") not in ("synthetic", "checkpoint"):
        return None
    recorded = Path(source.get("checkpoint") or source["path"])
    scratch = Path(export_dir) / "synthetic_weights"
    for path in (recorded, scratch / "models" / recorded.name, scratch / recorded.name):
        if path.is_file() and sha256_file(path) == source["sha256"]:
            return path
    raise FileNotFoundError(
        f"checkpoint {recorded} of this export (sha256 {source['sha256'][:12]}…) not found as recorded nor in "
        f"{export_dir / 'synthetic_weights'}; re-run ditto-export"
    )


def stale_reason(export_dir: Path, profile_name: str, weights: str | None = None) -> str | None:
    """Why `export_dir` cannot be used for `profile_name` (missing, other profile or sizes, missing
    files, other `weights` when given), or None when it can."""
    try:
        manifest = read_manifest(export_dir)
    except (FileNotFoundError, ValueError) as exc:
        return str(exc)
    if weights is not None and manifest.get("weights") != str(weights):
        return f"{export_dir} was exported from weights {manifest.get('weights')!r}, not {str(weights)!r}"
    if manifest.get("profile") != profile_name:
        return f"{export_dir} holds the {manifest.get('profile')!r} profile"
    current = json.loads(json.dumps(asdict(get_profile(profile_name))))
    if manifest.get("profile_config") != current:
        return f"{export_dir} was exported with other {profile_name} sizes than the current profile"
    specs = stage_specs(get_profile(profile_name))
    changed = [
        name
        for name, entry in manifest["stages"].items()
        if name in specs
        and (entry.get("inputs"), entry.get("outputs"))
        != ([tensor_entry(t) for t in specs[name].inputs], [tensor_entry(t) for t in specs[name].outputs])
    ]
    if changed:
        return f"{export_dir} was exported with other inputs or outputs of {changed} than this version declares"
    missing = [e["file"] for e in manifest["stages"].values() if not (Path(export_dir) / e["file"]).is_file()]
    if missing:
        return f"{export_dir} lacks {missing}"
    return _old_synthetic_weights(export_dir, manifest)


def _old_synthetic_weights(export_dir: Path, manifest: dict[str, Any]) -> str | None:
    old = [
        name
        for name, entry in manifest["stages"].items()
        if entry.get("weights", {}).get("kind") == "synthetic"
        and entry["weights"].get("synthetic_version", 1) != SYNTHETIC_WEIGHTS_VERSION
    ]
    if old:
        return f"{export_dir} holds older synthetic weights of {old} than this version makes"
    return None
