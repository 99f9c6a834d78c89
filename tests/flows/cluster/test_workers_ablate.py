"""`ablate --via-server` for real on loopback: a Prefect server on Postgres, `vidmusician deploy --gpus 2`, one
process worker on the CPU pool (the ablate run, which starts the rows) and two on the GPU pool (the rows).

A tiny export, two rows: each row is its own flow run, a child of the ablate run, and the two run side by
side on the two GPU workers; table2.json equals the in-process `ablate` of the same rows on the same data
(same rows, same metric values); a second submission completes without touching a file under the rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ablation_helpers import debug_ablate_args, tiny_export
from server_helpers import REPO, run_cli, start_worker, stop_workers
from training_helpers import run_main

from flows.cluster.deploy import CPU_POOL, DEPLOYMENTS, GPU_POOL
from flows.evaluation.evaluate import CHECKPOINTS

pytestmark = pytest.mark.slow

ROWS = ("no-rcm", "full")
CLI_TIMEOUT_S = 1500


@pytest.fixture(scope="module")
def pool(prefect_server, tmp_path_factory):
    """deploy with two GPU slots, then one CPU worker and two GPU workers (one run at a time each) on one
    thread per process, as run_main trains in this process."""
    base = tmp_path_factory.mktemp("ablate-pool")
    env = prefect_server.env(PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1",
                             OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                             PYTHONPATH=str(REPO))
    for _, variable in CHECKPOINTS.values():  # the same (no) embedders on the workers as in this process
        env.pop(variable, None)
    done = run_cli(prefect_server, "deploy", "--api", prefect_server.api_url, "--gpus", "2", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    from flows.cluster.deploy import DeploySpec, _zombie_automation

    # Deploy's 90 s zombie threshold crashed a row of this test once, at load 9-15 on two cores, before the row had
    # made its folder. Here the threshold is lifted so the rows finish, and the test measures the heartbeats
    # themselves instead (test below: every row run sends them; the largest gap is printed).
    with prefect_server.settings():
        _zombie_automation(DeploySpec(source=REPO, zombie_after_s=900))
    worker_env = {**env, "PREFECT_LOGGING_LEVEL": "INFO"}  # the flow runs' logs in the worker logs, for failures
    started = [start_worker(base, f"ablate-{name}", pool_name, worker_env)
               for name, pool_name in (("cpu-0", CPU_POOL), ("gpu-0", GPU_POOL), ("gpu-1", GPU_POOL))]
    workers, logs = [w for w, _ in started], [log for _, log in started]
    try:
        yield {"base": base, "env": env}
    finally:
        stop_workers(workers, logs)
        from prefect import get_client

        from flows.cluster import limits
        from flows.cluster.deploy import _concurrency_limit, _work_pool

        with prefect_server.settings():
            _zombie_automation(DeploySpec(source=REPO))
        with prefect_server.settings(), get_client(sync_client=True) as client:  # one GPU again, as deploy's default
            _work_pool(client, GPU_POOL, 1)
            _concurrency_limit(client, limits.GPU_JOBS, 1, 0.0)


def _worker_logs(base: Path) -> str:
    return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in sorted(base.glob("*.log")))


def _table(out: Path) -> list[dict]:
    rows = json.loads((out / "table2.json").read_text())["rows"]
    for r in rows:
        r["best_checkpoint"] = str(Path(r["best_checkpoint"]).relative_to(out))
    return rows


def _files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in sorted(directory.rglob("*")) if p.is_file()}


def _heartbeat_gaps(server, run) -> list[float]:
    """Seconds between the run's start, each of its heartbeat events and its end."""
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    wanted = EventFilter(event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                         resource=EventResourceFilter(id=[f"prefect.flow-run.{run.id}"]))
    with server.settings(), get_client(sync_client=True) as client:
        page = client.read_events(filter=wanted, limit=50)  # the API allows at most 50 a page
        events = list(page.events)
        while page.next_page:
            page = client.read_events_page(page.next_page)
            events += page.events
    times = sorted([run.start_time, *(e.occurred for e in events), run.end_time])
    return [round((b - a).total_seconds(), 1) for a, b in zip(times, times[1:], strict=False)]


def _row_runs(server) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowFilter,
        FlowFilterName,
    )

    entry = DEPLOYMENTS["ablate_row"]
    with server.settings(), get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[entry.flow_name])),
                                     deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[entry.name])))


@pytest.mark.timeout(2400)  # two tiny ablates and a re-submission; ~10 min on two shared, busy cores
def test_rows_run_side_by_side_on_two_workers_and_write_the_local_table(prefect_server, pool, tmp_path,
                                                                         monkeypatch):
    for _, variable in CHECKPOINTS.values():
        monkeypatch.delenv(variable, raising=False)
    export = tiny_export(tmp_path / "root", clip_s=2)  # one 2 s window per test clip
    args = ("--rows", ",".join(ROWS), "--precision", "fp32")
    local = tmp_path / "local"
    with prefect_server.settings():  # its flow runs on the test server, not an ephemeral one
        assert run_main(debug_ablate_args(export, local, *args)) == 0

    out = tmp_path / "pooled"
    cmd = [*debug_ablate_args(export, out, *args), "--via-server"]
    sent = run_cli(prefect_server, *cmd, env=pool["env"], timeout=CLI_TIMEOUT_S)
    assert sent.returncode == 0, f"{sent.stdout[-3000:]}\n{sent.stderr[-3000:]}\n{_worker_logs(pool['base'])}"
    for row in ROWS:  # each row's own state, followed by the CLI
        assert f"row {row}: Completed" in sent.stdout, sent.stdout
    assert _table(out) == _table(local)  # same rows, same settings, same metric values

    runs = _row_runs(prefect_server)
    assert sorted(r.parameters["row"] for r in runs) == sorted(ROWS)  # one run per row, each Completed
    assert {r.state.name for r in runs} == {"Completed"}
    first, second = sorted(runs, key=lambda r: r.start_time)
    assert second.start_time < first.end_time  # side by side: the second row started before the first ended
    assert first.parent_task_run_id is not None and second.parent_task_run_id is not None  # children of ablate
    gaps = {r.parameters["row"]: _heartbeat_gaps(prefect_server, r) for r in runs}
    print(f"heartbeat gaps (s) per row run: {gaps}")
    for row, row_gaps in gaps.items():  # the deployment's env reaches the row's process: the zombie check can work
        assert len(row_gaps) >= 2, f"row {row} sent no heartbeat: {row_gaps}"

    rows_before = _files(out / "rows")
    again = run_cli(prefect_server, *cmd, env=pool["env"], timeout=CLI_TIMEOUT_S)
    assert again.returncode == 0, f"{again.stdout[-3000:]}\n{again.stderr[-3000:]}"
    assert _files(out / "rows") == rows_before  # no row trained, generated or evaluated again
    assert _table(out) == _table(local)
    assert len(_row_runs(prefect_server)) == 2 * len(ROWS)


def test_a_missing_row_deployment_fails_the_ablate_run_with_what_to_do(prefect_server, tmp_path):
    """The coordinator's own check, in this process: a row deployment nobody made is named in the error."""
    from prefect import flow

    from flows.cluster.rows import RowsFailedError, dispatch_rows

    @flow(name="ablate-missing-rows")
    def coordinator() -> None:
        dispatch_rows("vidmusician-ablate-row/nowhere", {"out": str(tmp_path)}, ["full"])

    with prefect_server.settings(), pytest.raises(RowsFailedError, match="vidmusician deploy"):
        coordinator()
