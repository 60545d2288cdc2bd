"""The engine's column cache (spine_docs.store.engine.columns): every read it serves gives what
plain mongomock gives, and what the engine gives without it, on documents with missing fields,
nulls, values of every scalar type, arrays and embedded documents, before and after writes of
every kind (which must make it stale). Expected values come from plain mongomock and from the
same engine with the cache switched off, never from the code under test."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import random
from typing import Any, Callable

import mongomock
import pytest
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId
from pymongo import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne

from sentinels import NOTHING

from spine_docs import store
from spine_docs.store.engine import columns, rawbson

T0 = dt.datetime(2024, 3, 1, 12, 0, 0)
OIDS = [ObjectId(b"%012d" % k) for k in range(3)]
NAN = float("nan")

#: scalar values of every type a column may hold, with the pairs MongoDB and mongomock treat
#: alike or apart (1, 1.0, Int64(1) and true; 0.0 and -0.0; "" and null)
SCALARS = ["a", "b", "", "1", 0, 1, 1.0, -0.0, 0.0, 2.5, -3, Int64(1), Int64(7), True, False,
           None, T0, T0 + dt.timedelta(days=1), OIDS[0], OIDS[1]]
RARE = [NAN, Decimal128("1"), Decimal128("2.5")]  # mongomock cannot compare or sort these


def _value(rnd: random.Random, rare: bool) -> Any:
    if rare and rnd.random() < 0.08:
        return rnd.choice(RARE)
    return rnd.choice(SCALARS)


def make_doc(i: int, rnd: random.Random, rare: bool = False) -> dict:
    """A document whose fields are: ``s`` (mostly strings), ``n`` (mostly numbers), ``t``
    (dates), ``mix`` (any scalar), each sometimes null or missing - columns; ``arr`` and
    ``sub`` (an array or an embedded document in some documents, a scalar in others) and ``a``
    (always a document) - not columns. Fields come in varying orders."""
    d: dict = {"_id": i}
    fields = {
        "s": lambda: rnd.choice(["x", "y", "z", "", None, 3]),
        "n": lambda: rnd.choice([0, 1, 1.0, Int64(1), 2, 2.5, -0.0, True, None, "2"]),
        "t": lambda: rnd.choice([T0, T0 + dt.timedelta(hours=5), None]),
        "mix": lambda: _value(rnd, rare),
        "arr": lambda: rnd.choice([[1, 2], [], ["x"], 1, "x", None, [[1]]]),
        "sub": lambda: rnd.choice([{"x": 1}, {"x": "a", "y": [1]}, {}, 5, None]),
        "a": lambda: {"x": rnd.choice([1, 2, "a", None]), "k": [rnd.randint(0, 2)]},
    }
    names = list(fields)
    rnd.shuffle(names)
    for name in names:
        if rnd.random() < 0.85:
            d[name] = fields[name]()
    return d


FIELDS = ["s", "n", "t", "mix", "arr", "sub", "a.x", "sub.x", "n.x", "zz", "a.k", "a.x.y", "a.zz"]


def make_clause(rnd: random.Random, depth: int = 0, fields: list[str] = FIELDS) -> dict:
    """One random top-level condition (sometimes a $or/$and/$nor of a few)."""
    if depth == 0 and rnd.random() < 0.15:
        op = rnd.choice(["$or", "$and", "$nor"])
        return {op: [make_spec(rnd, depth + 1, 2, fields) for _ in range(rnd.randint(1, 3))]}
    if depth == 0 and rnd.random() < 0.04:
        return {"$expr": {"$gt": ["$n", 1]}}
    f = rnd.choice(fields)
    v = rnd.choice(SCALARS)
    kind = rnd.randrange(10)
    if kind == 0:
        return {f: v}
    if kind in (1, 2):
        return {f: {rnd.choice(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]): v}}
    if kind == 3:
        return {f: {rnd.choice(["$in", "$nin"]): rnd.sample(SCALARS, rnd.randint(1, 3))}}
    if kind == 4:
        return {f: {"$exists": rnd.random() < 0.5}}
    if kind == 5:
        lo, hi = sorted([rnd.randint(-1, 3), rnd.randint(-1, 3)])
        return {f: {"$gte": lo, "$lt": hi}}
    if kind == 6:
        return {f: {"$type": rnd.choice(["string", "number", "null", "date", "bool"])}}
    if kind == 7:
        return {f: {"$regex": rnd.choice(["^x", "a", ""])}}
    if kind == 8:
        return {f: {"$not": {rnd.choice(["$gt", "$lte", "$eq"]): v}}}
    return {f: {"$in": [None, rnd.choice(SCALARS)]}}


def make_spec(rnd: random.Random, depth: int = 0, most: int = 3, fields: list[str] = FIELDS) -> dict:
    spec: dict = {}
    for _ in range(rnd.randint(0 if depth == 0 else 1, most)):
        spec.update(make_clause(rnd, depth, fields))
    return spec


# --------------------------------------------------------------------------- the oracles

@contextlib.contextmanager
def columns_off():
    """The engine exactly as it was without the cache: every column fast path declines."""
    real = columns.columns_of
    columns.columns_of = lambda store, build: None
    try:
        yield
    finally:
        columns.columns_of = real


def outcome(fn: Callable[[], Any], exact: bool = True) -> tuple[str, Any]:
    """("ok", repr of the result) or ("raises", the exception type). repr, not ==: it tells
    1 from 1.0 and Int64(1), 0.0 from -0.0, sees NaN equal to itself and, when ``exact``,
    the order of fields (the engine stores ``_id`` first, plain mongomock where it came)."""
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - the type is compared
        return "raises", type(exc)
    return "ok", repr(result if exact else _fields_sorted(result))


def _fields_sorted(x: Any) -> Any:
    if isinstance(x, dict):
        return sorted((k, _fields_sorted(v)) for k, v in x.items())
    if isinstance(x, list):
        return [_fields_sorted(v) for v in x]
    return x


def reads_a_non_column(spec: dict, cached: Any) -> bool:
    """Whether some top-level condition of ``spec`` reads a field that is no column (the one
    case where the cache may answer while the plain scan raises: see columns' docstring)."""
    for key, search in spec.items():
        if key in ("$or", "$and", "$nor") and isinstance(search, list):
            if any(reads_a_non_column(q, cached) for q in search if isinstance(q, dict)):
                return True
        elif key.startswith("$") or not cached.has({key.split(".", 1)[0]}):
            return True
    return False


def check(vanilla: Any, shim: Any, op: Callable[[Any], Any], spec: dict | None = None,
          vs_vanilla: bool = True) -> None:
    """``op`` on the engine with the cache gives what it gives without (raising alike, or,
    only as the docstring allows, going on where the plain scan raises), and what plain
    mongomock gives whenever both of those answer (unless not ``vs_vanilla``: NaN, which the
    engine groups as MongoDB does, in one group, and plain mongomock does not)."""
    with columns_off():
        plain = outcome(lambda: op(shim))
    got = outcome(lambda: op(shim))
    if got != plain:
        cached = shim._store.columns
        # the plain scan raised on a document the column conditions exclude: the cached
        # read goes on (and may meet another error later in the pipeline)
        assert plain[0] == "raises" and spec is not None \
            and cached is not None and reads_a_non_column(spec, cached), (spec, plain, got)
    expected = outcome(lambda: op(vanilla), exact=False)
    if vs_vanilla and not getattr(op, "plain_only", False) and expected[0] == "ok" \
            and got[0] == "ok":
        assert outcome(lambda: op(shim), exact=False) == expected, spec


def twins(docs: list[dict]) -> tuple[Any, Any]:
    vanilla = mongomock.MongoClient().db.c
    shim = store.connect("mongomock://").c
    if docs:
        vanilla.insert_many(copy.deepcopy(docs))
        shim.insert_many(copy.deepcopy(docs))
    return vanilla, shim


def reads(rnd: random.Random, spec: dict) -> list[Callable[[Any], Any]]:
    """The read operations checked for one filter: find (whole documents, a projection, a
    sort with skip and limit), count, distinct and aggregations (facet counts, with and
    without a leading $sort)."""
    f = rnd.choice(["s", "n", "t", "mix", "arr", "zz"])
    d = rnd.choice([1, -1])
    skip, limit = rnd.choice([(0, 0), (0, 5), (2, 7)])
    sort = [(f, d)] if rnd.random() < 0.3 else [(f, d), (rnd.choice(["s", "_id", "n"]), rnd.choice([1, -1]))]
    # keys mixing true and 1 (n, mix): the plain engine is the reference (see plain_only)
    by_f = plain_only if f in ("n", "mix") else (lambda op: op)
    rows = make_spec(rnd, fields=["_id", "c", "zz", "_id.x"])  # a $match on $group's rows
    step = rnd.choice([1, 2.5])
    acc = rnd.choice([{"c": {"$sum": 1}}, {"c": {"$sum": 1}, "k": {"$first": 1}},
                      {"c": {"$sum": 2.5}, "m": {"$max": "x"}, "p": {"$push": 1}},
                      {"c": {"$sum": "$n"}}, {"c": {"$first": "$_id"}}])
    # the engine orders mixed types and arrays as a server does, plain mongomock does not
    # (tests/test_shim.py holds the server's order): such sorts are compared with the plain
    # engine only
    by_server = plain_only if any(k in ("mix", "arr") for k, _ in sort) else (lambda op: op)
    # a group after a sort on such a field: both reasons at once
    by_group = plain_only if f in ("n", "mix", "arr") else (lambda op: op)
    own = random.Random(repr(spec))  # (rnd's sequence stays that of the other tests)
    rnd_f = own.choice(["n", "mix", "s", "sub", "a"])
    rnd_d = own.choice(["a", "sub"])
    return [
        lambda c: list(c.find(spec)),
        lambda c: list(c.find(spec, {"s": 1, "n": 1})),
        by_server(lambda c: list(c.find(spec, {"mix": 1, "_id": 0}).sort(sort).skip(skip).limit(limit))),
        by_server(lambda c: list(c.find(spec).sort(sort).limit(limit))),
        lambda c: c.count_documents(spec),
        lambda c: sorted(map(repr, c.distinct(f, spec))),
        by_f(lambda c: list(c.aggregate([{"$match": spec}, {"$group": {"_id": "$" + f, **acc}},
                                         {"$sort": {"c": -1, "_id": 1}}, {"$limit": 4}]))),
        by_group(lambda c: list(c.aggregate([{"$sort": {f: d}}, {"$group": {"_id": "$" + f, **acc}}]))),
        by_group(lambda c: list(c.aggregate(([{"$match": spec}] if spec else [])
                                            + [{"$sort": {f: d}}, {"$group": {"_id": "$" + f, **acc}}]))),
        # keys made of several fields (run coverage), accumulators of fields, one group
        lambda c: list(c.aggregate(([{"$match": spec}] if spec else []) + [{"$group": {
            "_id": {"a": "$s", "b": "$t", "c": "$zz"}, "files": {"$sum": 1},
            "ev": {"$sum": "$n"}, "fs": {"$first": "$mix"}, "ls": {"$last": "$t"},
            "p": {"$push": "$n"}}}])),
        plain_only(lambda c: list(c.aggregate([{"$group": {"_id": "$" + f, "c": {"$sum": step}}},
                                               {"$match": rows}]))),
        # the first documents by a sort, then a projection (the attribute dictionary's newest)
        by_server(lambda c: list(c.aggregate(([{"$match": spec}] if spec else []) + [
            {"$sort": dict(sort)}, {"$limit": limit or 3}, {"$project": {"a": 1, "mix": 1}}]))),
        plain_only(lambda c: list(c.aggregate(([{"$match": spec}] if spec else []) + [{"$group": {
            "_id": {"a": "$s", "b": "$" + f}, "files": {"$sum": 1}, "fs": {"$first": "$mix"},
            "p": {"$push": "$n"}}}]))),
        lambda c: list(c.aggregate([{"$match": spec}, {"$group": {
            "_id": None, "n": {"$sum": 1}, "s": {"$sum": "$n"}, "a": {"$avg": "$n"},
            "lo": {"$min": "$" + f}, "hi": {"$max": "$t"}, "u": {"$addToSet": "$s"}}}])),
        # a projection that only computes fields, from a raw column (a), a field that is
        # no column (sub) and columns (the attribute dictionary's first stage), alone and
        # unwound and grouped as the dictionary does
        plain_only(lambda c: list(c.aggregate(([{"$match": spec}] if spec else []) + [
            {"$project": {"_id": 0, "o": {"$objectToArray": {"$ifNull": ["$a", {}]}},
                          "w": {"$ifNull": ["$" + rnd_f, "none"]},
                          "y": {"$cond": [{"$eq": ["$s", "x"]}, "$a.x", "$t"]}}}]))),
        # the newest documents' attribute dictionary: a sort, a limit, a computed projection
        plain_only(lambda c: list(c.aggregate(([{"$match": spec}] if spec else []) + [
            {"$sort": dict(sort)}, {"$limit": limit or 3},
            {"$project": {"_id": 0, "o": {"$objectToArray": {"$ifNull": ["$a", {}]}},
                          "w": {"$ifNull": ["$" + rnd_f, "none"]}}}]))),
        plain_only(lambda c: list(c.aggregate(([{"$match": spec}] if spec else []) + [
            {"$project": {"_id": 0, "o": {"$objectToArray": {"$ifNull": ["$" + rnd_d, {}]}}}},
            {"$unwind": "$o"},
            {"$group": {"_id": {"k": "$o.k", "v": "$o.v"}, "n": {"$sum": 1}}}]))),
    ]


def plain_only(op: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Marks a read compared with the plain engine only: group keys true and 1 are two
    groups to MongoDB and the engine, sometimes one to plain mongomock (Python equality)."""
    op.plain_only = True  # type: ignore[attr-defined]
    return op


# --------------------------------------------------------------------------- differential

@pytest.mark.parametrize("seed", range(40))
def test_reads_are_those_of_mongomock_and_of_the_plain_scan(seed):
    rnd = random.Random(seed)
    rare = seed % 4 == 3  # NaN and decimals, which mongomock cannot compare, in some seeds
    vanilla, shim = twins([make_doc(i, rnd, rare) for i in range(rnd.randint(5, 40))])
    for _ in range(12):
        spec = make_spec(rnd)
        for op in reads(rnd, spec):
            check(vanilla, shim, op, spec, vs_vanilla=not rare)
    assert shim._store.columns is not None  # the cache was there to be compared


def _write(rnd: random.Random, i: int) -> Callable[[Any], Any]:
    """One random write (each kind: insert, update, delete, replace, bulk), the same on both."""
    doc = make_doc(1000 + i, rnd)
    spec = make_spec(rnd, most=1)
    field = rnd.choice(["s", "n", "t", "mix", "zz"])
    # a new value may be an array or a document: the field then is no column any more
    value = rnd.choice(SCALARS + [[1, 2], {"x": 1}])
    kind = rnd.randrange(9)
    if kind == 0:
        return lambda c: c.insert_one(copy.deepcopy(doc))
    if kind == 1:
        return lambda c: c.update_one(spec, {"$set": {field: value}})
    if kind == 2:
        return lambda c: c.update_many(spec, {"$set": {field: value}, "$unset": {"s": ""}})
    if kind == 3:
        return lambda c: c.delete_one(spec)
    if kind == 4:
        return lambda c: c.delete_many(spec)
    if kind == 5:
        return lambda c: c.replace_one(spec, {"s": "replaced", field: value})
    if kind == 6:
        target = rnd.randint(0, 30)
        return lambda c: c.update_one({"_id": target}, {"$inc": {"n": 1}})
    if kind == 7:
        return lambda c: c.insert_many([copy.deepcopy(doc), copy.deepcopy(make_doc(2000 + i, random.Random(i)))])
    steps = [("insert_one", InsertOne, (copy.deepcopy(doc),)),
             ("update_one", UpdateOne, (spec, {"$set": {field: value}})),
             ("update_many", UpdateMany, ({}, {"$set": {"touched": i}})),
             ("replace_one", ReplaceOne, ({"_id": 3}, {"s": "r"})),
             ("delete_one", DeleteOne, ({"s": "y"},)), ("delete_many", DeleteMany, ({"n": None},))]

    def bulk(c: Any) -> None:
        if c.database.client is not vanilla_client(c):
            c.bulk_write([op(*copy.deepcopy(args)) for _m, op, args in steps], ordered=False)
            return
        # plain mongomock's bulk_write fails with pymongo >= 4.11 (mongomock issue 912): the
        # same operations one by one, going on after an error as an unordered bulk does
        errors = 0
        for method, _op, args in steps:
            try:
                getattr(c, method)(*copy.deepcopy(args))
            except Exception:  # noqa: BLE001 - counted
                errors += 1
        if errors:
            raise RuntimeError("a step failed")
    return bulk


def vanilla_client(c: Any) -> Any:
    return c.database.client if not isinstance(c, columns_collection_type()) else None


def columns_collection_type() -> type:
    from spine_docs.store.engine.collection import Collection
    return Collection


@pytest.mark.parametrize("seed", range(20))
def test_reads_after_writes_see_the_writes(seed):
    """Every kind of write makes the cache stale: reads after it are mongomock's again (the
    same writes went to plain mongomock)."""
    rnd = random.Random(1000 + seed)
    vanilla, shim = twins([make_doc(i, rnd) for i in range(30)])
    for i in range(10):
        spec = make_spec(rnd)
        for op in reads(rnd, spec)[:7]:
            check(vanilla, shim, op, spec)
        write = _write(rnd, i)
        w_vanilla = outcome(lambda: write(vanilla) and None)
        w_shim = outcome(lambda: write(shim) and None)
        assert (w_shim[0] == "ok") == (w_vanilla[0] == "ok")
        assert outcome(lambda: list(shim.find()), False) == outcome(lambda: list(vanilla.find()), False)


def test_facet_counts_with_equal_values_of_different_types():
    """The sort before a $group is skipped on the cache: groups, their ``_id`` values (the
    first member's: 1 or 1.0 or Int64(1)) and counts stay mongomock's."""
    values = [1, 1.0, Int64(1), True, None, 0.0, -0.0, "1", 2, 2.0, False, None]
    for seed in range(30):
        rnd = random.Random(seed)
        docs = []
        for i in range(25):
            d = {"_id": i}
            if rnd.random() < 0.9:
                d["f"] = rnd.choice(values)
            docs.append(d)
        vanilla, shim = twins(docs)
        for d in (1, -1):
            p = [{"$sort": {"f": d}}, {"$group": {"_id": "$f", "count": {"$sum": 1}}},
                 {"$sort": {"count": -1, "_id": 1}}, {"$limit": 50}]
            check(vanilla, shim, lambda c: list(c.aggregate(copy.deepcopy(p))))
            expected = repr(list(vanilla.aggregate(copy.deepcopy(p))))
            assert repr(list(shim.aggregate(copy.deepcopy(p)))) == expected


# --------------------------------------------------------------------------- the cache itself

class Calls:
    def __init__(self, monkeypatch, owner, name):
        self.calls = 0
        real = getattr(owner, name)

        def wrapper(*a, **k):
            self.calls += 1
            return real(*a, **k)
        monkeypatch.setattr(owner, name, wrapper)


def catalog_like(n: int) -> Any:
    rnd = random.Random(n)
    coll = store.connect("mongomock://").files
    coll.insert_many([{"_id": f"s:{i}", "site": rnd.choice(["s1", "s2"]), "size": rnd.randint(1, 99),
                       "dataset": rnd.choice(["d1", "d2", "d3", None]), "mtime": T0 + dt.timedelta(minutes=i),
                       "attrs": {"k": i}} for i in range(n)])
    return coll


def test_the_second_read_decodes_nothing(monkeypatch):
    coll = catalog_like(50)
    builds = Calls(monkeypatch, columns, "_top_level")
    picks = Calls(monkeypatch, rawbson, "_pick")
    facet = [{"$sort": {"site": 1}}, {"$group": {"_id": "$site", "count": {"$sum": 1}}}]
    first = list(coll.aggregate(facet))
    assert builds.calls == 50 and picks.calls == 0  # one walk of each document
    assert list(coll.aggregate(facet)) == first
    assert coll.count_documents({"dataset": {"$in": ["d1", None]}, "size": {"$gte": 10}}) > 0
    assert len(list(coll.find({"site": "s2"}, {"size": 1}).sort([("mtime", -1), ("_id", -1)]).limit(5))) == 5
    assert builds.calls == 50 and picks.calls == 5  # only the 5 rows returned were decoded


def test_conditions_on_paths_through_documents(monkeypatch):
    """``attrs.k`` is decided on a path column (made once) when every ``attrs`` is a document
    or missing and every ``attrs.k`` a scalar or missing; otherwise on the documents."""
    rnd = random.Random(5)
    docs = []
    for i in range(60):
        d: dict = {"_id": i, "site": rnd.choice(["s1", "s2"])}
        if i % 9:
            d["attrs"] = {k: rnd.choice(SCALARS) for k in ("k", "e") if rnd.random() < 0.8}
            d["attrs"]["deep"] = {"x": rnd.choice([1, 2, None])} if i % 4 else {}
            d["attrs"]["list"] = [1] if i % 5 else 2
        docs.append(d)
    vanilla, shim = twins(docs)
    specs = [{"attrs.k": {"$gte": 1}}, {"attrs.k": {"$in": [None, "a"]}, "site": "s1"},
             {"attrs.e": {"$exists": False}}, {"attrs.deep.x": 2}, {"attrs.deep.x": None},
             {"$or": [{"attrs.k": {"$lt": 1}}, {"attrs.e": "b"}]}, {"attrs.list": 1},
             {"attrs.k.z": {"$exists": True}}, {"attrs": {"$exists": True}, "attrs.e": {"$ne": 0}}]
    for spec in specs:
        for op in (lambda c: c.count_documents(spec), lambda c: list(c.find(spec, {"site": 1})),
                   lambda c: list(c.aggregate([{"$match": spec}, {"$group": {"_id": "$site", "n": {"$sum": 1}}}]))):
            check(vanilla, shim, op, spec)
    paths = shim._store.columns._paths
    assert paths["attrs.k"] is not None and paths["attrs.deep.x"] is not None
    assert paths["attrs.list"] is None and paths["attrs.k.z"] is None  # an array; a scalar on the way
    picks = Calls(monkeypatch, rawbson, "_pick")
    assert shim.count_documents({"attrs.k": {"$gte": 1}, "site": "s2"}) >= 0
    assert picks.calls == 0


def test_small_embedded_documents_are_kept_raw(monkeypatch):
    """A field holding an embedded document (or nothing) in every document is kept as its
    BSON bytes, one copy of each distinct value, while small: documents and path columns are
    made from them without walking the stored documents, and a projection that only
    computes fields is evaluated once per distinct input, each document getting a copy."""
    docs = [{"_id": i, "site": ["s1", "s2"][i % 2],
             **({"attrs": {"a": i % 4, "b": "x"}, "attr_types": {"a": "int", "b": "string"}}
                if i % 3 else {"attrs": {}, "attr_types": {}}),
             "big": {"s": "x" * 400 + str(i)}} for i in range(40)]
    del docs[7]["attrs"]  # missing in one document
    monkeypatch.setattr(columns, "RAW_MAX_BYTES", 8000)  # big: 40 distinct of 400 bytes
    vanilla, shim = twins(docs)
    assert shim.count_documents({"site": "s1"}) == 20  # builds the cache
    cols = shim._store.columns
    assert set(cols.raw) == {"attrs", "attr_types"}  # big: over RAW_MAX_BYTES
    assert len({id(b) for b in cols.raw["attr_types"]}) == 2  # {} and the other, once each
    assert cols.raw["attrs"][7] is NOTHING
    picks = Calls(monkeypatch, rawbson, "_pick")
    evals = Calls(monkeypatch, columns, "_project_computed")

    def has(i):
        return i % 3 and i != 7

    pipeline = [{"$project": {"_id": 0, "t": {"$objectToArray": "$attr_types"},
                              "a": "$attrs.a", "n": {"$size": {"$objectToArray": {
                                  "$ifNull": ["$attrs", {"z": 1}]}}}}}]
    expected = [{"t": [{"k": "a", "v": "int"}, {"k": "b", "v": "string"}] if i % 3 else [],
                 **({"a": i % 4} if has(i) else {}),
                 "n": 2 if has(i) else 0 if i != 7 else 1} for i in range(40)]
    got = list(shim.aggregate(pipeline))
    assert got == expected
    # distinct (attrs, attr_types): ({}, {}), (a=0..3, types), (missing, types)
    assert evals.calls == 6
    assert got[1] == got[5] and got[1]["t"] is not got[5]["t"] and got[1]["t"][0] is not got[5]["t"][0]
    got[1]["t"][0]["k"] = "changed"
    got[2]["t"].clear()
    assert list(shim.aggregate(pipeline)) == expected
    assert shim.count_documents({"attrs.a": {"$gte": 2}}) == sum(1 for i in range(40) if has(i) and i % 4 >= 2)
    assert list(shim.find({"site": "s2"}, {"attrs": 1})) == [
        {"_id": i, **({"attrs": docs[i]["attrs"]} if i != 7 else {})} for i in range(1, 40, 2)]
    assert picks.calls == 0
    assert list(shim.aggregate(pipeline)) == list(vanilla.aggregate(pipeline))


def test_writes_neither_build_it_nor_see_a_stale_one(monkeypatch):
    coll = catalog_like(20)
    builds = Calls(monkeypatch, columns, "_top_level")
    coll.update_many({"site": "s1"}, {"$set": {"dataset": "d9"}})
    coll.delete_many({"size": {"$lt": 5}})
    assert builds.calls == 0 and coll._store.columns is None
    n = coll.count_documents({"dataset": "d9"})
    assert builds.calls == coll.estimated_document_count()
    expected = sum(1 for d in coll.find() if d["site"] == "s1")
    assert n == expected
    coll.update_one({"site": "s2"}, {"$set": {"dataset": "d9"}})  # the cache is stale now
    assert coll.count_documents({"dataset": "d9"}) == expected + 1


def test_returned_documents_cannot_change_the_cache():
    coll = catalog_like(10)
    rows = list(coll.find({"site": {"$in": ["s1", "s2"]}}, {"site": 1, "dataset": 1}).sort([("size", 1)]))
    docs = [d for _k, _r, d in coll._scan({"size": {"$gte": 0}}, {"_id", "site", "size"})]
    for d in rows + docs:
        d["site"] = "changed"
        d.clear()
    again = list(coll.find({}, {"site": 1}))
    assert {d["site"] for d in again} <= {"s1", "s2"}


def test_a_field_that_becomes_an_array_is_no_column_any_more():
    vanilla, shim = twins([{"_id": i, "f": i % 3} for i in range(12)])
    for c in (vanilla, shim):
        assert c.count_documents({"f": 1}) == 4
        c.update_one({"_id": 0}, {"$set": {"f": [1, 2]}})
    assert shim.count_documents({"f": 1}) == vanilla.count_documents({"f": 1}) == 5
    assert "f" in shim._store.columns.not_columns
    p = [{"$sort": {"f": 1}}, {"$group": {"_id": "$f", "n": {"$sum": 1}}}]
    assert list(shim.aggregate(p)) == list(vanilla.aggregate(p))


def test_the_top_level_decoder_agrees_with_bson():
    """The fast decoder (pymongo's private ``bson._raw_to_dict``) is the one in use, and gives
    bson.decode's scalars; a document or an array is never taken for a scalar."""
    assert columns._top_level is columns._top_level_c
    doc = {"_id": OIDS[0], "s": "é", "i": 1, "l": Int64(2), "f": 0.5, "b": False, "n": None,
           "t": T0, "d": {"x": 1}, "a": [1], "e": [], "m": Decimal128("1.5"), "y": b"\x00"}
    raw = rawbson.encode(doc)
    got = columns._top_level(raw)
    assert list(got) == list(doc)
    for k in ("_id", "s", "i", "l", "f", "b", "n", "t", "m"):
        assert type(got[k]) is type(rawbson.decode_full(raw)[k]) and got[k] == doc[k]
    for k in ("d", "a", "e", "y"):
        assert type(got[k]) not in columns.SCALAR_TYPES


def test_match_on_rows_with_dates_as_mongomock():
    """A $match on a pipeline's rows decides plain values itself, but leaves dates to
    mongomock, which first makes a row's dates naive UTC milliseconds (999999 us -> 999 ms)."""
    t = dt.datetime(2024, 1, 1, 0, 0, 0, 999999)
    vanilla, shim = twins([{"_id": i, "n": i} for i in range(4)])
    p = [{"$addFields": {"t": {"$literal": t}}},
         {"$match": {"t": {"$lte": t.replace(microsecond=999000)}, "n": {"$gte": 1}}}]
    expected = list(vanilla.aggregate(copy.deepcopy(p)))
    assert [d["_id"] for d in expected] == [1, 2, 3]
    assert list(shim.aggregate(copy.deepcopy(p))) == expected
