"""The column cache: a collection's top-level scalar fields, decoded once per version.

A read of the whole collection (a filter with no ``_id`` or unique-key lookup) decoded the
same few top-level fields of every document again and again (the explorer's sidebar alone
makes five passes). The first such read of a collection state walks every document once (one
C call each: :func:`_top_level`) and keeps, for each top-level field whose values are all
immutable scalars (str, int, float, bool, null, datetime, ObjectId, Int64, Decimal128) or
missing, one list of values aligned with the stored documents: a **column** (the strings of
a field with few distinct values are kept once). A field holding an embedded document, an
array or any other type in some document is no column. Paths through embedded documents
down to scalars (``attrs.num_events``) become columns on first use (:meth:`Columns.path`).
A field holding an embedded document in every document that has it is kept as a **raw
column** while small (:data:`RAW_MAX_BYTES`): each value's BSON bytes, one copy of each
distinct one, decoded when a read needs it (path columns: once per distinct value).
The cache belongs to the :class:`.stores.CollectionStore` and is valid for one ``version``:
any write makes the next read build it again; writes never build it (an update's or a
delete's scan uses it only while it is current); a reload drops it.

What reads it (each declines - None - when it cannot serve, and the caller does as before):

* :func:`scan`, for :meth:`.collection.Collection._scan`: the filter's top-level conditions
  that read only columns are decided on the column values - equality, ``$eq``/``$ne``/
  ``$in``/``$nin``/``$exists`` and ranges between values of one comparison type by
  mongomock's rules restated (:func:`.conditions.fast_test`), anything else by mongomock's
  ``filter_applies`` on a one-field document, remembered per distinct value; ``$and``/
  ``$or``/``$nor`` of such conditions combine them. The other conditions are mongomock's on
  the documents that passed, decoded as before. The documents handed on are made from the
  columns when every field needed is one (fresh dicts of immutable values, fields in the
  document's own order), else decoded from the stored bytes.
* :func:`sorted_raws`, for ``find().sort()`` by columns: the column sort keys are sorted as
  :func:`.sorting.sort_list` sorts documents, and only the documents returned are decoded.
* :func:`leading`, for ``aggregate()``: ``[$sort] $group`` on columns (:func:`group`),
  a computed ``$project`` on columns and raw columns (:func:`project`: once per distinct
  input) and ``$sort`` + ``$limit`` (the chosen documents decoded, no others).

Values and order are exactly those of the plain reads. The one difference: conditions on
columns are decided first, so a condition mongomock cannot evaluate on some document
(``NotImplementedError`` comparing a Decimal128, an unknown operator, ...) raises only when
a document that passed the column conditions reaches it; a server raises in neither case.
When deciding a column condition raises, that document is decided by mongomock's filter as
before (raising where it raises).
"""
from __future__ import annotations

import copy
from array import array
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

from . import collector, rawbson
from .conditions import value_test
from .aggregation import Finished, _computed_only, _project_computed, accumulators, group_rows
from .deps import _expr_fields, filter_fields, union
from .keys import norm
from .sorting import bson_key, ordered_indices

#: the value types a column may hold (all immutable): a field with any other value is no column
SCALAR_TYPES = frozenset({str, int, float, bool, type(None), datetime, ObjectId, Int64, Decimal128})
_COLUMN_TYPES = SCALAR_TYPES | {type(NOTHING)}
_STR_OR_ABSENT = frozenset({str, type(NOTHING), type(None)})

_BAD = object()  # a value that makes a path no column

#: documents decoded per batch while building (bounds the transient memory)
_BATCH = 1024


class _Nested:
    """Stands for an embedded document in a top-level decode: pymongo's C decoder hands the
    bytes of a document to a ``document_class`` marked as raw (``_type_marker`` 101)
    instead of decoding it; this one keeps them (a raw column, see :class:`Columns`)."""

    __slots__ = ("raw",)
    _type_marker = 101

    def __init__(self, raw: Any, codec_options: Any) -> None:
        self.raw = raw


