"""A tritonserver never outlives the process that started it: SIGTERM to that process (as when a
test run is killed) takes the server and its python stubs down with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from support import wait_for

STARTER = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from ditto_triton.model_repository.render import render_repository
    from ditto_triton.model_repository.server import TritonServer

    work = Path(sys.argv[2])
    repo = render_repository(Path(sys.argv[1]), work / "repo", "python-ort", include_services=True)
    server = TritonServer(repo, log_path=work / "tritonserver.log").start()
    print(server.pid, flush=True)
    threading.Event().wait()
    """
)


def children_of(pid: int) -> set[int]:
    """Every live process whose parent is `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_to_the_starter_takes_server_and_stubs_down(tiny_export, tmp_path):
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(tiny_export), str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        server_pid = int(starter.stdout.readline())
        stubs = children_of(server_pid)
        assert len(stubs) >= 9, f"expected a python stub per model, found {len(stubs)}"
        os.kill(starter.pid, signal.SIGTERM)
        assert starter.wait(timeout=30) == -signal.SIGTERM
        wait_for(lambda: not any(alive(p) for p in (server_pid, *stubs)), timeout_s=60, what="server and stubs exit")
    finally:
        starter.kill()
        starter.wait()
