"""``spine-docs doctor --explain``: the explain parser on canned replies in the shapes MongoDB's
documentation shows (6.0 classic engine, 7.0 slot-based engine, aggregations, a sharded
cluster), and the whole path through pymongo's real network path against MongoDB's scripted
wire-protocol server ``mockupdb`` answering as a catalog at the code's schema version would.

Expected values are written out here (plans, index names, counts); the mock's collections,
validators and indexes are built from schema.json by this file, not by spine_docs.schema."""

from __future__ import annotations

import copy
import json

import pytest

from spine_docs import cli, doctor
from spine_docs.resources import schema_file

mockupdb = pytest.importorskip("mockupdb")
import pymongo  # noqa: E402

WIRE_6_0 = {"maxWireVersion": 17, "minWireVersion": 0}
SERVER_INFO = {"host": "db1", "port": 27017, "version": "6.0.5", "gitVersion": "c9a99c120371d4d4c52cbb15dac34a36ce8d3b1d"}


# --------------------------------------------------------------------------- canned replies

def ixscan(index, key, *, bounds=None):
    return {"stage": "IXSCAN", "keyPattern": key, "indexName": index, "isMultiKey": False,
            "multiKeyPaths": {k: [] for k in key}, "isUnique": False, "isSparse": False,
            "isPartial": False, "indexVersion": 2, "direction": "forward",
            "indexBounds": bounds or {k: ["[MinKey, MaxKey]"] for k in key}}


def classic_find(plan, *, keys, docs, ms, rejected=()):
    """A 6.0 find explain (classic engine), executionStats verbosity."""
    return {
        "explainVersion": "1",
        "queryPlanner": {"namespace": "spine_docs.files", "indexFilterSet": False,
                         "parsedQuery": {}, "queryHash": "7A4F1C2B", "planCacheKey": "3E0B9C61",
                         "maxIndexedOrSolutionsReached": False, "maxIndexedAndSolutionsReached": False,
                         "maxScansToExplodeReached": False, "winningPlan": plan,
                         "rejectedPlans": list(rejected)},
        "executionStats": {"executionSuccess": True, "nReturned": docs, "executionTimeMillis": ms,
                           "totalKeysExamined": keys, "totalDocsExamined": docs,
                           "executionStages": {"stage": plan["stage"], "nReturned": docs,
                                               "executionTimeMillisEstimate": ms, "works": keys + 1}},
        "command": {"find": "files", "filter": {}, "limit": 50, "$db": "spine_docs"},
        "serverInfo": SERVER_INFO,
        "serverParameters": {"internalQueryFacetBufferSizeBytes": 104857600},
        "ok": 1.0,
    }


def sbe_find(query_plan, *, keys, docs, ms):
    """A 7.0 find explain (slot-based engine): the plan tree under winningPlan.queryPlan."""
    return {
        "explainVersion": "2",
        "queryPlanner": {"namespace": "spine_docs.files", "indexFilterSet": False, "parsedQuery": {},
                         "queryHash": "5B1E0F7A", "planCacheKey": "0C4D9E21",
                         "winningPlan": {"queryPlan": query_plan,
                                         "slotBasedPlan": {"slots": "$$RESULT=s11 env: { s1 = Nothing }",
                                                           "stages": "[2] nlj inner [] [s4, s5] \n"
                                                                     "    left [1] ixseek s1 s2 s9 s5 s6 s7 [] @\"6c2b\" @\"mtime_-1__id_-1\" true"}},
                         "rejectedPlans": []},
        "executionStats": {"executionSuccess": True, "nReturned": docs, "executionTimeMillis": ms,
                           "totalKeysExamined": keys, "totalDocsExamined": docs,
                           "executionStages": {"stage": "nlj", "planNodeId": 2, "nReturned": docs}},
        "command": {"find": "files", "filter": {}, "$db": "spine_docs"},
        "serverInfo": {**SERVER_INFO, "version": "7.0.2"},
        "ok": 1.0,
    }


