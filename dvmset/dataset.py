"""The Dataset trainers read: aligned windows of global / rhythm / codes cut from feature shards.

A window of W seconds starting at a whole second o is global[o : o+W] (1 fps), rhythm and codes
[:, 50*o : 50*(o+W)] (50 Hz), so the tensors always cover the same span of the clip
(paper §5.1: 30 s windows from the 60 s clips). Offsets are random per (seed, epoch, index) or
fixed; any sampler works, ``DistributedSampler`` included. ``read_export_split`` gives an export's own
split (its manifest's), which is what training selects clips by: the index's ``split`` column is only the
latest export's.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, DistributedSampler

from dvmset.shards import TOKEN_RATE_HZ, ShardReader
from dvmset.spans import Span, read_spans_file, window_offsets

log = logging.getLogger(__name__)

#: the model's rhythm source (``RhythmConfig.source``) -> the shard tensor that holds it
RHYTHM_KEYS = {"all_tokens": "rhythm", "global": "rhythm_global"}
#: the keys of an item (and of a collated batch) that the model's ``batch_loss`` reads
GLOBAL, RHYTHM, CODES = "global", "rhythm", "codes"


@dataclass(frozen=True)
class FeatureSpec:
    """What the features were made with, as far as a model must match it (from the shard index)."""

    clip_dim: int  # D of global [T, D]
    clip_model: str | None  # the CLIP the features stage used (``vidmusician features --clip-model``)
    codec: str | None  # the codec that made ``codes`` (``vidmusician features --codec``)
    token_rate: int  # codes / rhythm frames per second
    n_codebooks: int  # K of codes [K, T*50]


class FeatureWindows(Dataset):
    """Items: {"clip_id", "offset_s", "global" [W, D] f32, "rhythm" [W*50] f32, "codes" [K, W*50] i64}.

    ``rhythm_source`` picks the rhythm signal, as the model's ``RhythmConfig.source`` names it:
    "all_tokens" (the paper's, from patch tokens) or "global" (pooled embedding only, ablation AT off).
    ``excluded``: {clip id: spans} no window may overlap (dvmset.spans); by default the spans the export
    wrote beside the features. A clip left without a whole window is not served.
    """

    def __init__(
        self,
        features_dir: str | Path,
        split: str | None = None,
        window_s: int = 30,
        offset_s: int | None = None,
        seed: int = 0,
        clip_ids: Sequence[str] | None = None,
        rhythm_source: str = "all_tokens",
        excluded: Mapping[str, Sequence[Span]] | None = None,
    ) -> None:
        if rhythm_source not in RHYTHM_KEYS:
            raise ValueError(f"rhythm_source must be one of {sorted(RHYTHM_KEYS)}, got {rhythm_source!r}")
        self.rhythm_key = RHYTHM_KEYS[rhythm_source]
        if window_s < 1:
            raise ValueError(f"window_s must be >= 1, got {window_s}")
        if offset_s is not None and offset_s < 0:
            raise ValueError(f"offset_s must be >= 0 or None (random), got {offset_s}")
        self.reader = ShardReader(features_dir, framework="np")
        self.window_s, self.offset_s, self.seed, self.epoch = window_s, offset_s, seed, 0
        idx = self.reader.index
        if split is not None:
            idx = idx[idx.split == split]
        if clip_ids is not None:
            missing = set(clip_ids) - set(idx.clip_id)
            if missing:
                raise KeyError(f"clips without features{f' in split {split!r}' if split else ''}: {sorted(missing)[:5]}")
            idx = idx.loc[list(clip_ids)]
        need = window_s + (offset_s or 0)
        short = idx[idx.clip_s < need]
        if len(short):
            log.warning("skipping %d clips shorter than %d s: %s", len(short), need, list(short.clip_id[:5]))
        idx = idx[idx.clip_s >= need]
        if idx.empty:
            raise ValueError(f"no clips in {features_dir} (split={split!r}) can give a {need} s window")
        self.clip_ids: list[str] = list(idx.clip_id) if clip_ids is not None else sorted(idx.clip_id)
        self._clip_s = dict(zip(idx.clip_id, idx.clip_s.astype(int), strict=True))
        one_per_shard = idx.drop_duplicates("shard").clip_id  # one header read per shard
        old = [c for c in one_per_shard if self.rhythm_key not in self.reader.tensor_names(c)]
        if old:
            raise ValueError(f"{features_dir} has shards made before `{self.rhythm_key}` existed (shard format 1, "
                             f"e.g. {self.reader.index.at[old[0], 'shard']}): move {features_dir} aside and run "
                             "`vidmusician features` again for the global-rhythm ablation")
        self._offsets = self._span_offsets(read_spans_file(features_dir) if excluded is None else excluded)

    def _span_offsets(self, excluded: Mapping[str, Sequence[Span]]) -> dict[str, list[int]]:
        """The allowed offsets of each clip with excluded spans; clips with none left are dropped."""
        offsets = {c: window_offsets(self._clip_s[c], self.window_s, excluded[c])
                   for c in self.clip_ids if excluded.get(c)}
        if self.offset_s is not None:
            offsets = {c: [self.offset_s] if self.offset_s in o else [] for c, o in offsets.items()}
        empty = [c for c, o in offsets.items() if not o]
        if empty:
            log.warning("skipping %d clips whose excluded spans leave no %d s window: %s", len(empty),
                        self.window_s, empty[:5])
            self.clip_ids = [c for c in self.clip_ids if c not in set(empty)]
            if not self.clip_ids:
                raise ValueError(f"excluded spans leave no clip a {self.window_s} s window")
        return {c: o for c, o in offsets.items() if o}

    def spec(self) -> FeatureSpec:
        """The CLIP width, CLIP model, codec, token rate and codebooks of these clips; one of each or an error."""
        idx = self.reader.index.loc[self.clip_ids]
        dims = sorted(set(idx.embed_dim.astype(int)))
        identities = {raw: json.loads(raw).get("identity", {}) for raw in idx.config.unique()}
        keys = {(i.get("clip_model"), i.get("codec"), int(i.get("token_rate", TOKEN_RATE_HZ)))
                for i in identities.values()}
        if len(dims) != 1 or len(keys) != 1:
            raise ValueError(f"the clips mix features made differently (CLIP widths {dims}, "
                             f"(clip model, codec, token rate) {sorted(keys, key=str)}): train on one features run")
        (clip_model, codec, rate), = keys
        k = int(self.reader.window(self.clip_ids[0], 0, 1)["codes"].shape[0])
        return FeatureSpec(clip_dim=dims[0], clip_model=clip_model, codec=codec, token_rate=rate, n_codebooks=k)

    def set_epoch(self, epoch: int) -> None:
        """Draw new random offsets for the next epoch (like ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def offset_for(self, i: int) -> int:
        clip_id = self.clip_ids[i]
        if self.offset_s is not None:
            return self.offset_s
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if clip_id in self._offsets:  # excluded spans: one of the windows that overlap none
            allowed = self._offsets[clip_id]
            return allowed[int(rng.integers(0, len(allowed)))]
        return int(rng.integers(0, self._clip_s[clip_id] - self.window_s + 1))

    def __getitem__(self, i: int) -> dict:
        clip_id = self.clip_ids[i]
        off = self.offset_for(i)
        w = self.reader.window(clip_id, off, self.window_s)
        return {
            "clip_id": clip_id,
            "offset_s": off,
            "global": torch.from_numpy(np.asarray(w["global"], dtype=np.float32)),  # [W, D]
            "rhythm": torch.from_numpy(np.asarray(w[self.rhythm_key], dtype=np.float32)),  # [W*50]
            "codes": torch.from_numpy(np.asarray(w["codes"], dtype=np.int64)),  # [K, W*50]
        }


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                  start: int = 0) -> list[list[int]]:
    """This rank's batches of one epoch, from batch ``start`` on (a resume mid-epoch).

    The order is ``DistributedSampler``'s: a permutation of ``range(n)`` drawn from ``seed + epoch``
    only, dealt to the ranks in turn; ``batch_size`` is the global batch (``batch_size // world`` per
    rank), so global batch b is the same set of items for any ``world``. Incomplete batches are dropped.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} out of world size {world}")
    if batch_size % world:
        raise ValueError(f"batch size {batch_size} does not split over {world} processes: use a multiple of {world}")
    local = batch_size // world
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    order = list(sampler)
    batches = [order[i : i + local] for i in range(0, len(order) - local + 1, local)]
    return batches[start:]


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Full global batches in one epoch of ``n`` items (the same for every world size)."""
    return n // batch_size


MANIFEST = "manifest.parquet"  # exports/NAME/manifest.parquet: the export's clips and their split


@dataclass(frozen=True)
class ExportSplit:
    """An export's own split, as its manifest fixed it at export time (never the shared feature index's
    ``split`` column, which the latest export rewrites)."""

    export: Path  # exports/NAME
    features: Path  # the data root's features/
    split_of: dict[str, str]  # clip id -> train / valid / test
    manifest_sha256: str  # of manifest.parquet's bytes (provenance)
    split_sha256: str  # of the sorted "clip_id<TAB>split" lines: what a resumed run must find unchanged

    def ids(self, split: str) -> list[str]:
        return sorted(c for c, s in self.split_of.items() if s == split)

    def record(self) -> dict:
        """What a checkpoint keeps of it: where, both hashes, and the clips of each split."""
        parts = sorted(set(self.split_of.values()))
        return {"export": str(self.export.resolve()), "manifest_sha256": self.manifest_sha256,
                "split_sha256": self.split_sha256, "splits": {p: self.ids(p) for p in parts}}


def split_sha256(split_of: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{c}\t{s}\n" for c, s in sorted(split_of.items())).encode()).hexdigest()


def read_export_split(export: str | Path) -> ExportSplit:
    """The split of the export at ``export`` (ROOT/exports/NAME) from its own manifest.parquet."""
    export = Path(export)
    manifest = export / MANIFEST
    raw = manifest.read_bytes()
    frame = pd.read_parquet(manifest, columns=["clip_id", "split"])
    split_of = {str(c): (None if pd.isna(s) else str(s)) for c, s in zip(frame.clip_id, frame.split, strict=True)}
    if (unsplit := [c for c, s in split_of.items() if s is None]):
        raise ValueError(f"{manifest}: {len(unsplit)} clips have no split (e.g. {unsplit[0]}): "
                         "re-run `vidmusician export` for this export")
    return ExportSplit(export, export.parent.parent / "features", split_of,  # type: ignore[arg-type]
                       hashlib.sha256(raw).hexdigest(), split_sha256(split_of))  # type: ignore[arg-type]
