"""``spine-docs doctor``: what an administrator checks on their catalog before and after an
upgrade, and ``--selftest``, which proves the whole tool on their own server.

Nothing here prints: :func:`diagnose` returns a :class:`Report`, :func:`selftest` a
:class:`SelftestReport`; :func:`render` and :func:`render_selftest` turn them into text lines
and their ``as_dict()`` into one JSON document (the CLI prints either).

What :func:`diagnose` reads (read-only; nothing is written, not even the run log's reaping):

* the server (a MongoDB server only): ``buildInfo`` (version), ``getParameter
  featureCompatibilityVersion`` (needs the ``clusterMonitor`` role: "unknown" without it),
  ``hello`` (replica set name, whether this member is the writable primary, hosts; a
  standalone has no set name, a ``mongos`` says ``isdbgrid``);
* the schema: database and code versions, pending and changed migrations, indexes missing or
  extra and validators compared with ``schema.json`` (:func:`spine_docs.migrate.status`), the
  validator of each collection, the migration lock holder;
* the newest ingest runs (a dead one shows as interrupted) with their first problems;
* document counts (files by status through the status index's facet; every collection's
  estimated count) and the largest document: on a server ``$bsonSize`` over a random sample
  (or every document with ``full_scan=True``: a collection scan), on the embedded catalog and
  mongomock the exact size of every stored BSON document (no decoding);
* the lifecycle, per site: the files ``verify`` found missing, changed or corrupt and the
  retired ones (:func:`lifecycle`: the status index and the retired partial index), and the
  site's last verify run (:func:`spine_docs.verify.last_runs`);
* query plans: the plan checker's static verdict for every query shape
  (:func:`spine_docs.queries.shapes.verdicts`) under the indexes the ``files`` collection has;
  with ``explain=True`` on a server, ``explain("executionStats")`` of every shape against the
  live data: the winning plan (IXSCAN on which index, or COLLSCAN), keys and documents
  examined, time.

A :class:`Report` lists ``problems`` (exit 1: schema version mismatch, missing index or other
blocking drift, a COLLSCAN the allow-list does not name, a static verdict that is not ok, a
shape the server cannot explain) and ``warnings`` (reported, exit 0).

The self-test works in a scratch database ``<db>_selftest_<random>`` (a sibling directory for
the embedded catalog) that it refuses to reuse and always removes, after a failure or Ctrl-C
too; each capability is a small function returning passed, failed (with the server's error)
or skipped (why). See :data:`CAPABILITIES`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bson import Decimal128
from pymongo.errors import OperationFailure, PyMongoError

from . import ingest, migrate, plans, queries, runs, samples, schema, store
from .queries import shapes
from .settings import Settings
from .store.engine import raw_documents, raw_id
from .verify import last_runs as last_verify_runs


class DoctorError(Exception):
    """The doctor cannot do what was asked (one line; nothing was changed)."""


# --------------------------------------------------------------------------- small helpers

def _one_line(exc: BaseException) -> str:
    """An error as one line: the server's own message (``errmsg``) when there is one."""
    if isinstance(exc, OperationFailure) and isinstance(exc.details, Mapping) and exc.details.get("errmsg"):
        text = str(exc.details["errmsg"])
    else:
        text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300] if text else type(exc).__name__


def kind_of(db: Any) -> str:
    """``server``, ``embedded`` or ``mongomock``."""
    if store.is_server(db):
        return "server"
    return "embedded" if store.is_embedded(db) else "mongomock"


# --------------------------------------------------------------------------- server facts

@dataclass
class ServerFacts:
    """What a MongoDB server says about itself; ``None`` where it would not say."""

    version: str | None = None
    fcv: str | None = None             # featureCompatibilityVersion, or "unknown (...)"
    topology: str = "standalone"       # standalone | replica set | mongos (sharded cluster)
    set_name: str | None = None
    writable_primary: bool | None = None
    primary: str | None = None
    me: str | None = None
    hosts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def server_facts(db: Any) -> ServerFacts:
    """``buildInfo``, ``getParameter featureCompatibilityVersion`` and ``hello`` of a server."""
    facts = ServerFacts()
    admin = db.client.admin
    try:
        facts.version = str(db.command("buildInfo").get("version") or "") or None
    except OperationFailure as exc:
        facts.notes.append(f"buildInfo: {_one_line(exc)}")
    try:
        reply = admin.command({"getParameter": 1, "featureCompatibilityVersion": 1})
        fcv = reply.get("featureCompatibilityVersion")
        facts.fcv = str(fcv.get("version")) if isinstance(fcv, Mapping) else (str(fcv) if fcv else None)
        if facts.fcv is None:
            facts.fcv = "unknown (the server did not say)"
    except OperationFailure as exc:
        facts.fcv = "unknown (needs clusterMonitor)"
        facts.notes.append(f"getParameter featureCompatibilityVersion: {_one_line(exc)}")
    try:
        hello = db.command("hello")
    except OperationFailure:
        hello = db.command("isMaster")  # servers before 4.4.2 do not know hello
    facts.set_name = hello.get("setName")
    facts.writable_primary = hello.get("isWritablePrimary", hello.get("ismaster"))
    facts.primary = hello.get("primary")
    facts.me = hello.get("me")
    facts.hosts = [str(h) for h in hello.get("hosts") or []]
    if hello.get("msg") == "isdbgrid":
        facts.topology = "mongos (sharded cluster)"
    elif facts.set_name:
        facts.topology = "replica set"
    return facts


def _version_tuple(text: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text or "")[:2])


# --------------------------------------------------------------------------- schema facts

@dataclass
class SchemaFacts:
    """The catalog's schema against this spine-docs' ``schema.json`` and migrations."""

    db_version: int
    code_version: int
    empty: bool
    pending: list[str]
    changed: list[str]
    drift: list[dict]                       # {kind, collection, index, detail, blocking}
    indexes_declared: int
    validators: dict[str, dict]             # collection -> {present, level, action, matches}
    last_failure: dict | None = None

    @property
    def current(self) -> bool:
        return self.db_version == self.code_version

    @property
    def missing(self) -> list[dict]:
        return [d for d in self.drift if d["kind"] in ("missing_index", "index_options", "missing_collection")]

    @property
    def extra(self) -> list[dict]:
        return [d for d in self.drift if d["kind"] == "extra_index"]


