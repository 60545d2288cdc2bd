"""The in-memory engine (spine_docs.store.engine): every measured mongomock 4.3.0 problem is
gone (shown by behaviour and by counting work, never by timing), and results stay those of
mongomock, except where the engine departs from it on purpose: there they are a MongoDB
server's (expected values written out from MongoDB's documentation). The engine's package
docstring lists each change with the tests here that hold it.

Each work-counting test also runs the same operation on plain mongomock where that is cheap,
to show that the counter does see the problem there (so the test can fail)."""

from __future__ import annotations

import copy
import datetime as dt
import random
import tracemalloc
import uuid

import bson
import mongomock
import mongomock.collection
import mongomock.filtering
import mongomock.store
import pymongo
import pytest
from bson.binary import Binary
from bson.code import Code
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.raw_bson import RawBSONDocument
from bson.regex import Regex
from bson.timestamp import Timestamp
from packaging.version import Version
from pymongo import DeleteOne, IndexModel, InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import (BulkWriteError, CollectionInvalid, DuplicateKeyError,
                            InvalidOperation, OperationFailure, WriteError)

from spine_docs import store
from spine_docs.store.engine import rawbson
from spine_docs.store.engine.collection import Collection
from spine_docs.store.engine.stores import CollectionStore
from spine_docs.store.engine.updates import paths_disjoint

T0 = dt.datetime(2024, 3, 1, 12, 0, 0)


def file_doc(i: int, site: str = "s1") -> dict:
    """A document shaped like a catalog entry (nested attrs/cfg/structure, a few KB)."""
    rnd = random.Random(i)
    path = f"/data/run_{i // 10:04d}/file_{i:05d}.h5"
    attrs = {f"a{k}": (rnd.random() if k % 3 == 0 else f"v{rnd.randint(0, 9)}" if k % 3 == 1
                       else rnd.randint(0, 5)) for k in range(12)}
    attrs["arr"] = [rnd.randint(0, 3) for _ in range(4)] if i % 7 else []
    return {
        "_id": f"{site}:{path}", "site": site, "path": path, "name": path.rsplit("/", 1)[1],
        "size": rnd.randint(10, 10_000), "mtime": T0 + dt.timedelta(minutes=i % 17),
        "status": ["ok", "ok", "incomplete", "error"][i % 4] if i % 13 else None,
        "detector": ["icarus", "sbnd", "2x2"][i % 3], "run": i // 10, "subrun": i % 10,
        "inputs": [f"/in/{i}_{j}.root" for j in range(i % 3)],
        **({"checksum": {"sha256": f"{i:064x}"}} if i % 4 == 0 else {}),
        "attrs": attrs, "attr_types": {k: type(v).__name__ for k, v in attrs.items()},
        "cfg": {"model": {"name": ["full_chain", "uresnet"][i % 2], "depth": i % 5,
                          "modules": {f"m{j}": {"w": j, "on": j % 2 == 0} for j in range(4)}},
                "io": {"batch": 4, "files": [f"/x/{j}" for j in range(3)]}},
        "structure": {"items": [{"path": f"/events/d{j}", "kind": "dataset", "shape": [j, 3]}
                                for j in range(5)], "count": 5, "truncated": False},
        "ingest": {"first_seen": T0, "last_seen": T0, "times_seen": 1,
                   "history": [{"at": T0, "run_id": f"r{k}", "status": "ok"} for k in range(3)]},
    }


def shim_collection(n: int = 0, name: str = "files"):
    coll = store.connect("mongomock://")[name]
    if n:
        coll.insert_many([file_doc(i) for i in range(n)])
    return coll


def vanilla_collection(n: int = 0):
    coll = mongomock.MongoClient().db.files
    if n:
        coll.insert_many([file_doc(i) for i in range(n)])
    return coll


class Count:
    """Wraps a function and counts its calls (and, optionally, a size per call)."""

    def __init__(self, monkeypatch, owner, name, size=None):
        self.calls = 0
        self.total = 0
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            self.calls += 1
            result = original(*args, **kwargs)
            if size is not None:
                self.total += size(result)
            return result

        monkeypatch.setattr(owner, name, wrapper)


def count_filter_applies(monkeypatch) -> Count:
    c = Count(monkeypatch, mongomock.filtering, "filter_applies")
    monkeypatch.setattr(mongomock.collection, "filter_applies", mongomock.filtering.filter_applies)
    return c


# --------------------------------------------------------------------------- cursor iteration

def test_cursor_iteration_is_linear(monkeypatch):
    n = 120
    copied = Count(monkeypatch, mongomock.collection.Cursor, "_compute_results", size=len)
    vanilla = vanilla_collection(n)
    assert len(list(vanilla.find())) == n
    assert copied.total >= n * n // 2, "the counter must see mongomock's quadratic iteration"

    copied.total = copied.calls = 0
    shim = shim_collection(n)
    assert len(list(shim.find())) == n
    assert len(list(shim.aggregate([{"$match": {}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]))) == 4
    assert copied.calls == 0 and copied.total == 0


def test_cursor_behaviour():
    coll = shim_collection(30)
    cur = coll.find({}, {"_id": 1}).sort("path", -1).skip(2).limit(5)
    first = next(cur)
    assert first["_id"] == file_doc(27)["_id"]
    with pytest.raises(InvalidOperation):
        cur.limit(3)
    assert len(list(cur)) == 4 and not cur.alive
    cur.rewind()
    assert [d["_id"] for d in cur] == [file_doc(i)["_id"] for i in (27, 26, 25, 24, 23)]
    assert coll.find().sort("path")[3]["_id"] == file_doc(3)["_id"]
    with pytest.raises(IndexError):
        coll.find({"run": 0})[10]
    assert len(coll.find().to_list(7)) == 7
    assert sorted(coll.find({"run": {"$lt": 1}}).distinct("detector")) == ["2x2", "icarus", "sbnd"]
    clone = coll.find({"run": 1}).clone()
    assert len(list(clone)) == 10
    assert list(coll.find().sort([("$natural", -1)]).limit(1))[0]["_id"] == file_doc(29)["_id"]


# --------------------------------------------------------------------------- no whole-document copies

def test_rescan_projection_does_not_copy_documents(monkeypatch):
    n = 80
    coll = shim_collection(n)
    full = Count(monkeypatch, rawbson, "decode_full")
    copies = Count(monkeypatch, mongomock.collection, "_copy_field")
    deep = Count(monkeypatch, copy, "deepcopy")
    rows = list(coll.find({"site": "s1"}, {"path": 1, "size": 1, "mtime": 1, "_id": 0}))
    assert rows == [{k: file_doc(i)[k] for k in ("path", "size", "mtime")} for i in range(n)]
    assert (full.calls, copies.calls, deep.calls) == (0, 0, 0)

    vanilla = vanilla_collection(n)
    list(vanilla.find())
    assert copies.calls > 20 * n, "mongomock copies every node of every document"


def test_find_decodes_each_returned_document_once(monkeypatch):
    coll = shim_collection(50)
    full = Count(monkeypatch, rawbson, "decode_full")
    copies = Count(monkeypatch, mongomock.collection, "_copy_field")
    assert len(list(coll.find())) == 50
    assert full.calls == 50 and copies.calls == 0
    full.calls = 0
    assert len(list(coll.find({"run": 2}))) == 10  # filtered on a partial decode first
    assert full.calls == 10


def test_returned_documents_are_copies():
    coll = shim_collection(3)
    doc = coll.find_one({"_id": file_doc(1)["_id"]})
    doc["attrs"]["a1"] = "changed"
    doc["inputs"].append("x")
    doc["size"] = -1
    again = coll.find_one({"_id": file_doc(1)["_id"]})
    assert again == bson.decode(bson.encode(file_doc(1)))
    agg = list(coll.aggregate([{"$match": {"run": 0}}]))
    agg[0]["cfg"]["model"]["name"] = "x"
    assert coll.find_one({"_id": agg[0]["_id"]})["cfg"]["model"]["name"] != "x"


def test_inserted_documents_are_not_aliased():
    coll = shim_collection()
    doc = file_doc(0)
    coll.insert_one(doc)
    doc["attrs"]["a0"] = "mutated after insert"
    assert coll.find_one()["attrs"]["a0"] != "mutated after insert"
    upd = {"$set": {"cfg": {"k": [1, 2]}}}
    coll.update_one({"_id": doc["_id"]}, upd)
    upd["$set"]["cfg"]["k"].append(3)
    assert coll.find_one()["cfg"] == {"k": [1, 2]}


def test_store_holds_bson_not_python_objects():
    """Memory: documents are kept as BSON bytes (mongomock kept Python objects, ~5-7x larger)."""
    docs = [file_doc(i) for i in range(300)]
    bson_bytes = sum(len(bson.encode(d)) for d in docs)

    def retained(coll):
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        coll.insert_many(copy.deepcopy(docs))
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return after - before

    shim_mem = retained(shim_collection())
    vanilla_mem = retained(vanilla_collection())
    assert shim_mem < 1.5 * bson_bytes + 100_000
    assert vanilla_mem > 3 * bson_bytes  # what the shim avoids


# --------------------------------------------------------------------------- unique indexes, upserts

def test_insert_many_with_unique_index_does_not_scan(monkeypatch):
    n = 150
    matches = count_filter_applies(monkeypatch)
    vanilla = vanilla_collection()
    vanilla.create_index([("site", 1), ("path", 1)], unique=True)
    vanilla.insert_many([file_doc(i) for i in range(n)])
    assert matches.calls >= n * n // 2, "the counter must see mongomock's scans"

    matches.calls = 0
    shim = shim_collection()
    shim.create_index([("site", 1), ("path", 1)], unique=True)
    shim.insert_many([file_doc(i) for i in range(n)])
    assert matches.calls == 0
    assert shim.count_documents({}) == n


def test_unique_indexes_are_enforced():
    coll = shim_collection()
    coll.create_index([("site", 1), ("path", 1)], unique=True)
    coll.create_index("tags", unique=True, sparse=True)
    coll.insert_many([file_doc(0), file_doc(1)])
    clash = dict(file_doc(0), _id="other")
    with pytest.raises(DuplicateKeyError) as err:
        coll.insert_one(clash)
    assert "site_1_path_1" in str(err.value)
    with pytest.raises(BulkWriteError) as bulk:
        coll.insert_many([dict(file_doc(5)), clash, dict(file_doc(6))], ordered=False)
    assert [e["index"] for e in bulk.value.details["writeErrors"]] == [1]
    assert coll.count_documents({}) == 4
    # multikey + sparse: array elements are keys, documents without the field are not
    coll.update_one({"_id": file_doc(0)["_id"]}, {"$set": {"tags": ["a", "b"]}})
    with pytest.raises(DuplicateKeyError):
        coll.update_one({"_id": file_doc(1)["_id"]}, {"$set": {"tags": ["b"]}})
    assert "tags" not in coll.find_one({"_id": file_doc(1)["_id"]})  # the failed update changed nothing
    coll.update_one({"_id": file_doc(1)["_id"]}, {"$set": {"tags": ["c"]}})
    coll.update_one({"_id": file_doc(0)["_id"]}, {"$set": {"tags": ["b"]}})  # its own old key
    coll.delete_one({"_id": file_doc(0)["_id"]})
    coll.insert_one(dict(file_doc(0), _id="new0", tags=["b"]))  # the key was freed
    with pytest.raises(DuplicateKeyError):
        coll.create_index("detector", unique=True)  # existing documents violate it
    assert "detector_1" not in coll.index_information()
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"_id": "new0"})


