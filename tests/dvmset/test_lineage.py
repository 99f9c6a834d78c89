"""A clip's lineage: the steps curation recorded (versions, parameters), its source's facts, its window,
and the features config once it is in a shard; malformed steps and unknown clips are refused."""

from __future__ import annotations

import pytest
from feature_helpers import add_clips, entry

from dvmset.lineage import UnknownClip, check_steps, clip_lineage, format_lineage, record_lineage
from dvmset.shards import FeatureStore, write_shard
from dvmset.tables import Clip, Source

STEPS = [
    {"step": "download", "tool": "yt-dlp", "version": "2026.10.26", "params": {"format": "b"}},
    {"step": "separate", "tool": "none", "version": None, "params": {"model": "none", "weights": "none"}},
    {"step": "loudness", "tool": "pyloudnorm", "version": "0.2.0", "params": {"target_lufs": -14.0}},
]


def test_recorded_steps_source_facts_and_features_come_back(data_root, catalog, clip_factory):
    add_clips(catalog, data_root, clip_factory(4.0), {"v1": ("city", 1)})
    record_lineage(catalog, "v1-00000", STEPS, music_sha256="ab" * 32, music_fingerprint="cp1:AAAAAA==",
                   extractor="Generic", upload_date="20260102")
    lin = clip_lineage(data_root, catalog, "v1-00000")
    assert lin["source"]["video_id"] == "v1" and lin["source"]["extractor"] == "Generic"
    assert lin["source"]["upload_date"] == "20260102" and lin["window"] == {"start_s": 0.0, "duration_s": 4.0}
    assert lin["steps"] == STEPS and lin["origin"] == "curated" and lin["music"]["sha256"] == "ab" * 32

    store = FeatureStore(data_root.features_dir)
    store.append(write_shard(store.shard_path(0), [entry("v1-00000")]))
    lin = clip_lineage(data_root, catalog, "v1-00000")
    assert lin["steps"][-1]["step"] == "features"
    assert lin["steps"][-1]["params"] == {"identity": {"clip_model": "tiny"}, "shard": "shard-00000.safetensors"}

    text = "\n".join(format_lineage(lin))
    assert "yt-dlp 2026.10.26 (format=b)" in text and "target_lufs=-14.0" in text and "via Generic" in text
    with catalog.session() as s:
        assert s.get(Clip, "v1-00000").origin == "curated" and s.get(Source, "v1").upload_date == "20260102"


def test_a_clip_from_before_lineage_says_so_and_unknown_ones_are_refused(data_root, catalog, clip_factory):
    add_clips(catalog, data_root, clip_factory(4.0), {"v1": ("city", 1)})
    assert "no steps recorded" in "\n".join(format_lineage(clip_lineage(data_root, catalog, "v1-00000")))
    with pytest.raises(UnknownClip, match="zz-00000 is not in the catalog"):
        clip_lineage(data_root, catalog, "zz-00000")
    with pytest.raises(UnknownClip):
        record_lineage(catalog, "zz-00000", STEPS, music_sha256=None, music_fingerprint=None)


def test_a_step_must_name_its_tool_version_and_parameters():
    with pytest.raises(ValueError, match="lineage step"):
        check_steps([{"step": "clip", "tool": "ffmpeg", "params": {}}])
    with pytest.raises(ValueError, match="params a dict"):
        check_steps([{"step": "clip", "tool": "ffmpeg", "version": "5", "params": "fps=25"}])
