"""The dataset-card metadata block (YAML front matter) that dataset hubs read from a card: licence, task,
size category, and where the data files are (Hugging Face's ``configs`` / ``data_files`` conventions)."""

from __future__ import annotations

import json

import pandas as pd

CC_BY = "creative commons attribution"  # YouTube's "Creative Commons Attribution license (reuse allowed)"
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"))


def size_category(n: int) -> str:
    """The hub's size bucket for ``n`` samples."""
    return next((name for limit, name in _SIZES if n < limit), "n>10M")


def hub_license(licences: pd.Series) -> tuple[str, dict]:
    """The card's ``license`` id: cc-by-3.0 when every clip's source is under YouTube's CC BY licence, else
    "other" with ``license_name`` / ``license_details`` naming the source licences as yt-dlp reported them."""
    known = sorted({str(v) for v in licences.dropna().unique() if str(v).strip()})  # distinct values only
    if len(licences) and licences.notna().all() and known and all(CC_BY in v.lower() for v in known):
        return "cc-by-3.0", {}
    details = ("per-clip source licences, as each source reported it (manifest column license): "
               + ("; ".join(known) if known else "not reported") + ". Check each before redistribution.")
    return "other", {"license_name": "source-licences", "license_details": details}


def _yaml(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON scalars and lists are YAML


def hub_metadata(name: str, manifest: pd.DataFrame) -> str:
    """The ``---`` YAML block to put first in the card of export ``name``."""
    licence, extra = hub_license(manifest["license"] if "license" in manifest else pd.Series(dtype=object))
    lines = ["---", f"pretty_name: {_yaml(f'DVMSet export {name}')}", f"license: {licence}"]
    lines += [f"{k}: {_yaml(v)}" for k, v in extra.items()]
    lines += ["task_categories:", "- text-to-audio", "tags:", "- video-to-music", "- music-generation", "- video",
              "- audio", "size_categories:", f"- {size_category(len(manifest))}", "configs:", "- config_name: default",
              "  data_files:", "  - split: manifest", "    path: manifest.parquet"]  # one row per clip, a split column
    return "\n".join(lines + ["---", ""]) + "\n"
