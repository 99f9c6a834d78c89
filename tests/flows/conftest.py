"""A real Prefect server on loopback with its database on the throwaway PostgreSQL cluster: one per test
session (start-up costs ~15-30 s), shared by the deploy and worker tests."""

from __future__ import annotations

import subprocess
import time
import urllib.request

import pytest
from server_helpers import VENV_BIN, PrefectServer, free_port, new_database


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def prefect_server(postgres_server, tmp_path_factory):
    """`prefect server start` on a free loopback port, its database on the throwaway Postgres cluster."""
    pytest.importorskip("asyncpg")
    base = tmp_path_factory.mktemp("prefect-server")
    db = new_database(postgres_server)
    sock = postgres_server.split("host=", 1)[1]
    port = free_port()
    server = PrefectServer(f"http://127.0.0.1:{port}/api", base / "home", postgres_server, base / "server.log")
    env = server.env(PREFECT_API_DATABASE_CONNECTION_URL=f"postgresql+asyncpg://postgres@/{db}?host={sock}",
                     PREFECT_UI_ENABLED="false", PREFECT_SERVER_API_HOST="127.0.0.1")
    env.pop("PREFECT_API_URL")
    with open(server.log, "wb") as log:
        proc = subprocess.Popen([str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                 str(port), "--no-ui"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=base, start_new_session=True)
    try:
        deadline = time.monotonic() + 600  # migrations on a fresh database: minutes on busy shared cores
        while not _healthy(server.api_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prefect server did not start: {server.log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
