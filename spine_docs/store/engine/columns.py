"""The column cache: a collection's top-level scalar fields, decoded once per version.

A read scan of the whole collection (a filter with no ``_id`` or unique-key lookup) decodes
the same few top-level fields of every document again and again (the explorer's sidebar
alone makes five passes). The first such scan of a collection state walks every document
once and keeps, for each top-level field whose values are all immutable scalars (str, int,
float, bool, null, datetime, ObjectId, Int64, Decimal128) or missing, one list of values
aligned with the stored documents: a **column**. A field holding an embedded document, an
array or any other type in some document is no column (its scans decode as before). The
cache belongs to the :class:`.stores.CollectionStore` and is valid for one ``version``: any
write makes the next read scan build it again. Writes never build it (an update or delete
scan uses it only while it is valid).

:func:`scan` serves :meth:`.collection.Collection._scan` from the columns:

* the filter's top-level conditions that read only columns are decided on the column
  values: equality, ``$eq``/``$ne``/``$in``/``$nin``/``$exists`` and ranges on values of
  one comparison type by mongomock's own rules restated (:func:`_fast_test`), anything else
  by mongomock's ``filter_applies`` on a one-field document, remembered per distinct value;
  ``$and``/``$or``/``$nor`` of such conditions combine them;
* the other conditions (on embedded documents, arrays, ...) are then decided by mongomock on
  the documents that passed, decoded as before;
* the documents handed on are made from the columns when every field the caller needs is
  one (fresh dicts of immutable values, fields in the document's own order), else decoded
  from the stored bytes as before.

Values and order are exactly those of the plain scan. The one difference: conditions on
columns are decided first, so a condition mongomock cannot evaluate on some document
(``NotImplementedError`` comparing a Decimal128, an unknown operator, ...) raises only when a
document that passed the column conditions reaches it; a server raises in neither case.
When deciding a column condition raises, the scan falls back to the plain one.
"""

from __future__ import annotations

import heapq
import operator
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import bson
from bson.codec_options import DEFAULT_CODEC_OPTIONS
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId
from mongomock import aggregate as mm_aggregate
from mongomock import filtering as mm_filtering
from sentinels import NOTHING

from . import rawbson
from .aggregation import accumulators, group_rows
from .deps import filter_fields, union
from .keys import norm
from .sorting import bson_key

#: the value types a column may hold (all immutable): a field with any other value is no column
SCALAR_TYPES = frozenset({str, int, float, bool, type(None), datetime, ObjectId, Int64, Decimal128})
_COLUMN_TYPES = SCALAR_TYPES | {type(NOTHING)}

#: documents decoded per batch while building (bounds the transient memory)
_BATCH = 1024


class _Nested:
    """Stands for an embedded document in a top-level decode: pymongo's C decoder hands the
    bytes of a document to a ``document_class`` marked as raw (``_type_marker`` 101)
    instead of decoding it; this one keeps nothing (such a field is no column anyway)."""

    __slots__ = ()
    _type_marker = 101

    def __init__(self, raw: Any, codec_options: Any) -> None:
        pass


_TOP_OPTIONS = DEFAULT_CODEC_OPTIONS.with_options(document_class=_Nested)


def _top_level_c(raw: bytes) -> dict:
    # bson._raw_to_dict is what RawBSONDocument inflates itself with (one C call); arrays
    # come back as bytes (raw_array), embedded documents as _Nested
    return bson._raw_to_dict(raw, 4, len(raw) - 1, _TOP_OPTIONS, {}, True)


def _top_level_checked() -> Callable[[bytes], dict]:
    """The fastest decoder of top-level fields that agrees with ``bson.decode`` on scalars
    (checked once: ``bson._raw_to_dict`` is not public API)."""
    sample = bson.encode({"_id": ObjectId(), "s": "é", "i": 1, "l": Int64(2), "f": 0.5,
                          "b": True, "n": None, "t": datetime(2024, 1, 2, 3, 4, 5, 6000),
                          "d": {"x": 1}, "a": [1, {"y": 2}], "m": Decimal128("1.5")})
    try:
        got = _top_level_c(sample)
        want = bson.decode(sample)
        if list(got) == list(want) and all(
                type(got[k]) is type(want[k]) and got[k] == want[k]
                for k in want if type(want[k]) in SCALAR_TYPES) \
                and type(got["d"]) is _Nested and type(got["a"]) not in SCALAR_TYPES:
            return _top_level_c
    except Exception:  # noqa: BLE001 - any failure: the public, slower decoder
        pass
    return bson.decode


