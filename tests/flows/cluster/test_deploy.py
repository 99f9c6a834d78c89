"""`vidmusician deploy` against a real Prefect server: it creates the pools, limits, deployments and the
zombie automation, and run again finds exactly the same objects; what it refuses, and why."""

from __future__ import annotations

import pytest
from server_helpers import REPO, PrefectServer, free_port, run_cli

from flows.cluster import limits
from flows.cluster.deploy import CPU_POOL, ENTRIES, GPU_POOL, ZOMBIE_AUTOMATION, DeploySpec
from flows.cluster.entry import _config


def _snapshot(server) -> dict:
    """Every object deploy manages, as the server has it (ids included)."""
    from prefect import get_client
    from prefect.automations import Automation

    with server.settings(), get_client(sync_client=True) as client:
        pools = {p: (str(w.id), w.type, w.concurrency_limit) for p in (CPU_POOL, GPU_POOL)
                 for w in [client.read_work_pool(p)]}
        gcls = {g.name: (str(g.id), g.limit, round(g.slot_decay_per_second or 0.0, 6))
                for g in client.read_global_concurrency_limits(limit=100) if g.name.startswith("vidmusician-")}
        deps = {e.full_name: (str(d.id), d.work_pool_name, d.entrypoint, tuple(d.pull_steps or ()).__repr__())
                for e in ENTRIES for d in [client.read_deployment_by_name(e.full_name)]}
        auto = Automation.read(name=ZOMBIE_AUTOMATION)
    return {"pools": pools, "limits": gcls, "deployments": deps, "automation": (str(auto.id), auto.enabled)}


@pytest.mark.slow
def test_deploy_twice_creates_then_finds_the_same_pools_limits_and_deployments(prefect_server):
    first = run_cli(prefect_server, "deploy", "--api", prefect_server.api_url, "--source", str(REPO))
    assert first.returncode == 0, first.stderr[-3000:]
    lines = [ln for ln in first.stdout.splitlines() if ln.startswith(("created", "found", "updated"))]
    assert len(lines) == 2 + 5 + len(ENTRIES) + 1  # pools, limits, deployments, automation
    assert all(ln.startswith("created") for ln in lines), first.stdout
    made = _snapshot(prefect_server)
    assert made["pools"][CPU_POOL][1:] == ("process", 2) and made["pools"][GPU_POOL][1:] == ("process", 1)
    assert made["limits"][limits.DEMUCS][1:] == (2, 0.0)
    assert made["limits"][limits.DOWNLOAD_PREFIX + "youtube"][1:] == (5, round(300 / 3600, 6))
    assert {d[1] for d in made["deployments"].values()} == {CPU_POOL, GPU_POOL}
    assert all(d[2].startswith("flows/cluster/entry.py:") and str(REPO) in d[3] for d in made["deployments"].values())

    again = run_cli(prefect_server, "deploy", "--api", prefect_server.api_url, "--source", str(REPO))
    assert again.returncode == 0, again.stderr[-3000:]
    lines = [ln for ln in again.stdout.splitlines() if ln.startswith(("created", "found", "updated"))]
    assert len(lines) == 2 + 5 + len(ENTRIES) + 1 and all(ln.startswith("found") for ln in lines), again.stdout
    assert _snapshot(prefect_server) == made  # converged: the same objects, the same ids

    changed = run_cli(prefect_server, "deploy", "--api", prefect_server.api_url, "--cpu-workers", "3")
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert f"updated  work pool          {CPU_POOL}" in changed.stdout
    assert _snapshot(prefect_server)["pools"][CPU_POOL][0] == made["pools"][CPU_POOL][0]  # the same pool


