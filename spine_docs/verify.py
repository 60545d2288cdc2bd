"""Verification: does each file of a site still exist, as it was indexed?

:func:`verify` is what ``spine-docs verify`` calls. For every document of one site that a
filter selects, the file is stat()ed (:func:`spine_docs.ingest.stat_many`: in threads on a
slow filesystem, as a re-scan does) and never opened when size and mtime match; with
``checksum=True`` it is re-hashed too (:func:`spine_docs.extract.sha256_file`, in threads).
The verdict is recorded on the document, only when it changes:

* ``missing``: the file is gone (``verify.missing_since`` says since when it was noticed);
* ``changed``: size or mtime differ (the next ``inject`` re-indexes it);
* ``corrupt``: size and mtime match but the sha256 differs from the stored one;
* a file that is found again as indexed (it reappeared, was put back, or hashes right again)
  gets its status from before the verdict back (``verify.previous_status``).

Nothing is deleted and nothing else is touched: each update is guarded by the status it was
read with (a concurrent ``inject`` wins), selects the verified site's documents only, and
changes one document atomically, so an interrupted run leaves every document before or
after. Updates go out as unordered bulk writes. Each run is logged in ``runs`` (``kind:
"verify"``), like an inject.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, Sequence

from pymongo import UpdateOne

from . import history, ingest, runs, store
from .extract import LIFECYCLE_STATUSES, sha256_file
from .ingest import (MAX_LOGGED_PROBLEMS, STAT_THREADS, Problem, Progress, prepare, same_stat,
                     stat_many, stored_mtime_ms)
from .queries.filters import Filter, and_queries

#: documents per bulk write of verdicts
BATCH = 1000
VERDICTS = ("missing", "changed", "corrupt", "restored")


@dataclass
class VerifyReport:
    run_id: str
    site: str
    checked: int = 0
    ok: int = 0
    missing: int = 0
    changed: int = 0
    corrupt: int = 0
    restored: int = 0           # back to their previous status
    hashed: int = 0
    no_checksum: int = 0        # --checksum, but the catalog holds no sha256 to compare with
    unreadable: int = 0         # could not be stat()ed or read (permission...): left as they were
    updated: int = 0            # documents whose status this run changed
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def files_per_s(self) -> float:
        return self.checked / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """1 when a file is missing, changed, corrupt or unreadable (now, not only newly)."""
        return 1 if (self.missing or self.changed or self.corrupt or self.unreadable) else 0

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("checked", "ok", "missing", "changed", "corrupt",
                                              "restored", "hashed", "no_checksum", "unreadable",
                                              "updated")}

    def summary(self) -> str:
        extra = f", hashed {self.hashed}" if self.hashed else ""
        extra += f" ({self.no_checksum} without a stored checksum)" if self.no_checksum else ""
        extra += f", unreadable {self.unreadable}" if self.unreadable else ""
        return (f"checked {self.checked}: ok {self.ok}, missing {self.missing}, changed {self.changed}, "
                f"corrupt {self.corrupt}, restored {self.restored}{extra}; {self.updated} documents "
                f"updated, {self.files_per_s:,.0f} files/s in {self.seconds:.1f} s")

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "site": self.site, **self.counts(),
                "seconds": round(self.seconds, 3), "files_per_s": round(self.files_per_s, 1),
                "problems": [{"path": p.path, "reason": p.reason} for p in self.problems]}


@dataclass(frozen=True)
class Known:
    """What the catalog holds of one file (the fields a verdict needs)."""

    id: str
    path: str
    size: int | None
    mtime: int | None           # ms since the epoch
    status: str | None
    sha256: str | None
    previous: str | None        # verify.previous_status
    missing_since: datetime | None


PROJECTION = {"_id": 1, "site": 1, "path": 1, "size": 1, "mtime": 1, "status": 1,
              "checksum": 1, "verify": 1}


def selection(site: str, flt: Filter | Mapping | None = None) -> dict:
    """The query of the documents a verify of ``site`` reads: that site's, under the filter."""
    extra = flt.query() if isinstance(flt, Filter) else dict(flt or {})
    return and_queries({"site": site}, extra)


