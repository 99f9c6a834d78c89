"""`demo --full` after curation: accept all, tiny features, export, both stages, long-form music -> an mp4.

The curate step is the one thing swapped: three pending 6 s clips put in the catalog directly (the real
curate demo is tested in tests/flows/test_curate.py and takes minutes); every later stage is the real one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import soundfile as sf
from feature_helpers import add_clips
from sqlalchemy import select

from dvmset.catalog import Catalog
from dvmset.records import ClipStatus
from dvmset.tables import Annotator, Clip, Decision
from flows.demos.full import SHORTCUT_ANNOTATOR, FullDemoConfig, run_full_demo
from pipeline.media import ffprobe_json

CFG = FullDemoConfig(steps_per_stage=4, clip_s=6, gen_seconds=None, gen_window_s=4, gen_stride_s=2)


def _packets(path: Path) -> str:
    out = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                          "-f", "framemd5", "-"], capture_output=True, text=True, check=True).stdout
    return "\n".join(",".join(ln.split(",")[2:]) for ln in out.splitlines() if ln and not ln.startswith("#"))


@pytest.mark.slow
def test_full_demo_after_curation_gives_an_mp4_and_reruns(clip_factory, tmp_path):
    clip = clip_factory(6.0, cut_every_s=1.5)
    calls = []

    def small_curate(root, db_url, say):
        calls.append(db_url)
        if len(calls) == 1:
            cat = Catalog(db_url)
            try:
                add_clips(cat, root, clip, {"src-a": ("city video guide", 1), "src-b": ("food commercial", 1),
                                            "src-c": ("opening title sequence", 1)}, status=ClipStatus.PENDING_REVIEW)
            finally:
                cat.dispose()
        return {"done": 3, "failed": 0}

    lines: list[str] = []
    mp4 = run_full_demo(tmp_path / "root", CFG, say=lines.append, curate=small_curate)
    text = "\n".join(lines)
    assert "WEIGHTS ARE RANDOM" in text and text.count("DEMO SHORTCUT") >= 3
    assert str(mp4) in lines[-1]

    root = tmp_path / "root"
    cat = Catalog(f"sqlite:///{root / 'catalog.sqlite'}")
    try:
        with cat.session() as s:
            assert set(s.scalars(select(Clip.status))) == {ClipStatus.ACCEPTED}
            who = s.scalars(select(Annotator.name).join(Decision, Decision.annotator_id == Annotator.id)).all()
            assert who == [SHORTCUT_ANNOTATOR] * 3  # accepted through the review API, by the shortcut annotator
    finally:
        cat.dispose()
    for stage in (1, 2):
        assert (root / "runs" / "demo" / f"stage{stage}" / "best.pt").is_file()
    video = root / "clips" / f"{mp4.stem}.mp4"
    assert _packets(mp4) == _packets(video)  # the clip's picture, untouched
    dur = float(ffprobe_json(video, stage="test")["format"]["duration"])
    wav = mp4.with_suffix(".wav")
    assert sf.info(wav).frames == round(float(ffprobe_json(video, stage="test")["streams"][0]["duration"]) * 32000)
    assert abs(sf.info(wav).duration - dur) < 0.1
    assert "windows" in text and "4 s windows every 2 s" in text

    lines.clear()
    again = run_full_demo(tmp_path / "root", CFG, say=lines.append, curate=small_curate)  # re-run: reuses work
    assert again == mp4 and "1 already in shards" not in "\n".join(lines)
    assert "3 already in shards" in "\n".join(lines)
