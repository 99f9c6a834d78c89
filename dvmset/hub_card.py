"""The dataset-card metadata block (YAML front matter) that dataset hubs read from a card: licence, task,
size category, and where the data files are (Hugging Face's ``configs`` / ``data_files`` conventions)."""

from __future__ import annotations

import json
from collections.abc import Mapping

CC_BY = "creative commons attribution"  # YouTube's "Creative Commons Attribution license (reuse allowed)"
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"))


def size_category(n: int) -> str:
    """The hub's size bucket for ``n`` samples."""
    return next((name for limit, name in _SIZES if n < limit), "n>10M")


def hub_license(licences: Mapping[str | None, int]) -> tuple[str, dict]:
    """The card's ``license`` id from the clips per source licence (None: not reported): cc-by-3.0 when every
    clip's source is under YouTube's CC BY licence, else "other" with ``license_name`` / ``license_details``
    naming the source licences as yt-dlp reported them."""
    known = sorted({str(v) for v, n in licences.items() if n and v is not None and str(v).strip()})
    if not licences.get(None) and known and all(CC_BY in v.lower() for v in known):
        return "cc-by-3.0", {}
    details = ("per-clip source licences, as each source reported it (manifest column license): "
               + ("; ".join(known) if known else "not reported") + ". Check each before redistribution.")
    return "other", {"license_name": "source-licences", "license_details": details}


def _yaml(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON scalars and lists are YAML


def hub_metadata(name: str, clips: int, licences: Mapping[str | None, int]) -> str:
    """The ``---`` YAML block to put first in the card of export ``name`` of ``clips`` clips, with the clips per
    source licence (None: not reported)."""
    licence, extra = hub_license(licences)
    lines = ["---", f"pretty_name: {_yaml(f'DVMSet export {name}')}", f"license: {licence}"]
    lines += [f"{k}: {_yaml(v)}" for k, v in extra.items()]
    lines += ["task_categories:", "- text-to-audio", "tags:", "- video-to-music", "- music-generation", "- video",
              "- audio", "size_categories:", f"- {size_category(clips)}", "configs:", "- config_name: default",
              "  data_files:", "  - split: manifest", "    path: manifest.parquet"]  # one row per clip, a split column
    return "\n".join(lines + ["---", ""]) + "\n"
