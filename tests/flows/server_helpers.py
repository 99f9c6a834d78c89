"""Helpers of the server tests (tests/flows/conftest.py starts the server): the environment of a process
talking to it, fresh databases on the throwaway PostgreSQL cluster, the CLI in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_database(server_template: str) -> str:
    """A fresh database on the throwaway cluster; returns its name."""
    import psycopg

    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_template.replace("postgresql+psycopg", "postgresql").format(db="postgres"),
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return name


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    home: Path
    pg_template: str  # postgresql+psycopg://...{db}... of the throwaway cluster
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process talking to this server (a CLI call, a worker)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_API_URL=self.api_url, PREFECT_HOME=str(self.home),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
                   PATH=f"{VENV_BIN}:{env.get('PATH', '')}")
        env.update(extra)
        return env

    def settings(self):  # noqa: ANN201 - a context manager pointing this process's Prefect client here
        from prefect.settings import PREFECT_API_URL, temporary_settings

        return temporary_settings({PREFECT_API_URL: self.api_url})


def run_cli(server: PrefectServer, *args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`vidmusician ARGS` in a fresh process against ``server``."""
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env or server.env(),
                          capture_output=True, text=True, timeout=timeout)


def start_worker(base: Path, name: str, pool: str, env: dict[str, str]) -> tuple[subprocess.Popen, object]:
    """A `prefect worker` process on ``pool`` (one run at a time), its output in BASE/NAME.log: (process, log)."""
    log = open(base / f"{name}.log", "wb")  # noqa: SIM115 - closed by stop_workers
    worker = subprocess.Popen(
        [str(VENV_BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process", "--limit", "1",
         "--name", name], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base, start_new_session=True)
    return worker, log


def stop_workers(workers: list[subprocess.Popen], logs: list) -> None:
    """Terminate the workers (killed after 30 s) and close their logs."""
    for w in workers:
        w.terminate()
    for w in workers:
        try:
            w.wait(30)
        except subprocess.TimeoutExpired:
            w.kill()
    for log in logs:
        log.close()
