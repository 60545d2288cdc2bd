"""Analytics of the matching files: how they spread over time (:func:`timeline`), over the values
of a numeric field (:func:`histogram`) and over run and subrun numbers (:func:`run_coverage`).

- ``timeline(db, flt, by="day"|"week"|"month", group=None|"dataset"|"model"|..., time_field="mtime")
  -> [{"period": "YYYY-MM-DD" (first day of the period; ISO weeks start on Monday), "group",
  "files", "events", "bytes"}]``
- ``histogram(db, flt, field="size", bins=20, log=False) -> {"field", "log", "bins": [{"lo", "hi",
  "count"}], "missing", "total"}``: bins are ``[lo, hi)`` (the last one contains the maximum)
- ``run_coverage(db, flt, dataset=None) -> [per dataset {"dataset", "files", "no_run", "run_min",
  "run_max", "run_count", "runs": [[a, b]], "gaps": [[a, b]], "missing_runs", "per_run": [{"run",
  "files", "events", "subruns": [[a, b]], "subrun_count", "subrun_gaps": [[a, b]], "missing_subruns"}]}]``
  (``[[a, b]]`` are inclusive ranges)
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any, Iterable

from .errors import QueryError
from ._run import _aggregate, _collection
from .filters import Filter, _query, and_queries
from .values import UTC

HISTOGRAM_FIELDS: tuple[str, ...] = (
    "size", "num_events", "run", "subrun", "event_min", "event_max", "inputs_count",
    "ingest.times_seen",
)
TIME_FIELDS: tuple[str, ...] = ("mtime", "ingest.first_seen", "ingest.last_seen")
TIMELINE_GROUPS: tuple[str, ...] = (
    "dataset", "model", "spine_version", "site", "status", "detector", "config", "prod_version",
)
_PERIOD_FORMATS = {"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}

MAX_RUN_SPAN = 100_000  # run_coverage expands [run, run_max] ranges up to this length

_OLDEST_DATE = datetime(1900, 1, 1, tzinfo=UTC)


def timeline_pipeline(flt: Filter | None, by: str = "day", group: str | None = None,
                      time_field: str = "mtime") -> list[dict]:
    if by not in _PERIOD_FORMATS:
        raise QueryError(f"by must be one of {', '.join(_PERIOD_FORMATS)}")
    if group is not None and group not in TIMELINE_GROUPS:
        raise QueryError(f"group must be one of {', '.join(TIMELINE_GROUPS)}")
    if time_field not in TIME_FIELDS:
        raise QueryError(f"time_field must be one of {', '.join(TIME_FIELDS)}")
    key: dict = {"p": {"$dateToString": {"format": _PERIOD_FORMATS[by], "date": "$" + time_field}}}
    if group is not None:
        key["g"] = {"$ifNull": ["$" + group, None]}  # missing and null: one "(none)" group
    return [
        {"$match": and_queries(_query(flt), {time_field: {"$gte": _OLDEST_DATE}})},
        {"$group": {"_id": key, "files": {"$sum": 1}, "events": {"$sum": "$num_events"},
                    "bytes": {"$sum": "$size"}}},
        {"$sort": {"_id.p": 1, "_id.g": 1}},
    ]


def _period_start(label: str, by: str) -> str:
    if by == "week":
        year, week = label.split("-W")
        return date.fromisocalendar(int(year), int(week), 1).isoformat()
    if by == "month":
        return label + "-01"
    return label


def timeline(db: Any, flt: Filter | None = None, by: str = "day", group: str | None = None, *,
             time_field: str = "mtime", max_time_ms: int | None = None) -> list[dict]:
    """Files, events and bytes per period (and per ``group`` value), oldest first. ``period``
    is the first day of the period (UTC; ISO weeks start on Monday). Files whose time field is
    null are not counted."""
    rows = _aggregate(_collection(db), timeline_pipeline(flt, by, group, time_field), max_time_ms)
    out = [{"period": _period_start(r["_id"]["p"], by), "group": r["_id"].get("g"),
            "files": r["files"], "events": r["events"] or 0, "bytes": r["bytes"] or 0}
           for r in rows]
    out.sort(key=lambda r: (r["period"], r["group"] is not None, str(r["group"])))
    return out


def _numeric(field: str, log: bool) -> dict:
    return {"$and": [{"$isNumber": "$" + field}, {"$gt": ["$" + field, 0]}]} if log \
        else {"$isNumber": "$" + field}


def histogram_stats_pipeline(flt: Filter | None, field: str, log: bool = False) -> list[dict]:
    """One row: total matching, numeric (positive when ``log``) count, min and max."""
    if field not in HISTOGRAM_FIELDS:
        raise QueryError(f"histogram field must be one of {', '.join(HISTOGRAM_FIELDS)}")
    ok = _numeric(field, log)
    q = _query(flt)
    return ([{"$match": q}] if q else []) + [
        {"$group": {"_id": None, "total": {"$sum": 1},
                    "n": {"$sum": {"$cond": [ok, 1, 0]}},
                    "lo": {"$min": {"$cond": [ok, "$" + field, None]}},
                    "hi": {"$max": {"$cond": [ok, "$" + field, None]}}}},
    ]


def histogram_pipeline(flt: Filter | None, field: str, start: float, width: float,
                       log: bool = False) -> list[dict]:
    """Counts per bin index ``floor((x - start) / width)`` (x = log10(value) when ``log``)."""
    if field not in HISTOGRAM_FIELDS:
        raise QueryError(f"histogram field must be one of {', '.join(HISTOGRAM_FIELDS)}")
    cond = {field: {"$gt": 0}} if log else {field: {"$gte": float("-inf")}}
    x: Any = {"$log10": "$" + field} if log else "$" + field
    return [
        {"$match": and_queries(_query(flt), cond)},
        {"$group": {"_id": {"$floor": {"$divide": [{"$subtract": [x, start]}, width]}},
                    "count": {"$sum": 1}}},
        {"$sort": {"_id": 1}},
    ]


def _nice(step: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= step."""
    if step <= 0:
        return 1.0
    exp = math.floor(math.log10(step))
    for m in (1, 2, 5, 10):
        if m * 10**exp >= step * (1 - 1e-12):
            return m * 10**exp
    return 10 ** (exp + 1)  # pragma: no cover