def classic_aggregate(plan, *, keys, docs, ms, later_ms):
    """A 6.0 aggregate explain: the query layer under stages[0].$cursor, then the rest."""
    return {
        "explainVersion": "1",
        "stages": [
            {"$cursor": {"queryPlanner": {"namespace": "spine_docs.files", "indexFilterSet": False,
                                          "parsedQuery": {}, "winningPlan": plan, "rejectedPlans": []},
                         "executionStats": {"executionSuccess": True, "nReturned": docs,
                                            "executionTimeMillis": ms, "totalKeysExamined": keys,
                                            "totalDocsExamined": docs,
                                            "executionStages": {"stage": plan["stage"]}}},
             "nReturned": docs, "executionTimeMillisEstimate": ms},
            {"$group": {"_id": "$status", "count": {"$sum": {"$const": 1}}},
             "maxAccumulatorMemoryUsageBytes": {"count": 240}, "totalOutputDataSizeBytes": 712,
             "usedDisk": False, "spills": 0, "nReturned": 3, "executionTimeMillisEstimate": later_ms},
            {"$sort": {"sortKey": {"count": -1, "_id": 1}}, "totalDataSizeSortedBytesEstimate": 1024,
             "usedDisk": False, "nReturned": 3, "executionTimeMillisEstimate": later_ms},
        ],
        "serverInfo": SERVER_INFO,
        "command": {"aggregate": "files", "pipeline": [], "cursor": {}, "$db": "spine_docs"},
        "ok": 1.0,
    }


# --------------------------------------------------------------------------- the parser

def test_classic_find_on_an_index():
    plan = {"stage": "LIMIT", "limitAmount": 50,
            "inputStage": {"stage": "FETCH", "inputStage": ixscan("status_1", {"status": 1})}}
    rejected = [{"stage": "LIMIT", "inputStage": {"stage": "COLLSCAN", "direction": "forward"}}]
    s = doctor.summarize_explain(classic_find(plan, keys=3, docs=3, ms=2, rejected=rejected))
    assert (s.plan, s.indexes, s.keys_examined, s.docs_examined, s.millis) == ("IXSCAN", ["status_1"], 3, 3, 2)
    assert s.stages == ["LIMIT", "FETCH", "IXSCAN"]  # the rejected COLLSCAN is not the plan


def test_classic_find_collscan_and_blocking_sort():
    plan = {"stage": "SORT", "sortPattern": {"mtime": -1}, "memLimit": 104857600, "limitAmount": 50,
            "type": "simple", "inputStage": {"stage": "COLLSCAN", "filter": {"subrun": {"$lte": 5}},
                                             "direction": "forward"}}
    s = doctor.summarize_explain(classic_find(plan, keys=0, docs=1000, ms=41))
    assert (s.plan, s.indexes, s.keys_examined, s.docs_examined, s.millis) == ("COLLSCAN", [], 0, 1000, 41)
    plan = {"stage": "SORT", "sortPattern": {"site": 1, "path": 1}, "inputStage": {
        "stage": "FETCH", "inputStage": ixscan("fingerprint_1", {"fingerprint": 1})}}
    s = doctor.summarize_explain(classic_find(plan, keys=4, docs=4, ms=0))
    assert (s.plan, s.indexes) == ("IXSCAN+SORT", ["fingerprint_1"])


def test_classic_or_of_index_scans_and_idhack():
    plan = {"stage": "SUBPLAN", "inputStage": {"stage": "FETCH", "inputStage": {"stage": "OR", "inputStages": [
        ixscan("run_max_1", {"run_max": 1}), ixscan("run_max_1", {"run_max": 1}),
        ixscan("run_1__id_1", {"run": 1, "_id": 1})]}}}
    s = doctor.summarize_explain(classic_find(plan, keys=9, docs=7, ms=1))
    assert (s.plan, s.indexes) == ("IXSCAN", ["run_max_1", "run_1__id_1"])
    s = doctor.summarize_explain(classic_find({"stage": "IDHACK"}, keys=1, docs=1, ms=0))
    assert (s.plan, s.indexes) == ("IXSCAN", ["_id_"])


