"""Issues 13 and 14 on the wire: what ``verify``, ``prune``/``restore-files``, ``retire``/
``unretire``, lineage (``link`` after each inject, the walks), supersede and history send
through pymongo's real network path, against a scripted server (``wire_fake``) whose CRUD
commands are kept in an in-memory database (``wire_fake.Catalog``).

Checked on every command a scenario sends: each filter on ``files``, ``file_versions`` and
``files_archive`` is served by an index the catalog's setup created on the wire (MongoDB's
planner rules, :mod:`spine_docs.plans`), every operator exists in MongoDB 6.0 and none runs
JavaScript, writes go in bulk (one command per batch, not per file), a set diff's ``hint``
names a created index. Then a write-concern error and a not-primary error during verify,
prune and retire: one line, a non-zero exit, each document before or after (a prune never
leaves a document in neither collection), and the next run finishes. Last, the documents
these modules write are BSON for any input (hypothesis)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import bson
import pytest

pytest.importorskip("mockupdb")
from hypothesis import given, settings, strategies as st  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from wire_fake import catalog, fake  # noqa: E402,F401  (fixtures)
from spine_docs import history, lineage, plans, samples, verify  # noqa: E402
from spine_docs.cli import app  # noqa: E402

SITE = "s1"
CATALOG = ("files", "file_versions", "files_archive")

#: the operators MongoDB 6.0 knows that a catalog command may carry (query, update, and the
#: aggregation stages and expressions of the queries package); anything else fails the test
MONGO_6_0 = frozenset("""
$eq $ne $gt $gte $lt $lte $in $nin $and $or $nor $not $exists $type $regex $options $expr
$elemMatch $size $all $mod
$set $unset $push $each $slice $position $sort $inc $setOnInsert $addToSet $pull $min $max
$currentDate $rename
$match $group $project $addFields $sortByCount $unwind $limit $skip $count $facet $bucket
$replaceRoot $replaceWith $lookup $sum $avg $first $last $push $cond $ifNull $literal
$toString $concat $arrayElemAt $dateToString $dateTrunc $objectToArray $arrayToObject $map
$filter $reduce $isArray $max $min $subtract $add $multiply $divide $floor $ceil $trunc
$switch $let $size $type $indexOfArray $concatArrays $setUnion $mergeObjects $getField
$toLower $toUpper $strLenCP $substrCP $split $range $zip $abs $log10 $pow $round $toDouble
$toLong $toInt $convert $eq $ne $gt $gte $lt $lte $in $and $or $not
""".split())
#: server-side JavaScript, and operators newer than MongoDB 6.0
FORBIDDEN = frozenset({"$where", "$function", "$accumulator", "$median", "$percentile", "$bitAnd",
                       "$bitOr", "$bitXor", "$bitNot", "$toHashedIndexKey"})

runner = CliRunner()


@pytest.fixture
def env(clean_env, monkeypatch):
    monkeypatch.setenv("SPINE_DOCS_SITE", SITE)
    monkeypatch.setenv("SPINE_DOCS_WORKERS", "1")
    monkeypatch.setenv("SPINE_DOCS_RETRY_BACKOFF_S", "0.001")
    monkeypatch.setenv("SPINE_DOCS_FAILOVER_TIMEOUT_S", "2")


def cli(fake, *args):
    """``spine-docs ARGS --db <the fake>``, and the requests it sent."""
    before = len(fake.requests)
    res = runner.invoke(app, [*map(str, args), "--db", f"mongodb://{fake.address}/spine_docs"])
    assert "Traceback" not in res.output, res.output
    return res, list(fake.requests[before:])


def write(path, inputs, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(samples.write_spine_file(path, inputs=inputs, n_events=kw.pop("n_events", 3), **kw))


# --------------------------------------------------------------------------- what is sent

def keys(value):
    """Every ``$`` key anywhere in a command part."""
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k).startswith("$"):
                yield k
            yield from keys(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from keys(v)


def parts(name, doc):
    """(collection, [(filter, sort)], [operator-bearing parts]) of one CRUD command."""
    coll = doc.get(name)
    lower = name.lower()
    if lower == "find":
        return coll, [(doc.get("filter") or {}, tuple((doc.get("sort") or {}).items()))], [doc.get("filter"), doc.get("sort")]
    if lower == "update":
        return coll, [(u["q"], ()) for u in doc["updates"]], [x for u in doc["updates"] for x in (u["q"], u["u"])]
    if lower == "delete":
        return coll, [(d["q"], ()) for d in doc["deletes"]], [d["q"] for d in doc["deletes"]]
    if lower == "aggregate":
        shape = plans.Shape("", *_leading(doc["pipeline"]))
        return coll, [(shape.query, shape.sort)], [doc["pipeline"]]
    if lower == "count":
        return coll, ([(doc["query"], ())] if doc.get("query") else []), [doc.get("query")]
    if lower == "insert":
        return coll, [], []
    return None, [], []


def _leading(pipeline):
    stages = list(pipeline)
    query = stages.pop(0)["$match"] if stages and "$match" in stages[0] else {}
    sort = tuple(stages[0]["$sort"].items()) if stages and "$sort" in stages[0] else ()
    return query, sort


def built_indexes(fake):
    """The indexes the catalog's setup created, by collection (from its createIndexes)."""
    out = {c: [plans.Index(key=(("_id", 1),), name="_id_")] for c in CATALOG}
    for doc in fake.sent("createIndexes"):
        if doc["createIndexes"] in out:
            out[doc["createIndexes"]] += [plans.Index.from_spec(dict(i)) for i in doc["indexes"]]
    return out