#: a field whose values are all embedded documents (or missing) is kept as a raw column
#: while its distinct values take at most this many bytes (a fixed bound: appending
#: documents never makes a field that is no raw column one, see :func:`extend`)
RAW_MAX_BYTES = 2 << 20
_NESTED_OR_ABSENT = frozenset({_Nested, type(NOTHING)})


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

    def __init__(self, version: int, documents: Any, keys: list, raws: list[bytes],
                 build: bool = True):
        self.version = version
        self.documents = documents
        self.keys = keys
        self.raws = raws
        self.n = n = len(raws)
        self.values: dict[str, list] = {}
        self.not_columns: set[str] = set()
        self.layouts: list[tuple[str, ...]] = []
        self.shapes: list[int] = []
        self._absent: list | None = None
        self._sort_keys: dict[str, list | None] = {}
        self._paths: dict[str, list | None] = {}
        #: the columns whose strings are kept once (few distinct values)
        self.shared: set[str] = set()
        #: raw columns: name -> each document's embedded document at ``name`` as its BSON
        #: bytes (one copy of each distinct value; NOTHING when missing), for the fields
        #: that are no columns because they hold embedded documents, when small (see
        #: ``RAW_MAX_BYTES``)
        self.raw: dict[str, list] = {}
        if not build:  # restore(): the caller fills the columns in
            return
        layout_ids: dict[tuple, int] = {}
        shared: dict[str, dict | bool] = {}  # name -> the one copy of each string, or False
        values, bad, shapes = self.values, self.not_columns, self.shapes
        raw_cols = self.raw
        raw_memo: dict[str, dict] = {}  # name -> the one copy of each distinct value
        raw_bytes: dict[str, int] = {}  # name -> bytes of its distinct values
        raw_bad: set[str] = set()
        raw_budget = RAW_MAX_BYTES
        for start in range(0, n, _BATCH):
            rows = [_top_level(raw) for raw in self.raws[start:start + _BATCH]]
            for row in rows:
                names = tuple(row)
                lid = layout_ids.get(names)
                if lid is None:
                    lid = layout_ids[names] = len(self.layouts)
                    self.layouts.append(names)
                shapes.append(lid)
            lids = shapes[start:]
            if lids and lids.count(lids[0]) == len(lids):  # one layout (the usual): transpose in C
                names = self.layouts[lids[0]]
                by_name = zip(names, zip(*map(dict.values, rows)))
            else:
                by_name = ((name, [row.get(name, NOTHING) for row in rows])
                           for name in set().union(*rows))
            for name, col in by_name:
                if name in bad:
                    if name not in raw_bad:
                        self._add_raw(name, col, start, raw_memo, raw_bytes, raw_budget, raw_bad)
                    continue
                kinds = set(map(type, col))
                if not kinds <= _COLUMN_TYPES:
                    bad.add(name)
                    if name in values:  # scalars before: no raw column either
                        del values[name]
                        raw_bad.add(name)
                    else:
                        self._add_raw(name, col, start, raw_memo, raw_bytes, raw_budget, raw_bad)
                    continue
                memo = shared.get(name)
                if memo is None:  # few distinct values (a site, a dataset): keep one of each
                    memo = shared[name] = {} if Decimal128 not in kinds \
                        and len(set(col)) * 4 <= len(col) else False
                if memo is not False:  # (only strings reach here in such a column's memo)
                    col = list(map(memo.setdefault, col, col)) if kinds <= _STR_OR_ABSENT \
                        else [memo.setdefault(v, v) if type(v) is str else v for v in col]
                have = values.get(name)
                if have is None:
                    have = values[name] = [NOTHING] * start
                have.extend(col)
            end = start + len(rows)
            for col in values.values():
                if len(col) < end:
                    col.extend([NOTHING] * (end - len(col)))
            for col in raw_cols.values():
                if len(col) < end:
                    col.extend([NOTHING] * (end - len(col)))
        self.shared = {name for name, memo in shared.items() if memo is not False and name in values}

    def _add_raw(self, name: str, col: list, start: int, memo: dict, sizes: dict, budget: int,
                 raw_bad: set) -> None:
        """Extend the raw column ``name`` with a batch's values (from document ``start``),
        or drop it for good when a value is no embedded document or it grows past
        ``budget`` bytes."""
        if not set(map(type, col)) <= _NESTED_OR_ABSENT:
            raw_bad.add(name)
            self.raw.pop(name, None)
            return
        seen = memo.get(name)
        if seen is None:
            seen = memo[name] = {}
            sizes[name] = 0
        out = []
        for v in col:
            if v is NOTHING:
                out.append(v)
                continue
            b = v.raw
            if type(b) is not bytes:  # a document spliced in place is stored as a buffer view
                b = bytes(b)
            one = seen.get(b)
            if one is None:
                one = seen[b] = b
                sizes[name] += len(b)
            out.append(one)
        if sizes[name] > budget:
            raw_bad.add(name)
            self.raw.pop(name, None)
            memo.pop(name)
            return
        have = self.raw.get(name)
        if have is None:
            have = self.raw[name] = [NOTHING] * start
        have.extend(out)

    def is_current(self, store: Any) -> bool:
        return self.version == store.version and self.documents is store._documents

    def has(self, fields: set | frozenset) -> bool:
        """Whether every one of ``fields`` is a column (a field no document has is one)."""
        return not (fields & self.not_columns)

    def servable(self, fields: set | frozenset) -> bool:
        """Whether :meth:`maker` can make ``fields``: each a column or a raw column."""
        raw = self.raw
        return all(f in raw for f in fields & self.not_columns)

    def column(self, name: str) -> list:
        col = self.values.get(name)
        if col is None:
            if name in self.not_columns:
                raise KeyError(name)
            col = self._absent
            if col is None:
                col = self._absent = [NOTHING] * self.n
        return col

    def path(self, path: str, build: bool) -> list | None:
        """The values at ``path`` (``attrs.num_events``) of every document, when in every
        document each part before the last is an embedded document or missing and the last
        a scalar or missing (NOTHING when anything on the way is missing: the one candidate
        value mongomock's filter then sees, as for a top-level field); None when that is not
        so or (``build`` false) it is not made yet. Made on first use with one decode of
        the top-level field in each document."""
        col = self._paths.get(path, NOTHING)
        if col is not NOTHING:
            return col
        if not build:
            return None
        parts = path.split(".")
        if len(parts) < 2 or not all(parts) or any(p.startswith("$") for p in parts) \
                or parts[0] not in self.not_columns:
            return None
        first, rest = parts[0], parts[1:]
        raw_col = self.raw.get(first)
        if raw_col is not None:  # each distinct embedded document decoded once
            col = self._raw_path(raw_col, rest)
            self._paths[path] = col
            return col
        decode = rawbson.fields_decoder({first})
        col = []
        for raw in self.raws:
            v = decode(raw).get(first, NOTHING)
            for name in rest:
                if v is NOTHING:
                    break
                if type(v) is not dict:
                    v = _BAD  # not a document on the way: no column
                    break
                v = v.get(name, NOTHING)
            if v is not NOTHING and type(v) not in SCALAR_TYPES:
                col = None
                break
            col.append(v)
        self._paths[path] = col
        return col

    @staticmethod
    def _raw_path(raw_col: list, rest: list[str]) -> list | None:
        """:meth:`path` below a raw column: the value at ``rest`` in each embedded document
        (decoded once per distinct one), as :meth:`path` walks it."""
        memo: dict = {NOTHING: NOTHING}
        decode = bson.decode
        for b in set(raw_col):
            if b is NOTHING:
                continue
            v: Any = decode(b)
            for name in rest:
                if v is NOTHING:
                    break
                if type(v) is not dict:
                    v = _BAD
                    break
                v = v.get(name, NOTHING)
            if v is not NOTHING and type(v) not in SCALAR_TYPES:
                return None
            memo[b] = v
        return list(map(memo.__getitem__, raw_col))

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
        """i -> document ``i``'s ``fields`` (columns or raw columns: :meth:`servable`), in
        the document's order: a fresh dict equal to what :func:`.rawbson.fields_decoder`
        decodes from its bytes (an embedded document decoded from its raw column)."""
        raw = self.raw
        if not (fields & raw.keys()):
            plans = [tuple((f, self.column(f)) for f in names if f in fields)
                     for names in self.layouts]
            shapes = self.shapes
            return lambda i: {f: col[i] for f, col in plans[shapes[i]]}
        decode = bson.decode
        mixed = [tuple((f, raw[f] if f in raw else self.column(f), f in raw)
                       for f in names if f in fields) for names in self.layouts]
        shapes = self.shapes
        return lambda i: {f: decode(col[i]) if is_raw else col[i]
                          for f, col, is_raw in mixed[shapes[i]]}


