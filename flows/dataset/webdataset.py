"""`export --format webdataset`: the export's WebDataset shards, with the music extracted by ffmpeg
(dvmset decodes no media; pipeline.media is the one gateway to ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dvmset.export import export_lock
from dvmset.export_webdataset import WebDatasetSummary, write_webdataset
from dvmset.layout import DataRoot
from pipeline.media import run_ffmpeg


def music_flac(clip: Path, dest: Path) -> None:
    """The clip's music (its audio stream: the processed music curation muxed in) as FLAC, as it is."""
    run_ffmpeg(["-i", str(clip), "-map", "0:a:0", "-vn", "-c:a", "flac", "-f", "flac", str(dest)], stage="export")


def export_webdataset(root: DataRoot, out: Path, shard_size: int) -> WebDatasetSummary:
    """Write (or finish) the shards of the export at ``out`` from its manifest, under the export's lock."""
    with export_lock(out):
        manifest = pd.read_parquet(out / "manifest.parquet")
        return write_webdataset(root, out, manifest, music_flac, shard_size)
