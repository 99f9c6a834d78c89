"""dvmset: the dataset's own library — records, catalog, data-root layout, shards, export."""

from dvmset.layout import DataRoot
from dvmset.records import ClipStatus, RejectReason, SourceStatus, Verdict

__all__ = ["DataRoot", "ClipStatus", "RejectReason", "SourceStatus", "Verdict"]
