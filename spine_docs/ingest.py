"""Indexing: discover files, skip unchanged ones, extract in worker processes, batch upserts.

:func:`inject` is what ``spine-docs inject`` and ``spine-docs demo`` call. It never stops
for one bad file: every problem is reported by path with its reason (and recorded as a
``status: "error"`` document when there is a path to record), and the run is logged in the
``runs`` collection.

Nor does it stop for a failover: a batch the database did not take (a primary stepping
down, a reset connection) is sent again for up to ``failover_timeout_s`` (see
:class:`_Writer`). Files are counted once their write has landed, so a run that cannot go
on (:class:`InjectStopped`, one line) has counted exactly what it wrote, and the next run
indexes the rest.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache, partial
from typing import Any, Callable, Iterator, Mapping, Sequence

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import InsertOne, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from . import retry as retry_mod
from . import history, runs, schema, store, supersede, worker
from .discovery import Problem, discover
from .extract import (EXTRACTOR_VERSION, LIFECYCLE_STATUSES, ExtractCache, Limits, doc_id,
                      mtime_ms, stat_problem)
from .pool import Background, parallel_map, start as start_pool
from .worker import Extracted

HISTORY_LENGTH = 20
#: fewer files than this are extracted in the calling process, without workers
MIN_PARALLEL = 8
SEEN_BATCH = 1000
MAX_LOGGED_PROBLEMS = 1000

#: ``progress(done, total)`` is called as files are handled.
Progress = Callable[[int, int], None]


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

class Discovery:
    """:func:`discover` of ``sources`` and ``source_list``, started now: in a worker process
    when ``workers`` > 1, so that the walk of a large tree (about 1 s for 50,000 files in
    100,000 directories, nearly all of it system calls) runs while the caller opens the
    catalog and :func:`inject` reads what it holds; else in the calling process, when
    :meth:`result` is first called. A source starting with ``~`` is always expanded here
    (a worker has the environment of the forkserver it came from). Use it as a context
    manager (leaving it kills a worker still walking) and pass it to :func:`inject` with
    the same sources::

        with Discovery(sources, workers=settings.workers) as found:
            db = store.connect(url)
            report = inject(db, settings=settings, sources=sources, discovery=found)
    """

    def __init__(self, sources: Sequence[str] = (), source_list: str | os.PathLike[str] | None = None,
                 *, workers: int = 1):
        self.sources, self.source_list = list(sources), source_list
        self._result: tuple[list[str], list[Problem]] | None = None
        background = workers > 1 and not any(s.startswith("~") for s in self.sources)
        # forked from this process when it can be: the forkserver may still be importing
        self._job = Background(discover, self.sources, source_list, preload=worker.MODULES,
                               fork=True) if background else None

    def result(self) -> tuple[list[str], list[Problem]]:
        """``(sorted candidate paths, problems)``, as :func:`discover` returns them."""
        if self._result is None:
            self._result = self._job.result() if self._job is not None \
                else discover(self.sources, self.source_list)
        return self._result

    def close(self) -> None:
        if self._job is not None:
            self._job.close()

    def __enter__(self) -> "Discovery":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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
    for d in cursor:
        out[d["path"]] = (d.get("size"), stored_mtime_ms(d.get("mtime")), d.get("status"))
    return out


_EPOCH, _MS = datetime(1970, 1, 1), timedelta(milliseconds=1)


def stored_mtime_ms(mtime: datetime | None) -> int | None:
    """A stored ``mtime`` in ms since the epoch, as :func:`is_unchanged` compares it."""
    if type(mtime) is datetime and mtime.tzinfo is None:  # as pymongo returns dates
        return (mtime - _EPOCH) // _MS
    return mtime_ms(mtime)


#: statuses a re-scan does not skip even when size and mtime match: an error is retried,
#: and a verdict of ``verify`` (missing, changed, corrupt) is replaced by a fresh reading
RESCAN_STATUSES = frozenset({"error", *LIFECYCLE_STATUSES})


def same_stat(size: int | None, mtime: int | None, st: os.stat_result) -> bool:
    """The file has the size and mtime (ms) the catalog holds."""
    return size == st.st_size and mtime == st.st_mtime_ns // 1_000_000


def is_unchanged(known: tuple[int | None, int | None, str | None] | None, st: os.stat_result) -> bool:
    """Same size and mtime (ms) as indexed, and not an error worth retrying nor a verdict of
    ``verify`` to replace."""
    if known is None:
        return False
    size, mtime, status = known
    return status not in RESCAN_STATUSES and same_stat(size, mtime, st)


def upsert_op(doc: Mapping[str, Any], *, now: datetime, run_id: str, change: str,
              extra: Mapping[str, Any] | None = None) -> UpdateOne:
    """The write for one extracted document, keyed by ``_id`` (site + path).

    An ``error`` document only updates status, error, size and mtime of a document that
    exists already, so what an earlier run read from the file is not lost.

    The order of the operators and fields is the order of a new document's fields on the
    embedded catalog (a server orders them its own way): ``ingest`` right after ``_id``,
    and in it first the three fields a re-scan rewrites (see :func:`seen_op`), so that
    finding them in the BSON is short. ``extra``: fields set last (the ``lineage``), only
    when the document is inserted for an ``error`` document.
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
    if extra:
        (on_insert if doc["status"] == "error" else fields).update(extra)
    update = {
        "$set": fields,
        "$inc": {"ingest.times_seen": 1},
        "$setOnInsert": on_insert,
        "$unset": {"verify": ""},  # a fresh reading replaces the verdict of `spine-docs verify`
        "$push": {"ingest.history": {"$each": [{"at": now, "run_id": run_id, "status": doc["status"],
                                                 "change": change}], "$slice": -HISTORY_LENGTH}},
    }
    return UpdateOne({"_id": doc["_id"]}, update, upsert=True)


