"""Prune and restore: move catalog documents into ``files_archive`` and back, never delete.

:func:`prune` (``spine-docs prune``) moves the documents a selection holds (files missing for
longer than some age, retired files, under any filter) into ``files_archive``: each is the
``files`` document as it was, with ``archived: {by, at, why, run_id}`` added at its end.
:func:`restore` (``spine-docs restore-files``) moves them back, byte-identical (the
``archived`` field removed, every other field as it was, in the same order).

No move can lose a document. A batch is first written to the destination (a replace by
``_id``, so writing it again is harmless), then removed from the source, guarded by the
selection (a document that changed meanwhile, e.g. re-indexed because its file came back,
stays, and its copy in the archive is taken back). An interruption between the two leaves a
document in both places, never in neither; running the command again finishes the move.
Restoring a document whose ``_id`` the catalog holds again (the file was indexed anew since)
keeps the catalog's document and leaves the archived one where it is (a *conflict*), unless
both are the same (a restore interrupted earlier), in which case the archived copy goes.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from pymongo import ReplaceOne
from pymongo.errors import BulkWriteError

from . import runs, store
from .queries.filters import Filter, and_queries

BATCH = 500
#: how many of the selected paths a report lists
SHOWN = 20
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks", None: "days"}


class PruneError(ValueError):
    """A prune that cannot be asked as given (no criterion, an age that is not one)."""


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s`` (a bare number is days)."""
    m = _AGE.match(text or "")
    if not m:
        raise PruneError(f"--missing-for {text!r} is not an age (e.g. 30d, 12h, 2w)")
    return timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})


def who() -> str:
    """``user@host`` of this process."""
    return f"{runs.user()}@{socket.gethostname()}"


def selection(flt: Filter | Mapping | None = None, *, missing_for: timedelta | None = None,
              retired: bool = False, now: datetime | None = None) -> dict:
    """The query of what a prune moves: files ``missing`` (by ``verify``) for at least
    ``missing_for``, and/or retired files (either), under the filter."""
    if missing_for is None and not retired:
        raise PruneError("say what to prune: --missing-for AGE (e.g. 30d) and/or --retired")
    now = now or datetime.now(timezone.utc)
    either = []
    if missing_for is not None:
        either.append({"status": "missing", "verify.missing_since": {"$lte": now - missing_for}})
    if retired:
        either.append({"retired": {"$exists": True}})
    if isinstance(flt, Filter):  # retired or not: what the criterion selects
        flt = flt.model_copy(update={"include_retired": True})
    extra = flt.query() if isinstance(flt, Filter) else dict(flt or {})
    return and_queries(either[0] if len(either) == 1 else {"$or": either}, extra)


@dataclass
class MoveReport:
    """What a prune or a restore did (or, dry, would do)."""

    action: str                 # "prune" or "restore"
    dry_run: bool
    run_id: str | None = None
    selected: int = 0
    moved: int = 0
    skipped: int = 0            # changed meanwhile (prune) or conflicts (restore): left where they were
    paths: list[str] = field(default_factory=list)   # the first SHOWN selected
    conflicts: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        if self.dry_run:
            where = "into files_archive" if self.action == "prune" else "back into files"
            how = "add --yes to do it" if self.action == "prune" else "run it again without --dry-run"
            return f"would move {self.selected} documents {where} (dry run: nothing changed; {how})"
        verb = "archived" if self.action == "prune" else "restored"
        extra = f", {self.skipped} left where they were" if self.skipped else ""
        return f"{verb} {self.moved} of {self.selected} documents{extra} in {self.seconds:.1f} s"

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "dry_run": self.dry_run, "run_id": self.run_id,
                "selected": self.selected, "moved": self.moved, "skipped": self.skipped,
                "paths": self.paths, "conflicts": self.conflicts, "seconds": round(self.seconds, 3)}


def _ids(coll: Any, query: Mapping) -> list[tuple[Any, str]]:
    return sorted((d["_id"], d.get("path", "")) for d in coll.find(dict(query), {"_id": 1, "path": 1}))


def _start(db: Any, action: str, report: MoveReport, details: Mapping[str, Any]) -> datetime:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    report.run_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    runs.start(db, report.run_id, kind=action, site=details.get("site") or "*", started=now,
               details={k: v for k, v in details.items() if k != "site"})
    return now


def _end_fields(report: MoveReport, started: float) -> dict[str, Any]:
    """The report's time, now, and what the run log records with the run's end."""
    report.seconds = time.monotonic() - started
    return {"counts": {"selected": report.selected, "moved": report.moved, "skipped": report.skipped},
            "seconds": round(report.seconds, 3), "conflicts": report.conflicts[:1000]}


