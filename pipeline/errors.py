"""The stage contract's error: a failed item becomes a catalog row with this message."""

from __future__ import annotations


class StageError(RuntimeError):
    """A stage could not process one item; ``str(err)`` is a reason a person can act on.

    ``permanent`` tells the orchestrator whether a retry could help (a 404 will not; a reset
    connection may).
    """

    def __init__(self, stage: str, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.stage = stage
        self.permanent = permanent

    def __reduce__(self):
        # Keeps stage and permanent across pickling (Prefect results, process pools).
        return (type(self), (self.stage, self.args[0]), {"permanent": self.permanent})

    def __setstate__(self, state: dict) -> None:
        self.permanent = state["permanent"]

    def __str__(self) -> str:
        return f"{self.stage}: {self.args[0]}"