_top_level = _top_level_checked()


class Columns:
    """The columns of one collection state (see the module docstring). ``keys``/``raws``:
    the snapshot it was built from, in natural order; ``values[name][i]``: the value of
    ``name`` in document ``i`` (``NOTHING`` when missing); ``shapes[i]``: the index in
    ``layouts`` of the tuple of document ``i``'s top-level names, in order."""

    def __init__(self, version: int, documents: Any, items: list[tuple[Any, bytes]]):
        self.version = version
        self.documents = documents
        self.keys = [k for k, _r in items]
        self.raws = [r for _k, r in items]
        self.n = n = len(items)
        self.values: dict[str, list] = {}
        self.not_columns: set[str] = set()
        self.layouts: list[tuple[str, ...]] = []
        self.shapes: list[int] = []
        self._absent: list | None = None
        self._sort_keys: dict[str, list | None] = {}
        layout_ids: dict[tuple, int] = {}
        values, bad, shapes = self.values, self.not_columns, self.shapes
        for start in range(0, n, _BATCH):
            rows = [_top_level(raw) for raw in self.raws[start:start + _BATCH]]
            for row in rows:
                names = tuple(row)
                lid = layout_ids.get(names)
                if lid is None:
                    lid = layout_ids[names] = len(self.layouts)
                    self.layouts.append(names)
                shapes.append(lid)
            for name in set().union(*rows) - bad:
                col = [row.get(name, NOTHING) for row in rows]
                if not set(map(type, col)) <= _COLUMN_TYPES:
                    bad.add(name)
                    values.pop(name, None)
                    continue
                have = values.get(name)
                if have is None:
                    have = values[name] = [NOTHING] * start
                have.extend(col)
            end = start + len(rows)
            for col in values.values():
                if len(col) < end:
                    col.extend([NOTHING] * (end - len(col)))

    def is_current(self, store: Any) -> bool:
        return self.version == store.version and self.documents is store._documents

    def has(self, fields: set | frozenset) -> bool:
        """Whether every one of ``fields`` is a column (a field no document has is one)."""
        return not (fields & self.not_columns)

    def column(self, name: str) -> list:
        col = self.values.get(name)
        if col is None:
            if name in self.not_columns:
                raise KeyError(name)
            col = self._absent
            if col is None:
                col = self._absent = [NOTHING] * self.n
        return col

    def sort_keys(self, name: str) -> list | None:
        """The sort key (:func:`_sort_key`) of each document's ``name``, made once; None
        when a value has none."""
        keys = self._sort_keys.get(name, NOTHING)
        if keys is NOTHING:
            keys = [_sort_key(v) for v in self.column(name)]
            if None in keys:
                keys = None
            self._sort_keys[name] = keys
        return keys

    def maker(self, fields: set | frozenset) -> Callable[[int], dict]:
        """i -> document ``i``'s ``fields`` (columns), in the document's order: a fresh dict
        equal to what :func:`.rawbson.fields_decoder` decodes from its bytes."""
        plans = [tuple((f, self.column(f)) for f in names if f in fields)
                 for names in self.layouts]
        shapes = self.shapes
        return lambda i: {f: col[i] for f, col in plans[shapes[i]]}


def columns_of(store: Any, build: bool) -> Columns | None:
    """The store's current columns; built now (and kept) when ``build`` and they are not."""
    cols = store.columns
    if cols is not None and cols.is_current(store):
        return cols
    if not build:
        return None
    version = store.version  # read before the snapshot: a write in between makes it stale
    documents = store._documents
    cols = Columns(version, documents, list(documents.items()))
    store.columns = cols
    return cols


# --------------------------------------------------------------------------- conditions

def _rank(v: Any) -> int | None:
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
        rank = _rank(arg)
        null_ok = cmp(0, 0)  # mongomock compares null with null as 0 with 0

        def test(v: Any) -> bool:
            if v is NOTHING:
                return False
            r = _rank(v)
            if r is None:
                raise _Unsure
            if r != rank:
                return False
            return null_ok if r == 5 else cmp(v, arg)
        return test
    return None


class _Unsure(Exception):
    """A restated test meets a value it does not restate: ask mongomock."""


