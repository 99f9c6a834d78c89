"""docker-compose.yml is valid Compose and runs only commands the CLI really has (no engine here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from flows.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
# Debian's docker-compose package ships the Compose specification's JSON schema.
SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_schema(compose):
    if not SCHEMA.exists():
        pytest.skip("Compose JSON schema not present (apt-get install docker-compose)")
    import jsonschema

    jsonschema.validate(compose, json.loads(SCHEMA.read_text()))


def test_vidmusician_services_run_real_subcommands_against_postgres(compose):
    parser = build_parser()
    ours = {name: svc for name, svc in compose["services"].items()
            if svc.get("image") == "vidmusician:latest" and "entrypoint" not in svc}
    assert {"review", "cli", "deploy"} <= set(ours)
    for name, svc in ours.items():
        args = parser.parse_args(svc["command"])  # exits (fails the test) on an unknown command or flag
        assert callable(args.func), name
        assert svc["environment"]["VIDMUSICIAN_DB"].startswith("postgresql+psycopg://")
    assert compose["services"]["review"]["command"][:1] == ["review"]


def test_workers_pull_from_the_pools_deploy_creates_and_the_gpu_one_reserves_a_gpu(compose):
    from flows.cluster.deploy import CPU_POOL, ENTRIES, GPU_POOL

    services = compose["services"]
    pools = {}
    for name in ("worker-cpu", "worker-gpu"):
        svc = services[name]
        assert svc["entrypoint"] == ["prefect", "worker", "start"] and svc["restart"] == "unless-stopped"
        cmd = svc["command"]
        pools[name] = cmd[cmd.index("--pool") + 1]
        assert cmd[cmd.index("--type") + 1] == "process"
        assert svc["environment"]["PREFECT_API_URL"] == "http://prefect:4200/api"
        assert svc["depends_on"]["deploy"]["condition"] == "service_completed_successfully"
    assert pools == {"worker-cpu": CPU_POOL, "worker-gpu": GPU_POOL}
    assert {e.pool for e in ENTRIES} == {CPU_POOL, GPU_POOL}  # every deployment has a worker
    (gpu,) = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]


def test_the_deploy_service_is_one_shot_and_targets_the_compose_server(compose):
    dep = compose["services"]["deploy"]
    cmd = dep["command"]
    assert cmd[0] == "deploy" and cmd[cmd.index("--api") + 1] == "http://prefect:4200/api"
    assert cmd[cmd.index("--source") + 1] == "/app"  # the Dockerfile's WORKDIR, holding flows/cluster/entry.py
    assert dep["restart"] == "no" and dep["depends_on"]["prefect"]["condition"] == "service_healthy"


def test_the_prefect_server_runs_on_the_compose_postgres_with_a_health_check(compose):
    prefect = compose["services"]["prefect"]
    db_url = prefect["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    catalog = compose["services"]["review"]["environment"]["VIDMUSICIAN_DB"]
    assert db_url.startswith("postgresql+asyncpg://") and "@db:5432/" in db_url
    assert db_url.rsplit("/", 1)[1] != catalog.rsplit("/", 1)[1]  # its own database: both keep alembic_version
    init = REPO / "docker" / "initdb"
    assert any(f"CREATE DATABASE {db_url.rsplit('/', 1)[1]}" in p.read_text() for p in init.glob("*.sql"))
    assert any("/api/health" in part for part in prefect["healthcheck"]["test"])
    assert prefect["restart"] == "unless-stopped" and prefect["depends_on"]["db"]["condition"] == "service_healthy"
    for name in ("db", "review"):
        assert compose["services"][name]["restart"] == "unless-stopped"
