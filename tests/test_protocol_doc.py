"""docs/protocol.md stays true: its raw tritonclient session and its perf_analyzer command lines run
as written against a real tiny server (its address in place of localhost:8001), and its table of
every model's tensors is the one the committed configs give."""

from __future__ import annotations

import os
import subprocess
import sys

from test_docs import ROOT, code_blocks

from ditto_triton.model_repository.committed import wire_table

PAGE = ROOT / "docs" / "protocol.md"


def server_blocks(language: str) -> list[str]:
    return [code for note, lang, code in code_blocks(PAGE) if note == "run: server" and lang == language]


def test_the_wire_table_is_generated_from_the_configs():
    text = PAGE.read_text()
    table = text.split("<!-- wire table -->\n", 1)[1].split("<!-- end wire table -->", 1)[0]
    assert table == wire_table(), "regenerate the table of docs/protocol.md from wire_table()"


def test_the_raw_tritonclient_session_runs_as_written(server):
    (program,) = server_blocks("python")
    assert len(program.splitlines()) <= 50
    env = {**os.environ, "DITTO_URL": server.grpc_url}
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().startswith("50 frames of ("), done.stdout


def test_the_perf_analyzer_command_lines_run(server, tmp_path):
    blocks = server_blocks("bash")
    assert len(blocks) == 2
    for script in blocks:
        script = script.replace("localhost:8001", server.grpc_url).replace("/tmp/", f"{tmp_path}/")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "Throughput:" in done.stdout, done.stdout[-2000:]
