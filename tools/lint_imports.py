"""Run import-linter's contracts (pyproject.toml) over every module of the package.

The repository keeps its asked-for top-level folders (export/, client/, ...) and pyproject's
`package-dir` table maps them into `ditto_triton.*`. An import graph walked from `ditto_triton/`
would see only the core, so this lays the mapped folders out as one `ditto_triton` tree in a
temporary directory (as a regular install would) and lints that.

    python tools/lint_imports.py                  # exit 0 when every contract is kept
    python tools/lint_imports.py --add FILE=TEXT  # also drop a module into the tree (the test's wrong-way import)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lay_out(dest: Path) -> Path:
    """Copy every mapped package folder to `dest/<package path>/`; returns `dest`."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in table.items():
        target = dest.joinpath(*package.split("."))
        shutil.copytree(ROOT / folder, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    # import-linter puts its working directory first on sys.path: run it inside the laid-out tree
    return subprocess.run(
        [str(exe), str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=tree,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="FILE=TEXT",
        help="write TEXT to FILE (relative to the laid-out tree) before linting",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ditto-layers-") as tmp:
        tree = lay_out(Path(tmp))
        for spec in args.add:
            name, _, text = spec.partition("=")
            (tree / name).write_text(text + "\n")
        run = lint(tree)
    sys.stdout.write(run.stdout)
    sys.stderr.write(run.stderr)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