@pytest.mark.slow
def test_a_deployment_made_before_the_move_to_flows_cluster_is_converged_in_place(prefect_server):
    """Deployments made when the entry flows lived in flows/entry.py keep their names and ids; deploy
    points them at flows/cluster/entry.py, and a worker then loads the flow from there."""
    from prefect import get_client

    first = run_cli(prefect_server, "deploy", "--api", prefect_server.api_url, "--source", str(REPO))
    assert first.returncode == 0, first.stderr[-3000:]
    with prefect_server.settings(), get_client(sync_client=True) as client:
        old = {}
        for e in ENTRIES:
            dep = client.read_deployment_by_name(e.full_name)
            client.update_deployment(dep.id, _old_entrypoint_update(f"flows/entry.py:{e.function}"))
            old[e.full_name] = str(dep.id)
        assert all(client.read_deployment(i).entrypoint.startswith("flows/entry.py:") for i in old.values())

    again = run_cli(prefect_server, "deploy", "--api", prefect_server.api_url, "--source", str(REPO))
    assert again.returncode == 0, again.stderr[-3000:]
    moved = [ln for ln in again.stdout.splitlines() if ln.startswith("updated") and "deployment" in ln]
    assert len(moved) == len(ENTRIES), again.stdout
    assert all("flows/entry.py:" in ln and "flows/cluster/entry.py:" in ln for ln in moved), again.stdout
    deps = _snapshot(prefect_server)["deployments"]
    assert {name: d[0] for name, d in deps.items()} == old  # the same deployments, not new ones
    assert all(d[2] == f"flows/cluster/entry.py:{e.function}" for e in ENTRIES for d in [deps[e.full_name]])

    from prefect.flows import load_flow_from_entrypoint

    for e in ENTRIES:  # what a worker does with the converged entrypoint
        flow = load_flow_from_entrypoint(str(REPO / deps[e.full_name][2]))
        assert flow.fn.__name__ == e.function and flow.fn.__code__.co_filename.endswith("flows/cluster/entry.py")


def _old_entrypoint_update(entrypoint: str):
    from prefect.client.schemas.actions import DeploymentUpdate

    return DeploymentUpdate(entrypoint=entrypoint)


def test_deploy_without_a_server_says_how_to_name_one(tmp_path):
    nowhere = PrefectServer("", tmp_path / "home", "", tmp_path / "log")
    env = nowhere.env()
    env.pop("PREFECT_API_URL")
    out = run_cli(nowhere, "deploy", env=env, timeout=120)
    assert out.returncode == 2 and "--api URL" in out.stderr
    dead = f"http://127.0.0.1:{free_port()}/api"
    out = run_cli(nowhere, "deploy", "--api", dead, env=env, timeout=120)
    assert out.returncode == 2 and "does not answer" in out.stderr and dead in out.stderr


def test_a_source_dir_without_the_entry_flows_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no flows/cluster/entry.py"):
        DeploySpec(tmp_path)
    with pytest.raises(ValueError, match="no download limit for sites"):
        DeploySpec(REPO, downloads_per_hour={"dailymotion": 10})
    with pytest.raises(ValueError, match="cpu_workers"):
        DeploySpec(REPO, cpu_workers=0)


def test_every_site_has_its_rate_limit_and_others_share_one():
    spec = DeploySpec(REPO, downloads_per_hour={"youtube": 360})
    made = spec.concurrency_limits()
    assert made[limits.download_limit("https://www.youtube.com/watch?v=x")] == (5, 0.1)
    assert limits.site_of("https://youtu.be/x") == "youtube" and limits.site_of("https://m.vimeo.com/1") == "vimeo"
    assert limits.download_limit("http://127.0.0.1:8000/a.mp4") == limits.DOWNLOAD_PREFIX + "other"
    assert made[limits.GPU_JOBS] == (1, 0.0) and made[limits.DEMUCS] == (2, 0.0)


def test_entry_settings_refuse_an_unknown_key_by_name():
    from flows.config import CurateConfig

    assert _config(CurateConfig, {"separator": "none"}).separator == "none"
    with pytest.raises(ValueError, match=r"unknown CurateConfig settings \['separater'\]"):
        _config(CurateConfig, {"separater": "none"})