def check_sent(requests, indexes, allow=()):
    """Every filter on the catalog's collections is index-served (or in ``allow``: (collection,
    filter) pairs), every operator is MongoDB 6.0's and none is JavaScript, every hint names a
    created index. Returns the CRUD requests on the catalog: [(command, collection, doc)]."""
    crud = []
    for name, doc in requests:
        coll, shapes, bearing = parts(name, doc)
        if coll not in CATALOG:
            continue
        crud.append((name.lower(), coll, doc))
        used = set(keys(bearing))
        assert used <= MONGO_6_0 and not used & FORBIDDEN, (name, coll, used - MONGO_6_0)
        if "hint" in doc:
            assert doc["hint"] in {i.name for i in indexes[coll]}, doc["hint"]
        for query, sort in shapes:
            if (coll, query) in allow:
                continue
            v = plans.choose(plans.Shape(name, query, sort), indexes[coll])
            assert v.plan == "IXSCAN", (name, coll, query, sort, v.plan, v.note)
    return crud


def writes(crud, command, coll):
    return [d for n, c, d in crud if n == command and c == coll]


# --------------------------------------------------------------------------- the scenario

def test_every_lifecycle_command_sends_index_served_batched_mongodb_6_commands(fake, catalog, env, tmp_path):
    prod = tmp_path / "prod"
    a = write(prod / "a.h5", ["/raw/run1.root"])
    b = write(prod / "b.h5", [a])
    b2 = write(prod / "b2.h5", [a])
    c = write(prod / "late" / "c.h5", [b])
    new = write(tmp_path / "v2" / "f.h5", ["/raw/run9.root"], spine_version="0.17.1")
    old = write(tmp_path / "v1" / "f.h5", ["/raw/run9.root"], spine_version="0.16.0")

    # c first: its parent b is not indexed yet, so c waits for it by name (lineage.pending)
    res, sent = cli(fake, "inject", "--source", c, "--no-progress")
    assert res.exit_code == 0, res.output
    indexes = built_indexes(fake)
    assert {i.name for i in indexes["files"]} >= {"lineage.parents.path_1", "lineage.pending_1", "retired_1",
                                                  "superseded_by_1", "inputs_1__id_1", "name_1__id_1"}
    check_sent(sent, indexes)
    assert catalog.db.files.find_one({"path": c})["lineage"]["pending"] == ["b.h5"]

    res, sent = cli(fake, "inject", "--source", prod, "--source", tmp_path / "v2", "--source", tmp_path / "v1",
                    "--no-progress")
    assert res.exit_code == 0, res.output
    crud = check_sent(sent, indexes)
    finds = [d["filter"] for d in writes(crud, "find", "files")]
    assert any("lineage.pending" in f for f in finds)                  # the waiting children, by index
    lineage_writes = [d for d in writes(crud, "update", "files")
                      if all("lineage" in u["u"].get("$set", {}) for u in d["updates"])]
    assert lineage_writes and all(d["ordered"] is False for d in lineage_writes)
    # every new file is inserted with its lineage; afterwards one bulk links what the run changed:
    # b and b2, whose parent a came in their own batch (not on the server when they were
    # resolved), and the waiting child c
    inserted = [doc for d in writes(crud, "insert", "files") for doc in d["documents"]]
    assert {doc["path"] for doc in inserted} == {a, b, b2, new, old}
    assert all("lineage" in doc for doc in inserted)
    linked = {u["q"]["_id"] for d in lineage_writes for u in d["updates"]}
    assert linked == {f"{SITE}:{p}" for p in (b, b2, c)}
    assert len(lineage_writes) == 1
    assert catalog.db.files.find_one({"path": c})["lineage"]["parents"][0]["path"] == b
    assert catalog.db.files.find_one({"path": old})["superseded_by"] == f"{SITE}:{new}"
    (marks,) = [d for d in writes(crud, "update", "files")
                if any("superseded_by" in json.dumps(u["u"], default=str) for u in d["updates"])]
    assert len(marks["updates"]) == 1 and marks["ordered"] is False

    # history: a re-processed file keeps its previous document, one upsert into its ring slot
    write(prod / "a.h5", ["/raw/run1.root"], n_events=5)
    res, sent = cli(fake, "inject", "--source", prod / "a.h5", "--no-progress")
    assert res.exit_code == 0, res.output
    crud = check_sent(sent, indexes)
    (kept,) = writes(crud, "update", "file_versions")
    (slot,) = kept["updates"]
    assert (slot["q"], slot["upsert"], slot.get("multi", False)) == ({"_id": f"{SITE}:{a}#0"}, True, False)
    assert slot["u"]["file_id"] == f"{SITE}:{a}" and slot["u"]["version"] == 1
    res, sent = cli(fake, "diff", f"{a}@1", a, "--format", "json")
    assert res.exit_code == 0, res.output
    crud = check_sent(sent, indexes)
    assert {c_ for _, c_, _ in crud} == {"files", "file_versions"}

    # verify: two files gone, their verdicts in one unordered bulk write guarded by the status read
    os.remove(c)
    os.remove(b2)
    res, sent = cli(fake, "verify", "--no-progress")
    assert res.exit_code == 1, res.output
    crud = check_sent(sent, indexes)
    (verdicts,) = writes(crud, "update", "files")
    assert verdicts["ordered"] is False
    assert sorted((u["q"]["_id"], u["q"]["status"], u["u"]["$set"]["status"]) for u in verdicts["updates"]) == \
        sorted([(f"{SITE}:{b2}", "ok", "missing"), (f"{SITE}:{c}", "ok", "missing")])

    # prune: one upsert bulk into the archive, then one delete of the batch, guarded by the selection
    res, sent = cli(fake, "prune", "--missing-for", "0d", "--yes", "--json")
    assert res.exit_code == 0, res.output
    run_id = json.loads(res.stdout)["run_id"]
    crud = check_sent(sent, indexes)
    (copied,) = writes(crud, "update", "files_archive")
    assert [(u["upsert"], u.get("multi", False)) for u in copied["updates"]] == [(True, False)] * 2
    (removed,) = writes(crud, "delete", "files")
    (stmt,) = removed["deletes"]
    assert sorted(stmt["q"]["_id"]["$in"]) == sorted([f"{SITE}:{b2}", f"{SITE}:{c}"]) and stmt["limit"] == 0
    assert "status" in json.dumps(stmt["q"], default=str)              # the selection guards the delete
    assert writes(crud, "insert", "files_archive") == []

    # restore by run: found by the archive's archived.at index, one insert, one delete
    res, sent = cli(fake, "restore-files", "--run", run_id, "--json")
    assert res.exit_code == 0, res.output
    crud = check_sent(sent, indexes)
    first = writes(crud, "find", "files_archive")[0]["filter"]
    assert first == {"$and": [{"archived.run_id": run_id,
                               "archived.at": catalog.db.runs.find_one({"_id": run_id})["started"]}]}
    assert [len(d["documents"]) for d in writes(crud, "insert", "files")] == [2]
    assert len(writes(crud, "delete", "files_archive")) == 1

    # retire a file and its descendants: reads per generation, one multi-update
    res, sent = cli(fake, "retire", a, "--reason", "bad calibration", "--with-descendants", "--yes")
    assert res.exit_code == 0, res.output
    crud = check_sent(sent, indexes)
    assert [n for n, c_, _ in crud if c_ == "files" and n not in ("find", "update")] == []   # no count per file
    (mark,) = writes(crud, "update", "files")
    (stmt,) = mark["updates"]
    assert stmt["multi"] is True
    assert sorted(stmt["q"]["_id"]["$in"]) == sorted(f"{SITE}:{p}" for p in (a, b, b2, c))
    assert catalog.db.files.count_documents({"retired": {"$exists": True}}) == 4
    res, sent = cli(fake, "unretire", a, "--json")
    assert res.exit_code == 0, res.output
    check_sent(sent, indexes)
    assert catalog.db.files.count_documents({"retired": {"$exists": True}}) == 3

    # the walks and the lineage filters
    for args in (("lineage", b, "--down"), ("lineage", c, "--up"), ("query", "--derived-from", a, "-f", "paths"),
                 ("query", "--parent-of", c, "--include-retired", "-f", "paths")):
        res, sent = cli(fake, *args)
        assert res.exit_code == 0, res.output
        check_sent(sent, indexes)

    # a set diff: both sides walked by the hinted {inputs, _id} index
    res, sent = cli(fake, "diff", "--left", "spine_version=0.16.0", "--right", "spine_version=0.17.1")
    assert res.exit_code == 0, res.output
    crud = check_sent(sent, indexes)
    hinted = [d for d in writes(crud, "find", "files") if "hint" in d]
    assert [(d["hint"], list(d["sort"].items())) for d in hinted] == [("inputs_1__id_1", [("inputs", 1), ("_id", 1)])] * 2