def columns_of(store: Any, build: bool) -> Columns | None:
    """The store's current columns; when ``build`` and they are not, restored from the
    persisted columns of this state (``store.columns_file``, see :func:`dump`) or else built
    now - and then handed to ``columns_file.write`` when it ``keep_builds`` - and kept."""
    cols = store.columns
    if cols is not None and cols.is_current(store):
        return cols
    if not build:
        return None
    version = store.version  # read before the snapshot: a write in between makes it stale
    documents = store._documents
    items = list(documents.items())  # one atomic snapshot
    keys = [k for k, _r in items]
    raws = [r for _k, r in items]
    del items
    persisted = store.columns_file
    if persisted is None or persisted.version != version:
        persisted = None
    with collector.paused():  # a few dicts per document, none kept (see .collector)
        cols = None
        if persisted is not None:
            payload = persisted.read()
            if payload is not None:
                cols = restore(version, documents, keys, raws, payload)
        if cols is None:
            cols = Columns(version, documents, keys, raws)
            if persisted is not None and persisted.keep_builds:
                persisted.write(dump(cols))
    store.columns = cols
    return cols


# --------------------------------------------------------------------------- persisted

#: the persisted form's version: change it with anything that changes what a build keeps
PERSIST_FORMAT = 2


def dump(cols: Columns) -> bytes:
    """The columns as BSON bytes (:func:`restore` reads them back for the same stored
    documents): the layouts, each document's layout, the names that are no columns, and
    each column's values (missing ones as null: the layouts say which are missing)."""
    return bson.encode({
        "format": PERSIST_FORMAT, "n": cols.n,
        "layouts": [list(names) for names in cols.layouts],
        "shapes": array("I", cols.shapes).tobytes(),
        "not_columns": sorted(cols.not_columns),
        "shared": sorted(cols.shared),
        "columns": [_dump_column(name, col, name in cols.shared)
                    for name, col in cols.values.items()],
        "raw": {name: _dump_raw(col) for name, col in cols.raw.items()},
        # the fields whose values the payload does not hold (an in-place change of one of
        # them leaves it valid): no column, no raw column
        "opaque": sorted(cols.not_columns - cols.raw.keys()),
    })


def extend(payload: bytes, keys: list, raws: list[bytes], n_old: int, in_place: set
           ) -> Columns | None:
    """The columns of the documents ``keys``/``raws`` whose first ``n_old`` are those the
    ``payload`` (:func:`dump`) was made from - changed since only in place in the fields
    ``in_place`` - and the rest were appended since: the payload restored, the appended
    documents built, and the two merged as one build of all of them makes them (a field is
    a column when it is one in both parts or missing from one, a raw column likewise while
    its distinct values fit ``RAW_MAX_BYTES``, else none; layouts in order of first
    appearance; the strings of a column kept once when the build would). A raw column
    changed in place is none any more (its old values are all the payload has). None when
    the payload is not a usable dump of ``n_old`` documents or a column changed in place."""
    if n_old > len(raws):
        return None
    with collector.paused():
        old = restore(0, None, keys[:n_old], raws[:n_old], payload)
        if old is None or in_place & old.values.keys():
            return None
        for name in in_place & old.raw.keys():
            del old.raw[name]
        new = Columns(0, None, keys[n_old:], raws[n_old:])
        return _merged(old, new, keys, raws)