def known_files(db: Any, site: str, flt: Filter | Mapping | None = None) -> list[Known]:
    """The documents of ``site`` the filter selects, sorted by path (one projected scan)."""
    out = []
    for d in db.files.find(selection(site, flt), PROJECTION):
        v = d.get("verify") or {}
        c = d.get("checksum") or {}
        out.append(Known(d["_id"], d["path"], d.get("size"), stored_mtime_ms(d.get("mtime")),
                         d.get("status"), c.get("sha256") if isinstance(c, Mapping) else None,
                         v.get("previous_status"), v.get("missing_since")))
    out.sort(key=lambda k: k.path)
    return out


def _stat(path: str) -> tuple[os.stat_result | None, str | None]:
    """(stat, None), (None, "gone") or (None, reason)."""
    try:
        return os.stat(path), None
    except (FileNotFoundError, NotADirectoryError):
        return None, "gone"
    except PermissionError:
        return None, "permission denied (cannot stat)"
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None, "gone"
        return None, f"cannot stat: {exc.strerror or exc}"


def _hash(path: str) -> tuple[str | None, str | None]:
    try:
        return sha256_file(path), None
    except OSError as exc:
        return None, f"cannot read for checksum: {exc.strerror or exc}"


def verdict_update(k: Known, verdict: str, *, now: datetime, run_id: str) -> UpdateOne:
    """The write recording a verdict on one document (guarded by the status it was read
    with: a document another process changed meanwhile is left to it)."""
    guard = {"_id": k.id, "status": k.status}
    if verdict == "restored":
        back = k.previous or "ok"
        return UpdateOne(guard, {"$set": {"status": back}, "$unset": {"verify": ""},
                                 "$push": _history(now, run_id, back, "reappeared")})
    previous = k.previous if k.status in LIFECYCLE_STATUSES else k.status
    fields: dict[str, Any] = {"status": verdict, "verify": {
        "at": now, "run_id": run_id, "verdict": verdict, "previous_status": previous or "ok",
        "missing_since": (k.missing_since or now) if verdict == "missing" else None}}
    return UpdateOne(guard, {"$set": fields, "$push": _history(now, run_id, verdict, "verify")})


def _history(now: datetime, run_id: str, status: str, change: str) -> dict:
    from .ingest import HISTORY_LENGTH

    return {"ingest.history": {"$each": [{"at": now, "run_id": run_id, "status": status,
                                          "change": change}], "$slice": -HISTORY_LENGTH}}


def judge(k: Known, st: os.stat_result | None, problem: str | None,
          sha256: str | None = None) -> str | None:
    """The verdict on one file: ``missing``, ``changed``, ``corrupt``, ``restored`` (a
    verdict no longer holds), ``ok`` or None (unreadable: nothing is concluded).
    ``sha256``: the file's hash when it was re-hashed."""
    if problem == "gone":
        return "missing"
    if st is None:
        return None
    if not same_stat(k.size, k.mtime, st):
        return "changed"
    if sha256 is not None and k.sha256 is not None and sha256 != k.sha256:
        return "corrupt"
    if k.status == "corrupt" and sha256 is None:
        return "corrupt"  # not re-hashed: still as found last time
    return "restored" if k.status in LIFECYCLE_STATUSES else "ok"