# --------------------------------------------------------------------------- a write that fails

WCE = {"code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting for replication timed out"}
REASON = {"write-concern": "waiting for replication timed out", "not-primary": "not primary"}


def fail_once(fake, catalog, kind, command, coll):
    """The first ``command`` on ``coll`` fails: ``write-concern`` (it lands, the server does not
    confirm it) or ``not-primary`` (refused, nothing written). Returns the list it was seen in."""
    seen = []

    def answer(request):
        if seen or request.command_name != command or request.doc.get(command) != coll:
            return None
        seen.append(dict(request.doc))
        if kind == "write-concern":
            return request.ok(**catalog.apply(request), writeConcernError=WCE)
        return request.command_err(code=10107, errmsg="not primary")

    fake.overrides.insert(0, answer)
    return seen


def raw(catalog, coll="files"):
    """{_id: BSON bytes} of a collection (what "unchanged" compares)."""
    return {d["_id"]: bson.encode(d) for d in catalog.db[coll].find({})}


def four_files(fake, tmp_path, gone=2):
    paths = [write(tmp_path / "prod" / f"f{i}.h5", [f"/raw/r{i}.root"], run=i + 1) for i in range(4)]
    res, _ = cli(fake, "inject", "--source", tmp_path / "prod", "--no-progress")
    assert res.exit_code == 0, res.output
    for p in paths[:gone]:
        os.remove(p)
    return paths


