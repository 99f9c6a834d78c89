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
    ours = {name: svc for name, svc in compose["services"].items() if svc.get("image") == "vidmusician:latest"}
    assert {"review", "cli"} <= set(ours)
    for name, svc in ours.items():
        args = parser.parse_args(svc["command"])  # exits (fails the test) on an unknown command or flag
        assert callable(args.func), name
        assert svc["environment"]["VIDMUSICIAN_DB"].startswith("postgresql+psycopg://")
    assert compose["services"]["review"]["command"][:1] == ["review"]
