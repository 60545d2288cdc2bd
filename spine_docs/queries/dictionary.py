"""The attribute dictionary: which root attributes the matching files have, of which types, with
their ranges and examples (read from ``attr_types`` and ``attrs``).

- ``attribute_keys(db, flt=None, max_docs=None) -> [{"key", "field", "files", "types", "type"}]``
  (cheap: reads ``attr_types`` only; for the filter picker); ``attribute_types(db)`` ->
  ``{key: type label}``
- ``attribute_dictionary(db, flt=None, examples=3, max_docs=None) -> [{"key", "field", "files",
  "types", "type", "distinct", "min", "max", "examples"}]``: ``max_docs`` limits the work to the
  newest N matching files; min/max only over orderable types; examples are the most common
  value of each type, then the min and max, deduplicated (bounded memory on a server).
"""

from __future__ import annotations

from typing import Any

import bson

from spine_docs import convert

from ._run import _aggregate, _collection
from .filters import Filter, _query

# Type labels (convert.bson_type_name) whose values have a meaningful order for min/max.
ORDERED_TYPES: tuple[str, ...] = ("bool", "int", "long", "double", "string", "date")

_EXAMPLE_CHARS = 200


def _narrow(flt: Filter | None, max_docs: int | None) -> list[dict]:
    q = _query(flt)
    stages = [{"$match": q}] if q else []
    if max_docs:
        stages += [{"$sort": {"mtime": -1, "_id": -1}}, {"$limit": int(max_docs)}]
    return stages


def attribute_keys_pipeline(flt: Filter | None = None, max_docs: int | None = None) -> list[dict]:
    return _narrow(flt, max_docs) + [
        {"$project": {"_id": 0, "t": {"$objectToArray": {"$ifNull": ["$attr_types", {}]}}}},
        {"$unwind": "$t"},
        {"$group": {"_id": {"k": "$t.k", "t": "$t.v"}, "n": {"$sum": 1}}},
        {"$sort": {"_id.k": 1, "n": -1, "_id.t": 1}},
    ]


def _key_entry(escaped: str) -> dict:
    return {"key": convert.unescape_key(escaped), "field": "attrs." + escaped, "files": 0,
            "types": {}}


def _finish_types(entry: dict) -> None:
    entry["types"] = dict(sorted(entry["types"].items(), key=lambda kv: (-kv[1], kv[0])))
    entry["type"] = next(iter(entry["types"]), None)


def attribute_keys(db: Any, flt: Filter | None = None, *, max_docs: int | None = None,
                   max_time_ms: int | None = None) -> list[dict]:
    """Every root attribute key of the matching files (from ``attr_types``): ``{"key"
    (original name), "field" (``attrs.<escaped>``), "files", "types": {label: files}, "type"
    (the most common label)}``, sorted by key."""
    entries: dict[str, dict] = {}
    for r in _aggregate(_collection(db), attribute_keys_pipeline(flt, max_docs), max_time_ms):
        e = entries.setdefault(r["_id"]["k"], _key_entry(r["_id"]["k"]))
        e["files"] += r["n"]
        e["types"][r["_id"]["t"]] = e["types"].get(r["_id"]["t"], 0) + r["n"]
    for e in entries.values():
        _finish_types(e)
    return sorted(entries.values(), key=lambda e: e["key"])


def attribute_types(db: Any, flt: Filter | None = None, **kwargs: Any) -> dict[str, str]:
    """``{original key: most common type label}`` (to type attribute filter values)."""
    return {e["key"]: e["type"] for e in attribute_keys(db, flt, **kwargs)}


# [0, 1, ..., n-1] without $range (mongomock lacks it, and $zip, $reduce and $indexOfArray):
# a literal block of _INDEX_BLOCK indices doubled until it holds n, then cut to n. Each level is
# a $cond whose other branch is only evaluated when needed (MongoDB and mongomock evaluate
# $cond lazily), so n indices cost O(n). Up to _POSITIONAL_MAX attributes (256 * 2**10).
_INDEX_BLOCK = 256
_INDEX_DOUBLINGS = 10
_POSITIONAL_MAX = _INDEX_BLOCK << _INDEX_DOUBLINGS
#: at most this many attributes, the lookup by key is cheaper than building the index list
#: (K^2 comparisons against a list of 256 indices): typical files take that path
_POSITIONAL_MIN = 32