def one_line(res, kind):
    assert res.exit_code not in (0, None), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spine-docs: "), lines
    assert REASON[kind] in lines[0], lines[0]
    if kind == "write-concern":  # said as such, not as pymongo's whole reply
        assert "did not confirm the writes" in lines[0] and "full error" not in lines[0], lines[0]


@pytest.mark.parametrize("kind", ["write-concern", "not-primary"])
def test_verify_meets_a_failing_write_one_line_each_document_before_or_after(fake, catalog, env, tmp_path, kind):
    paths = four_files(fake, tmp_path)
    before = raw(catalog)
    seen = fail_once(fake, catalog, kind, "update", "files")
    res, _ = cli(fake, "verify", "--no-progress")
    one_line(res, kind)
    assert len(seen) == 1 and len(seen[0]["updates"]) == 2            # both verdicts, one command
    gone = {f"{SITE}:{p}" for p in paths[:2]}
    now = raw(catalog)
    for _id, doc in now.items():
        if _id not in gone or kind == "not-primary":
            assert doc == before[_id], _id                              # before: untouched
        else:                                                           # after: the verdict, whole
            d = bson.decode(doc)
            assert (d["status"], d["verify"]["verdict"], d["verify"]["previous_status"]) == ("missing", "missing", "ok")
            assert d["ingest"]["history"][-1]["status"] == "missing"
    (run,) = catalog.db.runs.find({"kind": "verify"})
    assert run["state"] == "interrupted"
    again, _ = cli(fake, "verify", "--no-progress")                    # the next run finishes
    assert again.exit_code == 1, again.output
    assert "missing 2" in again.stdout
    assert {d["_id"] for d in catalog.db.files.find({"status": "missing"})} == gone


