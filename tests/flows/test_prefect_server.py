"""A SIGKILLed command leaves no Prefect temporary server behind (the real CLI, a real kill)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot

pytestmark = pytest.mark.slow


def _servers() -> dict[int, int]:
    """{pid: parent pid} of every Prefect temporary server (a uvicorn serving Prefect's create_app)."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if b"uvicorn" in cmd and b"prefect.server.api.server:create_app" in cmd:
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if state != "Z":
                found[int(d.name)] = int(ppid)
    return found


def test_a_sigkilled_run_leaves_no_temporary_prefect_server(tmp_path: Path):
    root = DataRoot(tmp_path / "root").ensure()
    Catalog(root.catalog_url).dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"),
               PYTHONPATH=os.pathsep.join(p for p in (str(Path.cwd()), os.environ.get("PYTHONPATH")) if p))
    mine: list[int] = []
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "features", "--root", str(root.path),
                             "--clip-model", "tiny", "--codec", "tiny"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (mine := [pid for pid, ppid in _servers().items() if ppid == proc.pid]):
            assert proc.poll() is None, "the run ended before its temporary server was seen"
            assert time.monotonic() < deadline, "no temporary server started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while (left := [pid for pid in mine if pid in _servers()]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"temporary Prefect server {left} outlived the killed run"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in set(mine) & set(_servers()):  # this test's server only, never another's
            os.kill(pid, signal.SIGKILL)
