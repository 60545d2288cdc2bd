"""Time for the history tests: a clock the test sets (patched in for ``datetime`` where a
module reads ``datetime.now``), and sample files written with a chosen mtime."""

from __future__ import annotations

import os
from datetime import datetime, timezone

from spine_docs import samples

UTC = timezone.utc


def frozen_clock(at: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> type[datetime]:
    """A ``datetime`` subclass whose ``now()`` is its ``at`` (the test moves it); one per
    test module, so that no module sees another's time."""

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return cls.at

    Clock.at = at
    return Clock


def write_energy(path, energy: float, hour: int) -> None:
    """A SPINE sample file whose root attribute ``energy`` is ``energy``, its mtime Jan 1,
    2026, ``hour`` o'clock UTC (so that a re-write at another hour is a changed file)."""
    samples.write_spine_file(path, root_attrs={"energy": energy}, seed=0, n_events=3)
    ts = datetime(2026, 1, 1, hour, tzinfo=UTC).timestamp()
    os.utime(path, (ts, ts))
