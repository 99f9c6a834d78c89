"""A benchmark given as ids, on loopback: `bench import` → `curate --from-release` cuts exactly the listed
windows → `evaluate` scores the rebuilt clips."""

from __future__ import annotations

import json
import subprocess

import pytest
from sharing_helpers import cli_main

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from dvmset.tables import Clip
from flows.demos.small import serve_directory
from pipeline.audio import load_audio
from pipeline.download import source_id
from pipeline.loudness import integrated_loudness
from pipeline.synth import make_sample_video

pytestmark = pytest.mark.slow


def test_a_benchmark_given_as_ids_rebuilds_into_clips_that_evaluate_scores(tmp_path, prefect_harness, capsys):
    served = tmp_path / "served"
    served.mkdir()
    make_sample_video(tmp_path / "a.mp4", 30, size="96x64", fps=25, bpm=100)
    make_sample_video(tmp_path / "b.mp4", 20, size="96x64", fps=25, bpm=130, tone_hz=330)
    for src, name, gain_db in (("a", "vidA", -10), ("b", "vidB", -6)):  # quieter than -14 LUFS, each its own
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(tmp_path / f"{src}.mp4"), "-c:v", "copy",
                        "-af", f"volume={gain_db}dB", "-c:a", "aac", "-b:a", "128k", str(served / f"{name}.mp4")],
                       check=True)
    root = DataRoot(tmp_path / "root")
    with serve_directory(served) as base:
        # V2M-Bench style, a video id and a window per row; on loopback each row names its URL, and the id is
        # the one the downloader gives a direct file (a YouTube id is its own)
        url = {n: f"{base}/{n}.mp4" for n in ("vidA", "vidB")}
        vid = {n: source_id({"id": n, "extractor_key": "Generic", "webpage_url": u}, u) for n, u in url.items()}
        ids = tmp_path / "bench.csv"
        ids.write_text("youtube_id,start,end,url\n" + "".join(
            f"{vid[n]},{a},{b},{url[n]}\n" for n, a, b in (("vidA", 2, 12), ("vidA", 15, 25), ("vidB", 4, 14))))
        assert cli_main(["bench", "import", "--ids", str(ids), "--out", str(tmp_path / "rel")]) == 0
        code = cli_main(["curate", "--root", str(root.path), "--from-release", str(tmp_path / "rel" / "release.csv"),
                         "--workers", "2", "--allow-private-urls"])  # served on loopback
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rebuilt 3 clips matching the release, 0 different, 0 gone" in out
    with Catalog(root.catalog_url).session() as s:
        got = {c.id: (c.start_s, c.duration_s, c.split, c.status) for c in s.query(Clip)}
    a, b = vid["vidA"], vid["vidB"]
    assert got == {f"{a}-00002": (2.0, 10.0, "test", "accepted"), f"{a}-00015": (15.0, 10.0, "test", "accepted"),
                   f"{b}-00004": (4.0, 10.0, "test", "accepted")}  # the windows exactly as listed

    # no loudness change: each clip's audio is the source window's, at its level (not brought to -14 LUFS)
    for n, (a_s, b_s) in (("vidA", (2, 12)), ("vidA", (15, 25)), ("vidB", (4, 14))):
        src, sr = load_audio(served / f"{n}.mp4", sr=48000, channels=2)
        want = integrated_loudness(src[:, a_s * sr:b_s * sr], sr)
        clip, _ = load_audio(root.clip_path(f"{vid[n]}-{a_s:05d}"), sr=48000, channels=2)
        got = integrated_loudness(clip, sr)
        assert abs(got - want) < 0.1, (n, a_s, got, want)
        assert abs(want - (-14.0)) > 1.0  # the test can tell: normalising would have moved it by over 1 LU
    with Catalog(root.catalog_url).session() as s:
        steps = {st["step"]: st for c in s.query(Clip) for st in c.lineage["steps"]}
    assert steps["loudness"]["tool"] == "none" and steps["loudness"]["params"] == {"target_lufs": "none"}
    assert steps["separate"]["params"]["model"] == "none"

    clips = root.clips_dir  # any system's outputs named by these clip ids would be scored the same way
    assert cli_main(["evaluate", "--generated", str(clips), "--reference", str(clips), "--out", str(tmp_path / "ev"),
                     "--metrics", "bcs_bhs"]) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["clips"]["scored"] == 3 and report["metrics"]["bcs_bhs"]["n"] == 3
    assert report["metrics"]["bcs_bhs"]["value"] == 1.0  # the real music against itself