def schema_facts(db: Any, *, schema_file: Any = None, migrations_dir: Any = None) -> tuple[SchemaFacts, dict | None]:
    """The schema section and the migration lock document (None when free)."""
    st = migrate.status(db, schema_file=schema_file, migrations_dir=migrations_dir)
    spec = schema.load_schema(schema_file)
    drift = [{"kind": d.kind, "collection": d.collection, "index": d.index, "detail": d.detail,
              "blocking": d.blocking} for d in st.drift]
    bad_validator = {d["collection"] for d in drift if d["kind"] == "validator"}
    validators = {}
    for name, cspec in spec["collections"].items():
        opts = schema.collection_options(db, name)
        if opts is None:
            validators[name] = {"exists": False, "present": False, "level": None, "action": None,
                                "declared": bool(cspec.get("validator")), "matches": False}
            continue
        validators[name] = {"exists": True, "present": bool(opts.get("validator")),
                            "level": opts.get("validationLevel"), "action": opts.get("validationAction"),
                            "declared": bool(cspec.get("validator")), "matches": name not in bad_validator}
    facts = SchemaFacts(
        db_version=st.db_version, code_version=st.code_version, empty=st.empty,
        pending=[p.name for p in st.pending], changed=[c.name for c in st.changed], drift=drift,
        indexes_declared=sum(len(c.get("indexes", [])) for c in spec["collections"].values()),
        validators=validators, last_failure=st.last_failure)
    return facts, st.lock


# --------------------------------------------------------------------------- runs, counts, sizes

def recent_runs(db: Any, limit: int = 5, problems: int = 3) -> list[dict]:
    """The newest ``limit`` runs (:func:`spine_docs.runs.last`: a dead run shows as
    interrupted), each with its first ``problems`` problems (``{path, reason}``)."""
    rows = runs.last(db, limit) if limit > 0 else []  # (a limit of 0 is "no limit" to MongoDB)
    for r in rows:
        r["first_problems"] = []
        if problems and (r.get("problems_count") or 0) > 0:
            doc = db.runs.find_one({"_id": r["_id"]}, {"_id": 1, "problems": {"$slice": problems}})
            r["first_problems"] = list((doc or {}).get("problems") or [])[:problems]
    return rows


def document_counts(db: Any, collections: Iterable[str]) -> dict:
    """``{"files": n, "by_status": [{"value", "count"}], "collections": {name: n}}``: the
    status counts are one aggregation walking the status index (the status facet)."""
    existing = set(db.list_collection_names())
    by_status = queries.facets(db, None, ["status"], limit=20)["status"] if "files" in existing else []
    counts = {n: db[n].estimated_document_count() for n in collections if n in existing}
    return {"files": counts.get("files", 0), "by_status": by_status, "collections": counts}


def lifecycle(db: Any) -> list[dict]:
    """Per site, what ``verify`` and ``retire`` left: ``[{"site", "missing", "changed",
    "corrupt", "retired", "last_verify"}]`` where ``last_verify`` is the site's newest verify
    run (``{"_id", "state", "started", "finished", "counts"}``) or None. Every site with such
    a file or a verify run has a row (sorted by site; a site of ``None`` last); the counts are
    two index-served aggregations (:func:`spine_docs.queries.lifecycle_counts`)."""
    if "files" not in set(db.list_collection_names()):
        counts: dict = {}
    else:
        counts = queries.lifecycle_counts(db)
    verified = last_verify_runs(db) if "runs" in set(db.list_collection_names()) else {}
    rows = []
    for site in sorted(set(counts) | set(verified), key=lambda s: (s is None, str(s))):
        c = counts.get(site) or {k: 0 for k in (*queries.LIFECYCLE_COUNTED, "retired")}
        run = verified.get(site)
        last = None if run is None else {k: run.get(k) for k in ("_id", "state", "started", "finished", "counts")}
        rows.append({"site": site, **c, "last_verify": last})
    return rows


#: documents sampled on a server for the largest document (without ``full_scan``)
LARGEST_SAMPLE = 1000


def largest_document(db: Any, *, full_scan: bool = False, sample: int = LARGEST_SAMPLE) -> dict:
    """The largest ``files`` document: ``{"bytes", "_id", "method", "error"}``.

    On a server ``$bsonSize`` (MongoDB 4.4+) of ``sample`` random documents, or of every
    document with ``full_scan`` (a collection scan). On the embedded catalog and mongomock the
    exact size of every stored BSON document, read without decoding (their engine has no
    ``$bsonSize``).
    """
    if not store.is_server(db):
        best, best_raw = -1, None
        for raw in raw_documents(db.files) or ():
            if len(raw) > best:
                best, best_raw = len(raw), raw
        return {"bytes": best if best_raw is not None else None,
                "_id": raw_id(best_raw) if best_raw is not None else None,
                "method": "exact: the size of every stored document", "error": None}
    head = [] if full_scan else [{"$sample": {"size": int(sample)}}]
    method = ("exact: every document read (a collection scan)" if full_scan else
              f"a random sample of {sample:,} documents (--largest-full-scan reads them all)")
    pipeline = head + [{"$project": {"_id": 1, "s": {"$bsonSize": "$$ROOT"}}},
                       {"$sort": {"s": -1}}, {"$limit": 1}]
    try:
        rows = list(db.files.aggregate(pipeline, allowDiskUse=True))
    except OperationFailure as exc:
        return {"bytes": None, "_id": None, "method": method,
                "error": f"{_one_line(exc)} ($bsonSize needs MongoDB 4.4 or later)"}
    if not rows:
        return {"bytes": None, "_id": None, "method": method, "error": None}
    return {"bytes": int(rows[0]["s"]), "_id": rows[0].get("_id"), "method": method, "error": None}


# --------------------------------------------------------------------------- explain

#: stages that read an index (IDHACK and the EXPRESS stages of MongoDB 8 read ``_id``'s)
INDEX_STAGES = frozenset({"IXSCAN", "DISTINCT_SCAN", "COUNT_SCAN", "EXPRESS_IXSCAN", "IDHACK",
                          "CLUSTERED_IXSCAN", "EXPRESS_CLUSTERED_IXSCAN"})
_PLAN_CHILDREN = ("queryPlan", "inputStage", "inputStages", "shards", "winningPlan",
                  "outerStage", "innerStage", "thenStage", "elseStage")
_NOT_PLANS = frozenset({"rejectedPlans", "executionStats", "allPlansExecution", "command",
                        "slotBasedPlan", "serverInfo", "serverParameters"})


@dataclass
class ExplainSummary:
    """One explain reply, summed up.

    ``plan``: ``IXSCAN`` (an index serves the query and its order), ``IXSCAN+SORT`` (an
    index bounds it, then a blocking sort of the documents), ``COLLSCAN``, ``EOF`` (no
    collection) or ``UNKNOWN``."""

    plan: str
    indexes: list[str]
    stages: list[str]
    keys_examined: int | None = None
    docs_examined: int | None = None
    millis: int | None = None


@dataclass
class _Sub:
    scans: list[tuple[str, str | None]] = field(default_factory=list)
    doc_sort: bool = False     # a SORT of documents (not of groups) somewhere below
    group: bool = False
    stages: list[str] = field(default_factory=list)


def _index_label(node: Mapping) -> str | None:
    if node.get("indexName"):
        return str(node["indexName"])
    key = node.get("keyPattern")
    if isinstance(key, Mapping) and key:
        return "_".join(f"{k}_{v}" for k, v in key.items())
    if node.get("stage") in ("IDHACK", "EXPRESS_CLUSTERED_IXSCAN"):
        return "_id_"
    return None