@pytest.mark.parametrize("kind", ["write-concern", "not-primary"])
@pytest.mark.parametrize("step", ["copy", "delete"])
def test_prune_meets_a_failing_write_and_never_half_moves_a_document(fake, catalog, env, tmp_path, kind, step):
    paths = four_files(fake, tmp_path)
    assert cli(fake, "verify", "--no-progress")[0].exit_code == 1
    before = raw(catalog)
    gone = {f"{SITE}:{p}" for p in paths[:2]}
    command, coll = ("update", "files_archive") if step == "copy" else ("delete", "files")
    seen = fail_once(fake, catalog, kind, command, coll)
    res, _ = cli(fake, "prune", "--missing-for", "0d", "--yes")
    one_line(res, kind)
    assert len(seen) == 1
    files, archive = raw(catalog), raw(catalog, "files_archive")
    assert set(files) | set(archive) == set(before)                    # nothing lost
    for _id, doc in files.items():
        assert doc == before[_id]                                       # what stays is as it was
    for _id, doc in archive.items():                                    # a copy is the document, stamped
        d = bson.decode(doc)
        assert list(d)[-1] == "archived" and bson.encode({k: v for k, v in d.items() if k != "archived"}) == before[_id]
    landed = kind == "write-concern"
    assert set(archive) == (gone if landed or step == "delete" else set())
    assert set(files) == (set(before) - gone if landed and step == "delete" else set(before))
    (run,) = catalog.db.runs.find({"kind": "prune"})
    assert run["state"] == "interrupted"

    again, _ = cli(fake, "prune", "--missing-for", "0d", "--yes")     # the next run finishes the move
    assert again.exit_code == 0, again.output
    assert set(raw(catalog)) == set(before) - gone and set(raw(catalog, "files_archive")) == gone
    back, _ = cli(fake, "restore-files", "--all")
    assert back.exit_code == 0, back.output
    assert raw(catalog) == before and raw(catalog, "files_archive") == {}


@pytest.mark.parametrize("kind", ["write-concern", "not-primary"])
def test_retire_meets_a_failing_write_one_line_each_document_before_or_after(fake, catalog, env, tmp_path, kind):
    four_files(fake, tmp_path, gone=0)
    before = raw(catalog)
    seen = fail_once(fake, catalog, kind, "update", "files")
    res, _ = cli(fake, "retire", "--run-max", "2", "--reason", "wrong calibration", "--yes")
    one_line(res, kind)
    (stmt,) = seen[0]["updates"]
    assert len(stmt["q"]["_id"]["$in"]) == 2 and stmt["multi"] is True
    chosen = {f"{SITE}:{tmp_path}/prod/f{i}.h5" for i in (0, 1)}
    for _id, doc in raw(catalog).items():
        d = bson.decode(doc)
        if _id in chosen and kind == "write-concern":                  # after: the whole mark
            assert set(d["retired"]) == {"reason", "by", "at"} and d["retired"]["reason"] == "wrong calibration"
            assert bson.encode({k: v for k, v in d.items() if k != "retired"}) == before[_id]
        else:
            assert doc == before[_id]                                   # before
    again, _ = cli(fake, "retire", "--run-max", "2", "--reason", "wrong calibration", "--yes")
    assert again.exit_code == 0, again.output
    assert {d["_id"] for d in catalog.db.files.find({"retired": {"$exists": True}})} == chosen