def _fast_test(search: Any) -> Callable[[Any], bool] | None:
    """v -> whether ``{f: search}`` matches a document whose top-level ``f`` is the scalar
    ``v`` (NOTHING: missing), as mongomock's filter decides it (see ``_Filterer.apply``:
    with one candidate value the answer is the operators' ``all``, or ``==`` for a plain
    value); None when ``search`` is not one this restates. A test may raise ``_Unsure``."""
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


def _field_test(key: str, search: Any, field: str) -> Callable[[Any], bool]:
    """v -> whether ``{key: search}`` matches a document whose top-level ``field`` (the
    first part of ``key``) is ``v``."""
    fast = _fast_test(search) if key == field else None
    clause = {key: search}
    memo: dict = {}
    apply = mm_filtering.filter_applies

    def slow(v: Any) -> bool:
        k = _value_key(v)
        if k is not None:
            hit = memo.get(k)
            if hit is not None:
                return hit
        r = bool(apply(clause, {} if v is NOTHING else {field: v}))
        if k is not None:
            memo[k] = r
        return r

    if fast is None:
        return slow

    def test(v: Any) -> bool:
        try:
            return fast(v)
        except _Unsure:
            return slow(v)
    return test


def _compile(spec: Mapping, cols: Columns) -> Callable[[int], bool] | None:
    """i -> whether document ``i`` matches ``spec`` (None: ``spec`` reads a non-column)."""
    tests = []
    for key, search in spec.items():
        t = _clause(key, search, cols)
        if t is None:
            return None
        if t is not True:
            tests.append(t)
    if not tests:
        return lambda i: True
    if len(tests) == 1:
        return tests[0]
    return lambda i: all(t(i) for t in tests)


def _clause(key: Any, search: Any, cols: Columns) -> Callable[[int], bool] | bool | None:
    """The test of one top-level condition of a filter (True: always true, ``$comment``)."""
    if not isinstance(key, str):
        return None
    if key == "$comment":
        return True
    if key in ("$and", "$or", "$nor"):
        if not isinstance(search, (list, tuple)) or not search \
                or not all(isinstance(q, dict) for q in search):
            return None
        subs = [_compile(q, cols) for q in search]
        if any(s is None for s in subs):
            return None
        if key == "$and":
            return lambda i: all(s(i) for s in subs)
        if key == "$or":
            return lambda i: any(s(i) for s in subs)
        return lambda i: not any(s(i) for s in subs)
    if key.startswith("$"):
        return None
    field = key.split(".", 1)[0]
    if not cols.has({field}):
        return None
    col = cols.column(field)
    test = _field_test(key, search, field)
    return lambda i: test(col[i])


# --------------------------------------------------------------------------- selecting

class _Selection:
    """A filter split for one collection state: the tests of its top-level conditions on
    columns, and the rest (mongomock's to decide on decoded documents)."""

    def __init__(self, cols: Columns, spec: Mapping):
        self.cols = cols
        self.spec = spec
        self.tests: list[Callable[[int], bool]] = []
        self.rest: dict = {}
        for key, search in spec.items():
            t = _clause(key, search, cols)
            if t is None:
                self.rest[key] = search
            elif t is not True:
                self.tests.append(t)
        self.rest_fields = filter_fields(self.rest) if self.rest else set()
        self.spec_fields = filter_fields(spec)

    def candidates(self) -> Iterator[tuple[int, bool]]:
        """(i, decided) for each document that passes the column tests, in natural order;
        ``decided``: it matches the whole filter already (mongomock decided a document a
        test raised on: what the plain scan does, raising where it raises)."""
        tests = self.tests
        n = self.cols.n
        if not tests:
            return ((i, False) for i in range(n))
        test = tests[0] if len(tests) == 1 else (lambda i: all(t(i) for t in tests))
        return self._candidates(test, n)

    def _candidates(self, test: Callable[[int], bool], n: int) -> Iterator[tuple[int, bool]]:
        decode = rawbson.fields_decoder(self.spec_fields)
        raws = self.cols.raws
        for i in range(n):
            try:
                if test(i):
                    yield i, False
            except Exception:  # noqa: BLE001 - mongomock decides this document as before
                if mm_filtering.filter_applies(self.spec, decode(raws[i])):
                    yield i, True

    def matches(self, decode: Callable[[int], dict] | None) -> Iterator[tuple[int, dict | None]]:
        """(i, doc) of the matching documents; ``doc`` is ``decode(i)`` (which must hold the
        fields the rest of the filter reads) or None when ``decode`` is None and nothing
        had to be decoded."""
        rest = self.rest
        if not rest:
            for i, _decided in self.candidates():
                yield i, (decode(i) if decode is not None else None)
            return
        match = mm_filtering.filter_applies
        if decode is None:
            part = rawbson.fields_decoder(self.rest_fields)
            raws = self.cols.raws
            decode = lambda i: part(raws[i])  # noqa: E731
        for i, decided in self.candidates():
            doc = decode(i)
            if decided or match(rest, doc):
                yield i, doc


