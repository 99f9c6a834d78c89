"""Release -> rebuild on a fresh root from loopback URLs: the same clip ids and windows, the checksums
match, the release's split and verdict (accepted "from release", no review); a URL gone -> listed as
gone with the download error; a source replaced by a longer file -> "different", saying how; a re-run
redoes nothing."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from sharing_helpers import CLIP_S, accept_all, cli_main, curate_cfg

from dvmset.catalog import Catalog
from dvmset.export import export_dataset
from dvmset.layout import DataRoot
from dvmset.spans import Span, excluded_spans
from dvmset.tables import Annotator, Clip, Decision
from flows.demos.small import serve_directory
from pipeline.synth import make_sample_video

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("served")
    make_sample_video(d / "a.mp4", 45, size="96x64", fps=25, bpm=100)  # two 20 s clips
    make_sample_video(d / "b.mp4", 25, size="96x64", fps=25, bpm=130, tone_hz=330)
    make_sample_video(d / "c.mp4", 25, size="96x64", fps=25, bpm=80, tone_hz=550)
    with serve_directory(d) as base:
        yield base, d


@pytest.fixture(scope="module")
def released(served, tmp_path_factory, prefect_harness):
    """A curated, accepted and exported root with its release."""
    from flows.curation.curate import run_curate

    base, _ = served
    root = DataRoot(tmp_path_factory.mktemp("origin")).ensure()
    cat = Catalog(root.catalog_url)
    assert run_curate(root, cat.url, urls=[f"{base}/{n}.mp4" for n in "abc"], cfg=curate_cfg())["done"] == 3
    first = accept_all(cat)[0]
    with cat.session() as s:  # an annotator left 5-8 s of the first clip out (noise) while accepting the rest
        ann = Annotator(name="ann", token_hash="h")
        s.add(ann)
        s.flush()
        s.add(Decision(clip_id=first, annotator_id=ann.id, verdict="accept", spans=[[5.0, 8.0, "noise"]]))
    summary = export_dataset(root, cat, "r1", test_fraction=0.3, seed=0, release=True)
    assert summary.release is not None
    return root, cat, pd.read_parquet(summary.release)


def _rows(cat: Catalog) -> dict[str, Clip]:
    with cat.session() as s:
        return {c.id: c for c in s.query(Clip)}


def test_the_release_lists_ids_and_windows_and_no_media(released):
    root, _, rel = released
    assert len(rel) == 4 and set(rel.split) == {"train", "valid", "test"}  # three videos: one in each
    assert (rel.duration_s == CLIP_S).all() and rel.music_sha256.str.len().eq(64).all()
    assert rel.music_fingerprint.str.startswith("cp1:").all() and (rel.verdict.isna() | (rel.verdict == "accept")).all()
    files = {p.name for p in root.export_dir("r1").iterdir()}
    assert {"release.parquet", "release.csv", "release.json"} <= files
    meta = json.loads((root.export_dir("r1") / "release.json").read_text())
    assert meta["processing"] == {"separator": ["none"], "target_lufs": [-14.0], "fps": [25]}
    assert {s["step"] for s in meta["steps"]} >= {"download", "separate", "loudness", "clip", "qc", "fingerprint"}
    assert "## Release" in (root.export_dir("r1") / "DATASET.md").read_text()


def test_rebuild_on_a_fresh_root_gives_the_same_clips_and_music(released, tmp_path, capsys):
    origin_root, origin_cat, rel = released
    release_file = origin_root.export_dir("r1") / "release.csv"  # the CSV is as good as the parquet
    fresh = DataRoot(tmp_path / "fresh")
    code = cli_main(["curate", "--root", str(fresh.path), "--from-release", str(release_file), "--workers", "2",
                     "--allow-private-urls"])  # the loopback server stands in for the web
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rebuilt 4 clips matching the release, 0 different, 0 gone, 0 invalid" in out

    cat = Catalog(fresh.catalog_url)
    rebuilt, original = _rows(cat), _rows(origin_cat)
    assert sorted(rebuilt) == sorted(rel.clip_id)
    for r in rel.itertuples():
        c = rebuilt[r.clip_id]
        assert (c.start_s, c.duration_s) == (r.start_s, r.duration_s)  # exactly the listed windows
        assert c.music_sha256 == r.music_sha256 == original[r.clip_id].music_sha256
        assert (c.status, c.split, c.origin) == ("accepted", r.split, "release")
        assert fresh.clip_path(r.clip_id).is_file()
    with cat.session() as s:
        assert s.query(Decision).count() == 0  # not reviewed again
        spanned = rel[rel.excluded_spans.notna()]
        assert len(spanned) == 1 and json.loads(spanned.excluded_spans.iloc[0]) == [[5.0, 8.0, "noise"]]
        # the release's spans hold on the rebuilt clip: its exports serve the same training windows
        assert excluded_spans(s) == {spanned.clip_id.iloc[0]: [Span(5.0, 8.0, "noise")]}
    report = json.loads((fresh.path / "rebuilds" / "r1.json").read_text())
    assert report["counts"] == {"matching": 4, "different": 0, "gone": 0, "invalid": 0, "refused": 0, "held": 0}

    mtimes = {p: p.stat().st_mtime_ns for p in fresh.clips_dir.glob("*.mp4")}
    assert cli_main(["curate", "--root", str(fresh.path), "--from-release", str(release_file),
                     "--allow-private-urls"]) == 0
    assert "rebuilt 4 clips matching" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in fresh.clips_dir.glob("*.mp4")} == mtimes  # resumed: nothing redone


def test_a_vanished_video_is_gone_and_a_longer_reupload_is_different(served, released, tmp_path, prefect_harness):
    from flows.curation.rebuild import run_rebuild

    origin_root, _, rel = released
    _, served_dir = served
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(served_dir / "b.mp4", moved / "b.mp4")
    shutil.move(served_dir / "c.mp4", moved / "c.mp4")
    make_sample_video(served_dir / "c.mp4", 35, size="96x64", fps=25, bpm=80, tone_hz=550)  # same start, longer
    try:
        fresh = DataRoot(tmp_path / "fresh2")
        report = run_rebuild(fresh, fresh.catalog_url, origin_root.export_dir("r1") / "release.parquet",
                             cfg=curate_cfg(), allow_private_urls=True)
    finally:
        (served_dir / "c.mp4").unlink()
        shutil.move(moved / "b.mp4", served_dir / "b.mp4")
        shutil.move(moved / "c.mp4", served_dir / "c.mp4")
    by_video = {}
    for c in report["clips"]:
        by_video.setdefault(c["video_id"].split("-")[0], []).append(c)
    assert [c["outcome"] for c in by_video["a"]] == ["matching", "matching"]
    (gone,) = by_video["b"]
    assert gone["outcome"] == "gone" and "404" in gone["detail"]
    (diff,) = by_video["c"]
    assert diff["outcome"] == "different"
    assert "now 35.0 s long, 25.0 s when released" in diff["detail"] and "music" in diff["detail"]
    assert report["counts"] == {"matching": 2, "different": 1, "gone": 1, "invalid": 0, "refused": 0, "held": 0}
    assert set(rel.clip_id) == {c["clip_id"] for c in report["clips"]}


def test_a_video_another_run_holds_is_left_to_it_before_any_download(released, tmp_path, capsys):
    """rebuild takes the source lease (as curate does): a video under a live lease of another run is
    reported held and nothing of it is fetched; once that run lets go, a re-run rebuilds it."""
    from dvmset import leases, sources
    from dvmset.records import SourceStatus

    origin_root, _, rel = released
    release_file = origin_root.export_dir("r1") / "release.parquet"
    fresh = DataRoot(tmp_path / "fresh").ensure()
    cat = Catalog(fresh.catalog_url)
    held = rel.video_id.iloc[0]
    sources.upsert_source(cat, held, url=rel.url.iloc[0])
    holder = leases.new_owner()  # this test process: alive, on this host
    assert leases.claim(cat, leases.SOURCES, [held], holder).claimed == [held]
    code = cli_main(["curate", "--root", str(fresh.path), "--from-release", str(release_file), "--workers", "2",
                     "--allow-private-urls"])
    out = capsys.readouterr().out
    n_held = int((rel.video_id == held).sum())
    assert code == 1 and f"{n_held} held (another run has the video" in out, out
    assert not (fresh.sources_dir / held).exists()  # never downloaded
    assert leases.holder(cat, leases.SOURCES, held)[0] == holder  # still theirs
    with cat.session() as s:
        assert s.get(sources.Source, held).status == SourceStatus.PENDING

    leases.finish(cat, leases.SOURCES, held, holder)
    assert cli_main(["curate", "--root", str(fresh.path), "--from-release", str(release_file), "--workers", "2",
                     "--allow-private-urls"]) == 0, capsys.readouterr().out
    with cat.session() as s:
        assert s.get(sources.Source, held).status == SourceStatus.DONE
        assert s.get(sources.Source, held).lease_owner is None
    cat.dispose()


def test_a_release_in_parts_rebuilds_as_the_single_files_do(released, tmp_path, capsys):
    """A large export's release is a folder of parts (dvmset.release_layout): --from-release takes the CSV
    folder and rebuilds every clip, matching."""
    from dvmset import release_layout
    from dvmset.release import write_release

    origin_root, _, rel = released
    meta = json.loads((origin_root.export_dir("r1") / "release.json").read_text())
    write_release(tmp_path / "r1", rel, name="r1", extra={k: meta[k] for k in ("split", "steps")}, per_part=1)
    folder = tmp_path / "r1" / "release.csv"
    assert len(release_layout.part_files(folder)) == len(rel)  # one clip a part
    fresh = DataRoot(tmp_path / "fresh")
    code = cli_main(["curate", "--root", str(fresh.path), "--from-release", str(folder), "--workers", "2",
                     "--allow-private-urls"])
    out = capsys.readouterr().out
    assert code == 0 and "rebuilt 4 clips matching the release, 0 different, 0 gone, 0 invalid" in out, out
    assert sorted(_rows(Catalog(fresh.catalog_url))) == sorted(rel.clip_id)
