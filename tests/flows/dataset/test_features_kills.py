"""Kills of `vidmusician features` (the real CLI, real SIGKILL / SIGTERM at the start of a named clip's
extraction): a death is charged to the clip being extracted, never to the clips of its shard that were not
started; a pre-empted run (SIGTERM) charges none; only a clip workers died on too often is given up, and
`export` then lists no clip without features and warns about it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from feature_helpers import add_clips
from sqlalchemy import select

from dvmset.io import file_lock
from dvmset.leases import CLIPS, LeasePolicy, holder
from dvmset.tables import Run
from flows.cli import main
from flows.dataset.features import FeaturesConfig, run_features

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import pipeline.features as pf

    kill_at, sig = int(sys.argv[1]), int(sys.argv[2])
    real, calls = pf.extract_clip, []

    def dying(path, *args, **kwargs):  # the named point: clip number `kill_at` of the run starts
        calls.append(path)
        if len(calls) == kill_at:
            os.kill(os.getpid(), sig)
            time.sleep(30)  # a SIGTERM is handled at the next bytecode; a SIGKILL never returns
        return real(path, *args, **kwargs)

    pf.extract_clip = dying
    from flows.cli import main
    sys.exit(main(["features", "--root", sys.argv[3], "--clip-model", "tiny", "--codec", "tiny",
                   "--clip-seconds", "4", "--clips-per-shard", "4"]))
""")


def cli_env() -> dict:
    """The CLI runs talk to the session's Prefect server and import this checkout first."""
    from prefect.settings import PREFECT_API_URL

    here = os.pathsep.join(p for p in (str(Path.cwd()), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": here}


def _run(root: Path, kill_at: int, sig: int) -> subprocess.CompletedProcess:
    env = cli_env()
    return subprocess.run([sys.executable, "-c", CHILD, str(kill_at), str(sig), str(root)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_kills_charge_the_clip_in_progress_only_and_export_lists_no_clip_without_features(
        data_root, catalog, clip_factory, prefect_harness, capsys):
    clip = clip_factory(4.0, cut_every_s=2.0)
    ids = sorted(add_clips(catalog, data_root, clip, {"a": ("q1", 2), "b": ("q1", 1), "c": ("q2", 1)}))

    def attempts() -> list[int]:
        return [holder(catalog, CLIPS, c)[2] for c in ids]

    for n in (1, 2):  # two SIGKILLs of the one shard's run, each while a different clip is extracted
        out = _run(data_root.path, n, signal.SIGKILL)
        assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
    assert attempts() == [1, 1, 0, 0]  # per clip; the clips never started are charged nothing
    assert not list(data_root.features_dir.glob("shard-*.safetensors"))

    out = _run(data_root.path, 1, signal.SIGTERM)  # pre-empted: not the clip's fault, and let go at once
    assert out.returncode == 130, out.stdout + out.stderr[-3000:]
    assert "interrupted" in out.stderr and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert attempts() == [1, 1, 0, 0]
    assert all(holder(catalog, CLIPS, c)[0] is None for c in ids)  # no lease left held

    assert _run(data_root.path, 2, signal.SIGKILL).returncode == -signal.SIGKILL  # the second clip again
    assert attempts() == [1, 2, 0, 0]

    # the next run, with two deaths allowed per clip, gives up that clip alone and extracts the rest
    cfg = FeaturesConfig(clip_model="tiny", pretrained=None, codec="tiny", clip_s=4, clips_per_shard=4)
    result = run_features(data_root, catalog.url, cfg, lease=LeasePolicy(max_attempts=2))
    assert result["done"] == 3 and list(result["failed"]) == [ids[1]], result
    with catalog.session() as s:
        runs = {r.key: (r.status, r.error) for r in s.scalars(select(Run).where(Run.stage == "features"))}
    assert runs[ids[1]][0] == "failed" and "2 workers died while on it" in runs[ids[1]][1]
    assert all(runs[c] == ("done", None) for c in (ids[0], ids[2], ids[3]))
    assert attempts() == [0, 0, 0, 0]

    capsys.readouterr()
    assert main(["export", "--root", str(data_root.path), "--name", "v1", "--test-fraction", "0.3"]) == 0
    assert f"1 accepted clips have no features and are left out: {ids[1]}" in capsys.readouterr().err
    m = pd.read_parquet(data_root.export_dir("v1") / "manifest.parquet")
    assert sorted(m.clip_id) == [ids[0], ids[2], ids[3]] and m.shard.notna().all()


def test_a_features_run_refused_by_a_busy_store_prints_one_clear_line(data_root, catalog, clip_factory,
                                                                       prefect_harness):
    add_clips(catalog, data_root, clip_factory(4.0, cut_every_s=2.0), {"a": ("q1", 1)})
    with file_lock(data_root.features_dir / ".lock"):  # another features run (or an export) writes the store
        out = subprocess.run([sys.executable, "-m", "flows.cli", "features", "--root", str(data_root.path),
                              "--clip-model", "tiny", "--codec", "tiny"], env=cli_env(), capture_output=True,
                             text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("features: another process"), out.stderr
    assert "when it has finished" in lines[0]