def _walk_plan(node: Any) -> _Sub:
    """The scans under a plan node and whether documents are sorted in memory before any
    grouping (a SORT above a GROUP sorts groups: not a blocking sort of the documents)."""
    out = _Sub()
    if isinstance(node, list):
        for item in node:
            sub = _walk_plan(item)
            out.scans += sub.scans
            out.stages += sub.stages
            out.doc_sort |= sub.doc_sort
            out.group |= sub.group
        return out
    if not isinstance(node, Mapping):
        return out
    stage = node.get("stage")
    for key in _PLAN_CHILDREN:
        if key in node:
            sub = _walk_plan(node[key])
            out.scans += sub.scans
            out.stages += sub.stages
            out.doc_sort |= sub.doc_sort
            out.group |= sub.group
    if isinstance(stage, str):
        out.stages.insert(0, stage)
        if stage == "COLLSCAN":
            out.scans.insert(0, ("COLLSCAN", None))
        elif stage in INDEX_STAGES:
            out.scans.insert(0, ("IXSCAN", _index_label(node)))
        elif stage == "EOF":
            out.scans.insert(0, ("EOF", None))
        elif stage == "SORT" and not out.group:
            out.doc_sort = True
        elif stage.startswith("GROUP"):
            out.group = True
    return out


def _find_key(node: Any, key: str, skip: frozenset = frozenset()) -> Iterator[Any]:
    """Every value stored under ``key`` anywhere in ``node`` (not looking inside those
    values, nor under the keys in ``skip``)."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k == key:
                yield v
            elif k not in skip:
                yield from _find_key(v, key, skip)
    elif isinstance(node, list):
        for v in node:
            yield from _find_key(v, key, skip)


def summarize_explain(doc: Mapping) -> ExplainSummary:
    """The winning plan and execution statistics of an ``explain`` reply: a find or an
    aggregate, classic engine (``winningPlan`` a tree of ``inputStage``/``inputStages``),
    slot-based engine (MongoDB 7+: the tree under ``winningPlan.queryPlan``), an aggregate's
    ``$cursor`` stage, or a sharded cluster's per-shard plans (statistics summed)."""
    sub = _walk_plan(list(_find_key(doc, "winningPlan", _NOT_PLANS)))
    kinds = [k for k, _ in sub.scans]
    indexes = list(dict.fromkeys(i for k, i in sub.scans if k == "IXSCAN" and i))
    if "COLLSCAN" in kinds:
        plan = "COLLSCAN"
    elif "IXSCAN" in kinds:
        plan = "IXSCAN+SORT" if sub.doc_sort else "IXSCAN"
    elif "EOF" in kinds:
        plan = "EOF"
    else:
        plan = "UNKNOWN"
    stats = list(_find_key(doc, "executionStats", frozenset({"rejectedPlans", "allPlansExecution"})))
    stats = [s for s in stats if isinstance(s, Mapping)]

    def total(name: str) -> int | None:
        vals = [s[name] for s in stats if isinstance(s.get(name), (int, float))]
        return int(sum(vals)) if vals else None

    times = [s["executionTimeMillis"] for s in stats if isinstance(s.get("executionTimeMillis"), (int, float))]
    times += [v for v in _find_key(doc.get("stages", []), "executionTimeMillisEstimate")
              if isinstance(v, (int, float))]
    return ExplainSummary(plan=plan, indexes=indexes, stages=list(dict.fromkeys(sub.stages)),
                          keys_examined=total("totalKeysExamined"), docs_examined=total("totalDocsExamined"),
                          millis=int(max(times)) if times else None)


#: shapes sent as ``find`` (a page: limit 50); ``count`` shapes are explained as the
#: aggregation ``count_documents`` sends; the pipeline shapes of :func:`shape_pipelines`
#: as their whole pipeline
FIND_SOURCES = frozenset({"queries.page", "queries.get_file", "queries.export", "ingest.existing_index",
                          "verify.known_files", "queries.replicas", "setdiff.compare_sets",
                          "supersede.mark", "asof.documents"})
COUNT_SOURCES = frozenset({"queries.count"})
FIND_LIMIT = 50


def shape_pipelines() -> dict[str, list[dict]]:
    """The whole pipeline of every aggregation shape of :func:`shapes.query_shapes`, by name
    (the shapes carry the pipelines their builders made)."""
    return {s.name: list(s.pipeline) for s in shapes.query_shapes() if s.pipeline}


def explain_command(shape: plans.Shape, pipelines: Mapping[str, list[dict]]) -> tuple[str, dict]:
    """``("find"|"aggregate", command)``: what explaining ``shape`` sends (without verbosity)."""
    if shape.name in pipelines:
        return "aggregate", {"aggregate": "files", "pipeline": pipelines[shape.name], "cursor": {}}
    if shape.source in COUNT_SOURCES:  # what pymongo's count_documents sends
        pipeline = [{"$match": dict(shape.query)}, {"$group": {"_id": 1, "n": {"$sum": 1}}}]
        return "aggregate", {"aggregate": "files", "pipeline": pipeline, "cursor": {}}
    cmd: dict = {"find": "files", "filter": dict(shape.query)}
    if shape.sort:
        cmd["sort"] = dict(shape.sort)
    cmd["limit"] = FIND_LIMIT
    return "find", cmd


@dataclass
class ShapePlan:
    """One query shape's plan: measured by ``explain`` (``measured``) or the plan checker's."""

    name: str
    source: str
    plan: str                       # IXSCAN, IXSCAN+SORT, COLLSCAN, EOF, UNKNOWN, ERROR
    indexes: list[str] = field(default_factory=list)
    allowed: str | None = None      # shapes.ALLOWED's reason
    measured: bool = False
    command: str | None = None      # find | aggregate
    keys_examined: int | None = None
    docs_examined: int | None = None
    millis: int | None = None
    stages: list[str] = field(default_factory=list)
    note: str = ""
    error: str | None = None
    expected: str | None = None     # measured: the plan checker's verdict, e.g. "IXSCAN on status_1"

    @property
    def ok(self) -> bool:
        """A live plan fails on an error or a COLLSCAN the allow-list does not name; a static
        verdict on anything but IXSCAN without an allow-list reason."""
        if self.error:
            return False
        if self.measured:
            return self.plan != "COLLSCAN" or self.allowed is not None
        return self.plan == "IXSCAN" or self.allowed is not None


