"""Curate five 70 s sources served on loopback; compare the flow with its tools run directly.

    python benchmarks/bench_curate.py [--sources 5] [--seconds 70] [--size 640x360]

Prints, per source: the tools run directly on the same files in sequence (yt-dlp CLI, audio decode
+ loudness, the ffmpeg cut, QC decode), the flow with one worker (overhead = the difference), and
the flow with several workers (concurrency). Prefect's temporary-server start is timed once, apart.
Goal (issue 2): overhead under 2 s per source after the first.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline: no telemetry calls

from dvmset.catalog import Catalog  # noqa: E402
from dvmset.layout import DataRoot  # noqa: E402
from flows.curation.curate import CurateConfig, run_curate  # noqa: E402
from flows.demos.small import serve_directory  # noqa: E402
from pipeline import qc  # noqa: E402
from pipeline.clip import cut_clip, plan_clips  # noqa: E402
from pipeline.probe import probe  # noqa: E402
from pipeline.process import process_audio  # noqa: E402
from pipeline.synth import make_sample_video  # noqa: E402


def tools_direct(url: str, work: Path, clip_s: float) -> dict[str, float]:
    """The same work as one source of the flow, each tool called directly, no Prefect, no catalog."""
    t = {}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "yt_dlp", "-q", "--no-progress", "--write-info-json",
                    "-o", str(work / "%(id)s.%(ext)s"), url], check=True)
    media = next(p for p in work.glob("*.mp4"))
    t["yt-dlp"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    info = probe(media)
    music = process_audio(media, work, target_lufs=CurateConfig().target_lufs).music_path  # as the flow does
    t["audio+loudness"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    clips = [work / f"clip-{i}.mp4" for i, _ in enumerate(plan_clips(info.duration_s, clip_s))]
    for dest, span in zip(clips, plan_clips(info.duration_s, clip_s), strict=True):
        cut_clip(media, music, span, dest)
    t["ffmpeg cut"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for c in clips:
        qc.qc_clip(c)
    t["qc"] = time.perf_counter() - t0
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=70.0)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--workers", type=int, default=max(2, min(4, os.cpu_count() or 1)))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-curate-") as tmp:
        tmp = Path(tmp)
        media_dir = tmp / "media"
        t0 = time.perf_counter()
        for i in range(args.sources):
            make_sample_video(media_dir / f"src{i}.mp4", args.seconds, size=args.size, cut_every_s=3 + i)
        print(f"made {args.sources} × {args.seconds:g} s {args.size} sources in {time.perf_counter() - t0:.1f} s")

        with serve_directory(media_dir) as base:
            urls = [f"{base}/src{i}.mp4" for i in range(args.sources)]

            direct: list[dict[str, float]] = []
            for i, url in enumerate(urls):
                (tmp / f"direct{i}").mkdir()
                direct.append(tools_direct(url, tmp / f"direct{i}", 60.0))
            direct_total = sum(sum(d.values()) for d in direct)

            def run_flow(name: str, workers: int, these: list[str]) -> float:
                root = DataRoot(tmp / name).ensure()
                cat = Catalog(root.catalog_url)
                t0 = time.perf_counter()
                out = run_curate(root, cat.url, urls=these, cfg=CurateConfig(separator="none", workers=workers))
                took = time.perf_counter() - t0
                if these and out["done"] != len(these):
                    raise SystemExit(f"flow failed: {out}")
                return took

            startup = run_flow("warmup", 1, [])  # the first flow run starts Prefect's temporary server
            serial = run_flow("serial", 1, urls)
            parallel = run_flow("parallel", args.workers, urls)

    n = args.sources
    print("\ntools run directly, mean per source:")
    for stage in direct[0]:
        print(f"  {stage:<16} {sum(d[stage] for d in direct) / n:6.2f} s")
    print(f"  {'total':<16} {direct_total / n:6.2f} s")
    print(f"\nPrefect start-up (once):        {startup:6.2f} s")
    print(f"flow, 1 worker, per source:     {serial / n:6.2f} s   ratio to direct {serial / direct_total:5.2f}×")
    print(f"  project overhead per source:  {(serial - direct_total) / n:6.2f} s   (goal < 2 s)")
    print(f"flow, {args.workers} workers, per source:    {parallel / n:6.2f} s   "
          f"speed-up over 1 worker {serial / parallel:5.2f}× on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
