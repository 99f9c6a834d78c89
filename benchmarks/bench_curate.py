"""Curate sources served on loopback; compare the flow with its tools run directly, or measure throughput.

    python benchmarks/bench_curate.py [--sources 5] [--seconds 70] [--size 640x360]
    python benchmarks/bench_curate.py --long [--sources 3] [--seconds 200] [--size 1280x720]

Default mode prints, per source: the tools run directly on the same files in sequence (yt-dlp CLI,
audio decode + loudness, the cut and QC in one decode), the flow with one worker (overhead = the
difference), and the flow with several workers (concurrency). Prefect's temporary-server start is
timed once, apart. Goal (issue 2): overhead under 2 s per source after the first.

``--long`` (issue 20): longer, realistic sources (minutes of 720p with film grain, a hard cut every few
seconds, several 60 s clips each), every source curated by the tools twice in the same run, in
alternating order: the two-pass path (cut, then QC decodes the clip again; four ffprobes per clip)
and the one-pass path (one decode feeds the encoder and QC; probes once per source). It prints the
tools' time per source of each and the change (goal: down by a fifth), and sources/hour and
clips/hour **per core**, from CPU time (this process and its ffmpeg/yt-dlp children: user + system),
with each stage's share. Per core = 3600 / CPU-seconds per item: what one core sustains when every
core runs a worker, independent of how many threads ffmpeg spreads one job over.
"""

from __future__ import annotations

import argparse
import os
import resource
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
from pipeline.media import run_ffmpeg  # noqa: E402
from pipeline.probe import probe  # noqa: E402
from pipeline.process import process_audio  # noqa: E402
from pipeline.synth import make_sample_video  # noqa: E402


def _cpu_s() -> float:
    """CPU seconds used so far by this process and its finished children (user + system)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class _Stages:
    """Wall and CPU seconds per named stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._at: tuple[float, float] | None = None
        self._name: str | None = None

    def start(self, name: str) -> None:
        self.stop()
        self._name, self._at = name, (time.perf_counter(), _cpu_s())

    def stop(self) -> None:
        if self._name is not None and self._at is not None:
            self.wall[self._name] = self.wall.get(self._name, 0.0) + time.perf_counter() - self._at[0]
            self.cpu[self._name] = self.cpu.get(self._name, 0.0) + _cpu_s() - self._at[1]
        self._name = self._at = None


def tools_direct(url: str, work: Path, clip_s: float, *, one_pass: bool = True,
                 max_clips: int | None = None) -> _Stages:
    """The same work as one source of the flow, each tool called directly, no Prefect, no catalog.

    ``one_pass`` False is the path before issue 20: cut, then QC probes and decodes the clip again,
    with ffprobes of the source and music inside every cut and of the clip after it."""
    t = _Stages()
    t.start("yt-dlp")
    subprocess.run([sys.executable, "-m", "yt_dlp", "-q", "--no-progress", "--write-info-json",
                    "-o", str(work / "%(id)s.%(ext)s"), url], check=True)
    media = next(p for p in work.glob("*.mp4"))

    t.start("audio+loudness")
    info = probe(media)
    music = process_audio(media, work, target_lufs=CurateConfig().target_lufs,  # as the flow does
                          info=info if one_pass else None).music_path
    spans = plan_clips(info.duration_s, clip_s, max_clips=max_clips)
    clips = [work / f"clip-{i}.mp4" for i, _ in enumerate(spans)]
    if one_pass:
        t.start("cut + qc (one decode)")
        music_info = probe(music)
        for dest, span in zip(clips, spans, strict=True):
            cut = cut_clip(media, music, span, dest, source_info=info, music_info=music_info, analyse=True)
            qc.qc_clip(dest, decoded=cut.decoded, peaks_path=dest.with_suffix(".peaks.npy"))
    else:
        t.start("ffmpeg cut")
        for dest, span in zip(clips, spans, strict=True):
            cut_clip(media, music, span, dest)
        t.start("qc (decodes again)")
        for c in clips:
            qc.qc_clip(c, peaks_path=c.with_suffix(".peaks.npy"))
    t.stop()
    t.wall["clips"] = t.cpu["clips"] = float(len(clips))
    return t


def make_long_source(dest: Path, seconds: float, size: str, cut_every_s: float, loop_s: float | None = 8.0,
                     grain: int = 4) -> Path:
    """A realistic-to-encode source: moving test pattern with film grain (x264 cannot predict noise), a hue
    flip every ``cut_every_s`` s, 30 fps, music-like audio (chord + kick + hiss), H.264 at ~3 Mbit/s (a
    web video's 720p rate) + AAC. ``loop_s`` of it
    are made and repeated to ``seconds`` without re-encoding (making minutes of 720p grain is slow); None
    makes all of it. ``grain`` 0: no grain (quick to make, easier to encode than real footage).
    Note: the two-pass path refused a window of a looped source (1501 frames for 1500, x264's -r 25 CFR
    on the copy-looped timestamps); not investigated yet."""
    loop_s = seconds if loop_s is None else min(loop_s, seconds)
    noise = f"noise=alls={grain}:allf=t," if grain else ""
    expr = ("0.15*sin(2*PI*220*t)+0.1*sin(2*PI*275*t)+0.1*sin(2*PI*330*t)+0.6*exp(-25*mod(t,0.5))*sin(2*PI*55*t)"
            "+0.05*(random(0)-0.5)")
    part = dest.with_suffix(".part.mp4")
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={loop_s}",
                "-f", "lavfi", "-i", f"aevalsrc='{expr}':s=44100:c=stereo:d={loop_s}",
                "-vf", f"hue=h='180*mod(floor(t/{cut_every_s}),2)',{noise}format=yuv420p",
                "-c:v", "libx264", "-preset", "veryfast", "-b:v", "3M", "-maxrate", "4M", "-bufsize", "6M",
                "-g", "60", "-c:a", "aac", "-b:a", "128k",
                str(part)], stage="bench")  # fmt: skip
    if loop_s < seconds:
        run_ffmpeg(["-stream_loop", "-1", "-i", str(part), "-t", f"{seconds}", "-c", "copy", str(dest)], stage="bench")
        part.unlink()
    else:
        part.rename(dest)
    return dest