def explain_shape(db: Any, shape: plans.Shape, pipelines: Mapping[str, list[dict]] | None = None, *,
                  max_time_ms: int | None = None) -> ShapePlan:
    """``explain("executionStats")`` of one shape on a server. Past ``max_time_ms`` the plan
    is still read (``queryPlanner`` verbosity: nothing executed) and the time says so."""
    pipelines = shape_pipelines() if pipelines is None else pipelines
    what, cmd = explain_command(shape, pipelines)
    if max_time_ms:
        cmd = {**cmd, "maxTimeMS": int(max_time_ms)}
    out = ShapePlan(shape.name, shape.source, "ERROR", allowed=shapes.ALLOWED.get(shape.name),
                    measured=True, command=what)
    try:
        reply = db.command({"explain": cmd, "verbosity": "executionStats"})
    except OperationFailure as exc:
        if exc.code != 50:  # MaxTimeMSExpired
            out.error = _one_line(exc)
            return out
        try:
            reply = db.command({"explain": cmd, "verbosity": "queryPlanner"})
        except OperationFailure as exc2:
            out.error = _one_line(exc2)
            return out
        out.note = f"ran over {max_time_ms} ms (the plan is the planner's, not executed)"
    s = summarize_explain(reply)
    out.plan, out.indexes, out.stages = s.plan, s.indexes, s.stages
    out.keys_examined, out.docs_examined, out.millis = s.keys_examined, s.docs_examined, s.millis
    if s.plan == "UNKNOWN":
        out.note = (out.note + "; " if out.note else "") + "stages: " + " > ".join(s.stages[:8])
    elif s.plan == "EOF":
        out.note = (out.note + "; " if out.note else "") + "no files collection"
    return out


def explain_shapes(db: Any, shape_list: Sequence[plans.Shape] | None = None, *,
                   max_time_ms: int | None = None) -> list[ShapePlan]:
    """:func:`explain_shape` of every shape doctor checks (:func:`shapes.doctor_shapes`: the
    query shapes, then the lifecycle commands' shapes)."""
    pipelines = shape_pipelines()
    return [explain_shape(db, s, pipelines, max_time_ms=max_time_ms)
            for s in (shapes.doctor_shapes() if shape_list is None else shape_list)]


def static_plans(db: Any) -> list[ShapePlan]:
    """The plan checker's verdict for every shape under the indexes the ``files`` collection
    has now (:func:`shapes.doctor_verdicts`; schema.json's when the collection does not exist)."""
    if "files" in db.list_collection_names():
        actual = [i for i in schema.list_indexes(db, "files") if i.get("name") != "_id_"]
        verdicts = shapes.doctor_verdicts({"collections": {"files": {"indexes": actual}}})
    else:
        verdicts = shapes.doctor_verdicts({"collections": {"files": schema.load_schema()["collections"]["files"]}})
    return [ShapePlan(v.shape.name, v.shape.source, v.plan, [i for i in (v.index or "").split(" | ") if i],
                      allowed=v.allowed, note=v.note) for v in verdicts]


# --------------------------------------------------------------------------- the report

@dataclass
class Report:
    """Everything :func:`diagnose` found (``as_dict()`` for JSON, :func:`render` for text)."""

    database: str
    kind: str                                  # server | embedded | mongomock
    server: ServerFacts | None
    schema: SchemaFacts
    lock: dict | None
    lock_stale: str | None
    runs: list[dict]
    counts: dict
    largest: dict
    lifecycle: list[dict]                      # per site: counts and the last verify run
    static_plans: list[ShapePlan]
    explain: list[ShapePlan] | None            # None: not asked for, or no server
    explain_note: str | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lock_text"] = migrate.describe_holder(self.lock)
        d["exit_code"] = self.exit_code
        for key in ("static_plans", "explain"):
            if getattr(self, key) is not None:
                for row, p in zip(d[key], getattr(self, key)):
                    row["ok"] = p.ok
        return d


def diagnose(db: Any, *, explain: bool = False, full_scan: bool = False, runs_limit: int = 5,
             max_time_ms: int | None = None, schema_file: Any = None,
             migrations_dir: Any = None) -> Report:
    """Read everything the doctor reports (see the module docstring); writes nothing."""
    store.refresh(db)
    kind = kind_of(db)
    problems: list[str] = []
    warnings: list[str] = []

    server = None
    if kind == "server":
        server = server_facts(db)
        _server_findings(server, problems, warnings)

    facts, lock = schema_facts(db, schema_file=schema_file, migrations_dir=migrations_dir)
    if not facts.current:
        problems.append(schema.mismatch_message(facts.db_version, facts.code_version, empty=facts.empty))
    for d in facts.drift:
        where = f"{d['collection']}.{d['index']}" if d["index"] else d["collection"]
        (problems if d["blocking"] else warnings).append(f"{where}: {d['detail']}")
    for name in facts.changed:
        problems.append(f"migration {name} changed since it was applied (`spine-docs migrate ack`)")
    lock_stale = migrate.lock.is_stale(lock) if lock else None
    if lock:
        warnings.append(f"migration lock held by {migrate.describe_holder(lock)}"
                        + (f" ({lock_stale}: `spine-docs migrate unlock --force` if that process is gone)"
                           if lock_stale else ""))

    run_rows = recent_runs(db, runs_limit)
    spec = schema.load_schema(schema_file)
    counts = document_counts(db, list(spec["collections"]))
    largest = largest_document(db, full_scan=full_scan)
    life = lifecycle(db)
    if largest.get("error"):
        warnings.append(f"largest document: {largest['error']}")

    static = static_plans(db)
    for p in static:
        if not p.ok:
            problems.append(f"query shape {p.name!r}: {p.plan} under this catalog's indexes (static check)")

    measured = None
    note = None
    if explain and kind == "server":
        measured = explain_shapes(db, max_time_ms=max_time_ms)
        static_by_name = {p.name: p for p in static}
        for p in measured:
            v = static_by_name.get(p.name)
            if v is not None:
                p.expected = v.plan + (f" on {' | '.join(v.indexes)}" if v.indexes else "")
            if p.error:
                problems.append(f"query shape {p.name!r}: explain failed: {p.error}")
            elif not p.ok:
                problems.append(f"query shape {p.name!r}: COLLSCAN on the server (no index serves it)")
            elif p.plan == "IXSCAN+SORT" and p.allowed is None:
                warnings.append(f"query shape {p.name!r}: the server sorts in memory "
                                f"(index {', '.join(p.indexes) or '?'})")
            if p.note.startswith("ran over"):
                warnings.append(f"query shape {p.name!r}: {p.note}")
    elif explain:
        note = ("explain needs a MongoDB server: the plans above are the plan checker's static "
                "verdicts (MongoDB's planner rules applied to this catalog's indexes)")
    return Report(database=store.describe(db), kind=kind, server=server, schema=facts, lock=lock,
                  lock_stale=lock_stale, runs=run_rows, counts=counts, largest=largest, lifecycle=life,
                  static_plans=static, explain=measured, explain_note=note,
                  problems=problems, warnings=warnings)


