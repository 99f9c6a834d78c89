"""Past one machine, for real on loopback: a Prefect server on Postgres, `vidmusician deploy`, two process
workers on the CPU pool, the curate deployment on loopback-served sources with the catalog on Postgres.

Every source is done exactly once across two concurrent runs; a second run rewrites nothing; a flow-run
process SIGKILLed mid-source leaves its lease to expire, and the next run finishes the source without
writing any clip twice; a host that dies with its worker (nobody left to report the run) has the run
marked Crashed by deploy's zombie automation once its heartbeats stop.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path

import pytest
from server_helpers import REPO, new_database, run_cli, start_worker, stop_workers
from sqlalchemy import select

from dvmset import leases
from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from dvmset.records import ClipStatus, SourceStatus
from dvmset.runs import done_keys
from dvmset.tables import Clip, Source
from flows.demos.small import serve_directory
from pipeline.synth import make_sample_video

pytestmark = pytest.mark.slow

SETTINGS = {"separator": "none", "clip_seconds": 2.0, "workers": 1, "download_retries": 1,
            "download_backoff_s": 0.1}
FINAL_WAIT_S = 300
KILL_CLIPS = {"k-a": 5, "k-b": 2}  # 2 s clips per source
ZOMBIE_AFTER_S = 35  # the shortest deploy allows (over the 30 s heartbeat), so the test waits little


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Loopback sources: three of 3 clips (the two-run test), two of KILL_CLIPS clips (the kill test)."""
    d = tmp_path_factory.mktemp("served-workers")
    for name in ("w-a", "w-b", "w-c"):
        make_sample_video(d / f"{name}.mp4", 6.2, size="96x64", fps=25, cut_every_s=1.5)
    for name, clips in KILL_CLIPS.items():
        make_sample_video(d / f"{name}.mp4", 2 * clips + 0.2, size="96x64", fps=25, cut_every_s=1.5)
    make_sample_video(d / "z-long.mp4", 150.2, size="96x64", fps=25, cut_every_s=1.5)  # still running when killed
    with serve_directory(d) as base:
        yield base