def long_mode(args: argparse.Namespace) -> None:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-curate-long-") as tmp:
        tmp = Path(tmp)
        media_dir = tmp / "media"
        media_dir.mkdir()
        t0 = time.perf_counter()
        for i in range(args.sources):
            make_long_source(media_dir / f"long{i}.mp4", args.seconds, args.size, 3.0 + i,
                             None if args.grain == 0 else 8.0, args.grain)
        print(f"made {args.sources} x {args.seconds:g} s {args.size} sources in {time.perf_counter() - t0:.1f} s")
        runs: dict[bool, list[_Stages]] = {False: [], True: []}
        with serve_directory(media_dir) as base:
            warm = tmp / "warm"
            warm.mkdir()
            make_sample_video(media_dir / "warm.mp4", 3.0, size="160x120")
            tools_direct(f"{base}/warm.mp4", warm, 2.0)  # imports (cv2, scenedetect, pyloudnorm) not timed
            for i in range(args.sources):
                for one_pass in ((False, True) if i % 2 == 0 else (True, False)):  # alternate: load drift cancels
                    work = tmp / f"{'one' if one_pass else 'two'}{i}"
                    work.mkdir()
                    runs[one_pass].append(tools_direct(f"{base}/long{i}.mp4", work, 60.0, one_pass=one_pass,
                                                       max_clips=args.max_clips))
    n = args.sources
    clips = sum(r.wall["clips"] for r in runs[True]) / n
    print(f"\n{n} sources x {args.seconds:g} s {args.size}, {clips:g} clips of 60 s each; os.cpu_count() = "
          f"{os.cpu_count()}; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, at end "
          f"{os.getloadavg()[0]:.2f} (a shared machine: the ratios, measured in the same run, are what count)")
    totals = {}
    for one_pass, name in ((False, "before: two passes (cut, then QC decodes the clip)"),
                           (True, "after: one decode feeds the encoder and QC")):
        rs = runs[one_pass]
        stages = [k for k in rs[0].wall if k != "clips"]
        wall = {k: sum(r.wall[k] for r in rs) / n for k in stages}
        cpu = {k: sum(r.cpu[k] for r in rs) / n for k in stages}
        tw, tc = sum(wall.values()), sum(cpu.values())
        totals[one_pass] = (tw, tc)
        print(f"\n{name}, mean per source:")
        print(f"  {'stage':<24} {'wall s':>8} {'CPU s':>8} {'share of CPU':>13}")
        for k in stages:
            print(f"  {k:<24} {wall[k]:8.2f} {cpu[k]:8.2f} {100 * cpu[k] / tc:12.1f} %")
        print(f"  {'total':<24} {tw:8.2f} {tc:8.2f}")
        print(f"  per core: {3600 / tc:7.1f} sources/hour, {3600 * clips / tc:7.1f} clips/hour "
              f"({tc / clips:.2f} CPU-s per clip; {tc / args.seconds:.3f} CPU-s per source second)")
    (bw, bc), (aw, ac) = totals[False], totals[True]
    print(f"\ntools' time per source, after vs before: wall {aw:.2f} / {bw:.2f} s = {aw / bw:.2f}x "
          f"({100 * (1 - aw / bw):+.1f} % saved), CPU {ac:.2f} / {bc:.2f} s = {ac / bc:.2f}x "
          f"({100 * (1 - ac / bc):+.1f} % saved); goal: at least 20 % saved")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=70.0)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--workers", type=int, default=max(2, min(4, os.cpu_count() or 1)))
    ap.add_argument("--long", action="store_true", help="throughput on long 720p sources, before vs after")
    ap.add_argument("--max-clips", type=int, default=None, help="--long: at most this many clips per source")
    ap.add_argument("--grain", type=int, default=4, help="--long: film grain strength; 0: none, made whole, unlooped")
    args = ap.parse_args()
    if args.long:
        if "--seconds" not in sys.argv:
            args.seconds = 200.0
        if "--size" not in sys.argv:
            args.size = "1280x720"
        if "--sources" not in sys.argv:
            args.sources = 3
        long_mode(args)
        return

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
                direct.append({k: v for k, v in tools_direct(url, tmp / f"direct{i}", 60.0).wall.items()
                               if k != "clips"})
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