def _server_findings(server: ServerFacts, problems: list[str], warnings: list[str]) -> None:
    version = _version_tuple(server.version)
    if version and version < (6, 0):
        warnings.append(f"MongoDB {server.version}: spine-docs is tested against MongoDB 6.0 and later")
    fcv = _version_tuple(server.fcv) if server.fcv and not server.fcv.startswith("unknown") else ()
    if version and fcv and fcv < version[:2]:
        warnings.append(f"featureCompatibilityVersion {server.fcv} on a {server.version} server: "
                        "the upgrade is not finished (setFeatureCompatibilityVersion)")
    if server.topology == "replica set" and server.writable_primary is False:
        warnings.append(f"connected to a member that is not the primary of {server.set_name} "
                        f"(primary: {server.primary or 'none'}): writes will fail")


# --------------------------------------------------------------------------- text

def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n:,} bytes)"
    return f"{n:,} bytes"


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else ("" if value is None else str(value))


def _plan_line(p: ShapePlan) -> str:
    where = f" on {' | '.join(p.indexes)}" if p.indexes and p.plan.startswith("IXSCAN") else ""
    text = f"  {'ok ' if p.ok else 'BAD'} {p.plan}{where}  {p.name}"
    if p.measured and p.error is None:
        text += (f"  (keys {p.keys_examined if p.keys_examined is not None else '?'}, "
                 f"docs {p.docs_examined if p.docs_examined is not None else '?'}, "
                 f"{p.millis if p.millis is not None else '?'} ms)")
    if p.error:
        text += f"  explain failed: {p.error}"
    expected = (f"the plan checker expected {p.expected}"
                if p.expected and p.measured and not p.error and p.expected.split(" ")[0] != p.plan else "")
    extra = [x for x in (p.note, expected, f"allowed: {p.allowed}" if p.allowed and p.plan != "IXSCAN" else "")
             if x]
    if extra:
        text += "  -- " + "; ".join(extra)
    return text


def render(report: Report, *, all_plans: bool = False) -> list[str]:
    """The report as text lines, one section after another. ``all_plans``: one line per
    query shape (else a summary and the shapes that are not plain IXSCAN)."""
    out = [f"spine-docs doctor: {report.database}", ""]
    out.append("Server")
    s = report.server
    if s is None:
        out.append(f"  none ({report.kind}): version, feature compatibility and replica set are a server's")
    else:
        out.append(f"  version: {s.version or 'unknown'}   feature compatibility: {s.fcv}")
        if s.topology == "replica set":
            role = "primary" if s.writable_primary else "not the primary"
            out.append(f"  replica set {s.set_name}: this member ({s.me or '?'}) is {role}; "
                       f"primary {s.primary or 'none'}; hosts {', '.join(s.hosts) or '?'}")
        else:
            out.append(f"  topology: {s.topology}")
    sc = report.schema
    out += ["", "Schema"]
    state = "current" if sc.current else ("not initialised" if sc.empty else "MISMATCH")
    out.append(f"  version: database {sc.db_version}, code {sc.code_version} ({state})")
    out.append(f"  pending migrations: {', '.join(sc.pending) or 'none'}")
    if sc.changed:
        out.append(f"  changed since applied: {', '.join(sc.changed)}")
    missing, extra = sc.missing, sc.extra
    out.append(f"  indexes: {sc.indexes_declared} declared in schema.json; missing or different: "
               f"{len(missing) or 'none'}; extra: {len(extra) or 'none'}")
    for d in missing + extra:
        where = f"{d['collection']}.{d['index']}" if d["index"] else d["collection"]
        out.append(f"    {d['kind']}: {where}: {d['detail']}")
    in_place, undeclared, wrong = [], [], []
    for name, v in sc.validators.items():
        if not v["declared"] and not v["present"]:
            undeclared.append(name)
        elif v["present"] and v["matches"]:
            in_place.append(f"{name} (level {v['level'] or 'strict'}, action {v['action'] or 'error'})")
        elif not v["exists"]:
            wrong.append(f"{name}: collection missing")
        elif not v["present"]:
            wrong.append(f"{name}: missing")
        else:
            wrong.append(f"{name}: differs from schema.json")
    out.append("  validators: " + "; ".join(
        [f"in place for {', '.join(in_place)}"] * bool(in_place) + wrong
        + [f"none declared for {', '.join(undeclared)}"] * bool(undeclared)))
    if sc.last_failure:
        f = sc.last_failure
        out.append(f"  last failed migration step: {f.get('name')} at {_when(f.get('started'))}: {f.get('error')}")
    out += ["", "Migration lock"]
    out.append(f"  {migrate.describe_holder(report.lock) if report.lock else 'free'}"
               + (f" ({report.lock_stale})" if report.lock_stale else ""))
    out += ["", f"Ingest runs (newest {len(report.runs)})"]
    if not report.runs:
        out.append("  no runs yet")
    for r in report.runs:
        c = r.get("counts") or {}
        out.append(f"  {_when(r.get('started'))}  {r.get('state')}  site {r.get('site')}  indexed "
                   f"{c.get('indexed', '?')}, unchanged {c.get('unchanged', '?')}, failed {c.get('failed', '?')}"
                   f"  {r.get('user', '?')}@{r.get('host', '?')} pid {r.get('pid', '?')}")
        for p in r.get("first_problems") or []:
            out.append(f"    {p.get('path')}: {p.get('reason')}")
        more = (r.get("problems_count") or 0) - len(r.get("first_problems") or [])
        if more > 0:
            out.append(f"    ... {more} more (`spine-docs runs --json`)")
    cnt = report.counts
    out += ["", "Documents"]
    status = ", ".join(f"{v['value'] if v['value'] is not None else '(none)'} {v['count']:,}"
                       for v in cnt["by_status"]) or "none"
    out.append(f"  files: {cnt['files']:,} ({status})")
    others = ", ".join(f"{n} {c:,}" for n, c in cnt["collections"].items() if n != "files")
    if others:
        out.append(f"  other collections: {others}")
    lg = report.largest
    if lg.get("error"):
        out.append(f"  largest document: unknown: {lg['error']}")
    elif lg.get("bytes") is None:
        out.append("  largest document: no documents")
    else:
        out.append(f"  largest document: {_size(lg['bytes'])}  {lg['_id']}  ({lg['method']})")
    out += ["", "Lifecycle (verify and retire, per site)"]
    if not report.lifecycle:
        out.append("  no missing, changed, corrupt or retired files; no verify run yet")
    for row in report.lifecycle:
        site = row["site"] if row["site"] is not None else "(none)"
        out.append(f"  {site}: missing {row['missing']:,}, changed {row['changed']:,}, "
                   f"corrupt {row['corrupt']:,}, retired {row['retired']:,}")
        v = row["last_verify"]
        if v is None:
            out.append("    last verify: never")
        else:
            c = v.get("counts") or {}
            out.append(f"    last verify: {_when(v.get('started'))} {v.get('state')}, checked "
                       f"{c.get('checked', '?')}: ok {c.get('ok', '?')}, missing {c.get('missing', '?')}, "
                       f"changed {c.get('changed', '?')}, corrupt {c.get('corrupt', '?')}  ({v.get('_id')})")
    plans_shown = report.explain if report.explain is not None else report.static_plans
    how = ("explain(\"executionStats\") on the server" if report.explain is not None
           else "static: the plan checker, under this catalog's indexes")
    out += ["", f"Query plans ({how})"]
    tally: dict[str, int] = {}
    for p in plans_shown:
        tally[p.plan] = tally.get(p.plan, 0) + 1
    allowed = sum(1 for p in plans_shown if p.plan != "IXSCAN" and p.ok)
    bad = sum(1 for p in plans_shown if not p.ok)
    out.append(f"  {len(plans_shown)} shapes: " + ", ".join(f"{n} {k}" for k, n in sorted(tally.items()))
               + (f"; {allowed} not IXSCAN, on the allow-list" if allowed else "")
               + (f"; {bad} NOT OK" if bad else ""))
    for p in plans_shown:
        if all_plans or not p.ok:
            out.append(_plan_line(p))
    if report.explain_note:
        out.append(f"  {report.explain_note}")
    elif not all_plans and report.explain is None:
        out.append("  (--explain: " + ("the server's plan of every shape on the live data)" if report.kind == "server"
                                       else "every shape, with the allow-list's reasons)"))
    out += ["", "Problems" if report.problems else "Problems: none"]
    out += [f"  {p}" for p in report.problems]
    if report.warnings:
        out += ["", "Warnings"] + [f"  {w}" for w in report.warnings]
    return out


