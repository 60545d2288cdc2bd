"""Retire and unretire: set files aside (a bad model, a wrong calibration) without losing them.

:func:`retire` (``spine-docs retire``) marks the files a query selects, and with
``with_descendants`` every file derived from them (:func:`spine_docs.lineage.descendants`,
transitively), ``retired: {reason, by, at}``. Every query of :mod:`spine_docs.queries` hides
retired files unless its filter has ``include_retired`` (see ``filters.NOT_RETIRED``), so the
CLI, the explorer, counts, facets and exports follow. :func:`unretire` removes the mark. A
dry run (the CLI's default for ``retire``) only counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from pymongo import UpdateMany

from . import history, store
from .prune import SHOWN, who
from .queries.filters import and_queries

BATCH = 1000


@dataclass
class RetireReport:
    action: str                       # "retire" or "unretire"
    dry_run: bool
    selected: int = 0                 # chosen by the query
    descendants: int = 0              # added through lineage
    changed: int = 0                  # documents written
    paths: list[str] = field(default_factory=list)
    cycles: list[list[str]] = field(default_factory=list)

    def summary(self) -> str:
        total = self.selected + self.descendants
        more = f" ({self.descendants} of them descendants)" if self.descendants else ""
        if self.dry_run:
            return f"would {self.action} {total} files{more} (dry run: nothing changed; add --yes to do it)"
        return f"{self.action}d {self.changed} of {total} files{more}"

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "dry_run": self.dry_run, "selected": self.selected,
                "descendants": self.descendants, "changed": self.changed, "paths": self.paths,
                "cycles": self.cycles}


def _select(db: Any, query: Mapping) -> list[tuple[str, str]]:
    return sorted((d["_id"], d["path"]) for d in db.files.find(dict(query), {"_id": 1, "path": 1}))


def _in_use(db: Any, ids: list[str]) -> set[str]:
    """Those of ``ids`` not retired: one ``_id $in`` read per :data:`BATCH` (not one per file)."""
    out: set[str] = set()
    for i in range(0, len(ids), BATCH):
        out.update(d["_id"] for d in db.files.find({"_id": {"$in": ids[i:i + BATCH]}, "retired": {"$exists": False}},
                                                   {"_id": 1}))
    return out


def retire(db: Any, query: Mapping, *, reason: str, with_descendants: bool = False,
           dry_run: bool = True, by: str | None = None,
           keep_versions: int = history.DEFAULT_KEEP) -> RetireReport:
    """Mark retired what ``query`` selects (and its descendants); files retired already keep
    their first reason. The documents before the mark are kept in the history (at most
    ``keep_versions`` per file)."""
    if not (reason or "").strip():
        raise ValueError("a reason is required")
    report = RetireReport("retire", dry_run)
    chosen = _select(db, and_queries(dict(query), {"retired": {"$exists": False}}))
    report.selected = len(chosen)
    ids = [i for i, _ in chosen]
    paths = [p for _, p in chosen]
    if with_descendants and chosen:
        from . import lineage

        found = lineage.descendants(db, paths)
        report.cycles = found.cycles
        seen = set(ids)
        extra = [(i, p) for i, p in found.documents if i not in seen]
        in_use = _in_use(db, [i for i, _ in extra])
        extra = [(i, p) for i, p in extra if i in in_use]
        report.descendants = len(extra)
        ids += [i for i, _ in extra]
        paths += [p for _, p in extra]
    report.paths = paths[:SHOWN]
    if dry_run:
        return report
    mark = {"reason": reason.strip(), "by": by or who(),
            "at": datetime.now(timezone.utc).replace(microsecond=0)}
    for i in range(0, len(ids), BATCH):
        with store.writing(db):
            res = history.write_updates(db, [UpdateMany(
                {"_id": {"$in": ids[i:i + BATCH]}, "retired": {"$exists": False}}, {"$set": {"retired": mark}})],
                change="retire", keep=keep_versions, now=mark["at"])
        report.changed += res.modified_count
    return report


def unretire(db: Any, query: Mapping, *, dry_run: bool = False,
             keep_versions: int = history.DEFAULT_KEEP) -> RetireReport:
    """Remove the mark from the retired files ``query`` selects (give it with retired files
    included: ``Filter(include_retired=True).query()``); the retired documents are kept in
    the history (at most ``keep_versions`` per file)."""
    report = RetireReport("unretire", dry_run)
    chosen = _select(db, and_queries(dict(query), {"retired": {"$exists": True}}))
    report.selected = len(chosen)
    report.paths = [p for _, p in chosen[:SHOWN]]
    if dry_run:
        return report
    ids = [i for i, _ in chosen]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for i in range(0, len(ids), BATCH):
        with store.writing(db):
            res = history.write_updates(db, [UpdateMany({"_id": {"$in": ids[i:i + BATCH]}},
                                                        {"$unset": {"retired": ""}})],
                                        change="unretire", keep=keep_versions, now=now)
        report.changed += res.modified_count
    return report
