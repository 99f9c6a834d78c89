"""Status values and reason codes shared by every layer; plain enums so they store as strings."""

from __future__ import annotations

import enum


class SourceStatus(enum.StrEnum):
    PENDING = "pending"  # known (e.g. found by a search), not processed yet
    DONE = "done"  # downloaded, separated, normalised and clipped
    FAILED = "failed"  # a stage raised; `error` says why


class ClipStatus(enum.StrEnum):
    PENDING_REVIEW = "pending_review"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FAILED = "failed"
    TAKEN_DOWN = "taken_down"  # final: no route (review, undo, re-curate) moves a clip out of it


class Verdict(enum.StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


class RejectReason(enum.StrEnum):
    """The paper's rejection criteria (§4), plus a free-text escape hatch."""

    NON_MUSIC = "non_music"  # more than 5 s of non-music content
    NOISE = "noise"  # persistent noise
    STATIC = "static"  # static images
    MISMATCH = "mismatch"  # background music does not match the video
    OTHER = "other"  # see the decision's note


TRAIN, VALID, TEST = "train", "valid", "test"  # the export's split names, stored in clips.split and the feature index
SPLITS = (TRAIN, VALID, TEST)  # in the order an export lists them