# --------------------------------------------------------------------------- self-test

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass
class Outcome:
    """What one capability did: ``state`` passed / failed / skipped, and a one-line detail."""

    state: str
    detail: str = ""


def passed(detail: str = "") -> Outcome:
    return Outcome(PASSED, detail)


def failed(detail: str) -> Outcome:
    return Outcome(FAILED, detail)


def skipped(reason: str) -> Outcome:
    return Outcome(SKIPPED, reason)


@dataclass
class Scratch:
    """The scratch database a self-test works in, and what capabilities hand on."""

    db: Any
    name: str
    kind: str                    # server | embedded | mongomock
    url: str | None              # a URL naming it (server: for mongodump; embedded: its directory)
    workdir: Path                # sample files and backups (removed afterwards)
    files: int = 40
    workers: int = 1
    state: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Capability:
    name: str
    what: str
    run: Callable[[Scratch], Outcome]
    needs: tuple[str, ...] = ()


@dataclass
class CapabilityResult:
    name: str
    what: str
    state: str
    detail: str
    seconds: float


@dataclass
class SelftestReport:
    scratch: str
    results: list[CapabilityResult]
    dropped: bool
    drop_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.dropped and all(r.state != FAILED for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "ok": self.ok}


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def _cap_schema(s: Scratch) -> Outcome:
    report = schema.setup(s.db, db_url=s.url)
    blocking = [d for d in migrate.diff(schema.load_schema(), migrate.snapshot(s.db)) if d.blocking]
    _check(not blocking, "after setup: " + "; ".join(map(str, blocking)))
    _check(schema.db_version(s.db) == schema.CODE_SCHEMA_VERSION,
           f"version {schema.db_version(s.db)} after setup, expected {schema.CODE_SCHEMA_VERSION}")
    n_ix = sum(len(schema.list_indexes(s.db, c)) for c in schema.collection_names(s.db))
    return passed(f"{report.action}: {len(schema.collection_names(s.db))} collections, "
                  f"{n_ix} indexes, validators set, version {schema.db_version(s.db)}")


def _cap_ingest(s: Scratch) -> Outcome:
    root = s.workdir / "files"
    paths = samples.write_prod_tree(root, s.files, seed=20240611)
    settings = Settings.load(env={}, db=s.url or "mongomock://", home=s.workdir / "home", site="selftest",
                             workers=s.workers)
    first = ingest.inject(s.db, settings=settings, sources=[str(root)])
    _check(first.failed == 0 and first.indexed == len(paths),
           f"indexed {first.indexed} of {len(paths)} files, {first.failed} failed: "
           + "; ".join(f"{p.path}: {p.reason}" for p in first.problems[:2]))
    again = ingest.inject(s.db, settings=settings, sources=[str(root)])
    _check(again.unchanged == len(paths) and again.indexed == 0,
           f"a re-scan of unchanged files indexed {again.indexed}, skipped {again.unchanged}")
    n = s.db.files.count_documents({})
    _check(n == len(paths), f"{n} documents for {len(paths)} files")
    return passed(f"{len(paths)} generated files indexed ({first.incomplete} incomplete) with "
                  f"{s.workers} worker(s); a re-scan found all {again.unchanged} unchanged")


#: what ingesting :func:`samples.write_strange_files` must give: these files are recorded as
#: ``error`` documents, the others indexed
STRANGE_ERRORS = frozenset({"corrupt", "truncated", "empty", "not_hdf5", "broken_symlink", "directory"})


def _cap_strange(s: Scratch) -> Outcome:
    root = s.workdir / "strange"
    made = samples.write_strange_files(root, big_elements=100_000, wide=300, deep=10)
    settings = Settings.load(env={}, db=s.url or "mongomock://", home=s.workdir / "home", site="selftest",
                             workers=1)
    report = ingest.inject(s.db, settings=settings, sources=[str(root)])
    by_path = {d["path"]: d for d in s.db.files.find({"path": {"$in": [str(p) for p in made.values()]}},
                                                     {"path": 1, "status": 1, "attrs": 1})}
    wrong = []
    for what, path in made.items():
        doc = by_path.get(str(path))
        want_error = what in STRANGE_ERRORS
        if doc is None or (doc["status"] == "error") != want_error:
            wrong.append(f"{what}: {doc['status'] if doc else 'no document'}")
    _check(not wrong, "strange files recorded wrongly: " + ", ".join(wrong))
    attrs = by_path[str(made["strange_attrs"])].get("attrs") or {}
    keys = {k["key"] for k in queries.attribute_keys(s.db)}
    _check(set(samples.STRANGE_ATTR_NAMES) <= keys,
           f"attribute names lost: {sorted(set(samples.STRANGE_ATTR_NAMES) - keys)}")
    _check(isinstance(attrs.get("uint64_max"), Decimal128), "uint64 max did not come back as Decimal128")
    return passed(f"{len(made)} files that must not break the catalog: {report.failed} recorded as errors, "
                  f"{report.indexed} indexed; odd attribute names and values (uint64, NaN, '$', '.') "
                  "stored and read back")


