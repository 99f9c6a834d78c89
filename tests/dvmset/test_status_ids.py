"""status reads the accepted clips' ids a chunk at a time, joined into one string by the database (SQLite's
group_concat, Postgres' string_agg) and split by Arrow; the count of those that have features follows."""

from __future__ import annotations

from feature_helpers import entry

import dvmset.status as status
from dvmset.shards import FeatureStore, write_shard
from dvmset.sources import upsert_source
from dvmset.tables import Clip, Source

ACCEPTED = ["a-00000", "a-00060", "a_b.c-00000", "B-00000", "b-00120", "z-00000", "Z.9-00060",
            "n\nl-00000"]  # no curated id holds a newline (check_id); a row written around it is read row by row
OTHER = {"a-00120": "rejected", "b-00000": "pending_review", "z-00060": "failed"}


def test_accepted_ids_come_in_chunks_and_the_indexed_ones_are_counted(any_catalog, data_root, monkeypatch):
    cat = any_catalog
    for src in ("a", "a_b.c", "B", "b", "z", "Z.9"):
        upsert_source(cat, src, url=f"https://x.invalid/{src}", query="q", status="done")
    with cat.session() as s:  # written around upsert_source's check, as a hand-edited catalog could be
        s.add(Source(id="n\nl", url="https://x.invalid/nl", query="q", status="done"))
    with cat.session() as s:
        s.add_all([Clip(id=c, source_id=c.rsplit("-", 1)[0], start_s=0.0, duration_s=60.0, status=st)
                   for c, st in [*((c, "accepted") for c in ACCEPTED), *OTHER.items()]])
    monkeypatch.setattr(status, "ID_CHUNK", 2)
    with cat.session() as s:
        chunks = [c.to_pylist() for c in status.accepted_ids(s)]
    assert [len(c) for c in chunks] == [2, 2, 2, 2]  # every chunk full
    got = [i for c in chunks for i in c]
    assert sorted(got) == sorted(ACCEPTED) and len(set(got)) == len(got)  # each accepted id once, nothing else

    store = FeatureStore(data_root.features_dir)
    store.append(write_shard(store.shard_path(0), [entry(c, k) for k, c in
                                                   enumerate(["a-00060", "B-00000", "a-00120", "gone-00000"])]))
    report = status.features_status(data_root, cat)  # two accepted ones indexed; a rejected and an unknown one not
    assert (report["accepted"], report["in_shards"], report["pending"]) == (8, 2, 6)