def _merged(old: Columns, new: Columns, keys: list, raws: list[bytes]) -> Columns:
    """:func:`extend`'s merge of the columns of the first documents and of the rest."""
    n_old, n_new = old.n, new.n
    m = Columns(0, None, keys, raws, build=False)
    ids = {names: lid for lid, names in enumerate(old.layouts)}
    layouts = list(old.layouts)
    remap = []
    for names in new.layouts:  # the appended documents' new layouts, in their order
        lid = ids.get(names)
        if lid is None:
            lid = ids[names] = len(layouts)
            layouts.append(names)
        remap.append(lid)
    m.layouts = layouts
    m.shapes = old.shapes + list(map(remap.__getitem__, new.shapes))
    seen_old = set().union(*old.layouts) if old.layouts else set()
    seen_new = set().union(*new.layouts) if new.layouts else set()

    def kind(c: Columns, name: str, seen: set) -> str:
        if name not in seen:
            return ""
        return "col" if name in c.values else "raw" if name in c.raw else "none"

    for name in sorted(seen_old | seen_new):
        a, b = kind(old, name, seen_old), kind(new, name, seen_new)
        if a in ("col", "") and b in ("col", ""):
            m.values[name] = (old.values[name] if a else [NOTHING] * n_old) \
                + (new.values[name] if b else [NOTHING] * n_new)
            if a and name in old.shared:
                # the first batch holding it lies in the first part: decided there
                first = next(i for i, v in enumerate(old.values[name]) if v is not NOTHING)
                if first // _BATCH * _BATCH + _BATCH <= n_old:
                    m.shared.add(name)
                    continue
            if _shared_by_build(m.values[name]):
                m.shared.add(name)
            continue
        m.not_columns.add(name)
        if a in ("raw", "") and b in ("raw", ""):
            col = (old.raw[name] if a else [NOTHING] * n_old) + (new.raw[name] if b else [NOTHING] * n_new)
            distinct = set(col)
            distinct.discard(NOTHING)
            if sum(map(len, distinct)) <= RAW_MAX_BYTES:
                m.raw[name] = col
    return m


def _shared_by_build(col: list) -> bool:
    """Whether a build keeps the strings of column ``col`` once: decided on the first batch
    of documents that holds the field (see :class:`Columns`)."""
    first = next((i for i, v in enumerate(col) if v is not NOTHING), None)
    if first is None:
        return False
    start = first // _BATCH * _BATCH
    batch = col[start:start + _BATCH]
    return Decimal128 not in set(map(type, batch)) and len(set(batch)) * 4 <= len(batch)


def without_raw(payload: bytes, names: set) -> tuple[bytes, list[str]] | None:
    """(``payload`` without the raw columns ``names``, its new ``opaque`` list): what a
    persister keeps when writes changed those fields in place (their other columns stand);
    None when it is no such payload. Decodes only the raw columns."""
    try:
        spans = rawbson.locate(payload, {b"raw", b"opaque"})
        part = rawbson.decode_spans(payload, spans.values())
        raw, opaque = part["raw"], part["opaque"]
        kept = {k: v for k, v in raw.items() if k not in names}
        opaque = sorted(set(opaque) | (set(raw) - set(kept)))
        return rawbson.splice(payload, {"raw": kept, "opaque": opaque}, {"raw", "opaque"},
                              spans), opaque
    except Exception:  # noqa: BLE001 - not a payload
        return None


def _dump_raw(col: list) -> dict:
    """One raw column of :func:`dump`: its distinct values and each document's index among
    them (0 where it is missing: the layouts say where)."""
    index: dict = {}
    codes = array("I", [0 if b is NOTHING else index.setdefault(b, len(index)) for b in col])
    return {"distinct": list(index), "codes": codes.tobytes()}


def _is_document(b: Any) -> bool:
    """Whether ``b`` is framed as one BSON document (its length, its final NUL)."""
    return type(b) is bytes and len(b) >= 5 and b[-1] == 0 \
        and int.from_bytes(b[:4], "little") == len(b)


_NOTHING_OR_NONE = frozenset({type(None), type(NOTHING)})


def _dump_column(name: str, col: list, shared: bool) -> dict:
    """One column of :func:`dump`: a column of few distinct strings (``shared``) as the
    distinct ones and each document's index among them, any other as its values."""
    if shared:
        kinds = set(map(type, col))
        if kinds <= _STR_OR_ABSENT:
            if kinds & _NOTHING_OR_NONE:
                col = [None if v is NOTHING else v for v in col]
            index: dict = {}
            codes = array("I", map(index.setdefault, col, range(len(col))))
            # the first index of each value, renumbered 0, 1, ... in order of appearance
            renumber = {first: x for x, first in enumerate(index.values())}
            codes = array("I", map(renumber.__getitem__, codes))
            return {"name": name, "distinct": list(index), "codes": codes.tobytes()}
    return {"name": name, "values": [None if v is NOTHING else v for v in col]}


