"""The export's plan on disk (dvmset.export_plan) splits exactly as :func:`plan_split` does over the whole list of
clips in memory (the export's earlier way): music groups as one unit under their first source's query, recorded
splits kept (this export's manifest before the catalog's record), valid lent from train only when no valid was
recorded; and it reads back each bucket of clips in id order, empty buckets included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert

from dvmset.catalog import Catalog
from dvmset.export import SplitItem, _split_query, plan_split
from dvmset.export_plan import ExportPlan
from dvmset.info_zips import video_bucket
from dvmset.music_groups import MusicGroup, source_groups
from dvmset.records import SPLITS, TRAIN, VALID, ClipStatus, SourceStatus
from dvmset.tables import Clip, Source

QUERIES = ["calm piano", "drum solo", None, "", "zither"]


def _world(rng: np.random.Generator, n_sources: int):
    """Sources with 1-4 clips each under random queries, some rejected clips, recorded splits per source,
    music groups (some led by a source with no accepted clip) and an earlier manifest's splits."""
    sources, clips = [], []
    for n in range(n_sources):
        sid = f"v{n:03d}"
        query = QUERIES[rng.integers(len(QUERIES))]
        recorded = SPLITS[rng.integers(3)] if rng.random() < 0.3 else None
        accepted = rng.random() < 0.9
        sources.append({"id": sid, "url": f"https://example.invalid/{sid}", "query": query,
                        "status": SourceStatus.DONE.value})
        for k in range(int(rng.integers(1, 5))):
            ok = accepted and rng.random() < 0.85
            clips.append({"id": f"{sid}-{k * 60:05d}", "source_id": sid, "start_s": k * 60.0, "duration_s": 60.0,
                          "status": (ClipStatus.ACCEPTED if ok else ClipStatus.REJECTED).value,
                          "split": recorded if ok else None})
    ids = [s["id"] for s in sources]
    groups = []
    for _ in range(n_sources // 8):  # groups of 2-3 sources under one query (as shared music usually is)
        members = sorted(rng.choice(ids, size=int(rng.integers(2, 4)), replace=False).tolist())
        if any(m in g.sources for g in groups for m in members):
            continue
        for s in sources:
            if s["id"] in members:
                s["query"] = next(x["query"] for x in sources if x["id"] == members[0])
        groups.append(MusicGroup(tuple(members), ()))
    own = {s: SPLITS[rng.integers(3)] for s in rng.choice(ids, size=n_sources // 5, replace=False).tolist()}
    return sources, clips, groups, own


def _in_memory(clips, sources, groups, fixed, tf, vf, seed):
    """The split as the export planned it before the plan went to disk: every clip an item in memory."""
    query_of = {s["id"]: s["query"] for s in sources}
    accepted = [c for c in clips if c["status"] == ClipStatus.ACCEPTED.value]
    unit = source_groups(groups)
    exported = {c["source_id"] for c in accepted}
    items = [SplitItem(c["id"], unit.get(c["source_id"], c["source_id"]),
                       query_of[unit[c["source_id"]]] if unit.get(c["source_id"]) in exported
                       else query_of[c["source_id"]]) for c in accepted]
    fixed_units: dict[str, str] = {}
    for source, part in sorted(fixed.items(), key=lambda kv: (unit.get(kv[0], kv[0]) != kv[0], kv[0])):
        fixed_units.setdefault(unit.get(source, source), part)
    return plan_split(items, tf, seed, fixed_units, vf)


@pytest.mark.parametrize("trial", range(6))
def test_the_plan_splits_as_the_in_memory_split(data_root, tmp_path, trial):
    rng = np.random.default_rng(trial)
    sources, clips, groups, own = _world(rng, 48)
    cat = Catalog(data_root.catalog_url)
    with cat.engine.begin() as conn:
        conn.execute(insert(Source.__table__), sources)
        conn.execute(insert(Clip.__table__), clips)
    manifest = tmp_path / "manifest.parquet"
    pd.DataFrame({"source_id": list(own), "split": list(own.values())}).to_parquet(manifest)
    recorded = {c["source_id"]: c["split"] for c in clips if c["split"]}
    tf, vf, seed = [(0.2, 0.1, 0), (0.3, 0.0, 5), (0.25, 0.25, 2)][trial % 3]
    keep = trial % 2 == 0
    want = _in_memory(clips, sources, groups, {**recorded, **own} if keep else {}, tf, vf, seed)
    with ExportPlan(tmp_path) as plan:
        n = plan.load_accepted(cat)
        if keep:
            plan.load_own_splits(manifest)
        plan.set_groups(groups)
        plan.plan(_split_query, tf, vf, seed, keep)
        got = plan.splits_of(want)
        assert n == len(want) and got == want
        assert sorted(c for ids in plan.ids() for c in ids) == sorted(want)
        assert plan.split_counts() == {p: list(want.values()).count(p) for p in SPLITS if p in want.values()}
    assert not list(tmp_path.glob(".plan.*"))  # the scratch file goes with the plan
    cat.dispose()


def test_valid_is_lent_from_train_only_when_no_valid_split_was_recorded(data_root, tmp_path):
    cat = Catalog(data_root.catalog_url)
    sources = [{"id": f"v{n}", "url": f"https://example.invalid/{n}", "query": "q", "status": SourceStatus.DONE.value}
               for n in range(6)]
    clips = [{"id": f"v{n}-00000", "source_id": f"v{n}", "start_s": 0.0, "duration_s": 60.0,
              "status": ClipStatus.ACCEPTED.value, "split": TRAIN} for n in range(6)]
    with cat.engine.begin() as conn:
        conn.execute(insert(Source.__table__), sources)
        conn.execute(insert(Clip.__table__), clips)
    manifest = tmp_path / "manifest.parquet"
    for earlier, lent in (({}, True), ({"gone": VALID}, False)):  # a valid video since rejected still counts
        pd.DataFrame({"source_id": list(earlier), "split": list(earlier.values())}, dtype=object).to_parquet(manifest)
        with ExportPlan(tmp_path) as plan:
            plan.load_accepted(cat)
            plan.load_own_splits(manifest)
            plan.plan(_split_query, 0.0, 0.3, 0, True)
            got = set(plan.splits_of([c["id"] for c in clips]).values())
        assert (VALID in got) is lent and TRAIN in got
    cat.dispose()


def test_a_group_across_queries_is_refused_as_in_memory(data_root, tmp_path):
    cat = Catalog(data_root.catalog_url)
    sources = [{"id": s, "url": f"https://example.invalid/{s}", "query": q, "status": SourceStatus.DONE.value}
               for s, q in (("lead", "a"), ("v1", "b"), ("v2", "c"))]
    clips = [{"id": f"{s}-00000", "source_id": s, "start_s": 0.0, "duration_s": 60.0, "split": None,
              "status": (ClipStatus.REJECTED if s == "lead" else ClipStatus.ACCEPTED).value} for s in ("lead", "v1", "v2")]
    with cat.engine.begin() as conn:
        conn.execute(insert(Source.__table__), sources)
        conn.execute(insert(Clip.__table__), clips)
    group = [MusicGroup(("lead", "v1", "v2"), ())]  # its first source has no accepted clip: its members' queries
    with pytest.raises(ValueError, match="two queries"):
        _in_memory(clips, sources, group, {}, 0.2, 0.1, 0)
    with ExportPlan(tmp_path) as plan, pytest.raises(ValueError, match="source lead has clips under two queries"):
        plan.load_accepted(cat)
        plan.set_groups(group)
        plan.plan(_split_query, 0.2, 0.1, 0, True)
    cat.dispose()


def test_buckets_list_every_bucket_with_its_clips_in_id_order(tmp_path):
    ids = [f"v{n % 37:03d}-{n * 60:05d}" for n in range(400)]
    with ExportPlan(tmp_path) as plan:
        plan.add_clips((c, c[:4]) for c in ids)
        plan.drop(ids[:10])
        got = list(plan.buckets("zip", 7))
    want = [(b, sorted(c for c in ids[10:] if video_bucket(c, 7) == b)) for b in range(7)]
    assert got == want and sum(len(v) for _, v in got) == 390
    with ExportPlan(tmp_path) as plan:  # two videos in seven buckets: the empty ones are listed too
        plan.add_clips([("a-00000", "a"), ("a-00060", "a"), ("b-00000", "b")])
        few = list(plan.buckets("part", 7))
    assert [b for b, _ in few] == list(range(7)) and sum(1 for _, v in few if not v) >= 5
    assert sorted(c for _, v in few for c in v) == ["a-00000", "a-00060", "b-00000"]