@pytest.fixture(scope="module")
def stack(prefect_server, tmp_path_factory):
    """`vidmusician deploy`, then two process workers on the CPU pool sharing one root and catalog."""
    base = tmp_path_factory.mktemp("workers")
    root = DataRoot(base / "root").ensure()
    db_url = prefect_server.pg_template.format(db=new_database(prefect_server.pg_template))
    Catalog(db_url).dispose()  # the schema, made once here rather than raced by the workers
    env = prefect_server.env(VIDMUSICIAN_ROOT=str(root.path), VIDMUSICIAN_DB=db_url,
                             PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1",
                             PREFECT_RESULTS_PERSIST_BY_DEFAULT="true",
                             PREFECT_LOCAL_STORAGE_PATH=str(base / "results"), PYTHONPATH=str(REPO))
    done = run_cli(prefect_server, "deploy", "--api", prefect_server.api_url, "--cpu-workers", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    started = [start_worker(base, f"worker-{i}", "vidmusician-cpu", env) for i in range(2)]
    workers, logs = [w for w, _ in started], [log for _, log in started]
    cat = Catalog(db_url)
    try:
        yield {"root": root, "cat": cat, "env": env, "base": base, "workers": workers}
    finally:
        cat.dispose()
        stop_workers(workers, logs)


def _start(server, **params):
    from prefect.deployments import run_deployment

    with server.settings():
        return run_deployment("vidmusician-curate/curate", parameters=params, timeout=0, as_subflow=False)


def _wait(server, stack, run_ids, states=("Completed",)):
    """Wait until every run is final; returns {id: final FlowRun}; fails with the worker logs."""
    from prefect import get_client

    deadline, out = time.monotonic() + FINAL_WAIT_S, {}
    with server.settings(), get_client(sync_client=True) as client:
        while len(out) < len(run_ids) and time.monotonic() < deadline:
            for rid in run_ids:
                run = client.read_flow_run(rid)
                if run.state is not None and run.state.is_final():
                    out[rid] = run
            time.sleep(1)
    logs = "\n".join((stack["base"] / f"worker-{i}.log").read_text(errors="replace")[-3000:] for i in range(2))
    assert len(out) == len(run_ids), f"flow runs not finished in {FINAL_WAIT_S} s:\n{logs}"
    for run in out.values():
        assert run.state.name in states, f"{run.name}: {run.state.name} {run.state.message}\n{logs}"
    return out


def _result(server, run):
    with server.settings():
        return run.state.result()


def _clip_mtimes(root: DataRoot, cat: Catalog, prefix: str) -> dict[str, int]:
    with cat.session() as s:
        ids = list(s.scalars(select(Clip.id).where(Clip.id.like(f"{prefix}%"),
                                                   Clip.status == ClipStatus.PENDING_REVIEW)))
    return {cid: root.clip_path(cid).stat().st_mtime_ns for cid in ids}


def _finished(cat: Catalog, mtimes: dict[str, int]) -> dict[str, int]:
    """The clips of ``mtimes`` with their run row: a clip's run row is written last, and a clip a kill cut off
    before it (its row and file there) is made again by design (flows/curation/curate.py)."""
    done = done_keys(cat, "clip", mtimes)
    return {cid: t for cid, t in mtimes.items() if cid in done}


def test_two_workers_do_every_source_exactly_once_and_a_second_run_rewrites_nothing(prefect_server, stack,
                                                                                       served):
    urls = [f"{served}/{n}.mp4" for n in ("w-a", "w-b", "w-c")]
    params = {"urls": urls, "per_query": 0, "settings": SETTINGS}
    runs = [_start(prefect_server, **params) for _ in range(2)]
    finished = _wait(prefect_server, stack, [r.id for r in runs])
    results = [_result(prefect_server, r) for r in finished.values()]
    assert sum(r["done"] - r["done_elsewhere"] for r in results) == 3  # each source worked on by one run only
    assert sum(r["failed"] for r in results) == 0
    for r in results:  # every source: done here, or left because the other run held or had done it
        assert r["done"] + r["held"] + r["skipped"] == 3
    cat, root = stack["cat"], stack["root"]
    with cat.session() as s:
        rows = {row.id: row for row in s.scalars(select(Source).where(Source.url.in_(urls)))}
    assert len(rows) == 3 and {r.status for r in rows.values()} == {SourceStatus.DONE}
    assert all(r.lease_owner is None and r.attempts == 0 for r in rows.values())
    mtimes = {sid: _clip_mtimes(root, cat, sid) for sid in rows}
    assert all(len(m) == 3 for m in mtimes.values())

    env = {**stack["env"], "PREFECT_LOGGING_LEVEL": "WARNING"}  # the second run: the CLI, through the server
    again = run_cli(prefect_server, "curate", *[a for u in urls for a in ("--url", u)], "--separator", "none",
                    "--clip-seconds", "2", "--workers", "1", "--via-server", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert ": Completed" in again.stdout and "pending_review 9" in again.stdout
    assert {sid: _clip_mtimes(root, cat, sid) for sid in rows} == mtimes  # nothing written again


def test_a_flow_run_killed_mid_source_is_finished_after_its_lease_expires_no_clip_written_twice(
        prefect_server, stack, served):
    urls = [f"{served}/{n}.mp4" for n in KILL_CLIPS]
    params = {"urls": urls, "per_query": 0, "settings": SETTINGS, "lease_ttl_s": 8.0}
    run = _start(prefect_server, **params)
    cat, root = stack["cat"], stack["root"]
    deadline, victim = time.monotonic() + FINAL_WAIT_S, None
    while victim is None and time.monotonic() < deadline:  # the first source, leased, 2 of its 5 clips made
        with cat.session() as s:
            row = s.scalars(select(Source).where(Source.url == urls[0], Source.lease_owner.is_not(None))).first()
        if row is not None and len(_finished(cat, _clip_mtimes(root, cat, row.id))) >= 2:
            victim = row
        time.sleep(0.2)
    assert victim is not None, "no source was seen mid-way"
    pid = leases.owner_pid(victim.lease_owner)
    os.kill(pid, signal.SIGKILL)  # the flow-run process the worker started; the worker lives on
    _wait(prefect_server, stack, [run.id], states=("Crashed", "Failed"))
    before = _finished(cat, _clip_mtimes(root, cat, victim.id))  # what the killed process finished and recorded
    owner, expires, attempts = leases.holder(cat, leases.SOURCES, victim.id)
    assert owner == victim.lease_owner and attempts == 1  # the dead process still holds it, for now

    while dt.datetime.now(dt.UTC) <= expires.replace(tzinfo=dt.UTC):
        time.sleep(0.5)
    rerun = _wait(prefect_server, stack, [_start(prefect_server, **params).id])
    (result,) = [_result(prefect_server, r) for r in rerun.values()]
    assert result["failed"] == 0 and result["held"] == 0
    with cat.session() as s:
        rows = list(s.scalars(select(Source).where(Source.url.in_(urls))))
    assert {r.status for r in rows} == {SourceStatus.DONE} and len(rows) == 2
    assert leases.holder(cat, leases.SOURCES, victim.id) == (None, None, 0)
    after = _clip_mtimes(root, cat, victim.id)
    assert len(after) == KILL_CLIPS[victim.url.rsplit("/", 1)[1].removesuffix(".mp4")]
    assert {cid: after[cid] for cid in before} == before  # finished clips were not written again
    leftovers = [p for p in Path(root.clips_dir).iterdir() if p.name.startswith(".") or ".tmp" in p.name]
    assert leftovers == []


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_run_whose_worker_died_with_it_is_marked_crashed_by_the_zombie_automation(prefect_server, stack,
                                                                                    served):
    """The worker and its flow-run process SIGKILLed together (a host lost): no process reports the run,
    which stays Running until deploy's automation sees its heartbeats stop and marks it Crashed. (Last in
    the module: it kills one of the stack's workers.)"""
    from prefect import get_client

    from flows.cluster.deploy import DeploySpec, _zombie_automation

    with prefect_server.settings():
        assert _zombie_automation(DeploySpec(source=REPO, zombie_after_s=ZOMBIE_AFTER_S)).action == "updated"
    try:
        url = f"{served}/z-long.mp4"
        run = _start(prefect_server, urls=[url], per_query=0, settings=SETTINGS)
        cat, deadline, owner = stack["cat"], time.monotonic() + FINAL_WAIT_S, None
        while owner is None and time.monotonic() < deadline:  # running, the source leased: heartbeats flow
            with cat.session() as s:
                owner = s.scalar(select(Source.lease_owner).where(Source.url == url))
            time.sleep(0.2)
        assert owner is not None, "the run never reached its source"
        pid = leases.owner_pid(owner)
        worker = _ppid(pid)
        assert worker in {w.pid for w in stack["workers"]}, "the flow-run process is not a worker's child"
        os.kill(worker, signal.SIGKILL)  # the worker first, so it cannot report its child's death
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        with prefect_server.settings(), get_client(sync_client=True) as client:
            assert client.read_flow_run(run.id).state.name == "Running"
            while time.monotonic() < killed + ZOMBIE_AFTER_S + 90:
                state = client.read_flow_run(run.id).state
                if state.is_final():
                    break
                time.sleep(1)
        assert state.name == "Crashed" and "no heartbeat" in (state.message or ""), (state.name, state.message)
        assert time.monotonic() - killed < ZOMBIE_AFTER_S + 90
    finally:
        with prefect_server.settings():
            _zombie_automation(DeploySpec(source=REPO))  # the default again for whatever runs later