def restore(version: int, documents: Any, keys: list, raws: list[bytes], payload: bytes
            ) -> Columns | None:
    """The columns :func:`dump` wrote, for the snapshot ``keys``/``raws`` of the stored
    documents they were made from (the caller vouches for that: same bytes); None when the
    payload is not a consistent dump of ``len(raws)`` documents (the caller builds)."""
    try:
        doc = bson.decode(payload)
        n = len(raws)
        if doc.get("format") != PERSIST_FORMAT or doc.get("n") != n:
            return None
        layouts = [tuple(names) for names in doc["layouts"]]
        shapes = array("I")
        shapes.frombytes(doc["shapes"])
        shapes = shapes.tolist()
        not_columns = set(doc["not_columns"])
        names_seen = set().union(*layouts) if layouts else set()
        if len(shapes) != n or (shapes and max(shapes) >= len(layouts)) \
                or not all(type(x) is str for names in layouts for x in names):
            return None
        cols = Columns(version, documents, keys, raws, build=False)
        cols.layouts, cols.shapes, cols.not_columns = layouts, shapes, not_columns
        values = cols.values
        for entry in doc["columns"]:
            name = entry["name"]
            if "distinct" in entry:
                distinct = entry["distinct"]
                codes = array("I")
                codes.frombytes(entry["codes"])
                if not set(map(type, distinct)) <= _STR_OR_ABSENT \
                        or (codes and max(codes) >= len(distinct)):
                    return None
                col = list(map(distinct.__getitem__, codes))
            else:
                col = entry["values"]
                if not set(map(type, col)) <= SCALAR_TYPES:
                    return None
            if type(name) is not str or name in not_columns or name in values or len(col) != n:
                return None
            values[name] = col
        if set(values) | not_columns != names_seen or not not_columns <= names_seen:
            return None
        raw_cols = cols.raw
        for name, entry in doc["raw"].items():
            distinct = entry["distinct"]
            codes = array("I")
            codes.frombytes(entry["codes"])
            if type(name) is not str or name not in not_columns or name in raw_cols \
                    or len(codes) != n or not all(map(_is_document, distinct)) \
                    or (codes and max(codes) >= len(distinct)):
                return None
            raw_cols[name] = list(map(distinct.__getitem__, codes))
        for name, col in [*values.items(), *raw_cols.items()]:  # missing: written as null/0
            lacking = {lid for lid, names in enumerate(layouts) if name not in names}
            if lacking:
                for i, lid in enumerate(shapes):
                    if lid in lacking:
                        col[i] = NOTHING
        cols.shared = set(doc["shared"]) & set(values)
        return cols
    except Exception:  # noqa: BLE001 - anything unexpected: not a usable dump
        return None


# --------------------------------------------------------------------------- conditions

def _compile(spec: Mapping, cols: Columns, build: bool) -> Callable[[int], bool] | None:
    """i -> whether document ``i`` matches ``spec`` (None: ``spec`` reads a non-column)."""
    tests = []
    for key, search in spec.items():
        t = _clause(key, search, cols, build)
        if t is None:
            return None
        if t is not True:
            tests.append(t)
    if not tests:
        return lambda i: True
    if len(tests) == 1:
        return tests[0]
    return lambda i: all(t(i) for t in tests)


def _clause(key: Any, search: Any, cols: Columns, build: bool
            ) -> Callable[[int], bool] | bool | None:
    """The test of one top-level condition of a filter (True: always true, ``$comment``);
    ``build``: a path column it needs may be built now."""
    if not isinstance(key, str):
        return None
    if key == "$comment":
        return True
    if key in ("$and", "$or", "$nor"):
        if not isinstance(search, (list, tuple)) or not search \
                or not all(isinstance(q, dict) for q in search):
            return None
        subs = [_compile(q, cols, build) for q in search]
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
    if cols.has({field}):
        col = cols.column(field)
        test = value_test(key, search, field)
    else:
        col = cols.path(key, build)
        if col is None:
            return None
        test = value_test(key, search, key)
    return _OnColumn(col, test)


class _OnColumn:
    """i -> ``test(col[i])``: a condition on one column (or path column), which a selection
    can also apply to the whole column at once."""

    __slots__ = ("col", "test")

    def __init__(self, col: list, test: Callable[[Any], bool]):
        self.col = col
        self.test = test

    def __call__(self, i: int) -> bool:
        return self.test(self.col[i])


# --------------------------------------------------------------------------- selecting