def test_partial_unique_index():
    coll = shim_collection()
    coll.create_index("path", unique=True, partialFilterExpression={"status": "ok"})
    coll.insert_many([{"_id": 1, "path": "p", "status": "ok"}, {"_id": 2, "path": "p", "status": "error"}])
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"_id": 3, "path": "p", "status": "ok"})


def _ingest_ops(ids, now):
    return [UpdateOne({"_id": _id}, {
        "$set": {"site": "s1", "path": _id[3:], "size": 5, "status": "ok", "ingest.last_seen": now},
        "$setOnInsert": {"ingest.first_seen": now},
        "$inc": {"ingest.times_seen": 1},
        "$push": {"ingest.history": {"$each": [{"at": now, "run_id": "r9", "status": "ok"}],
                                     "$slice": -3}},
    }, upsert=True) for _id in ids]


@pytest.mark.parametrize("n", [300, 1200])
def test_bulk_upserts_by_id_cost_does_not_grow_with_the_collection(monkeypatch, n):
    coll = shim_collection(n)
    coll.create_index([("site", 1), ("path", 1)], unique=True)
    matches = count_filter_applies(monkeypatch)
    full = Count(monkeypatch, rawbson, "decode_full")
    partial = Count(monkeypatch, rawbson, "decode_fields")
    ids = [file_doc(i)["_id"] for i in range(0, n, n // 100)] + [f"s1:/new/{i}" for i in range(100)]
    result = coll.bulk_write(_ingest_ops(ids, T0), ordered=False)
    assert (result.matched_count, result.upserted_count) == (100, 100)
    # per op: at most one full decode of the old document and one partial decode for the
    # unique index; no filter evaluated (the _id lookup is the match)
    assert full.calls <= 100 and partial.calls <= 2 * len(ids) and matches.calls == 0
    doc = coll.find_one({"_id": ids[0]})
    assert doc["ingest"]["times_seen"] == 2 and len(doc["ingest"]["history"]) == 3
    assert doc["ingest"]["history"][-1]["run_id"] == "r9" and doc["ingest"]["first_seen"] == T0
    new = coll.find_one({"_id": "s1:/new/0"})
    assert new["ingest"] == {"last_seen": T0, "first_seen": T0, "times_seen": 1,
                             "history": [{"at": T0, "run_id": "r9", "status": "ok"}]}


class _CountingDict(dict):
    def __init__(self, *a):
        super().__init__(*a)
        self.walks = 0

    def items(self):
        self.walks += 1
        return super().items()


def test_update_many_by_ids_looks_ids_up_instead_of_walking_the_collection():
    coll = shim_collection(400)
    store_ = coll._store
    store_._documents = _CountingDict(store_._documents)
    ids = [file_doc(i)["_id"] for i in range(0, 400, 40)] + ["s1:/missing"]
    result = coll.update_many({"_id": {"$in": ids}}, {"$set": {"ingest.last_seen": T0},
                                                      "$inc": {"ingest.times_seen": 1}})
    assert (result.matched_count, result.modified_count) == (10, 10)
    assert store_._documents.walks == 0
    assert [d["ingest"]["times_seen"] for d in coll.find({"_id": {"$in": ids}})] == [2] * 10
    assert store_._documents.walks == 1  # find keeps natural order: one pass
    vanilla = vanilla_collection(400)
    vanilla.update_many({"_id": {"$in": ids}}, {"$set": {"ingest.last_seen": T0},
                                                "$inc": {"ingest.times_seen": 1}})
    assert list(coll.find()) == list(vanilla.find())


def test_upsert_by_unique_key_is_a_lookup(monkeypatch):
    coll = shim_collection(400)
    coll.create_index([("site", 1), ("path", 1)], unique=True)
    coll.count_documents({"site": "s1", "path": "x"})  # builds the unique map once
    matches = count_filter_applies(monkeypatch)
    for i in range(0, 400, 20):
        d = file_doc(i)
        coll.update_one({"site": "s1", "path": d["path"]}, {"$set": {"seen": True}}, upsert=True)
    coll.update_one({"site": "s1", "path": "/brand/new"}, {"$set": {"seen": True}}, upsert=True)
    assert matches.calls == 20  # one check per matched candidate, none for the miss
    assert coll.count_documents({"seen": True}) == 21
    assert coll.find_one({"path": "/brand/new"})["site"] == "s1"


# --------------------------------------------------------------------------- bulk_write and pymongo >= 4.11

def test_bulk_write_accepts_pymongo_operations():
    if Version(pymongo.version) >= Version("4.11"):
        with pytest.raises(TypeError, match="sort"):
            vanilla_collection().bulk_write([UpdateOne({"_id": 1}, {"$set": {"a": 1}}, upsert=True)])
    coll = shim_collection(3)
    result = coll.bulk_write([
        UpdateOne({"_id": 1}, {"$set": {"a": 1}}, upsert=True),
        UpdateOne({"_id": file_doc(0)["_id"]}, {"$set": {"a": 2}}),
        ReplaceOne({"_id": 2}, {"b": 1}, upsert=True),
        ReplaceOne({"_id": file_doc(1)["_id"]}, {"b": 2}),
        InsertOne({"_id": 3}),
        DeleteOne({"_id": file_doc(2)["_id"]}),
    ], ordered=False)
    assert (result.inserted_count, result.matched_count, result.modified_count,
            result.upserted_count, result.deleted_count) == (1, 2, 2, 2, 1)
    assert coll.find_one({"_id": file_doc(1)["_id"]}) == {"_id": file_doc(1)["_id"], "b": 2}
    if Version(pymongo.version) >= Version("4.11"):
        with pytest.raises(NotImplementedError):
            coll.bulk_write([UpdateOne({"_id": 1}, {"$set": {"a": 1}}, sort={"a": 1})])


def test_update_semantics():
    coll = shim_collection(2)
    _id = file_doc(0)["_id"]
    assert coll.update_one({"_id": _id}, {"$set": {"size": file_doc(0)["size"]}}).modified_count == 0
    assert coll.update_one({"_id": _id}, {"$set": {"size": 1.5}}).modified_count == 1
    with pytest.raises(WriteError):
        coll.update_one({"_id": _id}, {"$set": {"_id": "moved"}})
    assert coll.find_one({"_id": _id})["size"] == 1.5
    assert coll.update_many({}, {"$inc": {"run": 10}, "$unset": {"cfg": ""}}).modified_count == 2
    assert all(d["run"] >= 10 and "cfg" not in d for d in coll.find())
    aware = dt.datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    coll.update_one({"_id": _id}, {"$set": {"when": aware, "nested": {"when": aware}}})
    got = coll.find_one({"_id": _id})
    assert got["when"] == got["nested"]["when"] == dt.datetime(2024, 1, 1, 10, 0, 0, 123000)
    assert coll.find_one({"when": aware})["_id"] == _id
    res = coll.update_one({"_id": "up"}, [{"$set": {"x": 1}}], upsert=True)
    assert res.upserted_id == "up" and coll.find_one({"_id": "up"}) == {"_id": "up", "x": 1}


def test_delete_and_count_decode_only_what_they_need(monkeypatch):
    coll = shim_collection(60)
    full = Count(monkeypatch, rawbson, "decode_full")
    assert coll.count_documents({}) == 60
    assert coll.estimated_document_count() == 60
    assert coll.count_documents({"detector": "sbnd"}) == 20
    assert coll.delete_many({"run": {"$gte": 3}}).deleted_count == 30
    assert sorted(coll.distinct("run")) == [0, 1, 2]
    assert full.calls == 0


# --------------------------------------------------------------------------- aggregation

def test_aggregation_decodes_only_the_fields_it_uses(monkeypatch):
    coll = shim_collection(40)
    full = Count(monkeypatch, rawbson, "decode_full")
    out = list(coll.aggregate([{"$match": {"run": {"$lt": 3}}},
                               {"$group": {"_id": "$detector", "n": {"$sum": 1}, "s": {"$sum": "$size"}}},
                               {"$sort": {"_id": 1}}]))
    assert [r["n"] for r in out] == [10, 10, 10]
    assert full.calls == 0
    list(coll.aggregate([{"$match": {"run": 0}}]))  # whole documents out: whole decodes
    assert full.calls == 10


def test_unwind_does_not_copy_the_array_per_element(monkeypatch):
    coll = shim_collection(20)
    pipeline = [{"$project": {"kv": {"$objectToArray": "$attrs"}}}, {"$unwind": "$kv"},
                {"$group": {"_id": "$kv.k", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]
    copied = []  # the number of values in each object handed to copy.deepcopy
    original = copy.deepcopy

    def deepcopy(x, memo=None, _nil=[]):  # noqa: B006 - copy.deepcopy's own signature
        copied.append(_nodes(x))
        return original(x, memo)

    monkeypatch.setattr(copy, "deepcopy", deepcopy)
    vanilla = vanilla_collection(20)
    expected = list(vanilla.aggregate(pipeline))
    assert sum(copied) > 20 * 13 * 13, "mongomock deep-copies the whole array for every element"
    copied.clear()
    assert list(coll.aggregate(pipeline)) == expected
    assert copied == []


def _nodes(x) -> int:
    if isinstance(x, dict):
        return 1 + sum(_nodes(v) for v in x.values())
    if isinstance(x, list):
        return 1 + sum(_nodes(v) for v in x)
    return 1


def test_group_streams_instead_of_holding_unwound_documents(monkeypatch):
    """$unwind -> $group keeps accumulated values, not the unwound documents: the handler
    of mongomock's $unwind and $group (which take whole lists) is never called."""
    called = []
    monkeypatch.setattr(mongomock.aggregate, "process_pipeline",
                        _spy(mongomock.aggregate.process_pipeline, called))
    coll = shim_collection(15)
    out = list(coll.aggregate([{"$unwind": "$inputs"}, {"$group": {"_id": None, "n": {"$sum": 1}}}]))
    assert out == [{"_id": None, "n": sum(i % 3 for i in range(15))}]
    assert not any(op in ("$unwind", "$group") for op in called)


def _spy(fn, called):
    def wrapper(collection, database, pipeline, session):
        for stage in pipeline:
            called.extend(stage)
        return fn(collection, database, pipeline, session)
    return wrapper


# the same operations give the same results on plain mongomock and on the shim
DIFF_FINDS = [
    ({}, None, None, 0, 0),
    ({"site": "s1"}, {"path": 1, "size": 1, "mtime": 1, "_id": 0}, None, 0, 0),
    ({"status": {"$in": ["ok", "error"]}, "attrs.a3": {"$gt": 0.3}}, {"attrs.a3": 1},
     [("mtime", -1), ("_id", 1)], 2, 9),
    ({"$or": [{"detector": "sbnd"}, {"run": {"$gte": 3}}]}, {"cfg": 0}, [("run", 1), ("subrun", -1)], 0, 7),
    ({"_id": {"$in": [file_doc(7)["_id"], file_doc(2)["_id"], "nope"]}}, None, None, 0, 0),
    ({"_id": file_doc(9)["_id"], "status": "ok"}, {"status": 1}, None, 0, 0),
    ({"inputs": "/in/5_1.root"}, {"inputs": {"$slice": 1}}, None, 0, 0),
    ({"structure.items.kind": "dataset", "size": {"$lt": 5000}}, ["path", "structure.count"],
     [("size", 1)], 0, 0),
    ({"$expr": {"$gt": ["$subrun", "$run"]}}, None, None, 0, 0),
    ({"status": None}, {"_id": 1}, None, 0, 0),
    ({"checksum": {"$exists": False}}, None, None, 0, 0),
    ({}, {"_id": 0}, [("$natural", -1)], 3, 4),
    ({"cfg.model.depth": {"$gte": 2}}, {"cfg.model": 1, "_id": 0}, [("cfg.model.depth", -1), ("path", 1)], 0, 5),
    # sort keys of mixed types: null/missing, numbers, strings, arrays, documents
    ({}, {"status": 1}, [("status", 1), ("_id", -1)], 0, 0),
    ({}, {"inputs": 1}, [("inputs", -1), ("size", 1)], 0, 0),
    ({}, {"checksum": 1}, [("checksum", 1), ("path", 1)], 0, 0),
    ({}, {"attrs.arr": 1}, [("attrs.arr", 1), ("mtime", -1), ("_id", 1)], 1, 30),
]

DIFF_PIPELINES = [
    [{"$match": {"site": "s1"}}, {"$group": {
        "_id": "$status", "n": {"$sum": 1}, "sz": {"$sum": "$size"}, "mx": {"$max": "$mtime"},
        "paths": {"$push": "$path"}, "d": {"$addToSet": "$detector"}, "f": {"$first": "$run"},
        "l": {"$last": "$run"}, "a": {"$avg": "$size"}, "mn": {"$min": "$size"}}}],
    [{"$project": {"kv": {"$objectToArray": "$attrs"}}}, {"$unwind": "$kv"},
     {"$group": {"_id": "$kv.k", "n": {"$sum": 1}}}, {"$sort": {"n": -1, "_id": 1}}],
    [{"$match": {"status": "ok"}}, {"$facet": {
        "det": [{"$group": {"_id": "$detector", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}],
        "total": [{"$count": "n"}],
        "top": [{"$sort": {"size": -1}}, {"$limit": 3}, {"$project": {"path": 1, "size": 1}}]}}],
    [{"$unwind": {"path": "$attrs.arr", "includeArrayIndex": "i", "preserveNullAndEmptyArrays": True}},
     {"$match": {"i": {"$lt": 2}}}, {"$project": {"p": "$path", "v": "$attrs.arr", "i": 1}}],
    [{"$unwind": {"path": "$inputs", "preserveNullAndEmptyArrays": True}}, {"$project": {"inputs": 1}}],
    [{"$match": {"run": {"$gte": 1}}}, {"$sort": {"mtime": -1, "_id": 1}}, {"$skip": 2}, {"$limit": 5}],
    [{"$addFields": {"x.y": "$run", "z": {"$multiply": ["$run", 2]}}}, {"$project": {"x": 1, "z": 1, "_id": 0}},
     {"$skip": 40}],
    [{"$group": {"_id": None, "n": {"$sum": 1}, "s": {"$sum": "$size"}}}],
    [{"$group": {"_id": {"d": "$detector", "m": "$cfg.model.name"}, "n": {"$sum": 1}}},
     {"$sort": {"_id.d": 1, "_id.m": 1}}],
    [{"$match": {"detector": "nothing"}}, {"$group": {"_id": None, "n": {"$sum": 1}}}],
    [{"$unwind": "$inputs"}, {"$count": "n"}],
    [{"$replaceRoot": {"newRoot": "$cfg.io"}}, {"$limit": 2}],
    [{"$match": {"status": "ok"}}],
    [{"$project": {"attrs": 0, "cfg": 0}}, {"$limit": 3}],
    [{"$match": {"$expr": {"$eq": ["$subrun", 3]}}}, {"$project": {"_id": 1}}],
    [{"$sort": {"size": 1}}, {"$group": {"_id": "$run", "first": {"$first": "$path"}}}, {"$sort": {"_id": -1}}],
    [{"$project": {"status": 1, "arr": "$attrs.arr", "c": "$checksum"}},
     {"$sort": {"status": -1, "arr": 1, "c": -1, "_id": 1}}],
]


@pytest.fixture(scope="module")
def twins():
    docs = [file_doc(i) for i in range(48)]
    vanilla = mongomock.MongoClient().db.files
    shim = store.connect("mongomock://").files
    vanilla.insert_many(copy.deepcopy(docs))
    shim.insert_many(copy.deepcopy(docs))
    return vanilla, shim


@pytest.mark.parametrize("query", range(len(DIFF_FINDS)))
def test_find_results_are_mongomocks(twins, query):
    flt, proj, sort, skip, limit = DIFF_FINDS[query]

    def run(coll):
        cur = coll.find(flt, proj)
        if sort:
            cur = cur.sort(sort)
        return list(cur.skip(skip).limit(limit))

    if sort and sorts_arrays(list(twins[0].find(flt)), sort):
        # arrays: mongomock sorts by their first element, a server (and the engine) by
        # their smallest ascending, largest descending
        expected = server_find(twins[0], flt, proj, sort, skip, limit)
    else:
        expected = run(twins[0])
    assert expected, "a query returning nothing would compare nothing"
    assert run(twins[1]) == expected


@pytest.mark.parametrize("pipeline", range(len(DIFF_PIPELINES)))
def test_aggregate_results_are_mongomocks(twins, pipeline):
    p = DIFF_PIPELINES[pipeline]
    expected = list(twins[0].aggregate(copy.deepcopy(p)))
    sorts = [i for i, stage in enumerate(p) if "$sort" in stage]
    if sorts and p[-1] is p[sorts[-1]]:
        # a final $sort: where it meets arrays, the order is the server's (as above)
        before = list(twins[0].aggregate(copy.deepcopy(p[:-1]))) if len(p) > 1 else list(twins[0].find())
        sort = list(p[-1]["$sort"].items())
        if sorts_arrays(before, sort):
            expected = server_sorted(before, sort)
    assert expected
    assert list(twins[1].aggregate(copy.deepcopy(p))) == expected


def test_writes_give_mongomocks_documents():
    vanilla, shim = vanilla_collection(30), shim_collection(30)
    for coll in (vanilla, shim):
        coll.update_many({"run": 1}, {"$set": {"flag": True, "cfg.io.batch": 8}, "$inc": {"size": 5}})
        coll.update_one({"_id": file_doc(0)["_id"]}, {"$push": {"ingest.history": {"$each": [{"x": 1}], "$slice": -2}},
                                                      "$unset": {"cfg": ""}, "$max": {"size": 10 ** 6}})
        coll.update_one({"_id": "new"}, {"$setOnInsert": {"a": 1}, "$set": {"b": 2}}, upsert=True)
        coll.update_one({"inputs": "/in/2_1.root"}, {"$addToSet": {"inputs": "/in/extra"}, "$pull": {"attrs.arr": 0}})
        coll.delete_many({"detector": "2x2", "run": 0})
        coll.replace_one({"_id": file_doc(1)["_id"]}, {"only": 1})
        coll.find_one_and_update({"run": 2}, {"$set": {"touched": 1}}, sort=[("path", -1)])
    assert list(shim.find()) == list(vanilla.find())


FIELD_UPDATES = [
    # what ingest sends for a new or re-indexed file and for an unchanged one
    ({"_id": "k"}, {"$set": {"status": "ok", "ingest.last_seen": T0, "ingest.run_id": "r9"},
                    "$setOnInsert": {"ingest.first_seen": T0}, "$inc": {"ingest.times_seen": 1},
                    "$push": {"ingest.history": {"$each": [{"at": T0, "run_id": "r9"}], "$slice": -2}}}),
    ({"run": 1}, {"$set": {"ingest.last_seen": T0}, "$inc": {"ingest.times_seen": 1}}),
    ({"run": 1}, {"$inc": {"size": 2.5, "new.count": 3}}),
    ({"run": 1}, {"$set": {"a.b.c": [1], "cfg.model.name": "x"}}),
    ({"run": 1}, {"$push": {"inputs": "/in/new", "fresh.list": {"k": 1}}}),
    ({"run": 1}, {"$push": {"inputs": {"$each": ["/a", "/b", "/c"], "$slice": 2}}}),
    ({"run": 1}, {"$push": {"inputs": {"$each": ["/a"], "$slice": 0}}}),
    ({"run": 2}, {"$setOnInsert": {"ingest.first_seen": T0}, "$set": {"x": 1}}),
    # written straight into the stored bytes (_patch_leaves), where every path exists
    ({"run": 1}, {"$set": {"ingest.last_seen": T0 + dt.timedelta(microseconds=1500),
                           "ingest.first_seen": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)},
                  "$inc": {"ingest.times_seen": -3}}),
    ({"run": 1}, {"$inc": {"ingest.times_seen": 0.5, "attrs.a0": 2, "attrs.a3": -1.25}}),
    ({"run": 1}, {"$inc": {"ingest.times_seen": 2**31}}),         # beyond int32: int64
    ({"run": 1}, {"$inc": {"ingest.times_seen": 2**31 - 2}}),     # 1 + that: still int32
    ({"run": 1}, {"$set": {"status": "moved", "size": 2**40, "name": None, "detector": True}}),
    ({"run": 1}, {"$set": {"checksum.sha256": "é" * 70}}),         # on a quarter of them only
    ({"run": 1}, {"$set": {"ingest.times_seen": "many", "cfg.model.name": ""}}),
    ({"run": 1}, {"$set": {"cfg.model.modules.m1.w": 7.5, "cfg.model.name": "y", "cfg.io.batch": 8},
                  "$inc": {"cfg.model.depth": 1, "cfg.model.modules.m3.w": 1}}),
    ({"run": 1}, {"$set": {"ingest.times_seen": bson.int64.Int64(5)}}),  # not a plain value
    ({"run": 1}, {"$set": {"ingest.history": []}, "$setOnInsert": {"ingest.first_seen": T0}}),
    # not for the fast path: mongomock's own handling must be what happens
    ({"run": 1}, {"$inc": {"status": 1}}),                        # a string
    ({"run": 1}, {"$inc": {"size": True}}),                       # a bool
    ({"run": 1}, {"$push": {"run": 5}}),                          # not an array
    ({"run": 1}, {"$set": {"inputs.0": "/first"}}),               # through an array
    ({"run": 1}, {"$set": {"run.x": 1}}),                         # through a number
    ({"run": 1}, {"$set": {"checksum.sha256.x": 1}}),             # through a string
    ({"run": 1}, {"$push": {"inputs": {"$each": ["/a"], "$position": 0}}}),
]


@pytest.mark.parametrize("case", range(len(FIELD_UPDATES)))
@pytest.mark.parametrize("upsert", [False, True])
def test_field_updates_give_mongomocks_documents(case, upsert):
    spec, update = FIELD_UPDATES[case]
    results = []
    for coll in (vanilla_collection(30), shim_collection(30)):
        try:
            coll.update_many(copy.deepcopy(spec), copy.deepcopy(update), upsert=upsert)
            if upsert:
                coll.update_one({"_id": "fresh"}, copy.deepcopy(update), upsert=True)
            results.append(list(coll.find()))
        except Exception as exc:  # the same refusal on both
            results.append(type(exc).__name__)
    assert results[1] == results[0]


def test_leaf_updates_write_into_the_stored_bytes(monkeypatch):
    # what a re-scan sends for unchanged files: no decoding, updating and encoding of the
    # document (mongomock's updater is not called), and the bytes are those of doing it
    coll = shim_collection(40)
    calls = Count(monkeypatch, Collection, "_apply_update_document")
    coll.update_many({}, {"$set": {"ingest.run_id": "r-old"}})  # missing: the general way
    assert calls.calls == 40
    calls.calls = 0
    before = {d["_id"]: d for d in coll.find()}
    update = {"$set": {"ingest.last_seen": T0 + dt.timedelta(days=1), "ingest.run_id": "r-new"},
              "$inc": {"ingest.times_seen": 1}}
    coll.update_many({"_id": {"$in": list(before)}}, copy.deepcopy(update))
    assert calls.calls == 0
    for key, raw in coll._store._documents.items():
        want = before[key]
        want["ingest"].update(last_seen=T0 + dt.timedelta(days=1), run_id="r-new",
                              times_seen=want["ingest"]["times_seen"] + 1)
        assert raw == bson.encode(want)
    # a path that is missing, or runs through an array, goes the general way
    coll.update_many({}, {"$set": {"ingest.brand_new": 1}})
    coll.update_many({"run": 1}, {"$set": {"inputs.0": "/x"}})
    assert calls.calls == 40 + 10
    assert all(d["ingest"]["brand_new"] == 1 for d in coll.find())



@pytest.mark.parametrize("update", [
    {"$set": {"superseded_by": "x"}},                        # a supersede mark
    {"$set": {"zz": 1, "aa": None, "mm": T0}},               # several: the update's order
    {"$set": {"status": "moved", "late": True}},             # one there, one new
    {"$set": {"ok": 2}},         # "ok\0" is in the bytes (a status value): the walk decides
    {"$set": {"zz": 2, "ok": 1}},                            # the same, two in the update's order
    {"$set": {"new": 1}, "$inc": {"ingest.times_seen": 1}},  # with an $inc of a field there
    {"$set": {"new": 1}, "$setOnInsert": {"other": 2}},
])
def test_top_level_fields_a_document_lacks_are_appended_in_the_stored_bytes(update, monkeypatch):
    # written without decoding the document, and in the order mongomock's own update gives
    # (compared as BSON: field order included, which dict equality would not see)
    vanilla, shim = vanilla_collection(30), shim_collection(30)
    calls = Count(monkeypatch, Collection, "_apply_update_document")
    for coll in (vanilla, shim):
        coll.update_many({"run": 1}, copy.deepcopy(update))
    assert calls.calls == 0
    assert [bson.encode(d) for d in shim.find()] == [bson.encode(d) for d in vanilla.find()]
    assert shim.count_documents({"run": 1}) == 10


def test_a_missing_field_that_is_not_a_plain_set_goes_the_general_way(monkeypatch):
    vanilla, shim = vanilla_collection(30), shim_collection(30)
    calls = Count(monkeypatch, Collection, "_apply_update_document")
    for coll in (vanilla, shim):
        coll.update_many({"run": 1}, {"$inc": {"counter": 2}})          # an $inc of nothing
        coll.update_many({"run": 1}, {"$set": {"fresh.deep": 1}})       # through a missing document
        coll.update_many({"run": 1}, {"$set": {"new": 1, "fresh.x": 2}})
    assert calls.calls == 30
    assert [bson.encode(d) for d in shim.find()] == [bson.encode(d) for d in vanilla.find()]

def test_a_write_that_no_unique_index_reads_builds_no_unique_maps(monkeypatch, tmp_path):
    db = store.connect(str(tmp_path / "cat"))
    with store.writing(db):
        db.files.create_index([("site", 1), ("path", 1)], unique=True)
        db.files.insert_many([file_doc(i) for i in range(30)])
    store.close(db)
    db = store.connect(str(tmp_path / "cat"))  # as a fresh process: nothing built yet
    builds = Count(monkeypatch, CollectionStore, "_build_unique")
    with store.writing(db):
        db.files.update_many({}, {"$inc": {"ingest.times_seen": 1}})
        db.files.update_one({"_id": file_doc(3)["_id"]}, {"$set": {"status": "x"}})
    assert builds.calls == 0
    assert db.files.count_documents({"ingest.times_seen": 2}) == 30
    with store.writing(db), pytest.raises(DuplicateKeyError):  # a write that reads them does
        db.files.update_one({"_id": file_doc(3)["_id"]}, {"$set": {"path": file_doc(4)["path"]}})
    assert builds.calls == 1
    assert db.files.find_one({"_id": file_doc(3)["_id"]})["path"] == file_doc(3)["path"]


def test_equality_on_a_string_field_matches_as_mongomock(monkeypatch):
    docs = [{"_id": i, "site": v} for i, v in enumerate(
        ["s1", "s10", "S1", ["s1", "x"], ["x"], None, 1, {"a": "s1"}, "", "s1 "])] + [{"_id": 99}]
    vanilla, shim = mongomock.MongoClient().db.c, store.connect("mongomock://").c
    vanilla.insert_many(copy.deepcopy(docs))
    shim.insert_many(copy.deepcopy(docs))
    calls = count_filter_applies(monkeypatch)
    for want in ("s1", "x", "", "nothing"):
        assert [d["_id"] for d in shim.find({"site": want})] == \
            [d["_id"] for d in vanilla.find({"site": want})], want
    # the plain strings were decided without mongomock's filter (it saw the 6 others, 4 times
    # on the shim; vanilla mongomock evaluated all 11 documents each time)
    assert calls.calls == 4 * 6 + 4 * 11


def test_paths_that_overlap_are_left_to_mongomock():
    # MongoDB refuses them; mongomock applies them (its answer then aliases one value
    # across documents), the shim never takes its own path for them
    assert paths_disjoint({"$set": {"a": 1, "b.c": 2}, "$inc": {"b.d": 1}})
    assert not paths_disjoint({"$set": {"ingest": {}}, "$inc": {"ingest.n": 1}})
    assert not paths_disjoint({"$set": {"a": 1}, "$inc": {"a": 1}})
    assert paths_disjoint({"$set": {"ab": 1, "a.b": 2}})


def test_ingest_updates_do_not_go_through_mongomocks_field_updater(monkeypatch):
    coll = shim_collection(20)
    calls = []
    real = mongomock.collection.Collection._update_document_fields_with_positional_awareness
    monkeypatch.setattr(mongomock.collection.Collection, "_update_document_fields_with_positional_awareness",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    spec, update = FIELD_UPDATES[0]
    coll.update_one({"_id": file_doc(3)["_id"]}, copy.deepcopy(update), upsert=True)
    coll.update_one({"_id": "brand-new"}, copy.deepcopy(update), upsert=True)
    coll.update_many({"run": {"$gte": 0}}, copy.deepcopy(FIELD_UPDATES[1][1]))
    assert calls == []
    assert coll.find_one({"_id": "brand-new"})["ingest"]["times_seen"] == 1
    assert coll.find_one({"_id": file_doc(3)["_id"]})["ingest"]["times_seen"] == 3
    with pytest.raises(Exception):  # mongomock's refusal (a TypeError there)
        coll.update_one({"_id": file_doc(3)["_id"]}, {"$inc": {"status": 1}})
    assert calls  # it came from mongomock's own updater


# --------------------------------------------------------------------------- options, validators, commands

def test_validators_and_options_are_recorded_not_enforced():
    with pytest.raises(NotImplementedError):
        mongomock.MongoClient().db.create_collection("x", validator={"a": {"$exists": True}})
    db = store.connect("mongomock://")
    validator = {"$jsonSchema": {"bsonType": "object", "required": ["path"]}}
    db.create_collection("files", validator=validator, validationLevel="moderate")
    assert store.collection_options(db, "files") == {"validator": validator, "validationLevel": "moderate"}
    db.files.insert_one({"_id": 1})  # recorded, not enforced
    db.command("collMod", "files", validator={"path": {"$type": "string"}}, validationAction="warn")
    assert store.collection_options(db, "files") == {
        "validator": {"path": {"$type": "string"}}, "validationLevel": "moderate",
        "validationAction": "warn"}
    db.command({"collMod": "files", "validationAction": None})
    assert "validationAction" not in db.files.options()
    info = db.command("listCollections", filter={"name": "files"})["cursor"]["firstBatch"]
    assert info[0]["options"]["validator"] == {"path": {"$type": "string"}}
    assert info[0]["info"]["uuid"].subtype == 4
    assert [c["name"] for c in db.list_collections()] == ["files"]
    assert store.collection_options(db, "missing") == {}
    with pytest.raises(CollectionInvalid):
        db.create_collection("files")
    with pytest.raises(OperationFailure):
        db.command("collMod", "missing", validator={})
    db.command("create", "runs", capped=False)
    assert db.list_collection_names(filter={"name": {"$regex": "^r"}}) == ["runs"]
    assert db.command("ping")["ok"] == 1.0
    assert db.command("count", "files")["n"] == 1
    assert db.command("dbStats")["objects"] == 1
    db.drop_collection("files")
    db.create_collection("files")
    assert store.collection_options(db, "files") == {}


def test_index_options_are_recorded():
    coll = shim_collection(5)
    coll.create_index("mtime", partialFilterExpression={"status": "ok"},
                      collation={"locale": "en", "strength": 2}, name="recent")
    coll.create_index([("attrs.$**", 1)])
    coll.create_index([("name", "text"), ("path", "text")], weights={"name": 3}, default_language="none")
    coll.create_indexes([IndexModel([("size", -1)], hidden=True, expireAfterSeconds=None)])
    info = coll.index_information()
    assert info["recent"] == {"key": [("mtime", 1)], "partialFilterExpression": {"status": "ok"},
                              "collation": {"locale": "en", "strength": 2}, "v": 2}
    assert info["attrs.$**_1"]["key"] == [("attrs.$**", 1)]
    assert info["name_text_path_text"]["weights"] == {"name": 3}
    assert info["size_-1"]["hidden"] is True
    assert coll.create_index("mtime", partialFilterExpression={"status": "ok"},
                             collation={"locale": "en", "strength": 2}, name="recent") == "recent"
    with pytest.raises(OperationFailure):
        coll.create_index("mtime", name="recent")
    with pytest.raises(OperationFailure):  # same key and options under another name
        coll.create_index([("size", -1)], name="other", hidden=True)
    coll.database.command("collMod", "files", index={"name": "size_-1", "hidden": False})
    assert coll.index_information()["size_-1"]["hidden"] is False
    assert len(list(coll.find({"status": "ok"}))) == 2  # results unaffected by the indexes


def test_database_commands_answer():
    """The commands the engine answers (plain mongomock refuses most of them); any other
    command raises NotImplementedError."""
    vanilla = mongomock.MongoClient().db
    for name in ("buildInfo", "hello"):
        with pytest.raises(NotImplementedError):
            vanilla.command(name)
    with pytest.raises(TypeError):
        vanilla.command("listIndexes", "files")
    db = store.connect("mongomock://")
    assert db.command("ping")["ok"] == 1.0
    assert db.command("buildInfo")["version"] == mongomock.SERVER_VERSION
    assert db.command("hello")["isWritablePrimary"] is True
    assert db.command("create", "files")["ok"] == 1.0
    db.command("createIndexes", "files", indexes=[{"key": {"path": 1}, "name": "p", "unique": True}])
    listed = db.command("listIndexes", "files")["cursor"]["firstBatch"]
    assert [(i["name"], list(dict(i["key"]).items()), i.get("unique")) for i in listed] == [
        ("_id_", [("_id", 1)], None), ("p", [("path", 1)], True)]
    docs = [{"_id": 1, "path": "a"}, {"_id": 2, "path": "b"}]
    db.files.insert_many(copy.deepcopy(docs))
    assert db.command("count", "files", query={"path": "a"})["n"] == 1
    stats = db.command("collStats", "files")
    assert (stats["count"], stats["nindexes"], stats["size"]) == \
        (2, 2, sum(len(bson.encode(d)) for d in docs))
    assert db.command("dbStats")["objects"] == 2
    db.command("dropIndexes", "files", index="p")
    assert list(db.files.index_information()) == ["_id_"]
    assert db.command("drop", "files")["ok"] == 1.0
    assert db.list_collection_names() == []
    with pytest.raises(NotImplementedError):
        db.command("explain", {"find": "files"})


def test_deliberate_differences_from_mongomock_are_the_servers():
    """Where the engine departs from plain mongomock on purpose, it answers as a MongoDB
    server does; the expected values are the server's, written out from its documentation."""
    got = {}
    for name, coll in (("mongomock", vanilla_collection()), ("engine", shim_collection())):
        coll.insert_one({"a": 1, "s": "x", "_id": 1})
        fields = list(coll.find_one({"_id": 1}))
        # int32 1 -> double 1.0: the stored type changes, so the document is modified
        modified = coll.update_one({"_id": 1}, {"$set": {"a": 1.0}}).modified_count
        with pytest.raises((TypeError, WriteError)):  # $inc of a string: the update fails
            coll.update_one({"_id": 1}, {"$set": {"a": 5}, "$inc": {"s": 1}})
        after_failure = coll.find_one({"_id": 1})
        coll.create_index("a", name="by_a")
        codes = []
        for keys, index_name in (("a", "other"), ("s", "by_a")):
            try:
                coll.create_index(keys, name=index_name)
                codes.append("created")
            except OperationFailure as err:
                codes.append(err.code)
        got[name] = (fields, modified, after_failure, codes)
    server = (
        ["_id", "a", "s"],                    # _id is always stored first
        1,                                    # nModified
        {"_id": 1, "a": 1.0, "s": "x"},       # a failed update changes nothing
        [85, 86],  # same keys under another name: IndexOptionsConflict; the same name for
    )              # other keys: IndexKeySpecsConflict (MongoDB >= 5.0)
    assert got["engine"] == server
    assert got["mongomock"] != server
    assert type(got["engine"][2]["a"]) is float


def test_a_leading_match_uses_the_id_and_unique_lookups(monkeypatch):
    coll = shim_collection(200)
    coll.create_index([("site", 1), ("path", 1)], unique=True)
    matches = count_filter_applies(monkeypatch)
    ids = [file_doc(i)["_id"] for i in (3, 150)]
    out = list(coll.aggregate([{"$match": {"_id": {"$in": ids}}}, {"$project": {"_id": 1}}]))
    assert out == [{"_id": i} for i in ids]
    one = list(coll.aggregate([{"$match": {"site": "s1", "path": file_doc(7)["path"]}},
                               {"$project": {"run": 1}}]))
    assert one == [{"_id": file_doc(7)["_id"], "run": 0}]
    assert matches.calls <= 3  # the candidates found by lookup, not the 200 documents
    matches.calls = 0
    vanilla = vanilla_collection(200)
    assert list(vanilla.aggregate([{"$match": {"_id": {"$in": ids}}}, {"$project": {"_id": 1}}])) == out
    assert matches.calls >= 200, "the counter must see mongomock's scan"


def test_known_differences_from_a_server():
    """What the docstring says the engine does where a server would not (so that the list
    stays true): these pin the engine's behaviour, not the server's."""
    db = store.connect("mongomock://")
    db.create_collection("c", validator={"$jsonSchema": {"required": ["s"]}})
    db.c.insert_many([{"_id": 0, "s": "a"}, {"_id": 1, "s": "B"}, {"_id": 2, "s": "b"}, {"_id": 3}])
    assert db.c.count_documents({}) == 4                       # validators are not enforced
    ci = {"locale": "en", "strength": 2}
    assert [d["_id"] for d in db.c.find({"s": "b"}, collation=ci)] == [2]  # collation ignored
    for call in (lambda: db.c.update_one({"s": "b"}, {"$set": {"x": 1}}, collation=ci),
                 lambda: db.c.delete_one({"s": "b"}, collation=ci),
                 lambda: db.c.count_documents({"s": "b"}, collation=ci),
                 lambda: db.c.update_one({"s": "b"}, {"$set": {"x": 1}}, hint="s_1"),
                 lambda: db.c.delete_many({"s": "b"}, hint="s_1"),
                 lambda: db.command("explain", {"find": "c"}),
                 lambda: list(db.c.find({"$text": {"$search": "a"}})),
                 lambda: db.create_collection("v", viewOn="c", pipeline=[])):
        with pytest.raises(NotImplementedError):
            call()
    assert len(list(db.c.find({}, hint="s_1"))) == 4           # hint ignored by find
    assert len(list(db.c.find({}, max_time_ms=1))) == 4        # no time limits
    assert len(list(db.c.find({}).max_time_ms(1))) == 4
    assert len(list(db.c.aggregate([{"$match": {}}], maxTimeMS=1))) == 4
    big = {"_id": "big", "x": "x" * (16 * 2**20 + 1)}           # over 16 MB: stored
    db.c.insert_one(big)
    assert len(db.c.find_one({"_id": "big"})["x"]) == 16 * 2**20 + 1
    session = object()                                          # no sessions
    assert len(list(db.c.find({}, session=session))) == 5
    with pytest.raises(NotImplementedError):
        db.c.insert_one({"_id": 9}, session=session)
    # sorts: parallel arrays are keyed field by field (a server refuses them), a path
    # through an array skips elements that are not documents, ties keep natural order
    db.p.insert_many([{"_id": "p", "a": [1, 2], "b": [3, 4]}, {"_id": "q", "a": [0, 5], "b": [6]},
                      {"_id": "r", "a": [{"x": 2}, 0]}, {"_id": "s", "a": [{"x": 2}]}])
    assert [d["_id"] for d in db.p.find({"b": {"$exists": True}}).sort([("a", 1), ("b", 1)])] == ["q", "p"]
    assert [d["_id"] for d in db.p.find({"b": {"$exists": False}}).sort("a.x", 1)] == ["r", "s"]
    assert [d["_id"] for d in db.p.find({"b": {"$exists": False}}).sort("a.x", -1)] == ["r", "s"]
    db.p.create_index("b", name="by_b")                  # a server: 85, an equivalent index
    assert db.p.create_index("b", name="by_b_hidden", hidden=True) == "by_b_hidden"


def test_ttl_expiry_runs_at_most_once_per_interval(monkeypatch):
    coll = shim_collection()
    coll.create_index("at", expireAfterSeconds=60)
    now = dt.datetime(2024, 1, 1, 12, 0)
    monkeypatch.setattr(mongomock, "utcnow", lambda: now)
    coll.insert_many([{"_id": 1, "at": now - dt.timedelta(minutes=5)}, {"_id": 2, "at": now}])
    assert [d["_id"] for d in coll.find()] == [2]
    coll.insert_one({"_id": 3, "at": now - dt.timedelta(hours=1)})
    assert coll.count_documents({}) == 2  # the next pass is at most once a second
    monkeypatch.setattr(coll._store, "ttl_interval_s", 0.0)
    assert coll.count_documents({}) == 1


def test_ttl_expiry_does_not_walk_the_collection_on_every_access(monkeypatch):
    now = dt.datetime(2024, 1, 1, 12, 0)
    monkeypatch.setattr(mongomock, "utcnow", lambda: now)
    walks = Count(monkeypatch, mongomock.store.CollectionStore, "_expire_documents")
    vanilla = vanilla_collection()
    vanilla.create_index("at", expireAfterSeconds=60)
    vanilla.insert_many([{"_id": i, "at": now} for i in range(5)])
    walks.calls = 0
    for i in range(5):
        assert vanilla.find_one({"_id": i})["_id"] == i
    assert walks.calls >= 5, "the counter must see mongomock expire on every access"

    engine_walks = Count(monkeypatch, CollectionStore, "_expire")
    coll = shim_collection()
    coll.create_index("at", expireAfterSeconds=60)
    coll.insert_many([{"_id": i, "at": now} for i in range(5)])
    for i in range(5):
        assert coll.find_one({"_id": i})["_id"] == i
    assert engine_walks.calls <= 1  # the first access may expire, the next ones within 1 s not


def test_raw_documents_can_be_inserted():
    # as pymongo does (mongomock refuses anything but a mutable mapping), without decoding
    with pytest.raises(TypeError):
        vanilla_collection().insert_one(RawBSONDocument(bson.encode(file_doc(4))))
    coll = shim_collection()
    coll.create_index([("site", 1), ("path", 1)], unique=True)
    raw = RawBSONDocument(bson.encode(file_doc(4)))
    coll.insert_many([raw], bypass_document_validation=True)
    assert coll.find_one() == bson.decode(raw.raw)
    assert coll.insert_one(RawBSONDocument(bson.encode(file_doc(5)))).inserted_id == file_doc(5)["_id"]
    assert coll.insert_many([RawBSONDocument(bson.encode(file_doc(6))), file_doc(7)]).inserted_ids \
        == [file_doc(6)["_id"], file_doc(7)["_id"]]
    assert coll._store._documents[file_doc(5)["_id"]] == bson.encode(file_doc(5))
    with pytest.raises(DuplicateKeyError):  # the _id
        coll.insert_one(RawBSONDocument(bson.encode(file_doc(5))))
    with pytest.raises(DuplicateKeyError):  # the unique index
        coll.insert_one(RawBSONDocument(bson.encode({**file_doc(5), "_id": "other"})))
    with pytest.raises(TypeError):
        coll.insert_many([RawBSONDocument(bson.encode(file_doc(8))), ("not", "a", "document")])
    assert coll.count_documents({}) == 4


# --------------------------------------------------------------------------- key-based sorting, partial updates

def _mixed_value(rnd: random.Random):
    kind = rnd.randrange(12)
    return [None, rnd.randint(-3, 3), rnd.choice([0.5, -1.5, 2.0, 3]), rnd.choice(["a", "b", "ab", "B", "é", ""]),
            {"k": rnd.randint(0, 2)} if rnd.random() < 0.7 else {"k": "x", "j": None},
            [rnd.randint(0, 2) for _ in range(rnd.randint(0, 2))], rnd.random() < 0.5,
            T0 + dt.timedelta(days=rnd.randint(0, 3)), bson.ObjectId(b"%012d" % rnd.randint(0, 5)),
            [{"n": rnd.randint(0, 2)}, "s"], b"\x01" * rnd.randint(0, 2),
            [[rnd.randint(0, 2)], rnd.randint(0, 2)]][kind]


# What a MongoDB server's sort does, built from plain mongomock. MongoDB's documented rule
# (Comparison/Sort Order, "Arrays"): an ascending sort compares an array field by its
# smallest element, a descending sort by its largest (BSON comparison order; an array
# inside the array is one element, compared as an array); an empty array sorts below null
# and missing. Plain mongomock sorts an array by its first element, so the oracle puts the
# element the rule picks - chosen with mongomock's own comparison, BsonComparable - in a
# one-element array in its place, and lets mongomock sort that. Independent of the engine.

def _reaches(doc: dict, path: str):
    """(parent mapping, name) of ``path`` in ``doc`` through embedded documents; (None, None)
    when the path stops early. A path through an array must reach nothing (null for both)."""
    parts = path.split(".")
    node = doc
    for i, part in enumerate(parts[:-1]):
        node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, list):
            rest = ".".join(parts[i + 1:])
            found = [c for c in mongomock.filtering.iter_key_candidates(rest, node)
                     if c is not mongomock.filtering.NOTHING]
            assert not found, f"the oracle does not handle {path!r} through an array: {doc}"
            return None, None
    return (node, parts[-1]) if isinstance(node, dict) else (None, None)


def as_a_server_sorts(docs: list[dict], sort: list) -> list[dict]:
    """Copies of ``docs`` that plain mongomock sorts by ``sort`` as a server sorts ``docs``."""
    out = copy.deepcopy(docs)
    for key, direction in sort:
        for d in out:
            parent, name = _reaches(d, key)
            if parent is not None and isinstance(parent.get(name), list) and parent[name]:
                pick = max if direction < 0 else min
                parent[name] = [pick(parent[name], key=mongomock.filtering.BsonComparable)]
    return out


def server_sorted(docs: list[dict], sort: list) -> list[dict]:
    """``docs`` in a server's order for ``sort`` (ties in the given order)."""
    tmp = mongomock.MongoClient().db.tmp
    tmp.insert_many([dict(d, __i=i) for i, d in enumerate(as_a_server_sorts(docs, sort))])
    return [docs[d["__i"]] for d in tmp.find({}, {"__i": 1}).sort(sort)]


def sorts_arrays(docs: list[dict], sort: list) -> bool:
    """Whether sorting ``docs`` by ``sort`` meets an array (where mongomock and a server differ)."""
    for key, _d in sort:
        for d in docs:
            parent, name = _reaches(d, key)
            if parent is not None and isinstance(parent.get(name), list):
                return True
    return False


def server_find(coll, flt, proj, sort, skip=0, limit=0) -> list[dict]:
    """Plain mongomock's ``coll.find(flt, proj).sort(sort).skip(skip).limit(limit)``, sorted as
    a server sorts."""
    docs = server_sorted(list(coll.find(flt)), sort)[skip:(skip + limit) if limit else None]
    tmp = mongomock.MongoClient().db.tmp
    if docs:
        tmp.insert_many(docs)
    return list(tmp.find({}, proj))


def test_the_oracle_follows_the_documented_rule():
    # the documentation's own cases: [1] against 2 compares 1 and 2; an empty array sorts
    # below null and missing; the smallest element ascending, the largest descending
    docs = [{"_id": "one", "a": [1]}, {"_id": "two", "a": 2}, {"_id": "empty", "a": []},
            {"_id": "none"}, {"_id": "mixed", "a": [3, 0, "s"]}]
    assert [d["_id"] for d in server_sorted(docs, [("a", 1)])] == ["empty", "none", "mixed", "one", "two"]
    assert [d["_id"] for d in server_sorted(docs, [("a", -1)])] == ["mixed", "two", "one", "none", "empty"]


@pytest.mark.parametrize("seed", range(6))
def test_sorts_of_mixed_types_are_a_servers(seed):
    """Key-based (and top-k) sorting orders values of every BSON type and missing ones as
    mongomock's pairwise comparison does, arrays by the server's rule (the oracle above),
    ties in natural order."""
    rnd = random.Random(seed)
    docs = []
    for i in range(60):
        d = {"_id": i, "g": rnd.randint(0, 2)}
        for f in ("a", "b"):
            if rnd.random() < 0.9:
                d[f] = _mixed_value(rnd)
        docs.append(d)
    vanilla, shim = mongomock.MongoClient().db.c, store.connect("mongomock://").c
    vanilla.insert_many(copy.deepcopy(docs))
    shim.insert_many(copy.deepcopy(docs))
    for sort in ([("a", 1)], [("a", -1)], [("g", 1), ("a", -1)], [("b", -1), ("a", 1)],
                 [("g", -1), ("b", -1)], [("a.k", 1), ("g", -1)]):
        for skip, limit in ((0, 0), (0, 7), (3, 10)):
            expected = [d["_id"] for d in server_find(vanilla, {}, {"_id": 1}, sort, skip, limit)]
            got = [d["_id"] for d in shim.find({}, {"_id": 1}).sort(sort).skip(skip).limit(limit)]
            assert got == expected, (sort, skip, limit)
            p = [{"$sort": dict(sort)}, {"$limit": limit or 100}, {"$project": {"_id": 1}}]
            assert list(shim.aggregate(p)) == [{"_id": d["_id"]} for d in server_sorted(docs, sort)][:limit or 100]
    p = [{"$group": {"_id": "$a", "n": {"$sum": 1}}}]
    assert list(shim.aggregate(p)) == list(vanilla.aggregate(p))


def test_field_updates_reencode_only_the_fields_they_touch(monkeypatch):
    """An update of a few fields decodes and re-encodes only those (no whole decode); the
    stored bytes equal encoding the whole updated document, field order included."""
    vanilla, shim = vanilla_collection(12), shim_collection(12)
    full = Count(monkeypatch, rawbson, "decode_full")
    updates = [
        ({"_id": file_doc(3)["_id"]}, {"$set": {"ingest.last_seen": T0, "ingest.run_id": "r2"},
                                        "$inc": {"ingest.times_seen": 1}}),
        ({"run": 0}, {"$set": {"new_b": 1, "new_a": {"x": [1]}}, "$unset": {"name": ""},
                      "$currentDate": {"seen": True}}),
        ({"structure.items.path": "/events/d2", "run": 1},
         {"$set": {"structure.items.$.kind": "group"}, "$pop": {"attrs.arr": 1}}),
        ({"detector": "sbnd"}, {"$max": {"size": 9000}, "$min": {"subrun": 1}, "$pullAll": {"attrs.arr": [0, 1]}}),
        ({"_id": file_doc(4)["_id"]}, {"$set": {"size": file_doc(4)["size"]}}),  # no change
    ]
    for flt, upd in updates:
        a = vanilla.update_many(flt, copy.deepcopy(upd))
        b = shim.update_many(flt, copy.deepcopy(upd))
        assert (b.matched_count, b.modified_count) == (a.matched_count, a.modified_count)
    assert full.calls == 0
    docs, expected = list(shim.find()), list(vanilla.find())
    for d in docs + expected:
        d.pop("seen", None)  # $currentDate: each engine's own clock
    assert docs == expected and [list(d) for d in docs] == [list(d) for d in expected]
    for key, raw in shim._store.raw_items():
        assert raw == bson.encode(bson.decode(raw))


def test_splice_equals_a_whole_encode():
    raw = bson.encode(file_doc(5))
    doc = bson.decode(raw)
    doc["ingest"]["times_seen"] = 7
    del doc["name"]
    doc["zz"] = [1, {"a": None}]
    touched = {"ingest", "name", "zz"}
    assert rawbson.splice(raw, {k: v for k, v in doc.items() if k in touched}, touched) == bson.encode(doc)
    assert rawbson.decode_fields(raw, {"mtime", "status", "nope"}) == \
        {k: v for k, v in bson.decode(raw).items() if k in ("mtime", "status")}



# --------------------------------------------------------------------------- sort order: a server's, on every backend
# Expected orders written out by hand from MongoDB's documentation ("Comparison/Sort Order":
# the BSON type order; arrays: an ascending sort compares the smallest element, a
# descending sort the largest, an empty array is less than null or missing, an array
# inside an array compares as an array; BinData: length, then subtype, then bytes) and from
# MongoDB's own test jstests/sort2.js (NaN below -Infinity). These run through the ``db``
# fixture: on the engine (its ``mongomock://`` and embedded-catalog backends) and on a real
# server when SPINE_DOCS_TEST_URI is set. The fixture's ``mongomock`` backend is the engine,
# not plain mongomock, so no backend is skipped. Plain mongomock sorts differently (arrays
# by their first element, binary without its subtype, timestamps and MinKey/MaxKey not at
# all): test_plain_mongomock_sorts_differently shows it, which is why the engine departs.

SERVER_SORTS = {
    "numbers, null, missing, empty": (
        [{"_id": "empty", "a": []}, {"_id": "missing"}, {"_id": "null", "a": None},
         {"_id": "two", "a": 2}, {"_id": "one_five", "a": [1, 5]}, {"_id": "three", "a": [3]},
         {"_id": "four_zero", "a": [4, 0]}, {"_id": "null_six", "a": [None, 6]}],
        [([("a", 1), ("_id", 1)],    # smallest: [] < null = missing = [null, 6] < 0 < 1 < 2 < 3
          ["empty", "missing", "null", "null_six", "four_zero", "one_five", "two", "three"]),
         ([("a", -1), ("_id", 1)],   # largest: 6 > 5 > 4 > 3 > 2 > null = missing > []
          ["null_six", "one_five", "four_zero", "three", "two", "missing", "null", "empty"]),
         ([("a", -1), ("_id", -1)],
          ["null_six", "one_five", "four_zero", "three", "two", "null", "missing", "empty"])]),
    "arrays of mixed types": (
        [{"_id": "m1", "b": ["x", 5]}, {"_id": "m2", "b": [{"k": 1}, "a"]},
         {"_id": "m3", "b": [True, 7]}, {"_id": "m4", "b": 6}, {"_id": "m5", "b": "b"}],
        [([("b", 1)], ["m1", "m4", "m3", "m2", "m5"]),    # 5 < 6 < 7 < "a" < "b"
         ([("b", -1)], ["m3", "m2", "m1", "m5", "m4"])]),  # true > {k: 1} > "x" > "b" > 6
    "nested arrays": (
        [{"_id": "x1", "c": [[1, 2], 5]}, {"_id": "x2", "c": [[0], 7]}, {"_id": "x3", "c": 6},
         {"_id": "x4", "c": [[3]]}],
        [([("c", 1)], ["x1", "x3", "x2", "x4"]),    # 5 < 6 < 7 < [3]: numbers before arrays
         ([("c", -1)], ["x4", "x1", "x2", "x3"])]),  # [3] > [1, 2] > [0] > 6
    "a path through an array of documents": (
        [{"_id": "e1", "items": [{"n": 3}, {"n": 1}]}, {"_id": "e2", "items": [{"n": 2}]},
         {"_id": "e3", "items": {"n": 0}}, {"_id": "e4", "items": [{"n": 5}, {"n": 4}]}],
        [([("items.n", 1)], ["e3", "e1", "e2", "e4"]),    # 0 < 1 < 2 < 4
         ([("items.n", -1)], ["e4", "e1", "e2", "e3"])]),  # 5 > 3 > 2 > 0
    "mixed directions": (
        [{"_id": "f1", "g": 1, "a": [1, 9]}, {"_id": "f2", "g": 1, "a": [5]},
         {"_id": "f3", "g": 0, "a": [2, 3]}, {"_id": "f4", "g": 0, "a": 4}],
        [([("g", 1), ("a", -1)], ["f4", "f3", "f1", "f2"]),   # g 0: 4 > 3; g 1: 9 > 5
         ([("g", -1), ("a", 1)], ["f1", "f2", "f3", "f4"])]),  # g 1: 1 < 5; g 0: 2 < 4
    "binary data": (
        [{"_id": "b1", "d": Binary(b"\x02", 0)}, {"_id": "b2", "d": Binary(b"\x01", 0x80)},
         {"_id": "b3", "d": Binary(b"\x00\x00", 0)}, {"_id": "b4", "d": Binary(b"\x03", 0)}],
        [([("d", 1)], ["b1", "b4", "b2", "b3"]),    # length, then subtype, then bytes
         ([("d", -1)], ["b3", "b2", "b4", "b1"])]),
    "BSON types": (
        [{"_id": "t_max", "v": MaxKey()}, {"_id": "t_code", "v": Code("1")},
         {"_id": "t_re", "v": Regex("a", "i")}, {"_id": "t_ts", "v": Timestamp(1, 1)},
         {"_id": "t_date", "v": dt.datetime(2020, 1, 1)}, {"_id": "t_bool", "v": False},
         {"_id": "t_oid", "v": bson.ObjectId("5f0000000000000000000000")},
         {"_id": "t_bin", "v": b"\x00"}, {"_id": "t_arr", "v": [[1]]}, {"_id": "t_obj", "v": {"k": 1}},
         {"_id": "t_str", "v": "s"}, {"_id": "t_num", "v": 3.5}, {"_id": "t_null", "v": None},
         {"_id": "t_min", "v": MinKey()}],
        [([("v", 1)], ["t_min", "t_null", "t_num", "t_str", "t_obj", "t_arr", "t_bin", "t_oid",
                       "t_bool", "t_date", "t_ts", "t_re", "t_code", "t_max"]),
         ([("v", -1)], ["t_max", "t_code", "t_re", "t_ts", "t_date", "t_bool", "t_oid", "t_bin",
                        "t_arr", "t_obj", "t_str", "t_num", "t_null", "t_min"])]),
    "numbers": (
        [{"_id": "long", "v": Int64(3)}, {"_id": "dbl", "v": 2.5}, {"_id": "dec", "v": Decimal128("2.4")},
         {"_id": "neg", "v": -1}, {"_id": "ninf", "v": float("-inf")}, {"_id": "nan", "v": float("nan")}],
        [([("v", 1)], ["nan", "ninf", "neg", "dec", "dbl", "long"]),
         ([("v", -1)], ["long", "dbl", "dec", "neg", "ninf", "nan"])]),
}


@pytest.mark.parametrize("case", list(SERVER_SORTS))
def test_sort_order_is_the_servers(db, case):
    docs, orders = SERVER_SORTS[case]
    with store.writing(db):
        db.sorts.insert_many(copy.deepcopy(docs))
    for sort, want in orders:
        def ids(cursor):
            return [d["_id"] for d in cursor]

        assert ids(db.sorts.find({}, {"_id": 1}).sort(sort)) == want, sort
        assert ids(db.sorts.find({}, {"_id": 1}).sort(sort).limit(3)) == want[:3], sort
        assert ids(db.sorts.find({}, {"_id": 1}).sort(sort).skip(1).limit(2)) == want[1:3], sort
        assert ids(db.sorts.aggregate([{"$sort": dict(sort)}, {"$project": {"_id": 1}}])) == want, sort
        assert ids(db.sorts.aggregate([{"$sort": dict(sort)}, {"$limit": 2}])) == want[:2], sort


@pytest.mark.parametrize("case", list(SERVER_SORTS))
def test_plain_mongomock_sorts_differently(case):
    """Why the engine does not follow plain mongomock here: mongomock gives another order, or
    cannot sort these values at all."""
    docs, orders = SERVER_SORTS[case]
    vanilla = mongomock.MongoClient().db.sorts
    vanilla.insert_many(copy.deepcopy(docs))
    outcomes = []
    for sort, want in orders:
        try:
            outcomes.append([d["_id"] for d in vanilla.find({}, {"_id": 1}).sort(sort)] == want)
        except (NotImplementedError, TypeError):
            outcomes.append(False)
    assert not all(outcomes)


def test_a_value_without_a_native_key_sorts_by_the_same_rule(monkeypatch):
    """A value the native keys do not cover (here a uuid.UUID a pipeline put there) falls
    back to pairwise comparison, with the same array rule."""
    from spine_docs.store.engine import sorting

    fallbacks = Count(monkeypatch, sorting, "_sort_fallback")
    coll = shim_collection()
    coll.insert_many([{"_id": "arr", "a": [4, 0]}, {"_id": "three", "a": [3]},
                      {"_id": "empty", "a": []}, {"_id": "none"}])
    same = {"$addFields": {"t": {"$literal": uuid.UUID(int=7)}}}
    for sort, want in (([("t", 1), ("a", 1)], ["empty", "none", "arr", "three"]),
                       ([("t", 1), ("a", -1)], ["arr", "three", "none", "empty"])):
        p = [same, {"$sort": dict(sort)}, {"$project": {"_id": 1}}]
        assert [d["_id"] for d in coll.aggregate(p)] == want
    assert fallbacks.calls == 2


def test_the_engine_docstring_names_tests_that_exist():
    """Each item of the engine's list of changes to mongomock names the tests that hold it
    (kept in step: a renamed or removed test fails here)."""
    import re
    import sys

    from spine_docs.store import engine

    doc = engine.__doc__
    changes = doc.split("What the engine changes relative to plain mongomock")[1].split(
        "Where the engine knowingly differs")[0]
    items = changes.split("\n    * ")[1:]
    assert len(items) >= 10
    import importlib

    here = sys.modules[__name__]
    for item in items:
        names = re.findall(r"\b(test_\w+)", item)
        assert names, f"an item names no test: {item[:60]!r}"
        # "[test_columns: a, b]" names tests of tests/test_columns.py; else they are here
        where = re.search(r"\[(test_\w+): ", item)
        module = importlib.import_module(where.group(1)) if where else here
        for name in names:
            if where and name == where.group(1):
                continue
            assert callable(getattr(module, name, None)), f"{name} is not a test in {module.__name__}"
