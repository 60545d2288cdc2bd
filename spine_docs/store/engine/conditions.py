"""How a filter condition on one field decides a document, from that field's value alone.

With one candidate value - a scalar, or NOTHING when the field is missing - mongomock's
filter (``filtering._Filterer.apply``) decides ``{field: search}`` by the operators' ``all``,
or ``==`` for a plain value. :func:`fast_test` restates that for equality, ``$eq``/``$ne``/
``$in``/``$nin``/``$exists`` and ranges between values of one comparison type;
:func:`value_test` adds mongomock's own filter on a one-field document for everything else
(remembered per distinct value); :func:`row_test` decides a whole ``$match`` on a pipeline's
rows when every condition is such a test. Used by the column cache (:mod:`.columns`) and by
``$match`` stages (:mod:`.aggregation`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId
from mongomock import filtering as mm_filtering
from sentinels import NOTHING


def rank(v: Any) -> int | None:
    """mongomock's comparison type (``filtering._get_compare_type``) of a column value;
    None when mongomock would raise (Decimal128)."""
    t = type(v)
    if t is str:
        return 15
    if t is int or t is float or t is Int64:
        return 10
    if t is datetime:
        return 45
    if v is None:
        return 5
    if t is bool:
        return 40
    if t is ObjectId:
        return 35
    return None


_RANGES = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_PLAIN = (str, int, float, bool, type(None), datetime, ObjectId)


def _plain(v: Any) -> bool:
    return type(v) in _PLAIN and not (type(v) is datetime and v.tzinfo is not None)


def _op_test(op: str, arg: Any) -> Callable[[Any], bool] | None:
    """v -> mongomock's ``_Filterer._operator_map[op](v, arg)`` for a scalar or NOTHING
    ``v``, restated (None: not restated for this operator or argument)."""
    if op == "$eq" and _plain(arg):
        if arg is None:
            return lambda v: v is NOTHING or v == arg
        return lambda v: v == arg
    if op == "$ne" and _plain(arg):
        if arg is None:
            return lambda v: not (v is NOTHING or v == arg)
        return lambda v: not v == arg
    if op in ("$in", "$nin") and isinstance(arg, (list, tuple)) and all(_plain(x) for x in arg):
        with_null = None in arg
        if op == "$in":
            return lambda v: (with_null and v is NOTHING) or v in arg
        return lambda v: not ((with_null and v is NOTHING) or v in arg)
    if op == "$exists":
        want = bool(arg)
        return lambda v: want == (v is not NOTHING)
    if op in _RANGES and _plain(arg):
        cmp = _RANGES[op]
        arg_rank = rank(arg)
        null_ok = cmp(0, 0)  # mongomock compares null with null as 0 with 0

        def test(v: Any) -> bool:
            if v is NOTHING:
                return False
            r = rank(v)
            if r is None:
                raise Unsure
            if r != arg_rank:
                return False
            return null_ok if r == 5 else cmp(v, arg)
        return test
    return None


class Unsure(Exception):
    """A restated test meets a value it does not restate: ask mongomock."""


def fast_test(search: Any) -> Callable[[Any], bool] | None:
    """v -> whether ``{f: search}`` matches a document whose top-level ``f`` is the scalar
    ``v`` (NOTHING: missing), as mongomock's filter decides it (see ``_Filterer.apply``:
    with one candidate value the answer is the operators' ``all``, or ``==`` for a plain
    value); None when ``search`` is not one this restates. A test may raise ``Unsure``."""
    if not isinstance(search, dict):
        if not _plain(search):
            return None
        if search is None:
            return lambda v: v is NOTHING or v == search
        return lambda v: v == search
    if not search or not all(isinstance(k, str) and k.startswith("$") for k in search):
        return None
    tests = []
    for op, arg in search.items():
        t = _op_test(op, arg)
        if t is None:
            return None
        tests.append(t)
    if len(tests) == 1:
        return tests[0]
    return lambda v: all(t(v) for t in tests)


def _value_key(v: Any) -> Any:
    """A memo key for a column value (None: do not remember): the type matters (1, 1.0 and
    true are different values to a filter), and so could a float zero's sign."""
    t = type(v)
    if t is Decimal128 or (t is float and (v == 0 or v != v)):
        return None
    return (t, v)


def value_test(key: str, search: Any, field: str) -> Callable[[Any], bool]:
    """v -> whether ``{key: search}`` matches a document whose ``field`` is ``v``:
    ``field`` is the first part of ``key`` (a column), or ``key`` itself (a path column:
    see :meth:`.columns.Columns.path`)."""
    fast = fast_test(search) if key == field else None
    clause = {key: search}
    parts = field.split(".")
    if len(parts) > 1:
        def mini(v: Any) -> dict:
            for name in reversed(parts):
                v = {name: v}
            return v
    else:
        def mini(v: Any) -> dict:
            return {field: v}
    memo: dict = {}
    apply = mm_filtering.filter_applies

    def slow(v: Any) -> bool:
        k = _value_key(v)
        if k is not None:
            hit = memo.get(k)
            if hit is not None:
                return hit
        r = bool(apply(clause, {} if v is NOTHING else mini(v)))
        if k is not None:
            memo[k] = r
        return r

    if fast is None:
        return slow

    def test(v: Any) -> bool:
        try:
            return fast(v)
        except Unsure:
            return slow(v)
    return test


#: the value types :func:`row_test` decides (dates are left to mongomock: a $match makes a
#: row's dates naive UTC milliseconds before filtering)
_ROW_TYPES = frozenset({str, int, float, bool, type(None), ObjectId, Int64, type(NOTHING)})


def row_test(spec: Any) -> Callable[[Any], bool | None] | None:
    """doc -> whether ``spec`` matches the row ``doc`` as mongomock's filter decides it, or
    None when this cannot tell for that row (a value of another type, an ``Unsure`` test);
    None (no test) when some condition of ``spec`` is not a :func:`fast_test` on one
    top-level field."""
    if type(spec) is not dict or not spec:
        return None
    tests = []
    for key, search in spec.items():
        if not isinstance(key, str) or key.startswith("$") or "." in key:
            return None
        fast = fast_test(search)
        if fast is None:
            return None
        tests.append((key, fast))

    def decide(doc: Any) -> bool | None:
        if type(doc) is not dict:
            return None
        try:
            for key, fast in tests:
                v = doc.get(key, NOTHING)
                if type(v) not in _ROW_TYPES:
                    return None
                if not fast(v):
                    return False
        except Unsure:
            return None
        return True
    return decide
