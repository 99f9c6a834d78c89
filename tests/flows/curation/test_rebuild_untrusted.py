"""A hand-edited release through `vidmusician curate --from-release` (issue 22, items 7-9): each bad row is
set aside as invalid with its field and why while the good rows of the same video rebuild, and the
catalog and the report agree; loopback URLs are refused unless --allow-private-urls; a URL that now gives
another video is refused before its media is fetched; no file is fetched twice; path-like ids are stored
nowhere and `takedown` of one changes nothing. The release file itself is never rewritten."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from sharing_helpers import accept_all, cli_main, counting_server, curate_cfg

from dvmset.catalog import Catalog
from dvmset.export import export_dataset
from dvmset.layout import DataRoot
from dvmset.tables import Clip, Source, Takedown
from pipeline.synth import make_sample_video

pytestmark = pytest.mark.slow
ABSOLUTE = "/tmp/vidmusician-absolute-video"  # an absolute path as a video id


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("served-untrusted")
    make_sample_video(d / "a.mp4", 45, size="96x64", fps=25, bpm=100)  # two 20 s clips
    make_sample_video(d / "b.mp4", 25, size="96x64", fps=25, bpm=130, tone_hz=330)
    make_sample_video(d / "c.mp4", 25, size="96x64", fps=25, bpm=80, tone_hz=550)  # never released
    with counting_server(d) as (base, sent):
        yield base, d, sent


@pytest.fixture(scope="module")
def release(served, tmp_path_factory, prefect_harness) -> pd.DataFrame:
    """The released rows of a curated, accepted, exported root (video a: two rows; b: one), as text."""
    from flows.curation.curate import run_curate

    base, _, _ = served
    root = DataRoot(tmp_path_factory.mktemp("origin-untrusted")).ensure()
    cat = Catalog(root.catalog_url)
    assert run_curate(root, cat.url, urls=[f"{base}/a.mp4", f"{base}/b.mp4"], cfg=curate_cfg())["done"] == 2
    accept_all(cat)
    summary = export_dataset(root, cat, "r1", test_fraction=0.5, seed=0, release=True)
    cat.dispose()
    rows = pd.read_csv(summary.release.with_suffix(".csv"), dtype=str, keep_default_na=False)
    assert len(rows) == 3
    return rows


def _write(folder: Path, rows: list[dict]) -> tuple[Path, str]:
    """A release CSV as a person edits one (no release.json beside it); returns it and its sha256."""
    folder.mkdir(parents=True)
    path = folder / "release.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _curate(root: Path, release: Path, *extra: str) -> int:
    return cli_main(["curate", "--root", str(root), "--from-release", str(release), "--workers", "2", *extra])


def _catalog_rows(root: Path) -> tuple[dict[str, Clip], dict[str, Source]]:
    cat = Catalog(DataRoot(root).catalog_url)
    try:
        with cat.session() as s:
            return {c.id: c for c in s.query(Clip)}, {x.id: x for x in s.query(Source)}
    finally:
        cat.dispose()


def test_bad_rows_are_invalid_with_field_and_why_and_the_good_rows_of_their_video_rebuild(release, tmp_path,
                                                                                          capsys):
    good = release.to_dict("records")
    a = good[0]
    vid = a["video_id"]
    bad = [  # rows 4-8, all of video a
        ({**a, "clip_id": f"{vid}-00100", "start_s": "-5"}, "row 4: start_s is '-5', negative"),
        ({**a, "clip_id": f"{vid}-00101", "start_s": "NaN"}, "row 5: start_s is missing (empty or NaN)"),
        ({**a, "clip_id": f"{vid}-00102", "start_s": "abc"}, "row 6: start_s is 'abc', not a number"),
        ({**a, "clip_id": f"{vid}-00103", "duration_s": "1e12"}, "row 7: duration_s is 1e+12, outside (0, 600]"),
        ({**a, "clip_id": f"{vid}-00040", "start_s": "40"}, "row 8: start_s puts the window at 40-60 s, past the video's end"),
    ]
    path, digest = _write(tmp_path / "edited", good + [row for row, _ in bad])
    root = tmp_path / "fresh"

    code = _curate(root, path, "--allow-private-urls")
    out, err = capsys.readouterr()
    assert code == 1, out + err
    out = " ".join(out.split())  # the progress bar's console wraps long lines
    assert "rebuilt 3 clips matching the release, 0 different, 0 gone, 5 invalid" in out
    for row, why in bad:
        assert f"invalid {row['clip_id']}: {why}" in out, out
    assert "Error" not in out + err and "Traceback" not in out + err  # reasons, not raw Python errors
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # the release is not rewritten

    report = json.loads((root / "rebuilds" / "edited.json").read_text())
    assert report["counts"] == {"matching": 3, "different": 0, "gone": 0, "invalid": 5, "refused": 0, "held": 0}
    clips, srcs = _catalog_rows(root)
    outcome = {c["clip_id"]: c["outcome"] for c in report["clips"]}
    assert sorted(outcome) == sorted(r["clip_id"] for r in good + [row for row, _ in bad])
    for cid, what in outcome.items():  # the catalog and the report agree, clip by clip
        if what == "matching":
            assert (clips[cid].status, clips[cid].origin) == ("accepted", "release")
            assert DataRoot(root).clip_path(cid).is_file()
        else:
            assert what == "invalid" and cid not in clips and not DataRoot(root).clip_path(cid).exists()
    assert {s.id: s.status for s in srcs.values()} == {r["video_id"]: "done" for r in good}


def test_loopback_is_refused_without_the_flag_and_another_video_is_never_fetched(release, served, tmp_path,
                                                                                 capsys):
    base, served_dir, sent = served
    good = release.to_dict("records")
    b = next(r for r in good if r["url"].endswith("/b.mp4"))
    start = int(float(b["start_s"]))
    other = {**b, "video_id": "other-video", "clip_id": f"other-video-{start:05d}", "url": f"{base}/c.mp4"}
    path, digest = _write(tmp_path / "edited", [*good, other])
    root = tmp_path / "fresh"

    sent.clear()
    assert _curate(root, path) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "rebuilt 0 clips matching the release, 0 different, 0 gone, 4 invalid" in out
    assert out.count("127.0.0.1 is a loopback address") == 4 and "--allow-private-urls" in out
    assert sent == []  # not one request reached the loopback server
    clips, srcs = _catalog_rows(root)
    assert clips == {} and srcs == {}
    assert not [p for p in (root / "sources").iterdir() if not p.name.startswith(".")]

    assert _curate(root, path, "--allow-private-urls") == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "rebuilt 3 clips matching the release, 0 different, 1 gone, 0 invalid" in out
    assert f"gone {other['clip_id']}: download: the URL now gives video c-" in out
    assert "not other-video (its media not fetched)" in out
    _, srcs = _catalog_rows(root)
    assert srcs["other-video"].status == "failed" and not any(k.startswith("c-") for k in srcs)
    assert not list((root / "sources").glob("c-*"))  # nothing of the other video kept
    size = {n: (served_dir / n).stat().st_size for n in ("a.mp4", "b.mp4", "c.mp4")}
    whole = [p.lstrip("/") for p, n in sent if n == size[p.lstrip("/")]]
    assert sorted(whole) == ["a.mp4", "b.mp4"]  # each listed file crossed once; c.mp4 never whole
    assert all(n < size[p.lstrip("/")] // 2 for p, n in sent if n != size[p.lstrip("/")])  # probes cut short
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_path_like_ids_are_refused_where_they_enter_and_takedown_of_one_changes_nothing(release, tmp_path,
                                                                                        capsys):
    good = release.to_dict("records")
    b = next(r for r in good if r["url"].endswith("/b.mp4"))
    start = int(float(b["start_s"]))
    evil = [
        {**b, "video_id": "../../evil-video", "clip_id": f"../../evil-video-{start:05d}"},
        {**b, "video_id": ABSOLUTE, "clip_id": f"{ABSOLUTE}-{start:05d}"},
        {**b, "clip_id": f"..{b['clip_id']}"},
    ]
    path, _ = _write(tmp_path / "edited", [*good, *evil])
    root = tmp_path / "deep" / "fresh"

    assert _curate(root, path, "--allow-private-urls") == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "rebuilt 3 clips matching the release, 0 different, 0 gone, 3 invalid" in out
    assert "row 4: clip_id '../../evil-video-" in out and "contains a path separator" in out
    assert f"row 5: clip_id '{ABSOLUTE}-" in out and "is an absolute path" in out
    assert "row 6: clip_id '..b" in out and "contains '..'" in out
    assert not (tmp_path / "evil-video").exists() and not (tmp_path / "deep" / "evil-video").exists()
    assert not list(Path(ABSOLUTE).parent.glob(f"{Path(ABSOLUTE).name}*"))
    clips, srcs = _catalog_rows(root)
    assert sorted(srcs) == sorted({r["video_id"] for r in good}) and len(clips) == 3

    # An older version stored such a row; a takedown of it is refused before anything is written.
    cat = Catalog(DataRoot(root).catalog_url)
    with cat.session() as s:
        s.add(Source(id="../../evil-video", url=b["url"], status="failed", error="old"))
    for _ in range(2):
        assert cli_main(["takedown", "--root", str(root), "--video", "../../evil-video", "--reason", "x"]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "invalid video id '../../evil-video': it contains a path separator" in err
        assert "nothing was changed" in err and "Traceback" not in err
    with cat.session() as s:
        assert s.query(Takedown).count() == 0
        assert s.get(Source, "../../evil-video").status == "failed"
        # and a clip such a version stored under a good video: that video's takedown still finishes
        s.add(Clip(id="../../outside-00002", source_id=b["video_id"], start_s=2.0, duration_s=20.0, status="failed"))
    cat.dispose()
    (root.parent / "outside-00002.mp4").write_bytes(b"not ours")
    assert cli_main(["takedown", "--root", str(root), "--video", b["video_id"], "--reason", "x"]) == 0
    clips, srcs = _catalog_rows(root)
    assert srcs[b["video_id"]].status == "taken_down" and clips["../../outside-00002"].status == "taken_down"
    assert (root.parent / "outside-00002.mp4").read_bytes() == b"not ours"