def _indices_expr(n: str, level: int = 0) -> dict:
    """The expression ``[0, 1, ..., n-1]`` for the variable ``n`` (e.g. ``"$$n"``), for
    ``n <= _POSITIONAL_MAX`` (at most ``_POSITIONAL_MAX`` indices beyond it)."""
    here, size = f"i{level}", _INDEX_BLOCK << level
    if level == 0:
        built: Any = {"$literal": list(range(_INDEX_BLOCK))}
    else:
        below, half = f"$$i{level - 1}", _INDEX_BLOCK << (level - 1)
        built = {"$concatArrays": [below, {"$map": {
            "input": below, "as": "x", "in": {"$add": ["$$x", half]}}}]}
    cut = {"$filter": {"input": f"$${here}", "as": "x", "cond": {"$lt": ["$$x", n]}}}
    deeper = _indices_expr(n, level + 1) if level < _INDEX_DOUBLINGS else cut
    return {"$let": {"vars": {here: built},
                     "in": {"$cond": [{"$lte": [n, size]}, cut, deeper]}}}


def _typed_attrs_expr() -> dict:
    """``[{k, v, t}]`` of a document: each root attribute with its type label from
    ``attr_types`` ("unknown" when it has none).

    The extractor writes ``attrs`` and ``attr_types`` with the same keys in the same order: then
    the i-th type is the i-th attribute's (one O(K) comparison of the key lists, then O(K)
    pairing by position). Otherwise (or beyond ``_POSITIONAL_MAX`` attributes, or up to
    ``_POSITIONAL_MIN``, where it is cheaper) each attribute looks its key up among the types
    (O(K) each, O(K^2) per document)."""
    by_position = {"$let": {"vars": {"n": {"$size": "$$a"}}, "in": {"$map": {
        "input": _indices_expr("$$n"), "as": "i", "in": {"$let": {
            "vars": {"e": {"$arrayElemAt": ["$$a", "$$i"]},
                     "ty": {"$arrayElemAt": ["$$t", "$$i"]}},
            "in": {"k": "$$e.k", "v": "$$e.v", "t": {"$ifNull": ["$$ty.v", "unknown"]}}}}}}}}
    by_key = {"$map": {
        "input": "$$a", "as": "e",
        "in": {"k": "$$e.k", "v": "$$e.v", "t": {"$ifNull": [
            {"$arrayElemAt": [{"$map": {
                "input": {"$filter": {"input": "$$t", "as": "ty",
                                      "cond": {"$eq": ["$$ty.k", "$$e.k"]}}},
                "as": "m", "in": "$$m.v"}}, 0]},
            "unknown"]}},
    }}
    return {"$let": {
        "vars": {"a": {"$objectToArray": {"$ifNull": ["$attrs", {}]}},
                 "t": {"$objectToArray": {"$ifNull": ["$attr_types", {}]}}},
        "in": {"$cond": [{"$and": [{"$gt": [{"$size": "$$a"}, _POSITIONAL_MIN]},
                                   {"$lte": [{"$size": "$$a"}, _POSITIONAL_MAX]},
                                   {"$eq": ["$$a.k", "$$t.k"]}]}, by_position, by_key]},
    }}