def test_sbe_find_reads_the_plan_under_query_plan():
    qp = {"stage": "FETCH", "planNodeId": 2,
          "inputStage": dict(ixscan("mtime_-1__id_-1", {"mtime": -1, "_id": -1}), planNodeId=1)}
    s = doctor.summarize_explain(sbe_find(qp, keys=50, docs=50, ms=1))
    assert (s.plan, s.indexes, s.keys_examined, s.docs_examined, s.millis) == \
        ("IXSCAN", ["mtime_-1__id_-1"], 50, 50, 1)
    s = doctor.summarize_explain(sbe_find({"stage": "COLLSCAN", "planNodeId": 1}, keys=0, docs=12, ms=0))
    assert s.plan == "COLLSCAN"


def test_classic_aggregate_reads_the_cursor_stage_and_the_pipeline_time():
    plan = {"stage": "PROJECTION_COVERED", "transformBy": {"status": 1, "_id": 0},
            "inputStage": ixscan("status_1", {"status": 1})}
    s = doctor.summarize_explain(classic_aggregate(plan, keys=40, docs=0, ms=3, later_ms=7))
    assert (s.plan, s.indexes, s.keys_examined, s.docs_examined, s.millis) == ("IXSCAN", ["status_1"], 40, 0, 7)


def test_a_sort_of_groups_is_not_a_sort_of_documents():
    # slot-based engine with $group (and the $sort after it) pushed into the query layer
    grouped = {"stage": "SORT", "sortPattern": {"count": -1}, "inputStage": {
        "stage": "GROUP", "inputStage": {"stage": "PROJECTION_COVERED",
                                         "inputStage": ixscan("model_1", {"model": 1})}}}
    assert doctor.summarize_explain(sbe_find(grouped, keys=9, docs=0, ms=0)).plan == "IXSCAN"
    before = {"stage": "GROUP", "inputStage": {"stage": "SORT", "sortPattern": {"model": 1}, "inputStage": {
        "stage": "FETCH", "inputStage": ixscan("dataset_1_run_1_subrun_1", {"dataset": 1, "run": 1, "subrun": 1})}}}
    assert doctor.summarize_explain(sbe_find(before, keys=9, docs=9, ms=0)).plan == "IXSCAN+SORT"


def test_sharded_find_sums_nothing_twice():
    shard = lambda name, plan: {"shardName": name, "connectionString": f"{name}/h:27018",  # noqa: E731
                                "serverInfo": SERVER_INFO, "namespace": "spine_docs.files",
                                "winningPlan": plan, "rejectedPlans": []}
    doc = {"queryPlanner": {"mongosPlannerVersion": 1, "winningPlan": {"stage": "SHARD_MERGE", "shards": [
        shard("s0", {"stage": "FETCH", "inputStage": {"stage": "SHARDING_FILTER",
                                                     "inputStage": ixscan("run_1__id_1", {"run": 1, "_id": 1})}}),
        shard("s1", {"stage": "FETCH", "inputStage": ixscan("run_1__id_1", {"run": 1, "_id": 1})})]}},
        "executionStats": {"nReturned": 10, "executionTimeMillis": 5, "totalKeysExamined": 20,
                           "totalDocsExamined": 10, "executionStages": {"stage": "SHARD_MERGE", "shards": [
                               {"shardName": "s0", "totalKeysExamined": 12, "totalDocsExamined": 6},
                               {"shardName": "s1", "totalKeysExamined": 8, "totalDocsExamined": 4}]}},
        "ok": 1.0}
    s = doctor.summarize_explain(doc)
    assert (s.plan, s.indexes, s.keys_examined, s.docs_examined, s.millis) == ("IXSCAN", ["run_1__id_1"], 20, 10, 5)


def test_no_collection_is_eof():
    assert doctor.summarize_explain(classic_find({"stage": "EOF"}, keys=0, docs=0, ms=0)).plan == "EOF"


# --------------------------------------------------------------------------- a catalog on the wire

def _schema():
    return json.loads(schema_file().read_text(encoding="utf-8"))


def _index_docs(cspec):
    """listIndexes entries for a collection of schema.json (built here, by hand)."""
    out = [{"v": 2, "key": {"_id": 1}, "name": "_id_"}]
    for spec in cspec.get("indexes", []):
        doc = {"v": 2, "key": dict(spec["key"]), "name": "_".join(f"{k}_{v}" for k, v in spec["key"].items())}
        doc.update({k: copy.deepcopy(v) for k, v in spec.items() if k not in ("key", "comment", "name")})
        out.append(doc)
    return out