def verify(db: Any, *, site: str, flt: Filter | Mapping | None = None, checksum: bool = False,
           workers: int | None = None, progress: Progress | None = None,
           batch_size: int = BATCH, keep_versions: int = history.DEFAULT_KEEP) -> VerifyReport:
    """Check every file of ``site`` the filter selects against the disk and record the
    verdicts; returns what was found. The documents a verdict changes are kept in the
    history (at most ``keep_versions`` per file, see :func:`spine_docs.history.write_updates`).
    See the module docstring."""
    prepare(db)
    started = time.monotonic()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    report = VerifyReport(run_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", site=site)
    threads = workers or STAT_THREADS
    runs.start(db, report.run_id, kind="verify", site=site, started=now, details={
        "filter": flt.describe() if isinstance(flt, Filter) else None,
        "filter_params": flt.to_params() if isinstance(flt, Filter) else None,
        "options": {"checksum": checksum, "workers": threads}})
    ops: list[UpdateOne] = []

    def flush() -> None:
        if ops:
            with store.writing(db):
                res = history.write_updates(db, list(ops), change="verify", keep=keep_versions,
                                            run_id=report.run_id, now=now)
            report.updated += res.modified_count
            ops.clear()

    with runs.ending(db, report.run_id, lambda: _end_fields(report, started)):
        known = known_files(db, site, flt)
        total, done = len(known), 0
        if progress:
            progress(0, total)
        for k, (st, problem), digest in _checked(known, threads, checksum):
            done += 1
            report.checked += 1
            if digest is not None:
                sha, why = digest
                if why:
                    report.problems.append(Problem(k.path, why))
                    problem, st = why, None
                elif k.sha256 is None:
                    report.no_checksum += 1
                report.hashed += why is None
            else:
                sha = None
            verdict = judge(k, st, problem, sha)
            if verdict is None:
                report.unreadable += 1
                if digest is None:
                    report.problems.append(Problem(k.path, problem or "unreadable"))
            elif verdict == "ok":
                report.ok += 1
            else:
                if verdict != "restored":
                    setattr(report, verdict, getattr(report, verdict) + 1)
                else:
                    report.restored += 1
                    report.ok += 1
                if verdict != k.status:  # a verdict that holds already is not written again
                    ops.append(verdict_update(k, verdict, now=now, run_id=report.run_id))
                    if len(ops) >= batch_size:
                        flush()
            if progress and (done % 1000 == 0 or done == total):
                progress(done, total)
        flush()
    return report


def _checked(known: Sequence[Known], threads: int, checksum: bool
             ) -> Iterator[tuple[Known, tuple[os.stat_result | None, str | None],
                                 tuple[str | None, str | None] | None]]:
    """(known, (stat, problem), (sha256, problem) or None) for each file, in order. Only the
    files whose size and mtime match are hashed (a changed file is changed whatever it holds)."""
    paths = [k.path for k in known]
    stats = stat_many(paths, stat=_stat, threads=threads, probe=ingest.STAT_PROBE,
                      slow_s=ingest.STAT_SLOW_S)  # read now: a test makes every filesystem slow
    if not checksum:
        for k, s in zip(known, stats):
            yield k, s, None
        return
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="spine-docs-hash") as pool:
        pending: list = []
        for k, s in zip(known, stats):
            st = s[0]
            fut = pool.submit(_hash, k.path) if st is not None and same_stat(k.size, k.mtime, st) else None
            pending.append((k, s, fut))
            if len(pending) >= 4 * max(1, threads):
                k0, s0, f0 = pending.pop(0)
                yield k0, s0, f0.result() if f0 is not None else None
        for k0, s0, f0 in pending:
            yield k0, s0, f0.result() if f0 is not None else None


def _end_fields(report: VerifyReport, started: float) -> dict[str, Any]:
    """The report's time, now, and what the run log records with the run's end."""
    report.seconds = time.monotonic() - started
    return {"counts": report.counts(), "seconds": round(report.seconds, 3),
            "files_per_s": round(report.files_per_s, 1),
            "problems": [{"path": p.path, "reason": p.reason}
                         for p in report.problems[:MAX_LOGGED_PROBLEMS]],
            "problems_count": len(report.problems)}


def last_runs(db: Any) -> dict[str, dict[str, Any]]:
    """The newest verify run of each site: ``{site: run}`` (without problem lists)."""
    out: dict[str, dict[str, Any]] = {}
    for r in db.runs.find({"kind": "verify"}, {"problems": 0}).sort("started", -1):
        out.setdefault(r.get("site"), r)
    return out
