"""Indexing: discover files, skip unchanged ones, extract in worker processes, batch upserts.

:func:`inject` is what ``spine-docs inject`` and ``spine-docs demo`` call. It never stops
for one bad file: every problem is reported by path with its reason (and recorded as a
``status: "error"`` document when there is a path to record), and the run is logged in the
``runs`` collection.
"""

from __future__ import annotations

import glob
import os
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import InsertOne, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from . import history, runs, schema, store
from .pool import parallel_map
from .extract import (EXTRACTOR_VERSION, ExtractCache, Limits, doc_id, error_document, extract,
                      extract_bson, mtime_ms, normalise_path, stat_problem)

HISTORY_LENGTH = 20
SEEN_BATCH = 1000
MAX_LOGGED_PROBLEMS = 1000

#: ``progress(done, total)`` is called as files are handled.
Progress = Callable[[int, int], None]


@dataclass
class Problem:
    path: str
    reason: str


@dataclass
class InjectReport:
    run_id: str
    site: str
    candidates: int = 0
    indexed: int = 0
    incomplete: int = 0
    unchanged: int = 0
    failed: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def files_per_s(self) -> float:
        handled = self.indexed + self.unchanged + self.failed
        return handled / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        extra = f" ({self.incomplete} incomplete)" if self.incomplete else ""
        return (f"indexed {self.indexed}{extra}, unchanged {self.unchanged}, failed {self.failed}, "
                f"{self.files_per_s:,.0f} files/s in {self.seconds:.1f} s")

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "site": self.site, "candidates": self.candidates,
            "indexed": self.indexed, "incomplete": self.incomplete, "unchanged": self.unchanged,
            "failed": self.failed, "seconds": round(self.seconds, 3),
            "files_per_s": round(self.files_per_s, 1),
            "problems": [{"path": p.path, "reason": p.reason} for p in self.problems],
        }


# --------------------------------------------------------------------------- discovery