def _cap_queries(s: Scratch) -> Outcome:
    Q = queries
    ids = sorted(d["_id"] for d in s.db.files.find({}, {"_id": 1}))
    n = len(ids)
    calls = 0
    _check(Q.count(s.db, Q.Filter()) == n and Q.total(s.db) == n, "count of every file is wrong")
    for name in Q.Filter.model_fields:
        flt = Q.Filter(**{name: shapes.SAMPLES[name]})
        if name == "as_of":  # answered from the history, client-side (spine_docs.asof)
            from . import asof
            asof.count(s.db, flt)
            calls += 1
            continue
        Q.count(s.db, flt)
        Q.page(s.db, flt)
        calls += 2
    for name in Q.SORT_FIELDS:
        for d in (1, -1):
            got = [r["_id"] for p in Q.iter_pages(s.db, None, sort=(name, d), size=7) for r in p.rows]
            calls += 1
            _check(sorted(got) == ids, f"paging sorted {Q.format_sort((name, d))} gave {len(got)} files, "
                                       f"{len(set(got))} distinct, of {n}")
    fac = Q.facets(s.db, Q.Filter(), tuple(Q.FACET_FIELDS))
    calls += 1
    _check(sum(v["count"] for v in fac["status"]) == n, "the status facet does not add up")
    doc = Q.get_file(s.db, ids[0])
    _check(doc is not None and Q.get_file(s.db, doc["path"]) is not None, "get_file by _id / path")
    tl = Q.timeline(s.db, None, "month", "dataset")
    dated = s.db.files.count_documents({"mtime": {"$type": "date"}})
    _check(sum(r["files"] for r in tl) == dated, f"the timeline counts {sum(r['files'] for r in tl)} "
                                                 f"files, {dated} have a date")
    hist = Q.histogram(s.db, None, "size")
    _check(sum(b["count"] for b in hist["bins"]) + hist.get("missing", 0) == n, "the size histogram does not add up")
    Q.run_coverage(s.db, None)
    keys = Q.attribute_keys(s.db)
    Q.attribute_dictionary(s.db)
    Q.attribute_dictionary(s.db, max_docs=10)
    for key in Q.REPLICA_KEYS:
        Q.replicas(s.db, None, key=key)
    flt = Q.Filter(status=["ok"])
    Q.save_query(s.db, "selftest", flt)
    _check(Q.load_query(s.db, "selftest") == flt, "a saved query came back different")
    _check(Q.delete_query(s.db, "selftest"), "a saved query could not be deleted")
    calls += 12
    return passed(f"{calls} calls: every filter field, every sort paged both ways through all {n} "
                  f"files, facets, timeline, histogram, run coverage, {len(keys)} attribute keys, "
                  "replicas, saved queries")


def _cap_exports(s: Scratch) -> Outcome:
    stored = sorted(d["path"] for d in s.db.files.find({}, {"path": 1}))
    n = len(stored)
    rows = {}
    for fmt in queries.EXPORT_FORMATS:
        lines = list(queries.export(s.db, None, fmt))
        data = [ln for ln in lines if not ln.startswith("#")]
        rows[fmt] = len(data) - (1 if fmt == "csv" else 0)  # the csv header row
        _check(rows[fmt] == n, f"{fmt} export: {rows[fmt]} rows for {n} files")
    paths = sorted(ln.rstrip("\n") for ln in queries.export(s.db, None, "paths") if not ln.startswith("#"))
    _check(paths == stored, "the paths export differs from the paths stored")
    return passed(", ".join(f"{fmt} {k} rows" for fmt, k in rows.items()))


def _cap_plans(s: Scratch) -> Outcome:
    if s.kind != "server":
        return skipped("explain needs a MongoDB server (the static plan check runs without one)")
    found = explain_shapes(s.db)
    bad = [p for p in found if not p.ok]
    if bad:
        return failed("; ".join(f"{p.name}: {p.error or p.plan}" for p in bad[:5])
                      + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""))
    return passed(f"{len(found)} shapes explained: no COLLSCAN outside the allow-list")


def _cap_migrations(s: Scratch) -> Outcome:
    n = s.db.files.count_documents({})
    down = migrate.down(s.db, to=0, backup=False, lock_wait_s=5)
    _check(down.ok and schema.db_version(s.db) == 0, f"down to 0: {down.message}")
    _check(s.db.files.count_documents({}) == n, "documents lost going down")
    up = migrate.up(s.db, backup=False, lock_wait_s=5)
    _check(up.ok and schema.db_version(s.db) == schema.CODE_SCHEMA_VERSION, f"up: {up.message}")
    check = migrate.check(s.db)
    _check(check.ok, "after up: " + "; ".join(check.problems))
    _check(s.db.files.count_documents({}) == n, "documents lost going up")
    return passed(f"down {down.from_version} -> 0 ({len(down.steps)} steps) and up again "
                  f"({len(up.steps)} steps); documents kept, schema matches schema.json")


