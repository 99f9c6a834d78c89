"""The server path (deployment + process worker + catalog leases) against the embedded in-process run,
on the same loopback-served sources, in one run.

    python benchmarks/bench_server.py [--sources 6] [--clips 3]

Starts `prefect server start` on a free loopback port (its own SQLite database; Postgres in
production), `vidmusician deploy`, and process workers on the CPU pool; start-ups are timed apart.
Each of the embedded run (1 and 2 threads) and the server path (1 and 2 workers; a fresh data root
each, separator off) curates N and 3N sources: the slope between the two is the cost per source once
a run is started, apart from its start-up (a flow run on a process worker is a new Python process
importing torch and Prefect). Prints the server's overhead per source after start-up (goal: under
1 s) and the speed-up of two threads and of two workers over one (goal: two workers at least as much
faster than one as two threads are).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline: no telemetry calls

from dvmset.catalog import Catalog  # noqa: E402
from dvmset.layout import DataRoot  # noqa: E402
from flows.config import CurateConfig  # noqa: E402
from flows.curation.curate import run_curate  # noqa: E402
from flows.demos.small import serve_directory  # noqa: E402
from pipeline.synth import make_sample_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SETTINGS = {"separator": "none", "clip_seconds": 2.0, "download_retries": 1}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    raise SystemExit(f"prefect server did not start:\n{log.read_text()[-2000:]}")


def embedded(urls: list[str], base: Path, threads: int) -> float:
    root = DataRoot(base / f"embedded-{threads}").ensure()
    t0 = time.perf_counter()
    out = run_curate(root, root.catalog_url, urls=urls, per_query=0, cfg=CurateConfig(**SETTINGS, workers=threads))
    assert out["done"] == len(urls), out
    return time.perf_counter() - t0


def served_path(urls: list[str], root: DataRoot, api: str, runs: int) -> float:
    """Wall time of ``runs`` flow runs of the curate deployment over the same sources, started together."""
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    params = {"urls": urls, "per_query": 0, "settings": {**SETTINGS, "workers": 1}}
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        t0 = time.perf_counter()
        ids = [run_deployment("vidmusician-curate/curate", parameters=params, timeout=0, as_subflow=False).id
               for _ in range(runs)]
        pending = set(ids)
        while pending:
            for rid in list(pending):
                state = client.read_flow_run(rid).state
                if state is not None and state.is_final():
                    if state.name != "Completed":
                        raise SystemExit(f"flow run {rid}: {state.name} {state.message}")
                    pending.discard(rid)
            time.sleep(0.25)
        took = time.perf_counter() - t0
    cat = Catalog(root.catalog_url)
    done = cat.counts()["sources"].get("done", 0)
    cat.dispose()
    assert done == len(urls), f"{done} of {len(urls)} sources done"
    return took


def _slope(small: tuple[int, float], large: tuple[int, float]) -> float:
    """Seconds per extra source between two runs: what a run costs per source once it is started."""
    return (large[1] - small[1]) / (large[0] - small[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=6, help="the small run; the large one has three times as many")
    ap.add_argument("--clips", type=int, default=3, help="2 s clips per source")
    args = ap.parse_args()
    sizes = (args.sources, 3 * args.sources)
    base = Path(tempfile.mkdtemp(prefix="bench-server-"))
    media = base / "media"
    media.mkdir()
    for i in range(sizes[1] + 1):
        make_sample_video(media / f"s{i}.mp4", 2 * args.clips + 0.2, size="160x120", fps=25, cut_every_s=1.5,
                          bpm=90 + 5 * (i % 20))
    with serve_directory(media) as web:
        urls = {n: [f"{web}/s{i}.mp4" for i in range(1, n + 1)] for n in sizes}
        t0 = time.perf_counter()
        embedded([f"{web}/s0.mp4"], base / "warm", 1)  # Prefect's temporary server and the imports
        print(f"start-up, embedded (temporary server, first run): {time.perf_counter() - t0:.1f} s")
        emb = {(w, n): embedded(urls[n], base / f"e{n}", w) for w in (1, 2) for n in sizes}

        port, home = _port(), base / "prefect-home"
        api = f"http://127.0.0.1:{port}/api"
        env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false",
               "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{base / 'prefect.db'}"}
        log = base / "server.log"
        t0 = time.perf_counter()
        server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                   str(port), "--no-ui"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        workers: list[subprocess.Popen] = []
        try:
            _wait_healthy(api, server, log)
            print(f"start-up, server: {time.perf_counter() - t0:.1f} s")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "flows.cli", "deploy", "--api", api, "--source", str(REPO)],
                           cwd=REPO, env=env, check=True, capture_output=True)
            print(f"start-up, deploy: {time.perf_counter() - t0:.1f} s")
            srv = {}
            for w in (1, 2):
                for n in sizes:
                    root = DataRoot(base / f"served-{w}-{n}").ensure()
                    Catalog(root.catalog_url).dispose()
                    wenv = {**env, "PREFECT_API_URL": api, "VIDMUSICIAN_ROOT": str(root.path),
                            "PREFECT_WORKER_QUERY_SECONDS": "1", "PYTHONPATH": str(REPO)}
                    wenv.pop("VIDMUSICIAN_DB", None)  # this round's SQLite catalog in its root
                    for old in workers:  # each round's workers serve its own root: start them with its env
                        old.terminate()
                        old.wait()
                    workers = [subprocess.Popen(
                        [str(BIN / "prefect"), "worker", "start", "--pool", "vidmusician-cpu", "--type", "process",
                         "--limit", "1"], env=wenv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        for _ in range(w)]
                    time.sleep(10)  # the workers' own start-up, not the flow's
                    srv[w, n] = served_path(urls[n], root, api, runs=w)
        finally:
            for old in workers:
                old.terminate()
            server.terminate()
            server.wait()
    small, large = sizes
    print(f"\n{small} and {large} sources of {args.clips} clips, separator off; wall seconds, and per source "
          "after start-up (the slope between the two sizes):")
    per = {}
    for name, t in (("embedded", emb), ("server", srv)):
        for w in (1, 2):
            per[name, w] = _slope((small, t[w, small]), (large, t[w, large]))
            unit = "thread" if name == "embedded" else "worker"
            print(f"  {name:8s} {w} {unit}{'s' if w > 1 else ' '}   {t[w, small]:6.1f} s  {t[w, large]:6.1f} s   "
                  f"{per[name, w]:5.2f} s/source   start-up {t[w, small] - small * per[name, w]:5.1f} s")
    print(f"  server overhead per source after start-up, 1 worker: {per['server', 1] - per['embedded', 1]:+.2f} s "
          "(goal: under 1 s)")
    print(f"  speed-up of 2 over 1, per source after start-up: threads {per['embedded', 1] / per['embedded', 2]:.2f}x, "
          f"workers {per['server', 1] / per['server', 2]:.2f}x (goal: workers at least as much as threads)")
    print(f"  speed-up of 2 over 1, wall time at {large} sources: threads {emb[1, large] / emb[2, large]:.2f}x, "
          f"workers {srv[1, large] / srv[2, large]:.2f}x")


if __name__ == "__main__":
    main()
