"""The import layers of pyproject.toml hold, and the check catches a wrong-way import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "lint_imports.py"
PACKAGE_FOLDERS = (
    "ditto_triton",
    "export",
    "model_repository",
    "ensembles",
    "client",
    "benchmarks",
    "gateway",
    "deploy",
    "apps",
)


def run_contracts(*added: str) -> subprocess.CompletedProcess[str]:
    args = [arg for spec in added for arg in ("--add", spec)]
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, cwd=ROOT)


def test_import_contracts_hold():
    run = run_contracts()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("ditto_triton/streaming/wrong_way.py", "import ditto_triton.model_repository.render", "apps|deploy >"),
        ("ditto_triton/client/wrong_way.py", "from ditto_triton.streaming import options", "base install"),
        ("ditto_triton/stages_extra.py", "import torch", "apps|deploy >"),
        ("ditto_triton/avatar/wrong_way.py", "def f():\n    import onnxruntime", "no torch, onnx or Triton"),
        ("ditto_triton/client/wrong_way.py", "from polygraphy.backend.onnx import fold_constants", "base install"),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(module, statement, contract):
    run = run_contracts(f"{module}={statement}")
    assert run.returncode != 0, run.stdout
    broken = run.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken and Path(module).stem in broken, run.stdout


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_backends_import_the_python_backend_utils():
    importers = [
        path.relative_to(ROOT).as_posix()
        for folder in PACKAGE_FOLDERS
        for path in (ROOT / folder).rglob("*.py")
        if "triton_python_backend_utils" in _imports(path)
    ]
    assert importers, "the backends import triton_python_backend_utils; the scan found none"
    assert all(p.startswith("model_repository/backends/") for p in importers), importers
