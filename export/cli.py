"""`ditto-export`: build every Ditto stage, load weights, export ONNX, check parity, write a manifest."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ditto_triton.export.checkpoints import CheckpointError
from ditto_triton.export.pipeline import ExportOptions, ParityError, export_all
from ditto_triton.profiles import PROFILES, get_profile
from ditto_triton.stages import STAGE_ORDER


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ditto-export", description=__doc__)
    p.add_argument("--profile", choices=sorted(PROFILES), default="tiny", help="network sizes (default: tiny)")
    p.add_argument(
        "--weights",
        default="synthetic",
        help="'synthetic' (seeded random weights) or Ditto's released ditto_pytorch/ directory",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for synthetic weights and parity inputs")
    p.add_argument("--out", type=Path, default=Path("out/export/tiny"), help="output directory")
    p.add_argument("--stages", nargs="+", choices=STAGE_ORDER, default=list(STAGE_ORDER), help="subset of stages")
    p.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.add_argument("--timing", type=int, default=0, metavar="N", help="time each stage (median of N calls)")
    return p.parse_args(argv)


def summary_table(manifest: dict) -> Table:
    table = Table(title=f"exported stages ({manifest['profile']} profile)")
    for col in ("stage", "file", "params", "weights", "max rel. error", "torch ms", "ORT ms"):
        table.add_column(col)
    for name, entry in manifest["stages"].items():
        parity = entry.get("parity") or {}
        worst = max((e for errs in parity.values() for e in errs.values()), default=None)
        timing = entry.get("timing") or {}
        table.add_row(
            name,
            entry["file"],
            f"{entry['params']:,}" if entry.get("params") else "-",
            entry["weights"]["kind"],
            f"{worst:.1e}" if worst is not None else "-",
            f"{timing['torch_ms']:.1f}" if timing else "-",
            f"{timing['ort_ms']:.1f}" if timing else "-",
        )
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.fields[stage]:<22}"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks = {s: progress.add_task("waiting", total=1, stage=s) for s in args.stages}

        def on_status(stage: str, msg: str) -> None:
            progress.update(tasks[stage], description=msg, completed=1 if msg == "done" else 0)

        opts = ExportOptions(
            profile=get_profile(args.profile),
            weights=args.weights,
            seed=args.seed,
            out=args.out,
            stages=tuple(args.stages),
            parity=not args.no_parity,
            timing_repeats=args.timing,
            on_status=on_status,
        )
        try:
            path = export_all(opts)
        except (CheckpointError, ParityError, ValueError, FileNotFoundError) as exc:
            progress.stop()
            console.print(f"[red]error:[/red] {exc}")
            return 2
    manifest = json.loads(path.read_text())
    console.print(summary_table(manifest))
    console.print(f"manifest: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
