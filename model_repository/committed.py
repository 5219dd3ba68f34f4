"""The committed, browsable model repositories: `model_repository/tiny/<flavor>/`, in Triton's layout.

Each holds what `ditto-serve` renders for the tiny profile in that flavor, with Ditto's face models
as a release's `aux_models/` gives them: every `config.pbtxt`, the `model.py` adapters of the python
models and the TensorRT flavor's build notes. Weights (ONNX files, checkpoints, plans) are not
committed; `ditto-serve --export DIR` renders a servable copy with them. The threads per ONNX Runtime
model are fixed at `ORT_THREADS` here (a render on the serving machine sizes them to its cores).

    python -m ditto_triton.model_repository.committed --export out/export/tiny          # refresh
    python -m ditto_triton.model_repository.committed --export out/export/tiny --check  # compare
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from ditto_triton.export.face_models import import_face_models
from ditto_triton.export.face_standins import write_standin_release
from ditto_triton.manifest import MANIFEST_NAME, read_manifest, write_manifest
from ditto_triton.model_repository.render import FLAVORS, render_repository

COMMITTED_ROOT = Path(__file__).resolve().parent / "tiny"
BROWSABLE = ("config.pbtxt", "model.py", "README.txt")
ORT_THREADS = 4
_STANDIN_BOX = (172.0, 150.0, 373.0, 352.0)  # any face box: the stand-ins' values do not reach a config


def export_with_face_models(export_dir: Path, work: Path) -> Path:
    """A copy of `export_dir` (hard links) with Ditto's face models (stand-ins of the release's files)."""
    copy = work / "export"
    shutil.copytree(export_dir, copy, copy_function=_link)
    release = write_standin_release(work / "release", _STANDIN_BOX)
    manifest = read_manifest(copy)
    (copy / MANIFEST_NAME).unlink()  # a hard link to the original: write a new file, not through it
    manifest["registration"] = import_face_models(release, copy)
    write_manifest(manifest, copy)
    return copy


def _link(src: str, dst: str) -> None:
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


def browsable_files(export_dir: Path, flavor: str, work: Path) -> dict[str, bytes]:
    """{path in the repository: bytes} of the files `render_repository` writes that are committed."""
    repo = render_repository(export_dir, work / f"repo-{flavor}", flavor, ort_threads=ORT_THREADS)
    files = sorted(p for p in repo.rglob("*") if p.is_file() and p.name in BROWSABLE)
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in files}


def committed_files(flavor: str, root: Path = COMMITTED_ROOT) -> dict[str, bytes]:
    base = root / flavor
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def differences(export_dir: Path, root: Path = COMMITTED_ROOT) -> list[str]:
    """What differs between a fresh render and the committed files, one line per file (empty: none)."""
    with tempfile.TemporaryDirectory(prefix="ditto-committed-") as tmp:
        work = Path(tmp)
        export = export_with_face_models(Path(export_dir), work)
        lines = []
        for flavor in FLAVORS:
            fresh, committed = browsable_files(export, flavor, work), committed_files(flavor, root)
            for path in sorted(set(fresh) | set(committed)):
                if path not in committed:
                    lines.append(f"{flavor}/{path}: rendered, not committed")
                elif path not in fresh:
                    lines.append(f"{flavor}/{path}: committed, no longer rendered")
                elif fresh[path] != committed[path]:
                    lines.append(f"{flavor}/{path}: differs from a fresh render")
        return lines


def refresh(export_dir: Path, root: Path = COMMITTED_ROOT) -> None:
    """Replace `root/<flavor>/` with a fresh render of every flavor."""
    with tempfile.TemporaryDirectory(prefix="ditto-committed-") as tmp:
        work = Path(tmp)
        export = export_with_face_models(Path(export_dir), work)
        for flavor in FLAVORS:
            shutil.rmtree(root / flavor, ignore_errors=True)
            for path, data in browsable_files(export, flavor, work).items():
                target = root / flavor / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, default=Path("out/export/tiny"), help="a tiny export")
    parser.add_argument("--check", action="store_true", help="compare with the committed files, change nothing")
    args = parser.parse_args(argv)
    if read_manifest(args.export)["profile"] != "tiny":
        parser.error(f"{args.export}: the committed repositories are the tiny profile's; give a tiny export")
    if not args.check:
        refresh(args.export)
        print(f"rendered {', '.join(FLAVORS)} into {COMMITTED_ROOT}")
        return 0
    lines = differences(args.export)
    print("\n".join(lines) or f"{COMMITTED_ROOT}: matches a fresh render")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())


def wire_table(flavor: str = "python-ort", root: Path = COMMITTED_ROOT) -> str:
    """A Markdown table of every model's tensors as a request carries them (docs/protocol.md prints it):
    batched models take a leading batch axis `B` (1 for a streaming session), unbatched ones their dims."""
    from ditto_triton.model_repository import pbtxt

    rows = ["| model | tensor | direction | datatype | shape on the wire |", "|---|---|---|---|---|"]
    for model_dir in sorted(p for p in (root / flavor).iterdir() if p.is_dir()):
        config = pbtxt.read_config(model_dir)
        batch = ["B"] if config.max_batch_size > 0 else []
        for direction, tensors in (("in", config.input), ("out", config.output)):
            for t in tensors:
                shape = "×".join(str(d) for d in [*batch, *t.dims]).replace("-1", "N")
                optional = " (optional)" if direction == "in" and t.optional else ""
                kind = pbtxt.data_type_name(t.data_type).removeprefix("TYPE_")
                rows.append(f"| `{config.name}` | `{t.name}`{optional} | {direction} | {kind} | {shape} |")
    return "\n".join(rows) + "\n"
