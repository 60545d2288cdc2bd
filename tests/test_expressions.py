"""Compiled aggregation expressions (spine_docs.store.engine.expressions) give what mongomock's
parser gives - the value, or the same exception - for random expressions of the operators they
restate (and others, which they hand to the parser) over random documents with missing
fields, nulls, numbers, strings, dates, arrays and embedded documents, with missing keys
ignored or not. The expected outcome is mongomock's own parser's."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import mongomock
import pytest
from mongomock import aggregate as mm_aggregate

from spine_docs import store
from spine_docs.store.engine import expressions
from spine_docs.store.engine.expressions import NO_VARS, compile_expression

T0 = dt.datetime(2024, 3, 1, 12, 30, 15, 123000)
SCALARS = [0, 1, 2.5, -3, 0.0, True, False, None, "a", "", "10", T0, T0 + dt.timedelta(days=40)]
FIELDS = ["n", "s", "t", "d", "arr", "missing", "d.x", "d.y", "arr.x"]


def make_doc(rnd: random.Random) -> dict:
    doc: dict = {"_id": rnd.randint(0, 9)}
    for name in ("n", "s", "t", "d", "arr"):
        if rnd.random() < 0.2:
            continue
        if name == "d":
            doc[name] = rnd.choice([{"x": rnd.choice(SCALARS), "y": [1, 2]}, {}, None, 5])
        elif name == "arr":
            doc[name] = rnd.choice([[1, 2, 3], [], [{"x": 1}, {"x": 2}], ["a"], None, 7])
        elif name == "t":
            doc[name] = rnd.choice([T0, T0 + dt.timedelta(hours=30), None, "x"])
        else:
            doc[name] = rnd.choice(SCALARS)
    return doc


def make_expr(rnd: random.Random, depth: int = 0, names: tuple = ()) -> Any:
    """A random expression; ``names``: the variables in scope ($$name)."""
    if depth > 3 or rnd.random() < 0.3:
        kind = rnd.randrange(4)
        if kind == 0:
            return rnd.choice(SCALARS)
        if kind == 1 and names:
            return "$$" + rnd.choice(names) + rnd.choice(["", ".k", ".v"])
        if kind == 2:
            return "$$ROOT" if rnd.random() < 0.1 else "$" + rnd.choice(FIELDS)
        return "$" + rnd.choice(FIELDS)

    def sub() -> Any:
        return make_expr(rnd, depth + 1, names)
    op = rnd.choice([
        "$cond", "$ifNull", "$and", "$or", "$not", "$eq", "$ne", "$gt", "$lte", "$in",
        "$isNumber", "$floor", "$log10", "$abs", "$divide", "$subtract", "$mod",
        "$dateToString", "$toString", "$objectToArray", "$arrayElemAt", "$let", "$map",
        "$filter", "$literal", "literal", "$size", "$add", "$bogus"])
    if op == "$cond":
        if rnd.random() < 0.5:
            return {"$cond": [sub(), sub(), sub()]}
        return {"$cond": {"if": sub(), "then": sub(), "else": sub()}}
    if op == "$ifNull":
        return {"$ifNull": [sub(), sub()]}
    if op in ("$and", "$or"):
        return {op: [sub() for _ in range(rnd.randint(1, 3))]}
    if op in ("$not", "$isNumber", "$floor", "$log10", "$abs", "$toString", "$objectToArray", "$size"):
        return {op: sub()}
    if op in ("$eq", "$ne", "$gt", "$lte", "$divide", "$subtract", "$mod", "$arrayElemAt", "$add"):
        return {op: [sub(), sub()]}
    if op == "$in":
        return {"$in": [sub(), rnd.choice([[1, "a", None], sub()])]}
    if op == "$dateToString":
        return {"$dateToString": {"format": rnd.choice(["%Y-%m", "%G-W%V", "%Y-%m-%dT%H"]),
                                  "date": sub()}}
    if op == "$let":
        name = rnd.choice(["a", "b"])
        return {"$let": {"vars": {name: sub()}, "in": make_expr(rnd, depth + 1, names + (name,))}}
    if op in ("$map", "$filter"):
        name = rnd.choice(["this", "e"])
        inner = make_expr(rnd, depth + 1, names + (name,))
        arg: dict = {"input": rnd.choice(["$arr", "$d.y", {"$objectToArray": "$d"}, sub()])}
        if name != "this":
            arg["as"] = name
        arg["in" if op == "$map" else "cond"] = inner
        return {op: arg}
    if op == "$literal":
        return {"$literal": rnd.choice(SCALARS + [[1, "$x"], {"$a": 1}])}
    if op == "literal":
        return {"p": sub(), "q": sub()}
    return {"$bogus": sub()}  # an unknown operator: the parser's error


def outcome(fn) -> tuple[str, Any]:
    try:
        return "ok", repr(fn())
    except Exception as exc:  # noqa: BLE001 - the type is compared
        return "raises", type(exc)


@pytest.mark.parametrize("seed", range(60))
def test_compiled_expressions_are_mongomocks_parser(seed):
    rnd = random.Random(seed)
    docs = [make_doc(rnd) for _ in range(12)]
    for _ in range(25):
        expr = make_expr(rnd)
        for ignore in (False, True):
            node = compile_expression(expr, ignore)
            for doc in docs:
                expected = outcome(lambda: mm_aggregate._parse_expression(expr, doc, ignore_missing_keys=ignore))
                assert outcome(lambda: node(doc, NO_VARS)) == expected, (expr, doc, ignore)


def test_restated_operators_do_not_call_the_parser(monkeypatch):
    """The operators the catalog's pipelines use are restated (the parser is not asked), and
    an unknown one goes to the parser."""
    calls = []
    real = mm_aggregate._Parser.parse
    monkeypatch.setattr(mm_aggregate._Parser, "parse", lambda self, e: calls.append(e) or real(self, e))
    doc = {"size": 1200, "mtime": T0, "dataset": None, "attrs": {"a": 1}, "attr_types": {"a": "int"}}
    ok = {"$and": [{"$isNumber": "$size"}, {"$gt": ["$size", 0]}]}
    exprs = [
        {"$floor": {"$divide": [{"$subtract": [{"$log10": "$size"}, 1]}, 0.5]}},
        {"$cond": [ok, "$size", None]},
        {"p": {"$dateToString": {"format": "%G-W%V", "date": "$mtime"}}, "g": {"$ifNull": ["$dataset", None]}},
        {"$let": {"vars": {"types": {"$objectToArray": {"$ifNull": ["$attr_types", {}]}}},
                  "in": {"$map": {"input": {"$objectToArray": "$attrs"}, "as": "a", "in": {
                      "k": "$$a.k", "t": {"$arrayElemAt": [{"$map": {"input": {"$filter": {
                          "input": "$$types", "as": "t", "cond": {"$eq": ["$$t.k", "$$a.k"]}}},
                          "as": "m", "in": "$$m.v"}}, 0]}}}}}},
        {"$cond": [{"$in": ["$dataset", [None, "x"]]}, {"$toString": "$size"}, "$size"]},
    ]
    for e in exprs:
        compile_expression(e, True)(doc, NO_VARS)
    assert calls == []
    compile_expression({"$concat": ["$dataset", "x"]})({"dataset": "a"}, NO_VARS)
    assert calls


def test_pipelines_with_compiled_expressions_are_mongomocks():
    """The same through aggregate(): $group keys and accumulators, and a $project that only
    computes fields, on the engine and on plain mongomock."""
    rnd = random.Random(3)
    docs = []
    for i in range(40):  # dates or nothing in t, documents or nothing or null in d
        d = dict(make_doc(rnd), _id=i)
        if not isinstance(d.get("t"), dt.datetime):
            d.pop("t", None)
        if not isinstance(d.get("d", {}), dict):
            d["d"] = None
        docs.append(d)
    vanilla = mongomock.MongoClient().db.c
    shim = store.connect("mongomock://").c
    vanilla.insert_many([dict(d) for d in docs])
    shim.insert_many([dict(d) for d in docs])
    pipelines = [
        [{"$group": {"_id": {"p": {"$dateToString": {"format": "%Y-%m", "date": "$t"}},
                             "g": {"$ifNull": ["$s", None]}}, "n": {"$sum": 1}}},
         {"$sort": {"_id.p": 1, "_id.g": 1}}],
        [{"$group": {"_id": None, "k": {"$sum": {"$cond": [{"$isNumber": "$n"}, 1, 0]}},
                     "lo": {"$min": {"$cond": [{"$isNumber": "$n"}, "$n", None]}}}}],
        [{"$project": {"_id": 0, "a": {"$objectToArray": {"$ifNull": ["$d", {}]}}, "b": "$missing"}},
         {"$unwind": "$a"}, {"$group": {"_id": "$a.k", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}],
    ]
    for p in pipelines:
        expected = outcome(lambda: list(vanilla.aggregate(p)))
        assert expected[0] == "ok"
        assert outcome(lambda: list(shim.aggregate(p))) == expected, p
    assert expressions  # the module under test is the engine's
