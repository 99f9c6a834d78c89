"""A large release in parts (dvmset.release_layout): a takedown rewrites only the part holding the video's clips
and leaves the rest byte for byte (and untouched on disk), the parts together equal the release an export
without the clips writes, release.json's counts equal a recount; an older single-file release is still read
and taken down; an export in one layout replaces the other."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from feature_helpers import add_clips

from dvmset import release_layout
from dvmset.export import export_dataset
from dvmset.export_card import write_card
from dvmset.release import COLUMNS, PROCESSING, read_release, release_counts, write_release
from dvmset.takedown import mark_catalog, plan_takedown, scrub_export

LAYOUT = {"a": ("q1", 3), "b": ("q1", 2), "c": ("q2", 3), "d": ("q2", 2), "e": ("q1", 1), "f": ("q2", 2)}
PER_PART = 5  # 13 clips in 3 parts, 12 (a clip taken down) in 3, 10 (a video) in 2


def _export(data_root, catalog) -> None:
    export_dataset(data_root, catalog, "v1", test_fraction=0.3, valid_fraction=0.2, seed=0, release=True)


def _parts(out) -> dict[str, tuple[bytes, int]]:
    return {f"{folder}/{p.name}": (p.read_bytes(), p.stat().st_mtime_ns)
            for folder in ("release.parquet", "release.csv")
            for p in release_layout.part_files(out / folder)}


def _recount(out) -> dict:
    """release.json's counts and each part's, from the part files read whole."""
    parts = {p.stem: release_counts(pd.read_parquet(p)) for p in release_layout.part_files(out / "release.parquet")}
    return {**release_counts(pd.read_parquet(out / "release.parquet", columns=["video_id", "split", *PROCESSING])),
            "parts": parts}


def _counts(meta: dict) -> dict:
    return {k: meta[k] for k in ("clips", "videos", "splits", "processing", "parts")}


def _take_down(catalog, out, **target) -> tuple[str, ...]:
    plan = plan_takedown(catalog, reason="rights holder", **target)
    mark_catalog(catalog, plan)
    assert scrub_export(out, plan.clip_ids, lambda o, m: write_card(o, m, catalog, reuse_facts=True))
    return plan.clip_ids


@pytest.fixture
def exported(data_root, catalog, clip_factory, monkeypatch):
    monkeypatch.setattr(release_layout, "PER_PART", PER_PART)
    ids = add_clips(catalog, data_root, clip_factory(4.0), LAYOUT)
    _export(data_root, catalog)
    out = data_root.export_dir("v1")
    count = release_layout.part_count(len(ids), PER_PART)
    assert count > 1 and (out / "release.parquet").is_dir() and (out / "release.csv").is_dir()
    assert not any(p.is_file() for p in (out / "release.parquet", out / "release.csv"))
    assert len(_parts(out)) == 2 * count
    return out, ids


def test_the_parts_hold_every_clip_once_a_video_in_one_part_and_read_as_one_release(exported):
    out, ids = exported
    whole = pd.read_parquet(out / "release.parquet")  # the folder of parts in one line, as the card says
    assert sorted(whole.clip_id) == sorted(ids)
    for p in release_layout.part_files(out / "release.parquet"):
        part = pd.read_parquet(p)
        assert {release_layout.part_of(c, int(p.stem[-4:])) for c in part.clip_id} <= {p.stem}
        assert part.clip_id.tolist() == sorted(part.clip_id)
    csv = pd.concat(pd.read_csv(p, dtype=str) for p in release_layout.part_files(out / "release.csv"))
    assert sorted(csv.clip_id) == sorted(ids)
    rel = read_release(out)
    assert rel.rows.clip_id.tolist() == sorted(ids) and not rel.invalid
    for path in (out / "release.parquet", out / "release.csv"):  # either folder, as --from-release takes it
        pd.testing.assert_frame_equal(read_release(path).rows, rel.rows)
    meta = json.loads((out / "release.json").read_text())
    assert _counts(meta) == _recount(out) and meta["clips"] == len(ids) and meta["videos"] == len(LAYOUT)
    assert "pd.read_parquet(\"release.parquet\")" in (out / "DATASET.md").read_text()


def test_a_clip_takedown_rewrites_one_part_and_leaves_what_an_export_without_it_writes(data_root, catalog, exported):
    out, ids = exported
    before = _parts(out)
    gone = "a-00060"
    assert _take_down(catalog, out, clip=gone) == (gone,)
    after = _parts(out)
    count = release_layout.part_count(len(ids), PER_PART)
    touched = {f"release.parquet/{release_layout.part_of(gone, count)}.parquet",
               f"release.csv/{release_layout.part_of(gone, count)}.csv"}
    assert after.keys() == before.keys()
    assert {k for k in after if after[k] != before[k]} == touched  # every other part: same bytes, not rewritten
    assert all(gone.encode() not in after[k][0] for k in touched)
    meta = json.loads((out / "release.json").read_text())
    assert _counts(meta) == _recount(out) and meta["clips"] == len(ids) - 1
    rows = read_release(out).rows

    assert release_layout.part_count(len(ids) - 1, PER_PART) == count  # so the export makes the same parts
    _export(data_root, catalog)
    again = _parts(out)
    assert {k: v[0] for k, v in again.items() if k.endswith(".csv")} == \
        {k: v[0] for k, v in after.items() if k.endswith(".csv")}  # the CSV parts byte for byte
    for k in again:
        if k.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(out / k), pd.read_parquet(io.BytesIO(after[k][0])))
    assert _counts(json.loads((out / "release.json").read_text())) == _counts(meta)
    pd.testing.assert_frame_equal(read_release(out).rows, rows)


def test_a_video_takedown_leaves_the_release_an_export_without_the_video_writes(data_root, catalog, exported):
    out, ids = exported
    before = _parts(out)
    gone = _take_down(catalog, out, video="c")
    assert set(gone) == {c for c in ids if c.startswith("c-")}
    count = release_layout.part_count(len(ids), PER_PART)
    stem = release_layout.part_of(gone[0], count)
    after = _parts(out)
    assert {k for k in after if after[k] != before[k]} == {f"release.parquet/{stem}.parquet", f"release.csv/{stem}.csv"}
    meta = json.loads((out / "release.json").read_text())
    assert _counts(meta) == _recount(out) and meta["videos"] == len(LAYOUT) - 1
    rows = read_release(out).rows
    assert not set(gone) & set(rows.clip_id)

    _export(data_root, catalog)  # 10 clips: fewer parts, the stale ones deleted
    assert len(_parts(out)) == 2 * release_layout.part_count(len(ids) - len(gone), PER_PART)
    pd.testing.assert_frame_equal(read_release(out).rows, rows)
    assert _counts(json.loads((out / "release.json").read_text())) == _recount(out)


def test_a_single_file_release_of_an_older_export_is_read_and_taken_down(data_root, catalog, clip_factory,
                                                                         monkeypatch):
    ids = add_clips(catalog, data_root, clip_factory(4.0), LAYOUT)
    _export(data_root, catalog)  # 13 clips, one file each (as every export before the parts)
    out = data_root.export_dir("v1")
    assert (out / "release.parquet").is_file() and (out / "release.csv").is_file()
    monkeypatch.setattr(release_layout, "PER_PART", PER_PART)  # this version would write parts: the file stays
    gone = _take_down(catalog, out, video="c")
    rows = read_release(out).rows
    assert sorted(rows.clip_id) == sorted(set(ids) - set(gone))
    pd.testing.assert_frame_equal(read_release(out / "release.csv").rows, rows)
    meta = json.loads((out / "release.json").read_text())
    assert "parts" not in meta and meta["clips"] == len(rows) and meta["videos"] == len(LAYOUT) - 1

    _export(data_root, catalog)  # now in parts: the single files replaced
    assert (out / "release.parquet").is_dir() and (out / "release.csv").is_dir()
    pd.testing.assert_frame_equal(read_release(out).rows, rows)
    monkeypatch.setattr(release_layout, "PER_PART", 1000)
    _export(data_root, catalog)  # and back
    assert (out / "release.parquet").is_file() and (out / "release.csv").is_file()
    pd.testing.assert_frame_equal(read_release(out).rows, rows)


def test_a_takedown_killed_before_the_count_is_counted_when_run_again(data_root, catalog, exported):
    out, _ = exported
    meta_before = (out / "release.json").read_text()
    plan = plan_takedown(catalog, clip="d-00000", reason="rights holder")
    mark_catalog(catalog, plan)
    scrub_export(out, plan.clip_ids, lambda o, m: write_card(o, m, catalog, reuse_facts=True))
    (out / "release.json").write_text(meta_before)  # as if killed after the part, before release.json
    scrub_export(out, plan.clip_ids, lambda o, m: write_card(o, m, catalog, reuse_facts=True))
    assert _counts(json.loads((out / "release.json").read_text())) == _recount(out)


def test_write_release_spreads_a_frame_over_parts(tmp_path, data_root, catalog, clip_factory):
    add_clips(catalog, data_root, clip_factory(4.0), LAYOUT)
    _export(data_root, catalog)
    frame = read_release(data_root.export_dir("v1")).rows[COLUMNS]
    write_release(tmp_path / "p", frame, name="r", per_part=2)
    assert len(release_layout.part_files(tmp_path / "p" / "release.csv")) == 7
    pd.testing.assert_frame_equal(read_release(tmp_path / "p").rows, read_release(data_root.export_dir("v1")).rows)