def discover(sources: Sequence[str] = (), source_list: str | os.PathLike[str] | None = None
             ) -> tuple[list[str], list[Problem]]:
    """Expand globs (``**`` recurses), directories (all ``*.h5`` below) and a list file.

    Returns the sorted, de-duplicated, normalised candidate paths and the problems found
    (a glob that matches nothing, an unreadable list file). Directories *matched by a glob*
    stay candidates, so that they are reported as "is a directory" like any other bad path.
    A source that is an existing directory is read as one even when its name holds glob
    characters (``dir[1]``, ``a*b``).
    """
    problems: list[Problem] = []
    found: set[str] = set()
    patterns = list(sources)
    if source_list is not None:
        try:
            with open(source_list, encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        found.add(normalise_path(line))
        except OSError as exc:
            problems.append(Problem(str(source_list), f"cannot read the source list: {exc.strerror or exc}"))
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if os.path.isdir(expanded):  # first: a directory named "dir[1]" is not a glob
            matches = glob.glob(os.path.join(glob.escape(expanded), "**", "*.h5"), recursive=True)
            if not matches:
                problems.append(Problem(pattern, "the directory holds no .h5 files"))
            found.update(normalise_path(m) for m in matches)
        elif glob.has_magic(expanded):
            matches = glob.glob(expanded, recursive=True)
            if not matches:
                problems.append(Problem(pattern, "the pattern matched no files"))
            found.update(normalise_path(m) for m in matches)
        else:
            # a plain path: keep it even if it is missing, so it is reported by path
            found.add(normalise_path(expanded))
    return sorted(found), problems


# --------------------------------------------------------------------------- stat

#: the first this many stat() calls of a run are timed ...
STAT_PROBE = 256
#: ... and when they took longer than this on average (a parallel or network filesystem:
#: GPFS, Lustre, NFS answer in 0.1-10 ms, a local disk's cache in a few us) the rest run in
#: this many threads (stat() releases the GIL; on a fast filesystem threads only cost)
STAT_SLOW_S = 50e-6
STAT_THREADS = 16
_STAT_BLOCK = 64


def stat_many(paths: Sequence[str], *, stat: Callable[[str], Any] = stat_problem,
              probe: int = STAT_PROBE, slow_s: float = STAT_SLOW_S,
              threads: int = STAT_THREADS) -> Iterator[Any]:
    """``stat(path)`` of every path, in order: in this thread while the filesystem answers
    fast, in ``threads`` threads (blocks of paths, a bounded window of them in flight) once
    the first ``probe`` calls show that it does not."""
    head = paths[:probe]
    started = time.perf_counter()
    for path in head:
        yield stat(path)
    rest = paths[len(head):]
    if not rest:
        return
    if threads <= 1 or (time.perf_counter() - started) / max(1, len(head)) < slow_s:
        for path in rest:
            yield stat(path)
        return
    blocks = (rest[i:i + _STAT_BLOCK] for i in range(0, len(rest), _STAT_BLOCK))
    with ThreadPoolExecutor(threads, thread_name_prefix="spine-docs-stat") as pool:
        window: deque = deque()
        for block in blocks:
            window.append(pool.submit(lambda b: [stat(p) for p in b], block))
            if len(window) >= 4 * threads:
                yield from window.popleft().result()
        while window:
            yield from window.popleft().result()


# --------------------------------------------------------------------------- catalog side

def existing_index(db: Any, site: str) -> dict[str, tuple[int | None, int | None, str | None]]:
    """path -> (size, mtime in ms, status) of every document of a site (one projected scan)."""
    out: dict[str, tuple[int | None, int | None, str | None]] = {}
    # site is asked for too: the embedded catalog then hands each decoded document over as is
    cursor = db.files.find({"site": site},
                           {"_id": 0, "site": 1, "path": 1, "size": 1, "mtime": 1, "status": 1})
    epoch, ms = datetime(1970, 1, 1), timedelta(milliseconds=1)
    for d in cursor:
        mtime = d.get("mtime")
        if type(mtime) is datetime and mtime.tzinfo is None:  # as pymongo returns dates
            mtime = (mtime - epoch) // ms
        else:
            mtime = mtime_ms(mtime)
        out[d["path"]] = (d.get("size"), mtime, d.get("status"))
    return out


def is_unchanged(known: tuple[int | None, int | None, str | None] | None, st: os.stat_result) -> bool:
    """Same size and mtime (ms) as indexed, and not an error worth retrying."""
    if known is None:
        return False
    size, mtime, status = known
    return status != "error" and size == st.st_size and mtime == st.st_mtime_ns // 1_000_000


def upsert_op(doc: Mapping[str, Any], *, now: datetime, run_id: str, change: str) -> UpdateOne:
    """The write for one extracted document, keyed by ``_id`` (site + path).

    An ``error`` document only updates status, error, size and mtime of a document that
    exists already, so what an earlier run read from the file is not lost.

    The order of the operators and fields is the order of a new document's fields on the
    embedded catalog (a server orders them its own way): ``ingest`` right after ``_id``,
    and in it first the three fields a re-scan rewrites (see :func:`seen_op`), so that
    finding them in the BSON is short.
    """
    bookkeeping = {"ingest.last_seen": now, "ingest.run_id": run_id,
                   "ingest.extractor_version": EXTRACTOR_VERSION}
    body = {k: v for k, v in doc.items() if k != "_id"}
    on_insert = {"ingest.first_seen": now}
    if doc["status"] == "error":
        keep = ("size", "mtime", "status", "error")
        fields = {**bookkeeping, **{k: body[k] for k in keep}}
        on_insert.update({k: v for k, v in body.items() if k not in keep})
    else:
        fields = {**bookkeeping, **body}
    update = {
        "$set": fields,
        "$inc": {"ingest.times_seen": 1},
        "$setOnInsert": on_insert,
        "$push": {"ingest.history": {"$each": [{"at": now, "run_id": run_id, "status": doc["status"],
                                                 "change": change}], "$slice": -HISTORY_LENGTH}},
    }
    return UpdateOne({"_id": doc["_id"]}, update, upsert=True)


def insert_op(doc: Mapping[str, Any], *, now: datetime, run_id: str) -> InsertOne:
    """The write for a file the catalog does not hold yet: its whole document, with the
    ``ingest`` a new document gets from :func:`upsert_op` (same fields, same order), inserted
    as it is: a worker's BSON is not decoded here. Should the catalog hold the file after all
    (``--no-skip-existing``, or another run indexed it meanwhile), the insert fails with a
    duplicate key and the writer sends :func:`upsert_op` instead."""
    raw = doc.raw if isinstance(doc, RawBSONDocument) else bson.encode(doc)
    status = doc_facts(doc)["status"]
    ingest = bson.encode({"ingest": {
        "last_seen": now, "run_id": run_id, "extractor_version": EXTRACTOR_VERSION, "times_seen": 1,
        "first_seen": now, "history": [{"at": now, "run_id": run_id, "status": status, "change": "new"}],
    }})[4:-1]
    if raw[4] == 0x02 and raw[5:9] == b"_id\x00":  # what extract makes: _id first, a string
        after_id = 13 + int.from_bytes(raw[9:13], "little")
        body = b"".join((raw[4:after_id], ingest, raw[after_id:-1]))
    else:
        fields = bson.decode(raw)
        body = b"".join((bson.encode({"_id": fields.pop("_id")})[4:-1], ingest,
                         bson.encode(fields)[4:-1]))
    return InsertOne(RawBSONDocument((len(body) + 5).to_bytes(4, "little") + body + b"\0"))


def doc_facts(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """``path``, ``status`` and ``error`` of an extracted document (a worker's BSON is not
    decoded whole for them)."""
    if isinstance(doc, RawBSONDocument):
        return store.raw_fields(doc.raw, ("path", "status", "error"))
    return doc


def seen_op(ids: Sequence[str], *, now: datetime, run_id: str) -> UpdateMany:
    """The write for a batch of unchanged files: they were seen again (one op per batch)."""
    return UpdateMany({"_id": {"$in": list(ids)}},
                      {"$set": {"ingest.last_seen": now, "ingest.run_id": run_id},
                       "$inc": {"ingest.times_seen": 1}})


class _Writer:
    """Buffers writes and sends them as unordered bulk writes, batch by batch: an insert
    that finds its document there already is sent again as the upsert it came with."""

    def __init__(self, db: Any, batch_size: int, report: InjectReport, now: datetime,
                 keep_versions: int = 0):
        self.db = db
        self.keep_versions = keep_versions  # history.version_ops's bound (0: no history)
        self.now = now  # the run's time, in every write's bookkeeping
        self.batch_size = max(1, batch_size)
        self.interval = store.commit_interval(db)
        self.report = report
        self.ops: list[Any] = []
        self.paths: list[str] = []
        self.kinds: list[str] = []
        self.fallbacks: list[Callable[[], UpdateOne] | None] = []
        self.written: list[tuple[Any, str] | None] = []
        self.seen_ids: list[str] = []
        self.last = time.monotonic()
        self.beat = now  # the run's last heartbeat

    def add(self, op: Any, path: str, kind: str,
            on_duplicate: Callable[[], UpdateOne] | None = None,
            written: tuple[Any, str] | None = None) -> None:
        """``kind`` is how the report counted this file: indexed, unchanged or failed.
        ``on_duplicate``: the write to send instead when ``op`` (an insert) finds the
        document there already. ``written``: ``(document, change)`` an upsert (or the
        fallback of an insert) writes, whose previous document the history keeps."""
        self.ops.append(op)
        self.paths.append(path)
        self.kinds.append(kind)
        self.fallbacks.append(on_duplicate)
        self.written.append(written)
        if len(self.ops) >= self.batch_size and time.monotonic() - self.last >= self.interval:
            self.flush()

    def seen(self, _id: str) -> None:
        """An unchanged file: buffered and written as one UpdateMany per batch."""
        self.seen_ids.append(_id)
        if len(self.seen_ids) >= SEEN_BATCH:
            self.seen_flush()

    def seen_flush(self) -> None:
        if self.seen_ids:
            n = len(self.seen_ids)
            self.add(seen_op(self.seen_ids, now=self.now, run_id=self.report.run_id),
                     f"({n} unchanged files)", "unchanged")
            self.seen_ids = []

    def flush(self) -> None:
        if not self.ops:
            return
        ops, paths, kinds, fallbacks = self.ops, self.paths, self.kinds, self.fallbacks
        written = self.written
        self.ops, self.paths, self.kinds, self.fallbacks, self.written = [], [], [], [], []
        with store.writing(self.db):
            keep = self.keep_versions
            upserts = [i for i, op in enumerate(ops)
                       if keep and written[i] is not None and isinstance(op, UpdateOne)]
            # the documents these writes replace, read before they are written
            before = history.read_before(self.db, (written[i][0]["_id"] for i in upserts))
            again, failed = self._bulk(ops, paths, kinds, fallbacks)
            done = [written[i] for i in upserts if i not in failed]
            if again:  # inserts of documents that were there after all: upserts instead
                if keep:
                    more = history.read_before(self.db, (written[i][0]["_id"] for i in again
                                                         if written[i] is not None))
                    before.docs.update(more.docs)
                    before.newest.update(more.newest)
                _, failed_again = self._bulk([fallbacks[i]() for i in again], [paths[i] for i in again],
                                             [kinds[i] for i in again], [None] * len(again))
                done += [written[i] for j, i in enumerate(again)
                         if keep and j not in failed_again and written[i] is not None]
            versions = history.version_ops(before, done, now=self.now, run_id=self.report.run_id,
                                           keep=keep)
            if versions:  # in the same save as the files they were replaced in
                self.db[history.VERSIONS].bulk_write(versions, ordered=True)
            beat = datetime.now(timezone.utc)
            if beat - self.beat >= runs.HEARTBEAT_EVERY:
                runs.heartbeat(self.db, self.report.run_id, beat)  # in the same save
                self.beat = beat
        self.last = time.monotonic()
        self.interval = store.commit_interval(self.db)  # grows with an embedded catalog

    def _bulk(self, ops: list[Any], paths: list[str], kinds: list[str],
              fallbacks: list[Callable[[], UpdateOne] | None]) -> tuple[list[int], set[int]]:
        """One unordered bulk write; reports what the database refused, and returns the
        positions of the inserts that found their document there (to send again) and of
        the writes it refused."""
        again: list[int] = []
        failed: set[int] = set()
        try:
            self.db.files.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            for err in exc.details.get("writeErrors", []):
                i = err.get("index", 0)
                if err.get("code") == 11000 and fallbacks[i] is not None:
                    again.append(i)
                    continue
                failed.add(i)
                self.report.problems.append(Problem(paths[i], f"database refused the document: {err.get('errmsg')}"))
                if kinds[i] == "indexed":  # now a failure; "failed" ones were counted already,
                    self.report.indexed -= 1  # and an unchanged file's document is intact
                    self.report.failed += 1
        return sorted(again), failed


# --------------------------------------------------------------------------- workers

_worker_cache: ExtractCache | None = None  # set in each worker process by _init_worker


def _init_worker() -> None:
    global _worker_cache
    _worker_cache = ExtractCache(copy=False)  # each document is pickled as soon as it is made


def _extract_in_worker(path: str, site: str, limits: Limits, checksum: bool,
                       cache: ExtractCache | None = None, raw: bool = False) -> Any:
    """One file's document; with ``raw``, as a ``RawBSONDocument`` (what a worker process
    sends back: the BSON that fit() made anyway crosses between processes faster than a
    nested dict, and the catalog writes the nested parts' bytes as they are)."""
    try:
        if raw:
            return RawBSONDocument(extract_bson(path, site=site, limits=limits, checksum=checksum,
                                                cache=cache or _worker_cache))
        return extract(path, site=site, limits=limits, checksum=checksum,
                       cache=cache or _worker_cache)
    except Exception as exc:  # extract() handles file problems; this is a last resort
        doc = error_document(site, path, f"extractor failed: {type(exc).__name__}: {exc}"[:500])
        return RawBSONDocument(bson.encode(doc)) if raw else doc


def extract_many(paths: Sequence[str], *, site: str, limits: Limits, checksum: bool,
                 workers: int) -> Iterator[Mapping[str, Any]]:
    """Extract documents, in ``workers`` processes when that helps; yields in completion order
    (dicts when extracted in this process, ``RawBSONDocument`` from workers: read-only
    mappings whose sub-documents are ``RawBSONDocument`` too, dates naive UTC)."""
    fn = partial(_extract_in_worker, site=site, limits=limits, checksum=checksum)
    if workers <= 1 or len(paths) < 8:
        cache = ExtractCache()  # this run's, dropped with it
        for p in paths:
            yield fn(p, cache=cache)
        return
    chunksize = max(1, min(64, len(paths) // (workers * 8)))
    yield from parallel_map(partial(fn, raw=True), paths, workers=workers, chunksize=chunksize,
                            initializer=_init_worker)


# --------------------------------------------------------------------------- the run

def prepare(db: Any, db_url: str | None = None) -> None:
    """Initialise an empty catalog; refuse one whose schema version differs from the code's."""
    if schema.db_version(db) == 0 and not db.files.estimated_document_count():
        schema.setup(db, db_url=db_url)
    schema.check_version(db, db_url=db_url)


def inject(db: Any, *, settings: Any, sources: Sequence[str] = (),
           source_list: str | os.PathLike[str] | None = None, skip_existing: bool = True,
           progress: Progress | None = None) -> InjectReport:
    """Index files into ``db.files``; returns what happened. See the module docstring."""
    prepare(db, getattr(settings, "db_url", None))
    started = time.monotonic()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    report = InjectReport(run_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", site=settings.site)
    runs.start(db, report.run_id, kind="inject", site=report.site, started=now, details={
        "extractor_version": EXTRACTOR_VERSION, "sources": list(sources),
        "source_list": str(source_list) if source_list else None,
        "options": {"workers": settings.workers, "batch_size": settings.batch_size,
                    "checksum": settings.checksum, "skip_existing": skip_existing}})

    paths, problems = discover(sources, source_list)
    for p in problems:
        report.problems.append(p)
        report.failed += 1
    report.candidates = len(paths)
    total = len(paths)
    done = 0
    if progress:
        progress(0, total)

    known = existing_index(db, settings.site) if skip_existing else {}
    writer = _Writer(db, settings.batch_size, report, now, getattr(settings, "keep_versions", 0))
    todo: list[str] = []
    changes: dict[str, str] = {}
    seen, site = writer.seen, settings.site
    for path, (st, problem) in zip(paths, stat_many(paths)):
        prior = known.get(path)
        if prior is not None and problem is None and is_unchanged(prior, st):
            report.unchanged += 1
            seen(doc_id(site, path))
            done += 1
            if progress and done % 1000 == 0:
                progress(done, total)
            continue
        changes[path] = "new" if prior is None else ("retried" if prior[2] == "error" else "changed")
        todo.append(path)
    writer.seen_flush()
    if progress:
        progress(done, total)

    limits = Limits.from_settings(settings)
    try:
        for doc in extract_many(todo, site=settings.site, limits=limits, checksum=settings.checksum,
                                workers=settings.workers):
            facts = doc_facts(doc)
            path, status = facts["path"], facts["status"]
            if status == "error":
                report.failed += 1
                report.problems.append(Problem(path, facts["error"]))
            else:
                report.indexed += 1
                report.incomplete += status == "incomplete"
            kind = "failed" if status == "error" else "indexed"
            change = changes.get(path, "new")
            if change == "new":  # as far as this run knows: inserted whole, not decoded
                again = "new" if skip_existing else "reindexed"
                writer.add(insert_op(doc, now=now, run_id=report.run_id), path, kind,
                           partial(upsert_op, doc, now=now, run_id=report.run_id, change=again),
                           (doc, again))
            else:
                writer.add(upsert_op(doc, now=now, run_id=report.run_id, change=change), path, kind,
                           written=(doc, change))
            done += 1
            if progress:
                progress(done, total)
        writer.flush()
    except BaseException:
        report.seconds = time.monotonic() - started
        runs.end_quietly(db, report.run_id, "interrupted", _run_end_fields(report))
        raise
    report.seconds = time.monotonic() - started
    runs.end(db, report.run_id, "failed" if report.failed else "done", _run_end_fields(report))
    return report


def _run_end_fields(report: InjectReport) -> dict[str, Any]:
    counts = {k: getattr(report, k) for k in ("candidates", "indexed", "incomplete", "unchanged", "failed")}
    return {"counts": counts, "seconds": round(report.seconds, 3),
            "files_per_s": round(report.files_per_s, 1),
            "problems": [{"path": p.path, "reason": p.reason} for p in report.problems[:MAX_LOGGED_PROBLEMS]],
            "problems_count": len(report.problems)}
