"""Sort orders: one native key per document instead of pairwise comparisons.

:func:`bson_key` reproduces mongomock's ``BsonComparable`` order (BSON type rank, then the
value); :func:`sort_list` orders documents by several fields with it, keeping only the
first ``top`` with a heap. Used by ``find().sort()``, ``$sort`` and ``$group``'s output.
"""

from __future__ import annotations

import heapq
from datetime import datetime
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from bson.objectid import ObjectId
from mongomock import filtering as mm_filtering
from sentinels import NOTHING


def bson_key(value: Any) -> tuple | None:
    """A native key that orders values as mongomock's ``BsonComparable`` does (BSON type
    rank first - null < numbers < strings < objects < arrays < binary < ObjectId < bool <
    date < regex -, then the value: numbers across int/float/Decimal/Decimal128, strings by
    code point, objects field by field as (type rank, name, value), arrays element by
    element, shorter first on a tie). None for a value it cannot key (the caller then falls
    back to mongomock's comparison)."""
    t = type(value)
    if t is str:
        return (15, value)
    if t is int or t is float:
        return (10, value)
    if t is datetime:
        return (45, value)
    if value is None:
        return (5, 0)
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
    if isinstance(value, (int, float, Decimal)):
        return (10, value)
    if isinstance(value, Decimal128):
        d = value.to_decimal()
        return None if d.is_nan() else (10, d)
    if isinstance(value, str):
        return (15, value)
    if isinstance(value, datetime):
        return None if value.tzinfo is not None else (45, value)
    if isinstance(value, bytes):
        return (30, (len(value), value))
    if isinstance(value, ObjectId):
        return (35, value)
    return None


_MISSING_KEY = (1, (5, 0))
_EMPTY_ARRAY_KEY = (0, (5, 0))


def _field_sort_key(key: str, doc: Any) -> tuple | None:
    """mongomock's ``resolve_sort_key(key, doc)`` as a native key: missing and null sort
    alike, an empty array before them, any other array as its first element."""
    if type(doc) is dict and "." not in key and key in doc:
        value = doc[key]
    else:
        value = mm_filtering.resolve_key(key, doc)
        if value is NOTHING:
            return _MISSING_KEY
    if isinstance(value, (tuple, list)):
        if not value:
            return _EMPTY_ARRAY_KEY
        value = value[0]
    k = bson_key(value)
    return None if k is None else (1, k)


def sort_list(entries: list, doc_of: Any, sort: list[tuple[str, Any]], top: int = 0) -> list:
    """``entries`` ordered like mongomock's multi-key sort of the documents ``doc_of(entry)``
    by ``sort`` ((key, direction) pairs; one stable pass per key, last key first), keeping
    only the first ``top`` when ``top`` > 0. One native key per entry; the first ``top``
    are selected with a heap instead of a full sort. Falls back to mongomock's comparison
    passes when a value has no native key."""
    reverse = [direction < 0 for _key, direction in sort]  # raises as mongomock does
    n = len(entries)
    if not sort or n < 2:
        return entries[:top] if top else entries
    names = [key for key, _d in sort]
    keys: list = []
    fsk = _field_sort_key
    if len(names) == 1:
        name = names[0]
        for e in entries:
            k = fsk(name, doc_of(e))
            if k is None:
                return _sort_fallback(entries, doc_of, sort, top)
            keys.append(k)
    else:
        for e in entries:
            doc = doc_of(e)
            k = tuple([fsk(name, doc) for name in names])
            if None in k:
                return _sort_fallback(entries, doc_of, sort, top)
            keys.append(k)
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
        pick = heapq.nlargest if rev else heapq.nsmallest
        order = pick(top, range(n), key=get)
    else:
        order = sorted(range(n), key=get, reverse=rev)
    return [entries[i] for i in order]


def _sort_fallback(entries: list, doc_of: Any, sort: list, top: int) -> list:
    out = list(entries)
    for key, direction in reversed(sort):
        out.sort(key=lambda x, key=key: mm_filtering.resolve_sort_key(key, doc_of(x)),
                 reverse=direction < 0)
    return out[:top] if top else out