def insert_op(doc: Mapping[str, Any] | bytes, *, now: datetime, run_id: str,
              status: str | None = None, extra: Mapping[str, Any] | None = None) -> InsertOne:
    """The write for a file the catalog does not hold yet: its whole document, with the
    ``ingest`` a new document gets from :func:`upsert_op` (same fields, same order), inserted
    as it is: a worker's BSON (bytes or a ``RawBSONDocument``) is not decoded here. Should the
    catalog hold the file after all (``--no-skip-existing``, or another run indexed it
    meanwhile), the insert fails with a duplicate key and the writer sends :func:`upsert_op`
    instead. ``status``: the document's, when the caller knows it already; ``extra``: fields
    added at the end (the ``lineage`` the writer resolved)."""
    if isinstance(doc, bytes):
        raw, doc = doc, RawBSONDocument(doc)
    else:
        raw = doc.raw if isinstance(doc, RawBSONDocument) else bson.encode(doc)
    ingest = _new_ingest(now, run_id, doc_facts(doc)["status"] if status is None else status)
    tail = bson.encode(extra)[4:-1] if extra else b""
    if raw[4] == 0x02 and raw[5:9] == b"_id\x00":  # what extract makes: _id first, a string
        after_id = 13 + int.from_bytes(raw[9:13], "little")
        body = b"".join((raw[4:after_id], ingest, raw[after_id:-1], tail))
    else:
        fields = bson.decode(raw)
        body = b"".join((bson.encode({"_id": fields.pop("_id")})[4:-1], ingest,
                         bson.encode(fields)[4:-1], tail))
    return InsertOne(RawBSONDocument((len(body) + 5).to_bytes(4, "little") + body + b"\0"))


@lru_cache(maxsize=16)
def _new_ingest(now: datetime, run_id: str, status: str) -> bytes:
    """The BSON element of a new document's ``ingest`` (one per status in a run)."""
    return bson.encode({"ingest": {
        "last_seen": now, "run_id": run_id, "extractor_version": EXTRACTOR_VERSION, "times_seen": 1,
        "first_seen": now, "history": [{"at": now, "run_id": run_id, "status": status, "change": "new"}],
    }})[4:-1]


def _upsert_op_of(doc: Mapping[str, Any] | bytes, **kw: Any) -> UpdateOne:
    """:func:`upsert_op` of a document that may be a worker's BSON bytes."""
    return upsert_op(RawBSONDocument(doc) if isinstance(doc, bytes) else doc, **kw)


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