def histogram(db: Any, flt: Filter | None = None, field: str = "size", bins: int = 20, *,
              log: bool = False, max_time_ms: int | None = None) -> dict:
    """Histogram of a numeric promoted field: ``{"field", "log", "bins": [{"lo", "hi",
    "count"}], "missing", "total"}``. Linear bins have a round width (1, 2 or 5 x 10^k, at
    least 1: the fields are integers); ``log`` bins are equal in log10 and leave out values <= 0.
    ``missing`` counts matching files without a usable value."""
    if not 1 <= bins <= 1000:
        raise QueryError("bins must be between 1 and 1000")
    coll = _collection(db)
    stats = _aggregate(coll, histogram_stats_pipeline(flt, field, log), max_time_ms)
    s = stats[0] if stats else {"total": 0, "n": 0, "lo": None, "hi": None}
    result = {"field": field, "log": log, "bins": [], "missing": s["total"] - s["n"],
              "total": s["total"]}
    if not s["n"]:
        return result
    lo, hi = float(s["lo"]), float(s["hi"])
    if log:
        start = math.floor(math.log10(lo))
        span = math.log10(hi) - start
        width = span / bins if span > 0 else 1.0
        nbins = bins if span > 0 else 1
        edges = [10 ** (start + i * width) for i in range(nbins + 1)]
    else:
        width = max(1.0, _nice((hi - lo) / bins))
        start = math.floor(lo / width) * width
        nbins = int((hi - start) // width) + 1
        edges = [start + i * width for i in range(nbins + 1)]
    counts = [0] * nbins
    for r in _aggregate(coll, histogram_pipeline(flt, field, start, width, log), max_time_ms):
        if r["_id"] is None:
            continue
        i = min(max(int(r["_id"]), 0), nbins - 1)  # float rounding at the top edge
        counts[i] += r["count"]
    as_int = not log and float(width).is_integer() and float(start).is_integer()
    result["bins"] = [{"lo": int(edges[i]) if as_int else edges[i],
                       "hi": int(edges[i + 1]) if as_int else edges[i + 1],
                       "count": counts[i]} for i in range(nbins)]
    return result


def run_coverage_pipeline(flt: Filter | None, dataset: str | None = None) -> list[dict]:
    q = and_queries(_query(flt), {"dataset": dataset} if dataset is not None else None)
    return ([{"$match": q}] if q else []) + [
        {"$group": {"_id": {"d": "$dataset", "r": "$run", "rm": "$run_max", "s": "$subrun",
                            "sm": "$subrun_max"},
                    "files": {"$sum": 1}, "events": {"$sum": "$num_events"}}},
        # no $sort: run_coverage() orders everything itself (sorting one row per distinct
        # (dataset, run, subrun) costs as much as the grouping on the embedded catalog)
    ]


def _ranges(values: Iterable[int]) -> list[list[int]]:
    """Sorted ints -> inclusive ranges: [1, 2, 3, 7] -> [[1, 3], [7, 7]]."""
    out: list[list[int]] = []
    for v in sorted(set(values)):
        if out and v == out[-1][1] + 1:
            out[-1][1] = v
        else:
            out.append([v, v])
    return out


def _gaps(ranges: list[list[int]]) -> list[list[int]]:
    return [[a[1] + 1, b[0] - 1] for a, b in zip(ranges, ranges[1:])]


def _span(lo: Any, hi: Any) -> range | None:
    if not isinstance(lo, int) or isinstance(lo, bool):
        return None
    if not isinstance(hi, int) or isinstance(hi, bool) or hi < lo:
        hi = lo
    return range(lo, min(hi, lo + MAX_RUN_SPAN - 1) + 1)


def run_coverage(db: Any, flt: Filter | None = None, dataset: str | None = None, *,
                 max_time_ms: int | None = None) -> list[dict]:
    """Which runs and subruns each dataset has, and the gaps between them.

    A file covers runs ``run..run_max`` (``run_max`` null: just ``run``); a single-run file
    covers subruns ``subrun..subrun_max`` (a multi-run file adds to the ``files`` of each of its
    runs but to no run's ``events`` or subruns). Gaps are the missing numbers between the
    smallest and the largest present (inclusive ranges). ``no_run`` counts files without a run
    number. Ranges longer than ``MAX_RUN_SPAN`` are cut there.
    """
    rows = _aggregate(_collection(db), run_coverage_pipeline(flt, dataset), max_time_ms)
    per: dict[Any, dict] = {}
    for r in rows:
        k = r["_id"]
        d = per.setdefault(k.get("d"), {"files": 0, "no_run": 0, "runs": {}})
        d["files"] += r["files"]
        runs = _span(k.get("r"), k.get("rm"))
        if runs is None:
            d["no_run"] += r["files"]
            continue
        subruns = _span(k.get("s"), k.get("sm")) if len(runs) == 1 else None
        for run in runs:
            info = d["runs"].setdefault(run, {"files": 0, "events": 0, "subruns": set()})
            info["files"] += r["files"]
            if len(runs) == 1:
                info["events"] += r["events"] or 0
            if subruns is not None:
                info["subruns"].update(subruns)
    out = []
    for name in sorted(per, key=lambda n: (n is not None, str(n))):
        d = per[name]
        run_ranges = _ranges(d["runs"])
        gaps = _gaps(run_ranges)
        per_run = []
        for run in sorted(d["runs"]):
            info = d["runs"][run]
            sub_ranges = _ranges(info["subruns"])
            sub_gaps = _gaps(sub_ranges)
            per_run.append({"run": run, "files": info["files"], "events": info["events"],
                            "subruns": sub_ranges, "subrun_count": len(info["subruns"]),
                            "subrun_gaps": sub_gaps,
                            "missing_subruns": sum(b - a + 1 for a, b in sub_gaps)})
        out.append({
            "dataset": name, "files": d["files"], "no_run": d["no_run"],
            "run_min": run_ranges[0][0] if run_ranges else None,
            "run_max": run_ranges[-1][1] if run_ranges else None,
            "run_count": len(d["runs"]), "runs": run_ranges, "gaps": gaps,
            "missing_runs": sum(b - a + 1 for a, b in gaps), "per_run": per_run,
        })
    return out
