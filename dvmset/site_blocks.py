"""Sites that push back: a bot check or an HTTP 429 pauses every worker's downloads from that site.

The pause lives in the catalog (``site_blocks``), so every worker sharing it pauses, not each one
learning it alone. Blocks in a row back off (``first_s``, then ×``factor`` each time, at most
``max_s``; longer when the site asked for it with Retry-After); a download that gets through ends the
streak. A block met while the site is already paused is the same episode: it does not back off again
(workers that were mid-download when the first block came all report it).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from dvmset.catalog import Catalog
from dvmset.tables import SiteBlock

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class PausePolicy:
    """The cool-down after the n-th block in a row: ``first_s * factor**(n-1)``, at most ``max_s``."""

    first_s: float = 900.0
    factor: float = 2.0
    max_s: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.first_s) and self.first_s > 0):
            raise ValueError(f"first pause must be a positive number of seconds, got {self.first_s}")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ValueError(f"pause back-off factor must be >= 1, got {self.factor}")
        if not (math.isfinite(self.max_s) and self.max_s >= self.first_s):
            raise ValueError(f"longest pause must be at least the first ({self.first_s} s), got {self.max_s}")

    def cool_down_s(self, times: int, retry_after_s: float | None = None) -> float:
        """Seconds to pause after the ``times``-th block in a row (never shorter than the site asked)."""
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        wait = min(self.max_s, self.first_s * self.factor ** min(times - 1, 64))
        return max(wait, retry_after_s or 0.0)


@dataclass(frozen=True)
class Pause:
    """A site paused: why (``kind``: "bot check" / "HTTP 429"), the how-many-th block in a row, until when."""

    site: str
    kind: str
    times: int
    until: dt.datetime
    message: str | None = None

    def describe(self, now: dt.datetime | None = None) -> str:
        """``youtube paused until 14:20 UTC (bot check, 3rd time)``; the date too when not today."""
        until = _aware(self.until).astimezone(dt.UTC)
        today = (now or utcnow()).astimezone(dt.UTC).date()
        when = until.strftime("%H:%M") if until.date() == today else until.strftime("%Y-%m-%d %H:%M")
        return f"{self.site} paused until {when} UTC ({self.kind}, {ordinal(self.times)} time)"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)  # SQLite hands back naive UTC


def _pause(row: SiteBlock) -> Pause:
    return Pause(row.site, row.kind, row.times, _aware(row.paused_until), row.message)


def record_block(cat: Catalog, site: str, kind: str, message: str | None = None, *,
                 retry_after_s: float | None = None, policy: PausePolicy = PausePolicy(),
                 clock: Clock = utcnow) -> Pause:
    """Pause ``site`` after a block; returns the pause every worker now sees."""
    now = clock()
    for attempt in range(2):  # two workers may insert the first block of a site at once
        try:
            with cat.session() as s:
                row = s.get(SiteBlock, site, with_for_update=True)
                if row is not None and _aware(row.paused_until) > now:  # the same episode: no new back-off
                    if retry_after_s:
                        row.paused_until = max(_aware(row.paused_until), now + dt.timedelta(seconds=retry_after_s))
                    out = _pause(row)
                else:
                    times = 1 if row is None else row.times + 1
                    until = now + dt.timedelta(seconds=policy.cool_down_s(times, retry_after_s))
                    if row is None:
                        row = SiteBlock(site=site, kind=kind, times=times, paused_until=until, message=message)
                        s.add(row)
                    else:
                        row.kind, row.times, row.paused_until, row.message = kind, times, until, message
                    out = Pause(site, kind, times, until, message)
                    log.warning("%s: %s", out.describe(now), message or kind)
            return out
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def paused(cat: Catalog, site: str, *, clock: Clock = utcnow) -> Pause | None:
    """The pause ``site`` is under now, or None."""
    with cat.session() as s:
        row = s.get(SiteBlock, site)
        return _pause(row) if row is not None and _aware(row.paused_until) > clock() else None


def active_pauses(cat: Catalog, *, clock: Clock = utcnow) -> list[Pause]:
    """Every site paused now, the soonest to resume first."""
    now = clock()
    with cat.session() as s:
        rows = [_pause(r) for r in s.scalars(select(SiteBlock))]
    return sorted((p for p in rows if p.until > now), key=lambda p: (p.until, p.site))


def got_through(cat: Catalog, site: str, *, clock: Clock = utcnow) -> None:
    """A download from ``site`` succeeded: its streak of blocks ends (a pause still running stays)."""
    with cat.session() as s:
        s.execute(delete(SiteBlock).where(SiteBlock.site == site, SiteBlock.paused_until <= clock()))