# --------------------------------------------------------------------------- BSON for any input

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)
KEY = st.text(st.characters(blacklist_characters=".$\x00", blacklist_categories=("Cs",)), min_size=1, max_size=6)
WHEN = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(), st.text(max_size=12), WHEN)
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEY, inner, max_size=3),
                     max_leaves=8)
STATUS = st.sampled_from(["ok", "incomplete", "error", "missing", "changed", "corrupt"])


@st.composite
def catalog_document(draw):
    """A files document as the catalog may hold it (any BSON values in its content fields)."""
    doc = {"_id": "s1:/data/f.h5", "site": "s1", "path": "/data/f.h5", "name": "f.h5", "dir": "/data",
           "status": draw(STATUS),
           "ingest": {"first_seen": draw(WHEN), "run_id": "r0",
                      "history": [{"at": draw(WHEN), "run_id": "r0", "status": "ok", "change": "new"}]}}
    for k in draw(st.lists(st.sampled_from(["attrs", "cfg", "info", "fingerprint", "size", "mtime", "structure",
                                            "inputs", "job", "error"]), unique=True)):
        doc[k] = draw(st.dictionaries(KEY, VALUE, max_size=4) if k in history.NESTED or k == "structure" else VALUE)
    return doc


def encodes(*docs):
    for d in docs:
        out = bson.decode(bson.encode(d))
        assert not [k for k in out if str(k).startswith("$") and k not in ("$set", "$unset", "$push")], out


def op_parts(op):
    return op._filter, op._doc  # pymongo's write models keep what they will send here


@PROPERTY
@given(catalog_document(), catalog_document(), st.integers(1, 30), st.integers(1, 12))
def test_history_writes_bson_for_any_pair_of_documents(old, new, number, keep):
    vdoc = history.version_document(old, history.effective(old, new), version=number, replaced_at=datetime(2026, 1, 1),
                                     run_id="r1", valid_from=old["ingest"]["first_seen"])
    if vdoc is not None:
        encodes(vdoc)
        assert vdoc["kind"] in ("delta", "whole")
    before = history.Before(docs={old["_id"]: old}, newest={old["_id"]: (number - 1, None)} if number > 1 else {})
    for op in history.version_ops(before, [(new, "changed")], now=datetime(2026, 1, 1), run_id="r1", keep=keep):
        encodes(*op_parts(op))


@PROPERTY
@given(STATUS, st.none() | STATUS, st.none() | WHEN, st.sampled_from(verify.VERDICTS))
def test_verify_verdicts_are_bson_for_any_stored_status(status, previous, since, verdict):
    k = verify.Known("s1:/data/f.h5", "/data/f.h5", 10, 1000, status, None, previous, since)
    encodes(*op_parts(verify.verdict_update(k, verdict, now=datetime(2026, 1, 1, tzinfo=timezone.utc), run_id="r1")))


@PROPERTY
@given(st.lists(st.text(max_size=30) | st.sampled_from(["/data/p.h5", "p.h5", "../p.h5", "root://x/p.h5", "/"]),
                max_size=4),
       st.text(max_size=20).filter(lambda s: s.strip()))