def _cap_lock(s: Scratch) -> Outcome:
    first = migrate.acquire(s.db, command="selftest first", wait_s=0)
    try:
        try:
            second = migrate.acquire(s.db, command="selftest second", wait_s=0)
        except migrate.LockBusy as exc:
            _check(exc.holder.get("command") == "selftest first", f"the busy lock names {exc.holder}")
        else:
            second.release()
            return failed("a second taker got the lock while the first held it")
    finally:
        first.release()
    _check(migrate.holder(s.db) is None, "the lock is still held after release")
    barrier = threading.Barrier(2)
    won: list[Any] = []
    errors: list[str] = []

    def take(tag: str) -> None:
        try:
            barrier.wait(timeout=30)
            won.append(migrate.acquire(s.db, command=f"selftest {tag}", wait_s=0))
        except migrate.LockBusy:
            pass
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(_one_line(exc))

    threads = [threading.Thread(target=take, args=(t,), name=f"selftest-lock-{t}") for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for lock in won:
        lock.release()
    _check(not errors, "; ".join(errors))
    _check(len(won) == 1, f"{len(won)} of two simultaneous takers got the lock")
    return passed("a second taker is refused and told who holds it; of two simultaneous takers exactly one wins")


def _backup_round_trip(s: Scratch, use_mongodump: bool) -> Outcome:
    n = s.db.files.count_documents({})
    b = migrate.backup(s.db, out=s.workdir / "backups", db_url=s.url, use_mongodump=use_mongodump)
    _check(migrate.verify(b.path).ok, f"backup {b.path} does not verify")
    with store.writing(s.db):
        s.db.files.delete_many({})
    r = migrate.restore(s.db, b.path, db_url=s.url)
    got = s.db.files.count_documents({})
    _check(got == n, f"{got} files after the restore, {n} before")
    _check(migrate.check(s.db).ok, "the restored database does not match schema.json")
    return passed(f"{b.method} backup of {b.documents} documents, verified; restored {r.documents} "
                  f"documents in {len(r.restored)} collections")


def _cap_backup(s: Scratch) -> Outcome:
    return _backup_round_trip(s, use_mongodump=False)


def _cap_mongodump(s: Scratch) -> Outcome:
    if s.kind != "server":
        return skipped("mongodump needs a MongoDB server")
    if shutil.which("mongodump") is None:
        return skipped("mongodump is not installed (MongoDB Database Tools)")
    if not s.url:
        return skipped("no server URL to give mongodump")
    return _backup_round_trip(s, use_mongodump=True)


#: what ``--selftest`` proves, in order; a capability runs only when those it needs passed
CAPABILITIES: tuple[Capability, ...] = (
    Capability("schema", "create the collections, validators and indexes", _cap_schema),
    Capability("ingest", "index generated sample files, then re-scan them", _cap_ingest, ("schema",)),
    Capability("strange", "index files a catalog must survive", _cap_strange, ("schema",)),
    Capability("queries", "every query shape", _cap_queries, ("ingest",)),
    Capability("exports", "export jsonl, csv and paths", _cap_exports, ("ingest",)),
    Capability("plans", "explain every query shape", _cap_plans, ("ingest",)),
    Capability("lock", "two migration lock takers", _cap_lock, ("schema",)),
    Capability("migrations", "migrate down to 0 and up again", _cap_migrations, ("ingest",)),
    Capability("backup", "built-in backup and restore", _cap_backup, ("ingest",)),
    Capability("mongodump", "backup with mongodump, then restore", _cap_mongodump, ("ingest",)),
)


def scratch_url(url: str, name: str) -> str:
    """``url`` (mongodb://...) pointing at database ``name``, its options kept; when it
    carries credentials and no ``authSource``, the one the original URL authenticated
    against is added (the database path is also pymongo's default authSource)."""
    m = re.match(r"^(mongodb(?:\+srv)?://)([^/?]*)(/[^?]*)?(\?.*)?$", url)
    if not m:
        raise DoctorError(f"not a mongodb:// URL: {schema.display_url(url)}")
    scheme, hosts, path, query = m.group(1), m.group(2), (m.group(3) or "/").strip("/"), m.group(4) or ""
    if "@" in hosts and "authsource=" not in query.lower():
        query = (query + "&" if query else "?") + f"authSource={path or 'admin'}"
    return f"{scheme}{hosts}/{name}{query}"


def _scratch_name(db: Any) -> str:
    return f"{db.name[:38]}_selftest_{secrets.token_hex(4)}"


@contextlib.contextmanager
def scratch_database(db: Any, *, db_url: str | None = None, name: str | None = None,
                     workdir: str | os.PathLike | None = None,
                     files: int = 40, workers: int = 1) -> Iterator[Scratch]:
    """A scratch database beside ``db`` (same server or mongomock client; for the embedded
    catalog a sibling directory), refused when it exists, removed on the way out whatever
    happens (a failure, Ctrl-C). ``Scratch.state["dropped"]``/``["drop_error"]`` say how
    the removal went."""
    kind = kind_of(db)
    made_workdir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="spine-docs-selftest-")) if workdir is None else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    scratch: Scratch | None = None
    try:
        if kind == "embedded":
            base = store.catalog_path(db)
            path = base.parent / (name or f"{base.name}_selftest_{secrets.token_hex(4)}")
            if path.exists():
                raise DoctorError(f"the scratch catalog {path} exists: refusing to touch it")
            path.mkdir(parents=True)
            try:
                sdb = store.connect(str(path))
            except BaseException:
                shutil.rmtree(path, ignore_errors=True)
                raise
            scratch = Scratch(sdb, str(path), kind, str(path), work, files, workers)
        else:
            sname = name or _scratch_name(db)
            sdb = db.client[sname]
            if sdb.list_collection_names():
                raise DoctorError(f"the scratch database {sname} exists: refusing to touch it")
            url = scratch_url(db_url, sname) if kind == "server" and db_url else None
            scratch = Scratch(sdb, sname, kind, url, work, files, workers)
        yield scratch
    finally:
        try:
            if scratch is not None:
                _drop(scratch)
        finally:
            if made_workdir:
                shutil.rmtree(work, ignore_errors=True)


def _drop(s: Scratch) -> None:
    s.state["dropped"], s.state["drop_error"] = False, None
    try:
        if s.kind == "embedded":
            store.close(s.db)
            shutil.rmtree(s.name)
            s.state["dropped"] = not Path(s.name).exists()
        else:
            s.db.client.drop_database(s.name)
            s.state["dropped"] = not s.db.list_collection_names()  # needs no listDatabases right
    except (PyMongoError, OSError) as exc:
        s.state["drop_error"] = _one_line(exc)


def run_capability(cap: Capability, s: Scratch, results: Mapping[str, str]) -> CapabilityResult:
    """Run one capability: skipped when one it needs did not pass; any exception is a
    failure with its one-line message (the server's own ``errmsg``); Ctrl-C goes through."""
    t0 = time.monotonic()
    missing = [n for n in cap.needs if results.get(n) != PASSED]
    if missing:
        out = skipped(f"needs {', '.join(missing)}, which did not pass")
    else:
        try:
            out = cap.run(s)
        except AssertionError as exc:
            out = failed(str(exc) or "a check failed")
        except Exception as exc:  # noqa: BLE001 - a capability's failure is its result
            out = failed(f"{type(exc).__name__}: {_one_line(exc)}")
    return CapabilityResult(cap.name, cap.what, out.state, out.detail, round(time.monotonic() - t0, 2))


def selftest(db: Any, *, db_url: str | None = None, capabilities: Sequence[Capability] | None = None,
             name: str | None = None, workdir: str | os.PathLike | None = None, files: int = 40,
             workers: int | None = None,
             progress: Callable[[CapabilityResult], None] | None = None) -> SelftestReport:
    """Prove every capability in a scratch database beside ``db`` (never touching ``db``'s
    own data) and remove it afterwards (after a failure or Ctrl-C too: KeyboardInterrupt is
    re-raised once it is gone). ``progress`` is called after each capability."""
    caps = CAPABILITIES if capabilities is None else tuple(capabilities)
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    results: list[CapabilityResult] = []
    with scratch_database(db, db_url=db_url, name=name, workdir=workdir, files=files,
                          workers=workers) as s:
        states: dict[str, str] = {}
        for cap in caps:
            r = run_capability(cap, s, states)
            states[cap.name] = r.state
            results.append(r)
            if progress is not None:
                progress(r)
    return SelftestReport(scratch=s.name, results=results, dropped=bool(s.state.get("dropped")),
                          drop_error=s.state.get("drop_error"))


def capability_line(r: CapabilityResult, width: int = 10) -> str:
    """One capability's line: state, name, detail (and its time when over a second)."""
    return (f"  {r.state:<7} {r.name:<{width}}  {r.detail}"
            + (f"  ({r.seconds:.1f} s)" if r.seconds >= 1 else ""))


def render_selftest(report: SelftestReport, *, lines: bool = True) -> list[str]:
    """The self-test section: one line per capability (``lines=False``: leave them out,
    they were shown as they came), then what became of the scratch database."""
    out = ["", f"Self-test (scratch database {report.scratch})"]
    if lines:
        out += [capability_line(r) for r in report.results]
    if report.dropped:
        out.append(f"  removed {report.scratch}")
    else:
        out.append(f"  FAILED to remove {report.scratch}: {report.drop_error or 'it is still there'}: "
                   "drop it by hand")
    return out
