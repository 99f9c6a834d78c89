"""An export's DATASET.md with what sharing adds to dvmset.card's: the sources that share music (kept in
one split) and the release files. Written by the export and again by a takedown (from export.json)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from dvmset.card import CARD_FACTS, clip_facts, dataset_card
from dvmset.catalog import Catalog
from dvmset.constants import TEST_FRACTION
from dvmset.hub_card import hub_metadata
from dvmset.io import atomic_path, atomic_write_text
from dvmset.music_groups import MusicGroup
from dvmset.music_index import stored_groups
from dvmset.records import ClipStatus
from dvmset.release import FILES as RELEASE_FILES
from dvmset.shards import FeatureStore

EXPORT_PARAMS = "export.json"  # test_fraction, valid_fraction, seed, missing: what the card is regenerated with


def music_groups_of(cat: Catalog, clip_ids: Iterable[str]) -> list[MusicGroup]:
    """Groups of sources sharing music among these clips (clips without a fingerprint are left out), read
    from the shared-music index (dvmset.music_index): no id list bound, no fingerprint regrouped."""
    return stored_groups(cat, [s.value for s in ClipStatus], clip_ids)


def groups_section(groups: list[MusicGroup], split_of: dict[str, str]) -> list[str]:
    lines = ["## Shared music", ""]
    if not groups:
        return [*lines, "No two source videos share music (chromaprint fingerprints of the processed music).", ""]
    lines += [f"{len(groups)} groups of source videos carry the same music (chromaprint, bit error rate at "
              "the best alignment); each group is kept in one split.", "",
              "| group | split | sources | clips sharing it |", "|---:|---|---|---|"]
    for n, g in enumerate(groups, 1):
        splits = sorted({split_of[c] for c in g.clips if c in split_of})
        lines.append(f"| {n} | {', '.join(splits) or '-'} | {', '.join(g.sources)} | {', '.join(g.clips)} |")
    return [*lines, ""]


def features_made(features_dir: Path, clip_ids: Iterable[str]) -> list[dict]:
    """The identities (CLIP, codec, rates, format) of the features runs that made these clips' shards, each
    with its number of clips."""
    store = FeatureStore(features_dir)
    index = store.index()
    index = index[index.clip_id.isin(set(clip_ids))]
    out = []
    for raw, n in index.config.value_counts().sort_index().items():
        out.append({**json.loads(raw).get("identity", {}), "clips": int(n)})
    return out


def _kept_facts(path: Path, ids: list[str]) -> pd.DataFrame | None:
    """The stored facts of exactly ``ids`` (in that order), or None when the file lacks any of them."""
    if not path.is_file():
        return None
    facts = pd.read_parquet(path).set_index("clip_id", drop=False)
    if not set(ids) <= set(facts.clip_id.tolist()):
        return None
    return facts.loc[ids].reset_index(drop=True)


def write_card(out: Path, manifest: pd.DataFrame, cat: Catalog, *, test_fraction: float = TEST_FRACTION,
               seed: int = 0, missing: int = 0, valid_fraction: float = 0.0, reuse_facts: bool = False,
               **_: object) -> Path:
    """DATASET.md of the export at ``out`` (ROOT/exports/NAME) for ``manifest``. ``valid_fraction`` is 0 for an
    export.json written before valid splits existed. The per-clip facts the card counts are kept beside it
    (``card_facts.parquet``); ``reuse_facts`` (a takedown: fewer clips, nothing else changed) reads them back
    for the manifest's clips instead of reading every clip's row from the catalog."""
    ids = manifest.clip_id.tolist() if len(manifest) else []  # tolist, not iteration: 10x faster on arrow strings
    made = features_made(out.parent.parent / "features", ids)
    facts = _kept_facts(out / CARD_FACTS, ids) if reuse_facts else None
    if facts is None:
        facts = clip_facts(cat, ids)
    with atomic_path(out / CARD_FACTS) as tmp:
        facts.to_parquet(tmp, index=False)
    card = dataset_card(out.name, manifest, cat, test_fraction, seed, missing, valid_fraction, made, facts)
    split_of = dict(zip(ids, manifest.split.tolist(), strict=True)) if len(manifest) else {}
    extra = groups_section(music_groups_of(cat, split_of), split_of)
    if (out / RELEASE_FILES[0]).exists():
        extra += ["## Release", "",
                  "`release.parquet` / `release.csv`: ids only (video id, URL, window, split, query, verdict and "
                  "agreement, licence, checksum and fingerprint of the processed music), no media; "
                  + ("each a folder of parts (`part-NNNN-of-NNNN`, a video's clips in one part): "
                     "`pd.read_parquet(\"release.parquet\")` reads them all; "
                     if (out / RELEASE_FILES[0]).is_dir() else "")
                  + "`release.json`: the processing parameters. Rebuild with "
                  "`vidmusician curate --from-release release.parquet --root DIR`.", ""]
    return atomic_write_text(out / "DATASET.md", hub_metadata(out.name, manifest)  # the hub's YAML block first
                             + card.rstrip("\n") + "\n\n" + "\n".join(extra))
