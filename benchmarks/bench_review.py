"""Review-tool latency: p50/p95 of the next-clip and decision requests with a large queue.

Run by hand:  python benchmarks/bench_review.py [--clips 10000] [--predecided 5000] [--requests 400]
                                                [--clients 32] [--db sqlite|postgres|URL] [--servers N]
It seeds a fresh catalog in a temp dir (clips spread over 47 queries), serves the real app with
uvicorn on loopback in its own process (or N processes on Postgres, the clients spread over them as
a load balancer would), and drives it with httpx clients (one per annotator, in parallel threads).
--db postgres starts a throwaway PostgreSQL cluster (initdb/pg_ctl on PATH); a URL template with
{db} (postgresql+psycopg://user@host/{db}) uses a fresh database on that server.

       python benchmarks/bench_review.py --pair-cost 150 [--db postgres]
prints the SQL statements and CPU one next+decision pair costs the server (request code in-process).

       python benchmarks/bench_review.py --peaks [--peak-clips 6]
times the waveform request of 60 s clips through the real app: from the stored peaks file (what
curation writes) against the first request of a clip without one (decoded by the review command's
decoder, then stored), and prints the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import multiprocessing
import os
import pwd
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import insert, text

from annotation_ui.app import create_app
from dvmset.catalog import Catalog
from dvmset.constants import CLIP_SECONDS, VIDEO_FPS
from dvmset.layout import DataRoot
from dvmset.review import QueuePolicy, add_annotator
from dvmset.tables import Clip, Decision, Source


def seed(catalog: Catalog, n_clips: int, n_decided: int, annotator_id: int) -> None:
    per_source = 5
    n_sources = (n_clips + per_source - 1) // per_source
    now = dt.datetime.now(dt.UTC)
    with catalog.session() as s:
        s.execute(insert(Source), [
            {"id": f"src{i:06d}", "url": f"https://example.org/{i}", "status": "done", "query": f"query {i % 47}",
             "title": f"video {i}", "created_at": now, "updated_at": now} for i in range(n_sources)])
        s.execute(insert(Clip), [
            {"id": f"src{i // per_source:06d}-{(i % per_source) * 60:05d}", "source_id": f"src{i // per_source:06d}",
             "start_s": (i % per_source) * 60.0, "duration_s": 60.0,
             "status": "accepted" if i < n_decided else "pending_review",
             "silence_ratio": 0.01, "static_ratio": 0.1, "scene_cuts": 5, "loudness_lufs": -14.0,
             "vocal_energy": 0.02, "created_at": now, "updated_at": now} for i in range(n_clips)])
        s.execute(insert(Decision), [
            {"clip_id": f"src{i // per_source:06d}-{(i % per_source) * 60:05d}", "annotator_id": annotator_id,
             "verdict": "accept", "reasons": [], "seconds_spent": 12.0, "created_at": now} for i in range(n_decided)])


def drive(base: str, token: str, n: int, t_next: list[float], t_decide: list[float], think_s: float = 0.0,
          seed: int = 0) -> None:
    """``n`` next+decide pairs; between clips a pause drawn around ``think_s`` (an annotator listening)."""
    rng = random.Random(seed)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        for _ in range(n):
            if think_s:
                time.sleep(rng.expovariate(1.0 / think_s))
            t0 = time.perf_counter()
            r = c.get("/api/next")
            t1 = time.perf_counter()
            r.raise_for_status()
            clip = r.json()["clip"]
            if clip is None:
                return
            r = c.post("/api/decisions", json={"clip_id": clip["id"], "verdict": "accept", "seconds_spent": 1.0})
            t2 = time.perf_counter()
            r.raise_for_status()
            t_next.append(t1 - t0)
            t_decide.append(t2 - t1)


def _serve(root: str, url: str, port: int) -> None:
    data_root = DataRoot(Path(root))
    app = create_app(data_root, Catalog(url), QueuePolicy())
    # keep-alive past the longest pause between an annotator's clips: uvicorn's 5 s default closed idle
    # connections under the clients as they sent their next request (a reset, not a latency)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_keep_alive=300)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_up(base: str, proc: multiprocessing.Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.is_alive():
        try:
            httpx.get(f"{base}/login", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("review server did not start")


def pct(xs: list[float], q: float) -> float:
    return 1000 * statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 else 1000 * xs[0]


def bench_peaks(n_clips: int) -> None:
    """p50 of the peaks request: stored file vs first request without one (decode + store), same run."""
    from fastapi.testclient import TestClient

    from flows.commands.review import peaks_decoder
    from pipeline.synth import make_sample_video

    with tempfile.TemporaryDirectory() as tmp:
        root = DataRoot(Path(tmp) / "root").ensure()
        catalog = Catalog(root.catalog_url)
        media = make_sample_video(Path(tmp) / "clip.mp4", float(CLIP_SECONDS), size="320x240", fps=VIDEO_FPS)
        now = dt.datetime.now(dt.UTC)
        ids = [f"src000000-{i * CLIP_SECONDS:05d}" for i in range(n_clips)]
        with catalog.session() as s:
            s.execute(insert(Source), [{"id": "src000000", "url": "https://example.org/0", "status": "done",
                                        "query": "q", "title": "t", "created_at": now, "updated_at": now}])
            s.execute(insert(Clip), [{"id": c, "source_id": "src000000", "start_s": i * float(CLIP_SECONDS),
                                      "duration_s": float(CLIP_SECONDS),
                                      "status": "pending_review", "created_at": now, "updated_at": now}
                                     for i, c in enumerate(ids)])
            _, token = add_annotator(s, "bench")
        for c in ids:
            root.clip_path(c).write_bytes(media.read_bytes())
        client = TestClient(create_app(root, catalog, compute_peaks=peaks_decoder()))
        client.app.state.review.warmer.close()  # time the requests alone, not the background fill-in
        h = {"Authorization": f"Bearer {token}"}

        def timed(c: str) -> float:
            t0 = time.perf_counter()
            r = client.get(f"/api/clips/{c}/peaks", params={"n": 960}, headers=h)
            dt_s = time.perf_counter() - t0
            r.raise_for_status()
            return dt_s

        first = [timed(c) for c in ids]  # no file yet: decode, store
        stored = [timed(c) for c in ids for _ in range(5)]  # the file curation (or the first request) wrote
        catalog.dispose()
    p_first, p_stored = statistics.median(first), statistics.median(stored)
    print(f"peaks of a 60 s clip, n=960, {n_clips} clips: first request without a stored file "
          f"p50 {1000 * p_first:.1f} ms; from the stored file p50 {1000 * p_stored:.2f} ms "
          f"({p_first / p_stored:.0f}x faster)")


def bench_pair_cost(db: str, n_pairs: int) -> None:
    """SQL statements and server CPU per next+decision pair of the request code alone (the routes' bodies
    and the token lookups, called in this process: no HTTP, no other client): what each pair costs."""
    from collections import Counter

    from sqlalchemy import event

    from annotation_ui.routes.decisions import DecisionIn, api_decide
    from annotation_ui.routes.queue import next_clip
    from dvmset.review import annotator_for_token

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = DataRoot(Path(tmp) / "root").ensure()
        url = root.catalog_url if db == "sqlite" else _fresh_database(stack.enter_context(postgres_cluster(Path(tmp))))
        catalog = Catalog(url)
        with catalog.session() as s:
            ann, token = add_annotator(s, "bench")
        seed(catalog, 4000, 2000, ann.id)
        ctx = create_app(root, catalog, QueuePolicy()).state.review
        statements: Counter[str] = Counter()
        counting = [False]

        @event.listens_for(catalog.engine, "before_cursor_execute")
        def _count(conn, cursor, statement, *_):  # noqa: ANN001, ANN202 - SQLAlchemy's signature
            if counting[0]:
                statements[" ".join(statement.split())[:90]] += 1

        def pair() -> None:
            with catalog.session() as s:
                who = annotator_for_token(s, token)
            clip, _ = next_clip(ctx, who.id)
            with catalog.session() as s:
                who = annotator_for_token(s, token)
            api_decide(DecisionIn(clip_id=clip["id"], verdict="accept"), ctx, who)

        for _ in range(20):
            pair()
        counting[0] = True
        t0 = time.process_time()
        for _ in range(n_pairs):
            pair()
        cpu = time.process_time() - t0
        counting[0] = False
        catalog.dispose()
    print(f"{db}: {sum(statements.values()) / n_pairs:.1f} SQL statements and {1000 * cpu / n_pairs:.1f} ms of "
          f"CPU per next+decision pair ({n_pairs} pairs, in-process); load average {os.getloadavg()[0]:.1f}")
    for statement, k in statements.most_common():
        print(f"  {k / n_pairs:4.1f}  {statement}")


@contextlib.contextmanager
def postgres_cluster(base: Path) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a Unix socket: yields a URL template with {db}."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        raise SystemExit("--db postgres needs initdb and pg_ctl on PATH (e.g. /usr/lib/postgresql/15/bin)")
    data, sock = base / "pgdata", base / "pgsock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        pw = pwd.getpwnam("postgres")
        for p in (base, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], check=True,
                   capture_output=True)
    opts = f"-k {sock} -c listen_addresses='' -c fsync=off -c max_connections=300"
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", opts, "-w", "-l", str(base / "pg.log"), "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@/{{db}}?host={sock}"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(pgdata: Path) -> float:
    """CPU seconds of a cluster's server and its backends so far (children of its postmaster)."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(postmaster)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parts = stat.read_text().rsplit(")", 1)[1].split()
            if int(parts[1]) == postmaster:
                total += cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