def _selection(store: Any, spec: Mapping, build: bool) -> _Selection | None:
    """The selection of ``spec`` (patched) on the store's columns; None when a lookup serves
    it better (``_id``, a unique key) or there are no current columns and ``build`` is false."""
    if "_id" in spec or (spec and store.unique_candidates(spec) is not None):
        return None
    cols = columns_of(store, build)
    if cols is None:
        return None
    return _Selection(cols, spec)


def _ready(store: Any, spec: Any) -> Mapping | None:
    """``spec`` patched as the plain scan does, after TTL expiry; None when the plain scan
    must run (an empty collection: it validates the filter there)."""
    store._remove_expired_documents()
    if not store._documents or (spec is not None and not isinstance(spec, Mapping)):
        return None
    return rawbson.patch_dt(spec) if spec else {}


# --------------------------------------------------------------------------- the scan

def scan(store: Any, spec: Mapping, needed: set | None, *, build: bool = True
         ) -> Iterator[tuple[Any, bytes, dict]] | None:
    """What :meth:`.collection.Collection._scan` yields for ``spec`` (already patched by
    :func:`.rawbson.patch_dt`) and ``needed``, made from the columns; None when the columns
    cannot serve it (the caller scans as before): a filter on ``_id`` or a unique key (a
    lookup is cheaper), nothing decided on columns and ``needed`` not all columns, or
    ``build`` false and no current columns."""
    sel = _selection(store, spec, build)
    if sel is None:
        return None
    cols = sel.cols
    # the fields the plain scan decodes: what the caller needs and what the filter reads
    want = union(needed, sel.spec_fields)
    from_columns = want is not None and cols.has(want)
    if not sel.tests and not from_columns:
        return None
    keys, raws = cols.keys, cols.raws
    if needed is None:
        return ((keys[i], raws[i], rawbson.decode_full(raws[i])) for i, _d in sel.matches(None))
    if from_columns:
        decode = cols.maker(want)
    else:
        part = rawbson.fields_decoder(want)
        decode = lambda i: part(raws[i])  # noqa: E731
    return ((keys[i], raws[i], doc) for i, doc in sel.matches(decode))


# --------------------------------------------------------------------------- sorting

def _sort_key(v: Any) -> tuple | None:
    """:func:`.sorting.sort_list`'s key of a document whose sort field is the scalar ``v``
    (missing and null sort alike); None when it has none (mongomock compares then)."""
    if v is NOTHING or v is None:
        return _NULL_KEY
    k = bson_key(v)
    return None if k is None else (1, k)


_NULL_KEY = (1, (5, 0))


def sorted_raws(store: Any, spec: Any, sort: list[tuple[str, Any]], skip: int, limit: int
                ) -> list[bytes] | None:
    """The stored bytes of ``find(spec).sort(sort).skip(skip).limit(limit)``, in order, when
    the filter's columns and the sort fields (top-level columns) serve it; None otherwise.
    The order is :func:`.sorting.sort_list`'s (mongomock's): one stable pass per key."""
    if not sort or not all(isinstance(k, str) and not k.startswith("$") and "." not in k
                           and type(d) in (int, float) for k, d in sort):
        return None
    spec = _ready(store, spec)
    if spec is None:
        return None
    sel = _selection(store, spec, True)
    if sel is None or not sel.cols.has({k for k, _d in sort}):
        return None
    cols = sel.cols
    keyed = [cols.sort_keys(k) for k, _d in sort]
    if any(kc is None for kc in keyed):
        return None
    chosen = [i for i, _doc in sel.matches(None)]
    top = skip + limit if limit else 0
    n = len(chosen)
    if n >= 2:
        reverse = [d < 0 for _k, d in sort]
        if len(keyed) == 1:
            kc = keyed[0]
            keys = [kc[i] for i in chosen]
        else:
            keys = [tuple(kc[i] for kc in keyed) for i in chosen]
        if len(set(reverse)) > 1:
            # mixed directions: a descending field's key becomes minus its rank among the
            # field's distinct keys (as sort_list does)
            per_field = list(zip(*keys))
            for j, r in enumerate(reverse):
                if r:
                    rank = {k: -x for x, k in enumerate(sorted(set(per_field[j])))}
                    per_field[j] = [rank[k] for k in per_field[j]]
            keys = list(zip(*per_field))
            rev = False
        else:
            rev = reverse[0]
        get = keys.__getitem__
        if top and top < n:
            order = (heapq.nlargest if rev else heapq.nsmallest)(top, range(n), key=get)
        else:
            order = sorted(range(n), key=get, reverse=rev)
        chosen = [chosen[j] for j in order]
    chosen = chosen[skip:top if limit else None]
    raws = cols.raws
    return [raws[i] for i in chosen]