class InjectStopped(store.StoreError):
    """The database did not take a batch's writes within the retry window (a failover that
    did not end, a server gone): the run stops. What was written is recorded and counted;
    the next run indexes the rest."""


@dataclass
class _Extracted:
    """A file's extracted document, buffered until its batch's links are resolved."""
    doc: Any                       # a dict, or a worker's BSON bytes
    facts: Mapping[str, Any]       # its worker.FACTS
    change: str                    # "new", "changed" or "retried"

    @property
    def path(self) -> str:
        return self.facts["path"]

    @property
    def status(self) -> str:
        return self.facts["status"]


@dataclass
class _Entry:
    """One file's write, and how the report counts the file once the write has landed."""
    op: Any
    _id: str
    path: str
    kind: str                      # "indexed" or "failed" (an error document)
    incomplete: bool = False
    reason: str | None = None      # an error document's reason
    fallback: Callable[[], UpdateOne] | None = None  # for an insert that finds its document
    written: tuple[Any, str] | None = None  # (document, change): what the history compares
    replaces: bool = False         # an upsert: the document it replaces goes to the history


class _Writer:
    """Buffers writes and sends them as unordered bulk writes, batch by batch: an insert
    that finds its document there already is sent again as the upsert it came with.

    A file is counted (indexed, failed, unchanged) when the database has taken its write,
    not before: a run that stops counts only what it wrote. A batch the database did not
    take because of a failover (see :func:`spine_docs.retry.is_retryable`) is sent again,
    with backoff, for at most ``window`` seconds; before each new attempt the writes that
    landed already (their document carries this run's id) are dropped, so that no file is
    written or counted twice. A write-concern error fails every file of its bulk (they are
    marked ``status: "error"`` so that the next run indexes them again). The "seen again"
    updates go as a bulk of their own: a multi-document update in a bulk turns off
    retryable writes for all of it."""

    def __init__(self, db: Any, batch_size: int, report: InjectReport, now: datetime, *,
                 site: str = "", skip_existing: bool = True,
                 window: float = 30.0, backoff: float = retry_mod.FIRST_BACKOFF_S,
                 keep_versions: int = 0):
        self.db = db
        self.site = site
        self.skip_existing = skip_existing
        self.links: Any = None  # spine_docs.links.Links, made with the first extracted file
        self.extractions: list[_Extracted] = []
        self.batch_size = max(1, batch_size)
        self.interval = store.commit_interval(db)
        self.report = report
        self.window = window
        self.backoff = backoff
        self.keep_versions = keep_versions  # history.version_ops's bound (0: no history)
        self.now = now  # the run's time, in every write's bookkeeping
        self._taken: list[_Entry] | None = None  # the entries whose write landed, in a flush
        self.seen_ids: list[str] = []
        self.seen_paths: list[str] = []
        self.seen_batches: list[tuple[list[str], list[str]]] = []
        self.last = time.monotonic()
        self.beat = now  # the run's last heartbeat

    def extracted(self, doc: Any, facts: Mapping[str, Any], change: str,
                  remaining: int | None = None) -> None:
        """A file's extracted document (a dict, or a worker's BSON bytes) and its
        :data:`worker.FACTS`, to write: its write is made when its batch is sent, with the
        ``lineage`` that :class:`spine_docs.links.Links` resolves for the whole batch.
        ``change``: "new" (the catalog does not hold the file, as far as this run knows),
        "changed" or "retried". ``remaining``: how many files are still to come after
        this one, when the caller knows it (see :meth:`_maybe_flush`)."""
        self.extractions.append(_Extracted(doc, facts, change))
        self._maybe_flush(remaining)

    def _maybe_flush(self, remaining: int | None = None) -> None:
        """Send the buffered writes once there are ``batch_size`` of them and the commit
        interval has passed; and, whatever the interval, when only ``batch_size`` files are
        still to come: the last batch, written after the workers are done while nothing
        else runs, is then at most that, instead of up to a commit interval's worth of
        files (tens of seconds of them on a large embedded catalog)."""
        if len(self.extractions) + len(self.seen_batches) >= self.batch_size and (
                remaining == self.batch_size or time.monotonic() - self.last >= self.interval):
            self.flush()

    def seen(self, _id: str, path: str) -> None:
        """An unchanged file: buffered and written as one UpdateMany per batch."""
        self.seen_ids.append(_id)
        self.seen_paths.append(path)
        if len(self.seen_ids) >= SEEN_BATCH:
            self.seen_flush()

    def seen_flush(self) -> None:
        if self.seen_ids:
            self.seen_batches.append((self.seen_ids, self.seen_paths))
            self.seen_ids, self.seen_paths = [], []
            self._maybe_flush()

    def _entries(self) -> tuple[list[_Entry], list[UpdateOne]]:
        """The writes of the buffered extractions, each new document with its lineage (and
        its supersede mark), and the mark updates of the documents written before them
        (:meth:`Links.marks`), to send after them."""
        batch, self.extractions = self.extractions, []
        if not batch:
            return [], []
        from . import links

        if self.links is None:
            self.links = links.Links(self.db)
        lineages = self.links.lineages([x.facts for x in batch], new=[x.change == "new" for x in batch],
                                       written=[x.change == "new" or x.status != "error" for x in batch])
        # the supersede marks: a new file's with it, the files written before by one bulk after
        inline, marks = self.links.marks()
        now, run_id = self.now, self.report.run_id
        out = []
        for x, lineage in zip(batch, lineages):
            extra = {"lineage": lineage} if lineage is not None else None
            mark = inline.get(x.facts["_id"])
            if mark is not None:
                extra = {**(extra or {}), "superseded_by": mark}
            if x.change == "new":  # as far as this run knows: inserted whole, not decoded
                again = "new" if self.skip_existing else "reindexed"
                op = insert_op(x.doc, now=now, run_id=run_id, status=x.status, extra=extra)
                fallback = partial(_upsert_op_of, x.doc, now=now, run_id=run_id, change=again, extra=extra)
                written, replaces = (x.doc, again), False
            else:
                op, fallback = _upsert_op_of(x.doc, now=now, run_id=run_id, change=x.change, extra=extra), None
                written, replaces = (x.doc, x.change), True
            failed = x.status == "error"
            # counted (indexed, incomplete, failed) once the database has taken the write
            out.append(_Entry(op, doc_id(self.site, x.path), x.path, "failed" if failed else "indexed",
                              incomplete=x.status == "incomplete",
                              reason=x.facts.get("error") if failed else None,
                              fallback=fallback, written=written, replaces=replaces))
        return out, marks

    def finish(self) -> None:
        """After the last flush: the links the whole run changed (:meth:`Links.finish`); a
        link the database refuses is reported (the files are indexed)."""
        if self.links is None:
            return
        self._links_written(lambda: self.links.finish(self.site, keep_versions=self.keep_versions,
                                                      run_id=self.report.run_id, now=self.now))

    def _links_written(self, fn: Callable[[], Any]) -> None:
        """``fn()``, writes of links (lineage, supersede marks), sent again through a
        failover; a link the database refuses is reported (the files are indexed)."""
        try:
            self.retried(fn)
        except BulkWriteError as exc:
            for err in exc.details.get("writeErrors", [])[:MAX_LOGGED_PROBLEMS]:
                self.report.problems.append(Problem("(links)", f"database refused a lineage link or a "
                                                               f"superseded_by mark: {err.get('errmsg')}"))

    def flush(self) -> None:
        entries, marks = self._entries()
        if not entries and not self.seen_batches:
            return
        seen, self.seen_batches = self.seen_batches, []
        with store.writing(self.db):
            for ids, paths in seen:
                self._write_seen(ids, paths)
            if entries:
                keep = self.keep_versions
                # the documents these writes replace, read before they are written (history)
                before = history.read_before(self.db, (e._id for e in entries if keep and e.replaces)) \
                    if keep else None
                self._taken = []
                again = self._write(entries)
                if again:  # inserts of documents that were there after all: upserts instead
                    if keep:
                        more = history.read_before(self.db, (e._id for e in again))
                        before.docs.update(more.docs)
                        before.newest.update(more.newest)
                    self._write([_Entry(e.fallback(), e._id, e.path, e.kind, e.incomplete, e.reason,
                                        written=e.written, replaces=True) for e in again])
                taken, self._taken = self._taken, None
                if keep:  # the replaced documents, in the same save as the files
                    versions = history.version_ops(
                        before, [e.written for e in taken if e.replaces and e.written is not None],
                        now=self.now, run_id=self.report.run_id, keep=keep)
                    if versions:
                        self.retried(lambda: self.db[history.VERSIONS].bulk_write(versions, ordered=True))
                if marks:  # after the batch: a mark may change a document it wrote
                    self._links_written(lambda: supersede.write_marks(
                        self.db, marks, keep=keep, run_id=self.report.run_id, now=self.now,
                        fresh=self.links.inserted))
            beat = datetime.now(timezone.utc)
            if beat - self.beat >= runs.HEARTBEAT_EVERY:
                self.retried(lambda: runs.heartbeat(self.db, self.report.run_id, beat))  # in the same save
                self.beat = beat
        self.last = time.monotonic()
        self.interval = store.commit_interval(self.db)  # grows with an embedded catalog

    def retried(self, fn: Callable[[], Any]) -> Any:
        """``fn()``, sent again through a failover; :class:`InjectStopped` when it never lands."""
        try:
            return retry_mod.retry(fn, window=self.window, first_backoff=self.backoff)
        except PyMongoError as exc:
            if not retry_mod.is_retryable(exc):
                raise
            raise InjectStopped(
                f"stopped: the database did not take the writes for {self.window:g} s "
                f"({retry_mod.one_line(exc)}); what was written is counted in the run log, "
                f"run the same inject again to index the rest") from None

    def _landed(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` this run has written already (their document carries its id)."""
        found = self.db.files.find({"_id": {"$in": list(ids)}, "ingest.run_id": self.report.run_id},
                                   {"_id": 1})
        return {d["_id"] for d in found}

    def _write(self, entries: list[_Entry]) -> list[_Entry]:
        """One unordered bulk write of ``entries``, sent again through a failover; counts
        the files whose write landed, reports what the database refused, and returns the
        inserts that found their document there (to send again as upserts)."""
        state = {"todo": entries, "first": True, "landed": []}

        def attempt() -> list[_Entry]:
            if not state["first"]:  # what landed before the failure is done: not again
                done = self._landed([e._id for e in state["todo"]])
                state["landed"] += [e for e in state["todo"] if e._id in done]
                state["todo"] = [e for e in state["todo"] if e._id not in done]
            state["first"] = False
            return self._bulk(state["todo"]) if state["todo"] else []

        again = self.retried(attempt)
        for e in state["landed"]:
            self._count(e)
        return again

    def _bulk(self, entries: list[_Entry]) -> list[_Entry]:
        again: list[_Entry] = []
        refused: dict[int, str] = {}
        unconfirmed: list[dict] = []
        try:
            self.db.files.bulk_write([e.op for e in entries], ordered=False)
        except BulkWriteError as exc:
            for err in exc.details.get("writeErrors", []):
                i = err.get("index", 0)
                if err.get("code") == 11000 and entries[i].fallback is not None:
                    again.append(entries[i])
                else:
                    refused[i] = f"database refused the document: {err.get('errmsg')}"
            unconfirmed = exc.details.get("writeConcernErrors") or []
        sent_again = {id(e) for e in again}
        taken = [e for i, e in enumerate(entries) if i not in refused and id(e) not in sent_again]
        for i, why in refused.items():
            self._fail(entries[i], why)
        if unconfirmed:
            self._unconfirmed(taken, unconfirmed[0])
        else:
            for e in taken:
                self._count(e)
        return again

    def _count(self, e: _Entry) -> None:
        """A file whose write landed."""
        if self._taken is not None:
            self._taken.append(e)
        if e.kind == "indexed":
            self.report.indexed += 1
            self.report.incomplete += e.incomplete
        else:
            self._fail(e, None)

    def _fail(self, e: _Entry, why: str | None) -> None:
        self.report.failed += 1
        if e.reason is not None:
            self.report.problems.append(Problem(e.path, e.reason))
        if why is not None:
            self.report.problems.append(Problem(e.path, why))

    def _unconfirmed(self, entries: list[_Entry], wce: Mapping[str, Any]) -> None:
        """A write-concern error: the writes may not survive a failover. Each file fails, and
        its document, if it holds this run's write, is marked an error, so that the next run
        indexes it again (that mark is best effort: the database is in trouble)."""
        why = (f"the database did not confirm the write ({wce.get('code')}: {wce.get('errmsg')}); "
               f"the next run indexes it again")
        for e in entries:
            self._fail(e, why)
        ids = [e._id for e in entries]
        try:
            self.retried(lambda: self.db.files.update_many(
                {"_id": {"$in": ids}, "ingest.run_id": self.report.run_id},
                {"$set": {"status": "error", "error": why}}))
        except (PyMongoError, InjectStopped):
            pass

    def _write_seen(self, ids: list[str], paths: list[str]) -> None:
        """One batch of "seen again" updates, as a bulk of its own, sent again through a
        failover without the documents that this run has marked already."""
        state = {"todo": ids, "first": True}

        def attempt() -> None:
            if not state["first"]:
                done = self._landed(state["todo"])
                state["todo"] = [i for i in state["todo"] if i not in done]
            state["first"] = False
            if state["todo"]:
                self.db.files.bulk_write([seen_op(state["todo"], now=self.now, run_id=self.report.run_id)],
                                         ordered=False)

        try:
            self.retried(attempt)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors") or []
            wces = exc.details.get("writeConcernErrors") or []
            if wces:  # their documents are intact; the next run sees them again
                wce = wces[0]
                for p in paths:
                    self.report.failed += 1
                    self.report.problems.append(Problem(p, (
                        f"the database did not confirm that it was seen again "
                        f"({wce.get('code')}: {wce.get('errmsg')})")))
                return
            for err in errors:  # an unchanged file's document is intact
                self.report.problems.append(Problem(f"({len(ids)} unchanged files)",
                                                    f"database refused the document: {err.get('errmsg')}"))
        self.report.unchanged += len(ids)


# --------------------------------------------------------------------------- workers

def extract_many(paths: Sequence[str], *, site: str, limits: Limits, checksum: bool,
                 workers: int) -> Iterator[Extracted]:
    """Extract documents, in ``workers`` processes when that helps; yields (document, facts)
    in input order. The document is a dict when extracted in this process (and its own
    facts), the BSON bytes of one (:func:`insert_op` writes them as they are; a
    ``RawBSONDocument`` of them is a read-only mapping whose dates are naive UTC) from a
    worker."""
    fn = partial(worker.extract_one, site=site, limits=limits, checksum=checksum)
    if workers <= 1 or len(paths) < MIN_PARALLEL:
        cache = ExtractCache()  # this run's, dropped with it
        for p in paths:
            yield fn(p, cache=cache)
        return
    # small chunks: the first result comes, and the last worker is done, about one chunk's
    # work (16 files: tens of ms) after the others; a chunk's own cost is tens of us
    chunksize = max(1, min(16, len(paths) // (workers * 8)))
    yield from parallel_map(partial(fn, raw=True), paths, workers=workers, chunksize=chunksize,
                            initializer=worker.init, preload=worker.MODULES)


# --------------------------------------------------------------------------- the run

def prepare(db: Any, db_url: str | None = None) -> None:
    """Initialise an empty catalog; refuse one whose schema version differs from the code's."""
    if schema.db_version(db) == 0 and not db.files.estimated_document_count():
        schema.setup(db, db_url=db_url)
    schema.check_version(db, db_url=db_url)


def inject(db: Any, *, settings: Any, sources: Sequence[str] = (),
           source_list: str | os.PathLike[str] | None = None, skip_existing: bool = True,
           progress: Progress | None = None, discovery: Discovery | None = None) -> InjectReport:
    """Index files into ``db.files``; returns what happened. See the module docstring.
    ``discovery``: a :class:`Discovery` of the same sources, started by the caller."""
    if discovery is not None and (discovery.sources, discovery.source_list) != (list(sources), source_list):
        raise ValueError("inject(): the discovery is not of these sources")
    prepare(db, getattr(settings, "db_url", None))
    started = time.monotonic()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    report = InjectReport(run_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", site=settings.site)
    runs.start(db, report.run_id, kind="inject", site=report.site, started=now, details={
        "extractor_version": EXTRACTOR_VERSION, "sources": list(sources),
        "source_list": str(source_list) if source_list else None,
        "options": {"workers": settings.workers, "batch_size": settings.batch_size,
                    "checksum": settings.checksum, "skip_existing": skip_existing}})

    known = existing_index(db, settings.site) if skip_existing else {}
    # the workers' forkserver starts, and imports what they need, while this process finds and
    # stats the files: now when every file will be extracted, else once extract_many would
    # use workers
    start_workers = settings.workers > 1
    if start_workers and not known:
        start_pool(worker.MODULES)
        start_workers = False
    paths, problems = discovery.result() if discovery is not None else discover(sources, source_list)
    for p in problems:
        report.problems.append(p)
        report.failed += 1
    report.candidates = len(paths)
    total = len(paths)
    site = settings.site
    done = 0
    if progress:
        progress(0, total)

    writer = _Writer(db, settings.batch_size, report, now, site=site, skip_existing=skip_existing,
                     window=getattr(settings, "failover_timeout_s", 30.0),
                     backoff=getattr(settings, "retry_backoff_s", retry_mod.FIRST_BACKOFF_S),
                     keep_versions=getattr(settings, "keep_versions", 0))
    seen = writer.seen
    todo: list[str] = []
    changes: dict[str, str] = {}
    try:
        # only a file the catalog holds is stat()ed here (is it unchanged?): a new one is
        # opened by its worker anyway, which reports what stat() would have
        stats = stat_many([p for p in paths if p in known]) if known else iter(())
        for path in paths:
            prior = known.get(path)
            if prior is not None:
                st, problem = next(stats)
                if problem is None and is_unchanged(prior, st):
                    seen(doc_id(site, path), path)  # counted unchanged once written
                    done += 1
                    if progress and done % 1000 == 0:
                        progress(done, total)
                    continue
            changes[path] = "new" if prior is None else ("retried" if prior[2] == "error" else "changed")
            todo.append(path)
            if start_workers and len(todo) == MIN_PARALLEL:
                start_pool(worker.MODULES)
                start_workers = False
        writer.seen_flush()
        if progress:
            progress(done, total)

        limits = Limits.from_settings(settings)
        remaining = len(todo)
        for doc, facts in extract_many(todo, site=settings.site, limits=limits,
                                       checksum=settings.checksum, workers=settings.workers):
            remaining -= 1
            writer.extracted(doc, facts, changes.get(facts["path"], "new"), remaining)
            done += 1
            if progress:
                progress(done, total)
        with store.writing(db):  # the last batch, the links and the run's end: one save
            writer.flush()
            writer.finish()
            report.seconds = time.monotonic() - started
            state = "failed" if report.failed else "done"
            writer.retried(lambda: runs.end(db, report.run_id, state, _run_end_fields(report)))
    except InjectStopped:  # the database may be back by now: the counts are worth a wait
        report.seconds = time.monotonic() - started
        try:
            writer.retried(lambda: runs.end(db, report.run_id, "interrupted", _run_end_fields(report)))
        except (PyMongoError, OSError, store.StoreError):
            pass  # the run shows as interrupted once its process has gone (runs.reap)
        raise
    except BaseException:
        report.seconds = time.monotonic() - started
        runs.end_quietly(db, report.run_id, "interrupted", _run_end_fields(report))
        raise
    return report


def _run_end_fields(report: InjectReport) -> dict[str, Any]:
    counts = {k: getattr(report, k) for k in ("candidates", "indexed", "incomplete", "unchanged", "failed")}
    return {"counts": counts, "seconds": round(report.seconds, 3),
            "files_per_s": round(report.files_per_s, 1),
            "problems": [{"path": p.path, "reason": p.reason} for p in report.problems[:MAX_LOGGED_PROBLEMS]],
            "problems_count": len(report.problems)}