class _Selection:
    """A filter split for one collection state: the tests of its top-level conditions on
    columns, and the rest (mongomock's to decide on decoded documents)."""

    def __init__(self, cols: Columns, spec: Mapping, build: bool):
        self.cols = cols
        self.spec = spec
        self.tests: list[Callable[[int], bool]] = []
        self.rest: dict = {}
        for key, search in spec.items():
            t = _clause(key, search, cols, build)
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

    def indices(self) -> list[int] | range:
        """The indices of the matching documents, in natural order (what :meth:`matches`
        gives, faster: each column condition is applied to its whole column in turn; when
        one raises, the documents are decided one by one as :meth:`candidates` does)."""
        if self.rest:
            return [i for i, _doc in self.matches(None)]
        n = self.cols.n
        chosen: Any = range(n)
        try:
            for t in self.tests:
                if type(t) is _OnColumn:
                    col, test = t.col, t.test
                    if type(chosen) is range:
                        chosen = [i for i, v in enumerate(col) if test(v)]
                    else:
                        chosen = [i for i in chosen if test(col[i])]
                else:
                    chosen = [i for i in chosen if t(i)]
        except Exception:  # noqa: BLE001 - the one by one path decides (and raises) as before
            return [i for i, _d in self.candidates()]
        return chosen

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
    return _Selection(cols, spec, build)


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
    ``build`` false (a write's scan) and no current columns. A read's documents hold
    ``needed`` and the fields the undecided conditions read; a write's also every field the
    filter reads, as the plain scan decodes them (an update applies itself to them)."""
    sel = _selection(store, spec, build)
    if sel is None:
        return None
    cols = sel.cols
    # a read's documents hold what the caller needs (and what the rest of the filter reads);
    # a write's also the fields of the whole filter, as the plain scan decodes them (an
    # update applies itself to that partial document)
    want = union(needed, sel.rest_fields if build else sel.spec_fields)
    from_columns = want is not None and cols.servable(want)
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
    sel = _sort_selection(store, spec, sort)
    if sel is None:
        return None
    with collector.paused():
        chosen = _sorted_indices(sel, sort, skip, limit)
    if chosen is None:
        return None
    raws = sel.cols.raws
    return [raws[i] for i in chosen]


def _sort_selection(store: Any, spec: Any, sort: list[tuple[str, Any]]) -> _Selection | None:
    """The selection of ``spec`` when it and the sort fields (top-level columns, numeric
    directions) are served by the columns; None otherwise."""
    if not sort or not all(isinstance(k, str) and not k.startswith("$") and "." not in k
                           and type(d) in (int, float) for k, d in sort):
        return None
    spec = _ready(store, spec)
    if spec is None:
        return None
    sel = _selection(store, spec, True)
    if sel is None or not sel.cols.has({k for k, _d in sort}):
        return None
    return sel


def _sorted_indices(sel: _Selection, sort: list[tuple[str, Any]], skip: int, limit: int
                    ) -> list[int] | None:
    """The indices of :func:`sorted_raws`' documents, in order."""
    cols = sel.cols
    keyed = [cols.sort_keys(k) for k, _d in sort]
    if any(kc is None for kc in keyed):
        return None
    chosen = sel.indices()
    top = skip + limit if limit else 0
    n = len(chosen)
    if n >= 2:
        reverse = [d < 0 for _k, d in sort]
        if len(keyed) == 1:
            kc = keyed[0]
            keys = [kc[i] for i in chosen]
        else:
            keys = [tuple(kc[i] for kc in keyed) for i in chosen]
        chosen = [chosen[j] for j in ordered_indices(keys, reverse, top)]
    return list(chosen[skip:top if limit else None])


# --------------------------------------------------------------------------- pipelines

def leading(store: Any, spec: Any, stages: list[tuple[str, Any]], needed: set | None
            ) -> tuple[Any, list[tuple[str, Any]]] | None:
    """(the documents or rows the first stages make, the stages left) for a pipeline whose
    ``$match`` was ``spec`` and whose input documents hold ``needed``, when its first stages
    run on the column cache: ``[$sort] $group`` (:func:`group`), a computed ``$project``
    (:func:`project`), or ``$sort`` then ``$limit`` (the first documents chosen on the
    columns as :func:`sorted_raws` does, only they decoded - or, when a computed
    ``$project`` follows, projected as :func:`project` does: the attribute dictionary's
    newest files); None otherwise."""
    out = group(store, spec, stages)
    if out is None and stages and stages[0][0] == "$project":
        out = project(store, spec, stages)
    if out is not None or len(stages) < 2 or stages[0][0] != "$sort" or stages[1][0] != "$limit":
        return out
    arg, limit = stages[0][1], stages[1][1]
    if not isinstance(arg, Mapping) or not arg or type(limit) is not int or limit <= 0:
        return None
    sort = list(arg.items())
    sel = _sort_selection(store, spec, sort)
    if sel is None:
        return None
    with collector.paused():
        chosen = _sorted_indices(sel, sort, 0, limit)
    if chosen is None:
        return None
    cols = sel.cols
    if len(stages) > 2 and stages[2][0] == "$project":  # a computed projection: memoized
        made = _projection(cols, stages[2][1], chosen)
        if made is not None:
            return made, stages[3:]
    if needed is not None and cols.servable(needed):
        return list(map(cols.maker(needed), chosen)), stages[1:]
    decode = rawbson.fields_decoder(needed)
    raws = cols.raws
    return [decode(raws[i]) for i in chosen], stages[1:]


# --------------------------------------------------------------------------- projecting

#: column values a computed ``$project`` is evaluated once for (keyed with their type:
#: ``1``, ``1.0`` and ``true`` apart); floats (``0.0`` and ``-0.0`` are one key) and
#: decimals are not memoized
_MEMO_KEY_TYPES = frozenset({str, bytes, int, bool, type(None), datetime, ObjectId, Int64,
                             type(NOTHING)})
#: distinct inputs remembered per pipeline at most (beyond: evaluated per document)
_MEMO_MAX = 4096
_FROZEN = frozenset({str, int, float, bool, type(None), datetime, ObjectId, Int64, Decimal128,
                     bytes})


def _fresh(v: Any) -> Any:
    """A copy of a computed value sharing nothing mutable with it."""
    t = type(v)
    if t is dict:
        return {k: _fresh(x) for k, x in v.items()}
    if t is list:
        return [_fresh(x) for x in v]
    if t in _FROZEN:
        return v
    return copy.deepcopy(v)


def project(store: Any, spec: Any, stages: list[tuple[str, Any]]
            ) -> tuple[Iterator[dict], list[tuple[str, Any]]] | None:
    """(output of the first stage, the stages left) for a pipeline whose ``$match`` was
    ``spec`` and whose next stage is a ``$project`` that only computes fields
    (:func:`.aggregation._computed_only`: the attribute dictionary's) from columns and raw
    columns: the expressions are evaluated once per distinct tuple of the values they read
    (an expression reads nothing but its document: same values, same result) and each
    document gets a fresh copy of its result, in natural order; a result that raised
    raises again at each document that reads the same values, as it would. None
    otherwise."""
    arg = stages[0][1]
    if _computed_only(arg) is None:
        return None
    spec = _ready(store, spec)
    if spec is None:
        return None
    sel = _selection(store, spec, True)
    if sel is None:
        return None
    made = _projection(sel.cols, arg, None, sel)
    return None if made is None else (made, stages[1:])


def _projection(cols: Columns, arg: Any, chosen: list[int] | None, sel: Any = None
                ) -> Iterator[dict] | None:
    """The documents the computed ``$project`` ``arg`` makes of the documents ``chosen``
    (or those ``sel`` selects), evaluated once per distinct input (see :func:`project`);
    None when it is no such projection or reads more than columns and raw columns."""
    computed = _computed_only(arg)
    if computed is None:
        return None
    reads = _expr_fields({k: v for k, v in arg.items() if k != "_id"})
    if reads is None or not cols.servable(reads):
        return None
    keyed = [cols.raw[f] if f in cols.raw else cols.column(f) for f in sorted(reads)]
    return _projected(sel.indices() if chosen is None else chosen, keyed, cols.maker(reads),
                      computed)


def _projected(chosen: Any, keyed: list[list], make: Callable[[int], dict],
               computed: list[tuple[str, Any]]) -> Iterator[dict]:
    memo: dict = {}
    types = _MEMO_KEY_TYPES
    for i in chosen:
        vals = [col[i] for col in keyed]
        kinds = tuple(map(type, vals))
        if not types.issuperset(kinds):
            yield from _project_computed((make(i),), computed)
            continue
        key = (*vals, *kinds)
        out = memo.get(key)
        if out is None:
            out = next(_project_computed((make(i),), computed))
            if len(memo) < _MEMO_MAX:
                memo[key] = out
            else:
                yield out
                continue
        yield _fresh(out)


# --------------------------------------------------------------------------- grouping

#: group keys whose sort before grouping cannot change the groups (see :func:`group`)
_GROUPABLE = frozenset({str, int, float, bool, type(None), datetime, ObjectId, Int64, type(NOTHING)})
_CONSTANT = (int, float, str, bool, type(None))
_NUMBERS = frozenset({int, float, Int64})
_NOTHING_TYPE = type(NOTHING)
_FINISHED = frozenset(mm_aggregate._GROUPING_OPERATOR_MAP) | {"$push", "$addToSet"}
#: the column value types that are numbers.Number (what mongomock's $sum adds up)
_SUMMED = frozenset({int, float, bool, Int64})


def _top_path(expr: Any) -> str | None:
    """``f`` for the field path ``"$f"`` of a top-level field, else None."""
    if isinstance(expr, str) and len(expr) > 1 and expr[0] == "$" and expr[1] != "$" \
            and "." not in expr:
        return expr[1:]
    return None


def _constant(expr: Any) -> bool:
    return type(expr) in _CONSTANT and not (type(expr) is str and expr.startswith("$"))


def group(store: Any, spec: Any, stages: list[tuple[str, Any]]
          ) -> tuple[list[dict], list[tuple[str, Any]]] | None:
    """(output of the leading stages, the stages left) for a pipeline whose ``$match`` was
    ``spec`` and whose next stages are ``[$sort {f: d}]? $group {...}`` whose ``_id`` is
    null, ``"$f"`` or an object of such paths (``{d: "$dataset", r: "$run"}``) and whose
    accumulators take constants or such paths, all on columns (the sidebar's facet counts,
    replica keys, run coverage): the groups are made on the column values, without
    documents; each group's members are in natural order, as the plain ``$group`` sees them.
    None otherwise.

    A ``$sort`` is allowed only before ``_id: "$f"`` by the same ``f`` with constant
    accumulators, and skipped: it cannot change the result. Every member adds the same
    value, so their order does not matter, and the documents a group gathers have equal
    sort keys (equal group keys are equal values: 1, 1.0 and Int64(1) compare equal, null
    and missing sort alike), so a stable sort keeps them in natural order, and the first -
    whose value becomes the group's ``_id`` - is the same. Not when a value has no native
    sort key or is NaN (the order could change then)."""
    i = 0
    sort_field = None
    if stages and stages[0][0] == "$sort":
        arg = stages[0][1]
        if not isinstance(arg, Mapping) or len(arg) != 1:
            return None
        (sort_field, d), = arg.items()
        if type(d) not in (int, float):
            return None
        i = 1
    if len(stages) <= i or stages[i][0] != "$group" or type(stages[i][1]) is not dict:
        return None
    options = stages[i][1]
    if "_id" not in options:
        return None
    _id = options["_id"]
    names: list[str] | None = None  # the names of an object _id
    if _id is None:
        key_fields: list[str] = []
    elif _top_path(_id) is not None:
        key_fields = [_top_path(_id)]
    elif type(_id) is dict and _id and all(isinstance(k, str) and not k.startswith("$")
                                           and _top_path(v) is not None for k, v in _id.items()):
        names = list(_id)
        key_fields = [_top_path(v) for v in _id.values()]
    else:
        return None
    if not all(type(v) is dict for k, v in options.items() if k != "_id"):
        return None
    accs = accumulators(options)
    if not all(op in _FINISHED and (_constant(e) or _top_path(e) is not None) for _f, op, e in accs):
        return None
    constants = all(_constant(e) for _f, _op, e in accs)
    if sort_field is not None and not (names is None and key_fields == [sort_field] and constants):
        return None
    spec = _ready(store, spec)
    if spec is None:
        return None
    sel = _selection(store, spec, True)
    acc_fields = {_top_path(e) for _f, _op, e in accs} - {None}
    if sel is None or not sel.cols.has(set(key_fields) | acc_fields):
        return None
    with collector.paused():
        rows = _group_rows_of(sel, key_fields, names, accs, constants, sort_field, _id is not None)
    return None if rows is None else (rows, stages[i + 1:])


def _group_rows_of(sel: _Selection, key_fields: list[str], names: list[str] | None,
                   accs: list[tuple[str, str, Any]], constants: bool, sort_field: str | None,
                   keyed: bool) -> list[dict] | None:
    """:func:`group`'s rows (None: the plain $group must decide)."""
    cols = sel.cols
    chosen = sel.indices()
    if type(chosen) is range:
        values = [list(col) for col in map(cols.column, key_fields)]
    else:
        values = [[col[j] for j in chosen] for col in map(cols.column, key_fields)]
    # typed keys are the groups themselves unless a column mixes number types or holds NaN
    # (1 and 1.0 are one group; NaN is one group to norm(), not to a dict)
    by_type = True
    for x, vals in enumerate(values):
        kinds = set(map(type, vals))
        if not kinds <= _GROUPABLE:  # Decimal128: unhashable (the plain $group decides)
            return None
        nan = float in kinds and any(v != v for v in vals if type(v) is float)
        if nan and sort_field is not None:
            return None
        if nan or len(kinds & _NUMBERS) > 1:
            by_type = False
        if names is None and _NOTHING_TYPE in kinds and type(None) in kinds:
            values[x] = [None if v is NOTHING else v for v in vals]  # "$f": missing is null
    # one key per (values, their types): 1, 1.0 and true are one dict key, not one group
    keys = list(zip(*values, *[list(map(type, v)) for v in values])) if key_fields else None
    members: dict
    if keys is None:
        members = {(): len(chosen) if constants else chosen}
    elif constants:
        members = Counter(keys)  # first occurrences first
    else:
        members = {}
        for j, k in zip(chosen, keys):
            m = members.get(k)
            if m is None:
                members[k] = [j]
            else:
                m.append(j)
    width = len(key_fields)
    # each group's sort key (group_rows' order), made from each column's keys of its values
    key_of: list[dict] = [{} for _f in key_fields]
    order: list | None = []
    groups: dict = {}
    for k, m in members.items():
        if keys is None:
            value, hk = None, None
        else:
            vals = k[:width]
            if names is None:
                value = None if vals[0] is NOTHING else vals[0]
            else:
                value = {n: v for n, v in zip(names, vals) if v is not NOTHING}
            hk = k if by_type else norm(value)
        g = groups.get(hk)
        if g is None:
            groups[hk] = [value, m]
            if order is not None and keys is not None:
                parts = []
                for x, v in enumerate(k[:width]):
                    if v is NOTHING and names is not None:
                        continue  # left out of the object
                    memo = key_of[x]
                    tk = (k[width + x], v)
                    bk = memo.get(tk)
                    if bk is None:
                        bk = memo[tk] = bson_key(None if v is NOTHING else v)
                        if bk is None:
                            order = None  # group_rows compares these itself
                            break
                    parts.append(bk if names is None else (bk[0], names[x], bk))
                else:
                    order.append(parts[0] if names is None else (20, tuple(parts)))
        elif constants:
            g[1] += m
        else:
            g[1] = sorted(g[1] + m)  # natural order, as the plain $group gathers them
    plans = [(op, e, None) if _constant(e) else (op, e, cols.column(_top_path(e)))
             for _f, op, e in accs]
    # $sum of a column without decimals: mongomock sums the members' numbers (the values
    # that are numbers.Number: int, float, bool, Int64) with sum(), in their order: so here
    plans = [(("$sum numbers" if op == "$sum" and col is not None
               and Decimal128 not in set(map(type, col)) else op), e, col)
             for op, e, col in plans]
    summed = _SUMMED
    finished = {}
    for hk, (value, m) in groups.items():
        per_acc = []
        for op, e, col in plans:
            if col is None:
                count = m if constants else len(m)
                if op == "$sum" and type(e) is int:  # mongomock sums the ints: exactly this
                    per_acc.append(Finished(e * count))
                else:
                    per_acc.append([e] * count)
            elif op == "$sum numbers":
                if len(m) == 1:
                    v = col[m[0]]
                    per_acc.append(Finished(sum([v]) if type(v) in summed else 0))
                else:
                    per_acc.append(Finished(sum([v for v in (col[j] for j in m)
                                                 if type(v) in summed])))
            elif len(m) == 1:
                v = col[m[0]]
                per_acc.append([] if v is NOTHING else [v])
            else:
                per_acc.append([v for v in (col[j] for j in m) if v is not NOTHING])
        finished[hk] = [value, per_acc]
    return group_rows(finished, [(f, op) for f, op, _e in accs], keyed,
                      order if keys is not None else None)
