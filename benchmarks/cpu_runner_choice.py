"""Which runner the CPU flavor serves each stage with (`ditto-serve --cpu-runners auto`): PyTorch vs ONNX
Runtime per stage on this CPU, batch 1, both flushing denormals as they do when serving.

    python -m ditto_triton.benchmarks.cpu_runner_choice --export out/export/full --out runners.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ditto_triton.benchmarks import provenance
from ditto_triton.manifest import read_manifest
from ditto_triton.model_repository.cpu_runners import MARGIN, faster_runner, torch_capable


def measure(export_dir: Path, repeats: int = 3) -> dict[str, Any]:
    """{"margin", "stages": {stage: {torch_ms, ort_ms, ort_over_torch, served_by}}} for every stage PyTorch
    can serve on the CPU (HuBERT stays on ONNX Runtime)."""
    from ditto_triton.benchmarks.stage_timing import time_ort_vs_torch

    manifest = read_manifest(export_dir)
    stages = [name for name in manifest["stages"] if torch_capable(manifest, name)]
    timed = time_ort_vs_torch(export_dir, stages, repeats=repeats)
    return {
        "margin": MARGIN,
        "stages": {name: {**t, "served_by": faster_runner(t["torch_ms"], t["ort_ms"])} for name, t in timed.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="PyTorch vs ONNX Runtime per stage on this CPU, and the runner chosen.")
    p.add_argument("--export", type=Path, required=True, help="an export directory (ditto-export --out)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per runner and stage (median)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON here (default: print it)")
    args = p.parse_args(argv)
    provenance.print_or_write(provenance.stamped(args.export, measure(args.export, args.repeats)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
