"""Excluded spans: stretches of a clip an annotator marked as bad (speech, noise, vocals) while accepting
the rest. A training window never overlaps one.

A span is [start_s, end_s) in seconds from the clip's start. A window of W s at whole-second offset o
covers [o, o + W); it is served only when it overlaps no span, so a 60 s clip with a bad stretch at
50-55 s still yields 30 s windows at offsets 0-20. The spans of a clip are the union of those on its
live accept verdicts (read from the catalog by :func:`excluded_spans`), and for a clip rebuilt from a
release (no verdicts: not reviewed again) those the release listed, kept in the clip's lineage as its
"review" step (:func:`release_review_step`); the export writes them beside the features
(``features/excluded_spans.json``), where :class:`dvmset.dataset.FeatureWindows` reads them.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from dvmset.agreement import in_force
from dvmset.batches import batches, padded
from dvmset.io import atomic_write_text
from dvmset.tables import Clip, Decision

SPANS_FILE = "excluded_spans.json"  # in the features directory: {clip id: [[start_s, end_s, reason], ...]}
MAX_SPANS = 50  # per verdict
REVIEW_STEP = "review"  # a rebuilt clip's lineage step that holds the release's verdict and spans


class SpanReason(enum.StrEnum):
    NON_MUSIC = "non_music"
    NOISE = "noise"
    VOCALS = "vocals"
    OTHER = "other"


class InvalidSpan(ValueError):
    """A span that cannot be stored (the message says what is wrong)."""


@dataclass(frozen=True, order=True)
class Span:
    start_s: float
    end_s: float
    reason: str = SpanReason.OTHER.value

    def as_list(self) -> list:
        return [self.start_s, self.end_s, self.reason]


def check_spans(raw: Iterable[Mapping | Sequence], duration_s: float | None = None) -> list[Span]:
    """Spans as sent by the review page ({"start_s", "end_s", "reason"} or [start, end, reason]),
    checked and sorted; InvalidSpan says what is wrong."""
    out = []
    for item in raw:
        if isinstance(item, Mapping):
            start, end, reason = item.get("start_s"), item.get("end_s"), item.get("reason", SpanReason.OTHER)
        else:
            start, end, reason = (list(item) + [SpanReason.OTHER.value])[:3]
        try:
            start, end = round(float(start), 2), round(float(end), 2)
        except (TypeError, ValueError):
            raise InvalidSpan(f"span {item!r}: start and end must be numbers of seconds") from None
        if reason not in {r.value for r in SpanReason}:
            raise InvalidSpan(f"span reason {reason!r}: expected one of {[r.value for r in SpanReason]}")
        if not 0 <= start < end:
            raise InvalidSpan(f"span {start}-{end} s: the start must be at least 0 and before the end")
        if duration_s is not None and start >= duration_s:
            raise InvalidSpan(f"span {start}-{end} s starts after the clip's end ({duration_s:g} s)")
        out.append(Span(start, min(end, duration_s) if duration_s is not None else end, str(reason)))
    if len(out) > MAX_SPANS:
        raise InvalidSpan(f"{len(out)} spans: mark at most {MAX_SPANS}, or reject the clip")
    return sorted(out)


def merged(spans: Iterable[Span]) -> list[tuple[float, float]]:
    """The union of spans as sorted, disjoint [start, end) intervals (reasons dropped)."""
    out: list[list[float]] = []
    for s in sorted(spans):
        if out and s.start_s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], s.end_s)
        else:
            out.append([s.start_s, s.end_s])
    return [(a, b) for a, b in out]


def window_offsets(clip_s: float, window_s: int, spans: Iterable[Span] = ()) -> list[int]:
    """The whole-second offsets o at which a window [o, o + window_s) fits in the clip and overlaps no span."""
    intervals = merged(spans)
    last = int(clip_s) - window_s
    return [o for o in range(0, last + 1) if not any(o < b and a < o + window_s for a, b in intervals)]


def seconds_kept(clip_s: float, spans: Iterable[Span] = ()) -> float:
    """The clip's seconds outside every span."""
    cut = sum(min(b, clip_s) - min(a, clip_s) for a, b in merged(spans))
    return round(max(0.0, clip_s - cut), 2)


def write_spans_file(features_dir: Path, spans: Mapping[str, Sequence[Span]]) -> Path:
    """``features/excluded_spans.json`` with the clips that have spans (rewritten whole by each export)."""
    body = {cid: [s.as_list() for s in ss] for cid, ss in sorted(spans.items()) if ss}
    return atomic_write_text(Path(features_dir) / SPANS_FILE, json.dumps(body, sort_keys=True, indent=0) + "\n")


def read_spans_file(features_dir: Path) -> dict[str, list[Span]]:
    """The spans an export wrote beside the features; {} when it wrote none."""
    path = Path(features_dir) / SPANS_FILE
    if not path.is_file():
        return {}
    try:
        body = json.loads(path.read_text())
        return {cid: check_spans(ss) for cid, ss in body.items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"{path}: not a spans file ({exc}); run `vidmusician export` again to rewrite it") from None


def drop_from_spans_file(features_dir: Path, clip_ids: Iterable[str]) -> int:
    """Remove these clips (taken down) from the spans file beside the features; returns how many it held."""
    spans = read_spans_file(features_dir)
    gone = [c for c in clip_ids if c in spans]
    if gone:
        write_spans_file(features_dir, {c: ss for c, ss in spans.items() if c not in set(gone)})
    return len(gone)


def excluded_spans(session: Session, clip_ids: Iterable[str] | None = None) -> dict[str, list[Span]]:
    """{clip id: spans} from the live accept verdicts (every accepting annotator's spans count)."""
    q = select(Decision.clip_id, Decision.spans).where(in_force(Decision), Decision.verdict == "accept",
                                                       Decision.spans.is_not(None))
    rows = []
    if clip_ids is None:
        rows = session.execute(q).all()
    else:
        for ids in batches(dict.fromkeys(clip_ids)):
            rows += session.execute(q.where(Decision.clip_id.in_(padded(ids)))).all()
    rows += _release_spans(session, clip_ids)
    out: dict[str, list[Span]] = {}
    for cid, raw in rows:
        if raw:
            out.setdefault(cid, []).extend(check_spans(raw))
    return {cid: sorted(set(ss)) for cid, ss in out.items()}


def release_review_step(verdict: str | None, spans: Sequence) -> dict:
    """The lineage step a clip rebuilt from a release records: the release's verdict and the spans its
    annotators excluded (checked), so the rebuilt clip serves the same training windows."""
    return {"step": REVIEW_STEP, "tool": "release", "version": None,
            "params": {"verdict": verdict, "excluded_spans": [sp.as_list() for sp in check_spans(spans)]}}


def _release_spans(session: Session, clip_ids: Iterable[str] | None) -> list[tuple[str, list]]:
    """(clip id, spans) of rebuilt clips whose lineage's review step lists spans."""
    q = select(Clip.id, Clip.lineage).where(Clip.origin == "release")
    found = []
    for ids in ([None] if clip_ids is None else batches(dict.fromkeys(clip_ids))):
        for cid, lineage in session.execute(q if ids is None else q.where(Clip.id.in_(padded(ids)))):
            for step in (lineage or {}).get("steps", []):
                if step.get("step") == REVIEW_STEP and step.get("params", {}).get("excluded_spans"):
                    found.append((cid, step["params"]["excluded_spans"]))
    return found