def _fresh_database(template: str) -> str:
    import psycopg

    name = f"bench_review_{os.getpid()}"
    with psycopg.connect(template.replace("postgresql+psycopg", "postgresql").format(db="postgres"),
                         autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return template.format(db=name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peaks", action="store_true", help="time waveform peaks (stored vs computed) instead")
    ap.add_argument("--peak-clips", type=int, default=6, help="clips for --peaks")
    ap.add_argument("--pair-cost", type=int, metavar="N", default=0,
                    help="instead: SQL statements and CPU per next+decision pair over N pairs, in-process (--db)")
    ap.add_argument("--clips", type=int, default=10_000)
    ap.add_argument("--predecided", type=int, default=5_000, help="clips already decided before timing")
    ap.add_argument("--requests", type=int, default=400, help="next+decide pairs per client")
    ap.add_argument("--clients", type=int, default=2, help="annotators working at once")
    ap.add_argument("--db", default="sqlite", help="sqlite (the data root's file), postgres (a throwaway "
                    "cluster) or a Postgres URL template with {db}")
    ap.add_argument("--servers", type=int, default=1, help="review server processes (Postgres only)")
    ap.add_argument("--think", type=float, default=0.0, metavar="S",
                    help="mean pause between clips per client (exponential); 0: back to back, the saturation case")
    ap.add_argument("--status-id-index", action="store_true",
                    help="add an index on clips (status, id) first (proposed for dvmset.tables.Clip)")
    args = ap.parse_args()
    if args.peaks:
        bench_peaks(args.peak_clips)
        return
    if args.pair_cost:
        if args.db not in ("sqlite", "postgres"):
            raise SystemExit("--pair-cost takes --db sqlite or postgres")
        bench_pair_cost(args.db, args.pair_cost)
        return
    if args.servers > 1 and args.db == "sqlite":
        raise SystemExit("--servers > 1 needs Postgres: SQLite takes one writer process at a time")
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = DataRoot(Path(tmp) / "root").ensure()
        if args.db == "sqlite":
            url = root.catalog_url
        elif args.db == "postgres":
            url = _fresh_database(stack.enter_context(postgres_cluster(Path(tmp))))
        else:
            url = _fresh_database(args.db)
        catalog = Catalog(url)
        tokens = []
        with catalog.session() as s:
            for i in range(args.clients):
                ann, tok = add_annotator(s, f"bench{i}")
                tokens.append(tok)
            first_id = ann.id
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        t0 = time.perf_counter()
        seed(catalog, args.clips, args.predecided, first_id)
        if args.status_id_index:
            with catalog.engine.begin() as conn:
                conn.execute(text("CREATE INDEX IF NOT EXISTS ix_clips_status_id ON clips (status, id)"))
        print(f"seeded {args.clips} clips ({args.predecided} decided) in {time.perf_counter() - t0:.1f} s")
        catalog.dispose()
        servers, bases = [], []
        for _ in range(args.servers):  # each its own process: the clients' threads do not share its GIL
            port = _free_port()
            proc = multiprocessing.get_context("spawn").Process(target=_serve, args=(str(root.path), url, port),
                                                                daemon=True)
            proc.start()
            servers.append(proc)
            bases.append(f"http://127.0.0.1:{port}")
        for base, proc in zip(bases, servers, strict=True):
            _wait_up(base, proc)
        t_next: list[float] = []
        t_decide: list[float] = []
        for base in bases:
            drive(base, tokens[0], 10, [], [])  # warm-up
        clients = [threading.Thread(target=drive, args=(bases[i % len(bases)], t, args.requests, t_next, t_decide,
                                                        args.think, i))
                   for i, t in enumerate(tokens)]
        pgdata = Path(tmp) / "pgdata" if args.db == "postgres" else None
        cpu0 = [cpu_seconds(p.pid) for p in servers]
        db0 = postgres_cpu_seconds(pgdata) if pgdata else 0.0
        t0 = time.perf_counter()
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        wall = time.perf_counter() - t0
        server_cpu = sum(cpu_seconds(p.pid) for p in servers) - sum(cpu0)
        db_cpu = postgres_cpu_seconds(pgdata) - db0 if pgdata else float("nan")
        for proc in servers:
            proc.terminate()
            proc.join(timeout=10)
        load = os.getloadavg()
        print(f"{len(t_next)} next + {len(t_decide)} decision requests from {args.clients} clients to "
              f"{args.servers} server process(es) on {args.db.split(':')[0]}, think {args.think:g} s, in {wall:.1f} s "
              f"({len(t_decide) / wall:.0f} decisions/s); load average after {load[0]:.1f} on {os.cpu_count()} CPUs")
        pairs = max(len(t_decide), 1)
        print(f"CPU per next+decision pair: review server {1000 * server_cpu / pairs:.1f} ms"
              + (f", Postgres {1000 * db_cpu / pairs:.1f} ms" if pgdata else " (SQLite runs inside the server)"))
        for name, xs in (("next-clip", t_next), ("decision", t_decide)):
            print(f"{name:9s}  p50 {pct(xs, 50):6.1f} ms   p95 {pct(xs, 95):6.1f} ms   max {1000 * max(xs):6.1f} ms")


if __name__ == "__main__":
    main()