# --------------------------------------------------------------------------- grouping

#: group keys whose sort before grouping cannot change the groups (see :func:`group`)
_GROUPABLE = frozenset({str, int, float, bool, type(None), datetime, ObjectId, Int64, type(NOTHING)})
_CONSTANT = (int, float, str, bool, type(None))
_FINISHED = frozenset(mm_aggregate._GROUPING_OPERATOR_MAP) | {"$push", "$addToSet"}


def group(store: Any, spec: Any, stages: list[tuple[str, Any]]
          ) -> tuple[list[dict], list[tuple[str, Any]]] | None:
    """(output of the leading stages, the stages left) for a pipeline whose ``$match`` was
    ``spec`` and whose next stages are ``[$sort {f: d}]? $group {_id: "$f", out: {acc:
    constant}, ...}`` on a column ``f`` (the sidebar's facet counts, replica keys): the
    groups are counted on the column's values, without documents. None otherwise.

    The ``$sort`` is skipped: it cannot change the result. The accumulators are of
    constants (every member adds the same value, so their order does not matter), and the
    documents a group gathers have equal sort keys (equal group keys are equal values: 1,
    1.0 and Int64(1) compare equal, null and missing sort alike), so a stable sort keeps
    them in natural order, and the first - whose value becomes the group's ``_id`` - is the
    same. Not when a value has no native sort key or is NaN (the order could change)."""
    i = 0
    field = None
    if stages and stages[0][0] == "$sort":
        arg = stages[0][1]
        if not isinstance(arg, Mapping) or len(arg) != 1:
            return None
        (field, d), = arg.items()
        if type(d) not in (int, float):
            return None
        i = 1
    if len(stages) <= i or stages[i][0] != "$group" or type(stages[i][1]) is not dict:
        return None
    options = stages[i][1]
    key = options.get("_id")
    if not (isinstance(key, str) and key.startswith("$") and not key.startswith("$$")
            and "." not in key and len(key) > 1) or (field is not None and key[1:] != field):
        return None
    field = key[1:]
    try:
        accs = accumulators(options)
    except AttributeError:
        return None
    if not all(type(v) is dict for k, v in options.items() if k != "_id") or not all(
            op in _FINISHED and type(c) in _CONSTANT and not (type(c) is str and c.startswith("$"))
            for _f, op, c in accs):
        return None
    spec = _ready(store, spec)
    if spec is None:
        return None
    sel = _selection(store, spec, True)
    if sel is None or not sel.cols.has({field}):
        return None
    col = sel.cols.column(field)
    values = [col[j] for j, _doc in sel.matches(None)]
    kinds = set(map(type, values))
    if not kinds <= _GROUPABLE or (float in kinds and any(
            v != v for v in values if type(v) is float)):
        return None
    counts = Counter(zip(map(type, values), values))  # insertion order: first occurrences
    groups: dict = {}
    for (_t, v), c in counts.items():
        if v is NOTHING:
            v = None
        hk = norm(v)
        g = groups.get(hk)
        if g is None:
            groups[hk] = [v, c]
        else:
            g[1] += c
    rows = group_rows({hk: [v, [[c_] * c for _f, _op, c_ in accs]] for hk, (v, c) in groups.items()},
                      [(f, op) for f, op, _c in accs], True)
    return rows, stages[i + 1:]
