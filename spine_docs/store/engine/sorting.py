"""Sort orders: one native key per document instead of pairwise comparisons.

:func:`bson_key` orders single values as a MongoDB server compares them (BSON type rank, then
the value); :func:`sort_list` orders documents by several fields as a server's sort does -
a field holding an array sorts by its smallest element ascending and its largest
descending, an empty array below null and missing - keeping only the first ``top`` with a
heap. Used by ``find().sort()``, ``$sort`` and ``$group``'s output.
"""

from __future__ import annotations

import heapq
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from bson.code import Code
from bson.decimal128 import Decimal128
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.regex import Regex
from bson.timestamp import Timestamp
from mongomock import filtering as mm_filtering
from sentinels import NOTHING

#: the sort key of null and of a missing field
_NULL_KEY = (5, 0)
#: the sort key of an empty array: BSON "undefined", below null (a server indexes an empty
#: array as undefined, and sorts as an index over the sort fields would order)
_EMPTY_ARRAY_KEY = (0, 0)
#: stands for an empty array among the values a path reaches
_EMPTY = object()


class _NaN:
    """Sorts below every number and equal to itself: a server's place for NaN."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return other is self

    def __lt__(self, other: object) -> bool:
        return other is not self

    def __gt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return True

    def __ge__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "NaN"


_NAN_KEY = (10, _NaN())
#: a regular expression's flags as BSON writes them (letters in alphabetical order)
_RE_FLAGS = ((re.IGNORECASE, "i"), (re.LOCALE, "l"), (re.MULTILINE, "m"), (re.DOTALL, "s"),
             (re.UNICODE, "u"), (re.VERBOSE, "x"))


def bson_key(value: Any) -> tuple | None:
    """A native key that orders values as a MongoDB server compares them: BSON type rank
    first - MinKey < null < numbers < strings < objects < arrays < binary < ObjectId < bool <
    date < timestamp < regex < code < MaxKey -, then the value: numbers across
    int/float/Decimal/Decimal128 (NaN below all), strings by code point (= UTF-8 bytes),
    objects field by field as (type rank, name, value), arrays element by element, shorter
    first on a tie, binary by length, then subtype, then bytes, regexes by pattern, then
    flags. None for a value it cannot key (tz-aware dates, code with scope, DBRefs, ...: the
    caller then falls back to mongomock's comparison)."""
    t = type(value)
    if t is str:
        return (15, value)
    if t is int:
        return (10, value)
    if t is float:
        return (10, value) if value == value else _NAN_KEY
    if t is datetime:
        return (45, value)
    if value is None:
        return _NULL_KEY
    if t is bool:
        return (40, value)
    if t is ObjectId:
        return (35, value)
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            kv = bson_key(v)
            if kv is None:
                return None
            parts.append((kv[0], k, kv))
        return (20, tuple(parts))
    if isinstance(value, (list, tuple)):
        parts = []
        for v in value:
            kv = bson_key(v)
            if kv is None:
                return None
            parts.append(kv)
        return (25, tuple(parts))
    if isinstance(value, bool):
        return (40, value)
    if isinstance(value, (int, float)):
        return (10, value) if value == value else _NAN_KEY
    if isinstance(value, Decimal):
        return _NAN_KEY if value.is_nan() else (10, value)
    if isinstance(value, Decimal128):
        d = value.to_decimal()
        return _NAN_KEY if d.is_nan() else (10, d)
    if isinstance(value, Code):  # a str subclass: before str
        return (60, str(value)) if value.scope is None else None
    if isinstance(value, str):
        return (15, value)
    if isinstance(value, datetime):
        return None if value.tzinfo is not None else (45, value)
    if isinstance(value, bytes):  # bytes is subtype 0; bson's Binary carries its subtype
        return (30, (len(value), getattr(value, "subtype", 0), bytes(value)))
    if isinstance(value, ObjectId):
        return (35, value)
    if isinstance(value, Timestamp):
        return (47, (value.time, value.inc))
    if isinstance(value, (Regex, re.Pattern)):
        pattern = value.pattern
        if isinstance(pattern, bytes):
            pattern = pattern.decode("utf-8", "surrogateescape")
        flags = value.flags
        return (50, (pattern, "".join(c for bit, c in _RE_FLAGS if flags & bit)))
    if isinstance(value, MinKey):
        return (-1, 0)
    if isinstance(value, MaxKey):
        return (127, 0)
    return None


def _path_values(key: str, doc: Any) -> list:
    """The values a sort on ``key`` considers in ``doc``: the value at the path, or an array's
    elements in its place (one level: an array inside the array is one value; ``_EMPTY`` for
    an empty array); through arrays of documents, every value the path reaches, null for a
    document lacking the field. The path resolves as mongomock's does
    (``iter_key_candidates``: elements that are not documents are skipped). [] when
    nothing is there (missing)."""
    out: list = []
    for value in mm_filtering.iter_key_candidates(key, doc):
        if value is NOTHING:
            out.append(None)
        elif isinstance(value, (list, tuple)):
            if value:
                out.extend(value)
            else:
                out.append(_EMPTY)
        else:
            out.append(value)
    return out


def _array_key(values: Any, desc: bool) -> tuple | None:
    """The sort key of several values: the smallest (largest when ``desc``)."""
    keys = [_EMPTY_ARRAY_KEY if v is _EMPTY else bson_key(v) for v in values]
    if None in keys:
        return None
    return max(keys) if desc else min(keys)


def _top_field_key(key: str, doc: Any, desc: bool) -> tuple | None:
    """The native sort key of top-level field ``key`` (no dot) of ``doc``."""
    if type(doc) is not dict:
        return _path_field_key(key, doc, desc)
    value = doc.get(key)
    if not isinstance(value, (list, tuple)):
        return bson_key(value)  # missing and null alike
    if not value:
        return _EMPTY_ARRAY_KEY
    return _array_key(value, desc)


def _path_field_key(key: str, doc: Any, desc: bool) -> tuple | None:
    """The native sort key of field ``key`` (any path) of ``doc``."""
    values = _path_values(key, doc)
    if not values:
        return _NULL_KEY
    if len(values) == 1:
        v = values[0]
        return _EMPTY_ARRAY_KEY if v is _EMPTY else bson_key(v)
    return _array_key(values, desc)


def sort_list(entries: list, doc_of: Any, sort: list[tuple[str, Any]], top: int = 0) -> list:
    """``entries`` ordered by the documents ``doc_of(entry)`` as a server sorts by ``sort``
    ((key, direction) pairs; a field's key is its value, or for an array its smallest
    element ascending and its largest descending; ties keep the entries' order), keeping
    only the first ``top`` when ``top`` > 0. One native key per entry; the first ``top`` are
    selected with a heap instead of a full sort. Falls back to pairwise comparisons
    (mongomock's, on the same per-field values) when a value has no native key."""
    reverse = [direction < 0 for _key, direction in sort]  # raises as mongomock does
    n = len(entries)
    if not sort or n < 2:
        return entries[:top] if top else entries
    fields = [(_path_field_key if "." in key else _top_field_key, key, desc)
              for (key, _d), desc in zip(sort, reverse)]
    keys: list = []
    if len(fields) == 1:
        (fk, name, desc), = fields
        for e in entries:
            k = fk(name, doc_of(e), desc)
            if k is None:
                return _sort_fallback(entries, doc_of, sort, top)
            keys.append(k)
    else:
        for e in entries:
            doc = doc_of(e)
            k = tuple([fk(name, doc, desc) for fk, name, desc in fields])
            if None in k:
                return _sort_fallback(entries, doc_of, sort, top)
            keys.append(k)
    return [entries[i] for i in ordered_indices(keys, reverse, top)]


def ordered_indices(keys: list, reverse: list[bool], top: int = 0) -> list[int]:
    """The positions of ``keys`` (one native key per entry: a value for one field, a tuple
    for several, ``reverse[i]`` true where field ``i`` descends) in sort order, ties in
    their order; only the first ``top`` (selected with a heap) when ``top`` > 0."""
    n = len(keys)
    if len(set(reverse)) > 1:
        # mixed directions: a descending field's key becomes minus its rank among the
        # field's distinct keys, so that one ascending native key orders everything
        columns = list(zip(*keys))
        for i, r in enumerate(reverse):
            if r:
                rank = {k: -j for j, k in enumerate(sorted(set(columns[i])))}
                columns[i] = [rank[k] for k in columns[i]]
        keys = list(zip(*columns))
        rev = False
    else:
        rev = reverse[0]
    get = keys.__getitem__
    if top and top < n:
        return (heapq.nlargest if rev else heapq.nsmallest)(top, range(n), key=get)
    return sorted(range(n), key=get, reverse=rev)


def _fallback_key(key: str, doc: Any, desc: bool) -> tuple:
    """The sort key of ``key`` in ``doc`` with mongomock's pairwise comparison
    (``BsonComparable``), for values :func:`bson_key` cannot key: the same values and the
    same smallest/largest rule as the native keys."""
    values = _path_values(key, doc)
    if not values:
        return (1, mm_filtering.BsonComparable(None))
    keys = [(0, mm_filtering.BsonComparable(None)) if v is _EMPTY
            else (1, mm_filtering.BsonComparable(v)) for v in values]
    return max(keys) if desc else min(keys)


def _sort_fallback(entries: list, doc_of: Any, sort: list, top: int) -> list:
    out = list(entries)
    for key, direction in reversed(sort):
        desc = direction < 0
        out.sort(key=lambda x, key=key, desc=desc: _fallback_key(key, doc_of(x), desc),
                 reverse=desc)
    return out[:top] if top else out