def attribute_dictionary_pipeline(flt: Filter | None = None,
                                  max_docs: int | None = None) -> list[dict]:
    """Per (key, type): files, distinct values, min, max and the most common value."""
    typed_attrs = _typed_attrs_expr()
    orderable = {"$in": ["$_id.t", list(ORDERED_TYPES)]}
    return _narrow(flt, max_docs) + [
        {"$project": {"_id": 0, "a": typed_attrs}},
        {"$unwind": "$a"},
        # decimals are grouped by their text: mongomock cannot sort or group Decimal128
        # (MongoDB and mongomock agree on $toString of a decimal; only dates differ)
        {"$group": {"_id": {"k": "$a.k", "t": "$a.t", "v": {"$cond": [
            {"$eq": ["$a.t", "decimal"]}, {"$toString": "$a.v"}, "$a.v"]}},
            "n": {"$sum": 1}}},
        {"$sort": {"n": -1, "_id.k": 1, "_id.t": 1, "_id.v": 1}},
        {"$group": {"_id": {"k": "$_id.k", "t": "$_id.t"},
                    "files": {"$sum": "$n"}, "distinct": {"$sum": 1},
                    "top": {"$first": "$_id.v"}, "top_count": {"$first": "$n"},
                    "min": {"$min": {"$cond": [orderable, "$_id.v", None]}},
                    "max": {"$max": {"$cond": [orderable, "$_id.v", None]}}}},
        {"$sort": {"_id.k": 1, "files": -1, "_id.t": 1}},
    ]


def _decimal(text: str) -> Any:
    try:
        return bson.Decimal128(text)
    except Exception:  # noqa: BLE001 - keep the text
        return text


def _example(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _EXAMPLE_CHARS:
        return value[: _EXAMPLE_CHARS - 1] + "…"
    return value


# MongoDB's comparison order of the ORDERED_TYPES (int, long and double compare numerically).
_TYPE_CLASS = {"int": 1, "long": 1, "double": 1, "string": 2, "bool": 3, "date": 4}


def attribute_dictionary(db: Any, flt: Filter | None = None, examples: int = 3, *,
                         max_docs: int | None = None,
                         max_time_ms: int | None = None) -> list[dict]:
    """The attribute dictionary of the matching files (``max_docs``: only the newest N of them):
    for every root attribute key ``{"key", "field", "files", "types", "type", "distinct", "min",
    "max", "examples"}``, sorted by key. ``min``/``max`` cover bool, numbers, strings and dates
    (across types, the lowest/highest in MongoDB's type order; not decimals); ``examples`` lists up to
    ``examples`` values: the most common value of each type, then the minima and maxima.
    Long strings are shortened to 200 characters."""
    rows = _aggregate(_collection(db), attribute_dictionary_pipeline(flt, max_docs), max_time_ms)
    entries: dict[str, dict] = {}
    parts: dict[str, list[dict]] = {}
    for r in rows:
        k, t = r["_id"]["k"], r["_id"].get("t")
        e = entries.setdefault(k, _key_entry(k))
        e["files"] += r["files"]
        e["types"][t] = e["types"].get(t, 0) + r["files"]
        e["distinct"] = e.get("distinct", 0) + r["distinct"]
        if t == "decimal" and isinstance(r.get("top"), str):
            r = {**r, "top": _decimal(r["top"])}
        parts.setdefault(k, []).append({**r, "t": t})
    out = []
    for k, e in entries.items():
        _finish_types(e)
        ps = sorted(parts[k], key=lambda p: (-p["files"], str(p["t"])))
        ordered = [p for p in ps if p["t"] in _TYPE_CLASS and p.get("min") is not None]
        mins = [p["min"] for p in ordered]
        maxs = [p["max"] for p in ordered]
        e["min"] = e["max"] = None
        if ordered:
            lo = min(_TYPE_CLASS[p["t"]] for p in ordered)
            hi = max(_TYPE_CLASS[p["t"]] for p in ordered)
            e["min"] = _example(min(p["min"] for p in ordered if _TYPE_CLASS[p["t"]] == lo))
            e["max"] = _example(max(p["max"] for p in ordered if _TYPE_CLASS[p["t"]] == hi))
        candidates = [p["top"] for p in ps] + mins + maxs
        ex: list = []
        for c in candidates:
            c = _example(c)
            if len(ex) >= examples:
                break
            if not any(c == x and type(c) is type(x) for x in ex):
                ex.append(c)
        e["examples"] = ex
        out.append(e)
    return sorted(out, key=lambda e: e["key"])