def test_lineage_retire_and_prune_write_bson_for_any_inputs_and_reason(inputs, reason):
    from spine_docs import prune, retire, store

    db = store.connect("mongomock://")
    parent = {"_id": "s1:/data/p.h5", "site": "s1", "path": "/data/p.h5", "name": "p.h5", "dataset": "d",
              "prod_version": "v1", "status": "missing", "verify": {"missing_since": datetime(2020, 1, 1)}}
    child = {"_id": "s1:/data/c.h5", "site": "s1", "path": "/data/c.h5", "name": "c.h5", "dataset": "d",
             "prod_version": "v1", "status": "ok", "inputs": inputs}
    db.files.insert_many([parent, child])
    lineage.link(db, ["/data/p.h5", "/data/c.h5"], "s1")
    retire.retire(db, {"path": "/data/p.h5"}, reason=reason, with_descendants=True, dry_run=False, by=reason)
    prune.prune(db, prune.selection(missing_for=None, retired=True), why=reason, dry_run=False, by=reason)
    docs = list(db.files.find({})) + list(db.files_archive.find({}))
    assert len(docs) == 2
    encodes(*docs)
    for d in docs:
        for p in (d.get("lineage") or {}).get("parents", []):
            assert set(p) == {"text", "path", "how"} and isinstance(p["text"], str)


def test_a_walk_sends_its_generations_in_bounded_batches(fake, catalog, env, tmp_path, monkeypatch):
    """A generation of a walk (retire --with-descendants of a whole production: every file of
    it) goes out as several ``$in`` of at most ``lineage.WALK_BATCH`` values each, so no command
    nears the server's 16 MB, and finds what one query would."""
    prod = tmp_path / "prod"
    a = write(prod / "a.h5", ["/raw/run1.root"])
    kids = [write(prod / f"b{i}.h5", [a]) for i in range(5)]
    grandkids = [write(prod / f"c{i}.h5", [k]) for i, k in enumerate(kids)]
    assert cli(fake, "inject", "--source", prod, "--no-progress")[0].exit_code == 0
    monkeypatch.setattr(lineage, "WALK_BATCH", 2)
    res, sent = cli(fake, "retire", a, "--reason", "bad", "--with-descendants", "--yes", "--json")
    assert res.exit_code == 0, res.output
    check_sent(sent, built_indexes(fake))
    def sent_in(field):
        return [d["filter"][field]["$in"] for n, d in sent if n == "find" and d.get("find") == "files"
                and field in d["filter"] and "$in" in d["filter"][field]]

    walked = sent_in("lineage.parents.path")                          # three generations: 1 + 5 + 5 paths
    assert sorted(p for v in walked for p in v) == sorted([a, *kids, *grandkids]) and len(walked) == 1 + 3 + 3
    assert max(len(v) for v in walked + sent_in("path")) == 2
    out = json.loads(res.stdout)
    assert (out["selected"], out["descendants"], out["changed"]) == (1, 10, 11)
    assert {d["path"] for d in catalog.db.files.find({"retired": {"$exists": True}})} == {a, *kids, *grandkids}


def test_history_beyond_a_lowered_bound_goes_in_the_same_bulk_write(fake, catalog, env, tmp_path, monkeypatch):
    """Three re-processings of one file; the bound lowered to 1 before the third: its
    previous document goes into ring slot 0 and the older version is marked ``pruned`` by the
    same bulk write, ordered (a file twice in one batch writes its slot twice, in order); no
    delete (the writer role has no ``remove``)."""
    p = tmp_path / "prod" / "f.h5"
    fid = f"{SITE}:{p}"
    for n_events, keep in ((3, "10"), (4, "10"), (5, "10"), (6, "1")):
        write(p, ["/raw/r.root"], n_events=n_events)
        monkeypatch.setenv("SPINE_DOCS_KEEP_VERSIONS", keep)
        res, sent = cli(fake, "inject", "--source", p, "--no-progress")
        assert res.exit_code == 0, res.output
    crud = check_sent(sent, built_indexes(fake))
    (bulk,) = writes(crud, "update", "file_versions")
    assert bulk["ordered"] is True
    replace, prune_older = bulk["updates"]
    assert (replace["q"], replace["upsert"], replace["u"]["version"]) == ({"_id": f"{fid}#0"}, True, 3)
    assert prune_older["q"] == {"file_id": fid, "version": {"$lte": 2}, "kind": {"$ne": "pruned"}}
    assert prune_older["multi"] is True and set(prune_older["u"]) == {"$set", "$unset"}
    assert writes(crud, "delete", "file_versions") == []
    kinds = {d["version"]: d["kind"] for d in catalog.db.file_versions.find({"file_id": fid})}
    assert kinds[3] in ("delta", "whole") and kinds[2] == "pruned"
