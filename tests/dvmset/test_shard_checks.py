"""status's shard check is remembered per shard (dvmset.shard_checks): a shard found sound is read again only
when its file or index rows change; what changes without touching size or mtime is not seen (the documented
limit), and a corrupt shard is reported on every call until it is fixed."""

from __future__ import annotations

import os
from pathlib import Path

from training_helpers import write_store

from dvmset.shard_checks import CHECKED_NAME, check_changed_shards
from dvmset.shards import check_shards

BAD = "shard-00001.safetensors"


def _flip(path: Path) -> os.stat_result:
    """Flip tensor bytes in place; return the stat from before (to put size and mtime back)."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    for i in range(start + 100, start + 356):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return before


def test_a_sound_shard_is_not_read_again_until_its_file_changes(tmp_path: Path):
    features = write_store(tmp_path / "features")
    assert check_changed_shards(features, card=2048) == []
    assert (features / CHECKED_NAME).is_file()

    before = _flip(features / BAD)  # same size, and the mtime put back: the remembered check holds
    os.utime(features / BAD, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert check_changed_shards(features, card=2048) == []
    assert {p.shard for p in check_shards(features, card=2048)} == {BAD}  # the full check sees it

    os.utime(features / BAD, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))  # touched: read again
    for _ in range(2):  # and reported again: a corrupt shard is never remembered as sound
        assert {p.shard for p in check_changed_shards(features, card=2048)} == {BAD}


def test_a_changed_codebook_or_index_checks_again(tmp_path: Path):
    features = write_store(tmp_path / "features")
    assert check_changed_shards(features, card=2048) == []
    # the debug codes lie below 2048; a smaller codebook must re-read every shard and find them out of range
    assert check_changed_shards(features, card=1) != []
    (features / BAD).unlink()  # a missing file is a problem, never a remembered success
    assert any(p.shard == BAD and "missing" in p.problem for p in check_changed_shards(features, card=2048))


def test_while_the_index_is_unchanged_status_does_not_read_it_and_still_reports_a_corrupt_shard(tmp_path: Path,
                                                                                                 monkeypatch):
    """The row hashes are kept with the index file's stamp: an unchanged index is not read again, yet a corrupt
    shard is found on every call; a rewritten index (an export's splits) is hashed again but no sound shard whose
    rows are the same is read again; a removed clip's shard is read again."""
    import json

    import dvmset.shard_checks as sc
    from dvmset.shards import FeatureStore

    features = write_store(tmp_path / "features")  # 8 clips in shards of 4
    store = FeatureStore(features)
    hashed, read = [], []
    row_hashes, check = sc._row_hashes, sc.check_shards
    monkeypatch.setattr(sc, "_row_hashes", lambda *a: (hashed.append(1), row_hashes(*a))[1])
    monkeypatch.setattr(sc, "check_shards", lambda *a, **k: (read.append(sorted(k["shards"])), check(*a, **k))[1])
    assert check_changed_shards(features, card=2048) == [] and len(hashed) == 1
    assert read == [["shard-00000.safetensors", BAD]]

    before = _flip(features / BAD)
    os.utime(features / BAD, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    for _ in range(2):  # the index is not read, the changed shard is read and reported each time
        assert {p.shard for p in check_changed_shards(features, card=2048)} == {BAD}
    assert len(hashed) == 1 and read[1:] == [[BAD], [BAD]]

    _flip(features / BAD)  # the bytes back: sound again
    assert store.set_splits({"train-00": "test"}) == 1  # the index rewritten; no shard's rows hash changed
    assert check_changed_shards(features, card=2048) == [] and len(hashed) == 2 and read[3:] == [[BAD]]
    assert check_changed_shards(features, card=2048) == [] and len(hashed) == 2 and len(read) == 4

    store.remove_clips(["train-01"])  # shard 0 rewritten without it, and its index rows changed
    assert check_changed_shards(features, card=2048) == [] and len(hashed) == 3
    assert read[4:] == [["shard-00000.safetensors"]]

    memo = json.loads((features / CHECKED_NAME).read_text())  # a memo from before the index stamp: sound stamps only
    (features / CHECKED_NAME).write_text(json.dumps(memo["sound"]))
    assert check_changed_shards(features, card=2048) == [] and len(hashed) == 4 and len(read) == 5  # none read
    assert json.loads((features / CHECKED_NAME).read_text()) == memo  # written back in the new form