def prune(db: Any, query: Mapping, *, why: str, dry_run: bool = True, by: str | None = None,
          batch_size: int = BATCH, site: str | None = None) -> MoveReport:
    """Move the ``files`` documents ``query`` selects (see :func:`selection`) into
    ``files_archive``; with ``dry_run`` only count them. See the module docstring."""
    started = time.monotonic()
    report = MoveReport("prune", dry_run)
    selected = _ids(db.files, query)
    report.selected = len(selected)
    report.paths = [p for _, p in selected[:SHOWN]]
    if dry_run or not selected:
        report.seconds = time.monotonic() - started
        if dry_run:
            return report
    now = _start(db, "prune", report, {"site": site, "why": why, "by": by or who()})
    stamp = {"by": by or who(), "at": now, "why": why, "run_id": report.run_id}
    with runs.ending(db, report.run_id, lambda: _end_fields(report, started)):
        for i in range(0, len(selected), max(1, batch_size)):
            ids = [i_ for i_, _ in selected[i:i + batch_size]]
            guard = and_queries({"_id": {"$in": ids}}, dict(query))
            with store.writing(db):
                docs = list(db.files.find(guard))
                if not docs:
                    continue
                db.files_archive.bulk_write([ReplaceOne({"_id": d["_id"]}, {**d, "archived": stamp}, upsert=True)
                                             for d in docs], ordered=False)
                gone = db.files.delete_many(and_queries({"_id": {"$in": [d["_id"] for d in docs]}},
                                                        dict(query))).deleted_count
                report.moved += gone
                if gone < len(docs):  # changed in between: the catalog's stays, the copy goes back
                    stayed = [d["_id"] for d in db.files.find({"_id": {"$in": [d["_id"] for d in docs]}}, {"_id": 1})]
                    db.files_archive.delete_many({"_id": {"$in": stayed}, "archived.run_id": report.run_id})
                    report.skipped += len(stayed)
            report.skipped += len(ids) - len(docs)
    return report


def archive_query(flt: Filter | Mapping | None = None, *, run_id: str | None = None,
                  at: datetime | None = None) -> dict:
    """The query of archived documents to restore: the filter applies to their fields as
    they were in ``files``; ``run_id``: only what that prune run moved; ``at``: when that
    run stamped them (:func:`archived_at`: the ``archived.at`` index finds them, not a scan)."""
    if isinstance(flt, Filter):  # retired ones too: they were archived as they were
        flt = flt.model_copy(update={"include_retired": True})
    extra = flt.query() if isinstance(flt, Filter) else dict(flt or {})
    by_run = {"archived.run_id": run_id, **({"archived.at": at} if at is not None else {})} if run_id else {}
    return and_queries(by_run, extra)


def archived_at(db: Any, run_id: str) -> datetime | None:
    """When prune run ``run_id`` stamped what it archived (``archived.at`` is the run's
    ``started``, see :func:`prune`); None when ``runs`` does not hold that prune run."""
    run = db.runs.find_one({"_id": run_id, "kind": "prune"}, {"started": 1})
    return run.get("started") if run else None


def restore(db: Any, query: Mapping, *, dry_run: bool = False, batch_size: int = BATCH) -> MoveReport:
    """Move the ``files_archive`` documents ``query`` selects back into ``files``, as they
    were before the prune. Idempotent: run again after an interruption, it finishes."""
    started = time.monotonic()
    report = MoveReport("restore", dry_run)
    selected = _ids(db.files_archive, query)
    report.selected = len(selected)
    report.paths = [p for _, p in selected[:SHOWN]]
    if dry_run:
        report.seconds = time.monotonic() - started
        return report
    _start(db, "restore", report, {"query": repr(dict(query))[:1000]})
    with runs.ending(db, report.run_id, lambda: _end_fields(report, started)):
        for i in range(0, len(selected), max(1, batch_size)):
            ids = [i_ for i_, _ in selected[i:i + batch_size]]
            with store.writing(db):
                archived = list(db.files_archive.find({"_id": {"$in": ids}}))
                docs = [{k: v for k, v in a.items() if k != "archived"} for a in archived]
                if not docs:
                    continue
                clash: set = set()
                try:
                    db.files.insert_many(docs, ordered=False)
                except BulkWriteError as exc:
                    errors = exc.details.get("writeErrors", [])
                    if any(e.get("code") != 11000 for e in errors):
                        raise
                    clash = {docs[e["index"]]["_id"] for e in errors}
                done = [d["_id"] for d in docs if d["_id"] not in clash]
                for d in docs:
                    if d["_id"] in clash:
                        if db.files.find_one({"_id": d["_id"]}) == d:   # restored by an earlier run
                            done.append(d["_id"])
                        else:
                            report.conflicts.append(d.get("path", str(d["_id"])))
                db.files_archive.delete_many({"_id": {"$in": done}})
                report.moved += len(done)
                report.skipped += len(docs) - len(done)
    return report