def _collection_info(name, cspec):
    opts = {k: copy.deepcopy(cspec[k]) for k in ("validator", "validationLevel", "validationAction") if k in cspec}
    return {"name": name, "type": "collection", "options": opts,
            "info": {"readOnly": False}, "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}}


def plan_for(inner):
    """The canned explain reply for an explained command: COLLSCAN for the reads of every file
    without a filter (run coverage, histogram stats, the full attribute dictionary: all
    allowed) and the subrun-only filters (allowed), COLLSCAN for a lookup by path (not
    allowed: breaks the run when ``collscan_path``), an index scan for everything else."""
    if "find" in inner:
        if inner["filter"] == {"path": "/data/f.h5"}:
            return "path"
        return classic_find({"stage": "LIMIT", "limitAmount": 50, "inputStage": {
            "stage": "FETCH", "inputStage": ixscan("mtime_-1__id_-1", {"mtime": -1, "_id": -1})}},
            keys=3, docs=3, ms=1)
    first = inner["pipeline"][0]
    text = json.dumps(first.get("$match", {}), default=str)
    if not ("$match" in first or "$sort" in first) or '"subrun' in text:
        return classic_aggregate({"stage": "COLLSCAN", "direction": "forward"}, keys=0, docs=40, ms=4, later_ms=6)
    return sbe_find({"stage": "FETCH", "inputStage": ixscan("status_1", {"status": 1})}, keys=7, docs=7, ms=2)


class CatalogOnTheWire:
    """Answers what the doctor sends as a catalog at schema.json's version with exactly its
    collections, validators and indexes, no documents, would; ``explains`` records every
    explained command; anything unexpected is recorded in ``unknown`` (and answered ok)."""

    def __init__(self, *, collscan_path=False, fcv_denied=False, hello=None, largest=None):
        self.schema = _schema()
        self.collscan_path = collscan_path
        self.fcv_denied = fcv_denied
        self.hello = hello
        self.largest = largest
        self.explains = []
        self.aggregates = []
        self.unknown = []

    def cursor(self, request, docs):
        ns = f"{request.doc.get('$db', 'spine_docs')}.{request.doc[request.command_name]}"
        return request.reply({"cursor": {"id": 0, "ns": ns, "firstBatch": docs}})

    def __call__(self, request):
        name = request.command_name
        cols = self.schema["collections"]
        if name in ("hello", "isMaster", "ismaster"):
            return request.reply(self.hello or {"ismaster": True, "isWritablePrimary": True, **WIRE_6_0})
        if name == "ping" or name == "endSessions":
            return request.ok()
        if name == "buildInfo":
            return request.ok(version="6.0.5", versionArray=[6, 0, 5, 0])
        if name == "getParameter":
            if self.fcv_denied:
                return request.command_err(13, "not authorized on admin to execute command "
                                               "{ getParameter: 1, featureCompatibilityVersion: 1 }")
            return request.ok(featureCompatibilityVersion={"version": "6.0"})
        if name == "listCollections":
            want = (request.doc.get("filter") or {}).get("name")
            infos = [_collection_info(n, c) for n, c in cols.items() if want in (None, n)]
            if request.doc.get("nameOnly"):
                infos = [{"name": i["name"], "type": "collection"} for i in infos]
            return request.reply({"cursor": {"id": 0, "ns": "spine_docs.$cmd.listCollections", "firstBatch": infos}})
        if name == "listIndexes":
            return self.cursor(request, _index_docs(cols[request.doc["listIndexes"]]))
        if name == "find":
            coll, flt = request.doc["find"], request.doc.get("filter") or {}
            docs = [{"_id": "schema", "version": self.schema["schema_version"]}] \
                if coll == "meta" and flt == {"_id": "schema"} else []
            return self.cursor(request, docs)
        if name == "aggregate":
            pipeline = request.doc["pipeline"]
            self.aggregates.append(pipeline)
            docs = []
            if self.largest and any("$bsonSize" in json.dumps(s, default=str) for s in pipeline):
                docs = [self.largest]
            return self.cursor(request, docs)
        if name == "count":
            return request.ok(n=0)
        if name == "explain":
            inner = dict(request.doc["explain"])
            self.explains.append(inner)
            reply = plan_for(inner)
            if reply == "path":
                reply = (classic_find({"stage": "COLLSCAN", "direction": "forward"}, keys=0, docs=40, ms=3)
                         if self.collscan_path else
                         classic_find({"stage": "FETCH", "inputStage": ixscan("path_1_site_1", {"path": 1, "site": 1})},
                                      keys=1, docs=1, ms=0))
            return request.reply(reply)
        self.unknown.append(name)
        return request.ok()


@pytest.fixture
def wire():
    servers = []

    def start(catalog, uri_options=""):
        s = mockupdb.MockupDB(auto_ismaster=WIRE_6_0)
        s.autoresponds(lambda request: catalog(request))
        s.run()
        servers.append(s)
        return f"mongodb://localhost:{s.port}/spine_docs{uri_options}"

    yield start
    for s in servers:
        s.stop()


def run_main(monkeypatch, capsys, *args):
    with pytest.raises(SystemExit) as info:
        cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_explain_through_the_wire_all_served_exits_0(wire, monkeypatch, capsys):
    catalog = CatalogOnTheWire()
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", wire(catalog), "--explain")
    assert code == 0, out + err
    assert catalog.unknown == []
    # every explain asked for executionStats of a files command, with the time limit
    assert catalog.explains and all(("find" in c or "aggregate" in c) for c in catalog.explains)
    assert all(c.get("maxTimeMS") == 5000 for c in catalog.explains)
    assert "version: 6.0.5   feature compatibility: 6.0" in out
    assert "topology: standalone" in out
    assert "version: database 7, code 7 (current)" in out
    assert "ok  IXSCAN on path_1_site_1  file by path  (keys 1, docs 1, 0 ms)" in out
    # the allowed scans are shown, with their reason, and do not fail the run
    assert "ok  COLLSCAN  run coverage  (keys 0, docs 40, 6 ms)  -- allowed: coverage reads" in out
    assert "ok  COLLSCAN  filter: subrun_max" in out
    assert "Problems: none" in out


def test_explain_through_the_wire_a_collscan_not_allowed_exits_1(wire, monkeypatch, capsys):
    catalog = CatalogOnTheWire(collscan_path=True)
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", wire(catalog), "--explain")
    assert code == 1
    assert "BAD COLLSCAN  file by path  (keys 0, docs 40, 3 ms)" in out
    problems = out.split("\nProblems\n", 1)[1].split("\n\n")[0].strip().splitlines()
    assert problems == ["query shape 'file by path': COLLSCAN on the server (no index serves it)"]


def test_explain_through_the_wire_as_json(wire, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", wire(CatalogOnTheWire(collscan_path=True)),
                              "--explain", "--json")
    assert code == 1
    doc = json.loads(out)
    by_name = {p["name"]: p for p in doc["explain"]}
    assert by_name["file by path"]["plan"] == "COLLSCAN" and by_name["file by path"]["ok"] is False
    assert by_name["run coverage"]["plan"] == "COLLSCAN" and by_name["run coverage"]["ok"] is True
    assert by_name["page sorted mtime"] == {**by_name["page sorted mtime"], "plan": "IXSCAN",
                                            "indexes": ["mtime_-1__id_-1"], "keys_examined": 3,
                                            "docs_examined": 3, "millis": 1, "command": "find"}
    assert doc["server"]["version"] == "6.0.5" and doc["exit_code"] == 1


def test_what_each_shape_sends(wire):
    catalog = CatalogOnTheWire()
    uri = wire(catalog)
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        by_name = {p.name: p for p in doctor.explain_shapes(client["spine_docs"])}
    finally:
        client.close()
    # a page: find, its sort, a page's limit
    page = next(c for c in catalog.explains if "find" in c and c.get("sort") == {"mtime": -1, "_id": -1}
                and c["filter"] == {})
    assert page["limit"] == 50
    # a count: the aggregation count_documents sends
    status = [c for c in catalog.explains if "aggregate" in c
              and c["pipeline"] == [{"$match": {"status": {"$in": ["error"]}, "retired": {"$exists": False}}},
                                    {"$group": {"_id": 1, "n": {"$sum": 1}}}]]
    assert len(status) == 1
    # a facet: its whole pipeline, the sort that walks the field's index then the group (no
    # $match: the retired files' counts are subtracted, from their own shape's pipeline)
    facet = [c for c in catalog.explains if "aggregate" in c and c["pipeline"][0] == {"$sort": {"detector": 1}}]
    assert len(facet) == 1 and facet[0]["pipeline"] == [
        {"$sort": {"detector": 1}}, {"$group": {"_id": "$detector", "count": {"$sum": 1}}}]
    retired = [c for c in catalog.explains if "aggregate" in c and c["pipeline"] == [
        {"$match": {"retired": {"$exists": True}}}, {"$group": {"_id": "$detector", "count": {"$sum": 1}}}]]
    assert len(retired) == 1
    assert by_name["facet detector"].command == "aggregate" and by_name["file by _id"].command == "find"
    assert len(catalog.explains) == len(doctor.shapes.doctor_shapes())  # one explain per shape


def test_a_shape_past_the_time_limit_still_gets_its_plan(wire):
    class Slow(CatalogOnTheWire):
        def __call__(self, request):
            if request.command_name == "explain" and request.doc["verbosity"] == "executionStats":
                return request.command_err(50, "operation exceeded time limit")
            return super().__call__(request)

    catalog = Slow()
    client = pymongo.MongoClient(wire(catalog), serverSelectionTimeoutMS=5000)
    try:
        shape = next(s for s in doctor.shapes.query_shapes() if s.name == "page sorted size")
        p = doctor.explain_shape(client["spine_docs"], shape, max_time_ms=5)
    finally:
        client.close()
    assert (p.plan, p.indexes, p.ok, p.error) == ("IXSCAN", ["mtime_-1__id_-1"], True, None)
    assert p.note == "ran over 5 ms (the plan is the planner's, not executed)"


def test_an_explain_error_is_a_problem(wire, monkeypatch, capsys):
    class Broken(CatalogOnTheWire):
        def __call__(self, request):
            if request.command_name == "explain" and "aggregate" in request.doc["explain"] \
                    and request.doc["explain"]["pipeline"][0] == {"$sort": {"model": 1}}:
                return request.command_err(168, "Unrecognized expression '$objectToArray'")
            return super().__call__(request)

    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db", wire(Broken()), "--explain")
    assert code == 1
    assert "query shape 'facet model': explain failed: Unrecognized expression '$objectToArray'" in out


def test_server_facts_without_cluster_monitor_and_on_a_replica_set(wire, monkeypatch, capsys):
    hello = {"ismaster": True, "isWritablePrimary": False, "secondary": True, "setName": "rs0",
             "hosts": ["db1:27017", "db2:27017"], "primary": "db2:27017", "me": "db1:27017",
             **WIRE_6_0, "ok": 1}
    catalog = CatalogOnTheWire(fcv_denied=True, hello=hello, largest={"_id": "s:/big.h5", "s": 123456})
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--db",
                              wire(catalog, "?directConnection=true&readPreference=primaryPreferred"))
    assert code == 0, out + err
    assert "feature compatibility: unknown (needs clusterMonitor)" in out
    assert ("replica set rs0: this member (db1:27017) is not the primary; primary db2:27017; "
            "hosts db1:27017, db2:27017") in out
    assert "connected to a member that is not the primary of rs0 (primary: db2:27017): writes will fail" in out
    # the largest document: $bsonSize of a sample (not a collection scan) unless asked
    assert "largest document: 120.6 KiB (123,456 bytes)  s:/big.h5  (a random sample of 1,000" in out
    sized = [p for p in catalog.aggregates if "$bsonSize" in json.dumps(p, default=str)]
    assert sized[0][0] == {"$sample": {"size": 1000}}
    code, out, err = run_main(monkeypatch, capsys, "doctor", "--largest-full-scan", "--db",
                              wire(catalog, "?directConnection=true&readPreference=primaryPreferred"))
    sized = [p for p in catalog.aggregates if "$bsonSize" in json.dumps(p, default=str)]
    assert "$sample" not in json.dumps(sized[-1]) and "(exact: every document read" in out
