"""Hashable keys with MongoDB's equality (1 == 1.0, true != 1, key order matters).

Used for ``_id`` and unique-key hash lookups, the entries a document occupies in unique
indexes (and the duplicate-key message), and ``$group`` keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from bson.objectid import ObjectId
from mongomock import filtering as mm_filtering
from sentinels import NOTHING


NOKEY = object()


def norm(v: Any) -> Any:
    """A hashable key with MongoDB's equality (1 == 1.0, true != 1, key order matters)."""
    t = type(v)  # exact types first: the common cases, cheaply
    if t is str:
        return ("s", v)
    if t is int or t is float:
        return ("nan",) if v != v else ("n", v)
    if t is dict:
        return ("d", tuple([(k, norm(x)) for k, x in v.items()]))
    if v is None:
        return ("z",)
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, float)):
        return ("nan",) if v != v else ("n", v)
    if isinstance(v, Decimal128):
        d = v.to_decimal()
        return ("nan",) if d.is_nan() else ("n", d)
    if isinstance(v, Decimal):
        return ("nan",) if v.is_nan() else ("n", v)
    if isinstance(v, str):
        return ("s", v)
    if isinstance(v, Mapping):
        return ("d", tuple((k, norm(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return ("a", tuple(norm(x) for x in v))
    if isinstance(v, datetime):
        return ("t", v)
    if isinstance(v, (bytes, bytearray)):
        return ("y", bytes(v))
    if isinstance(v, ObjectId):
        return ("o", v)
    try:
        hash(v)
        return ("x", type(v).__name__, v)
    except TypeError:
        return ("r", type(v).__name__, repr(v))


def is_simple(v: Any) -> bool:
    """A value whose equality match can use a hash lookup."""
    t = type(v)
    return t is str or t is ObjectId or t is int or (t is float and v == v)


def index_entries(doc: Mapping, specs: list[tuple[str, dict]]) -> list[tuple[str, tuple]]:
    """(index name, key tuple) pairs a document occupies in unique indexes ``specs``."""
    out = []
    for name, ix in specs:
        pfe = ix.get("partialFilterExpression")
        if pfe is not None and not mm_filtering.filter_applies(pfe, doc):
            continue
        per_field = []
        present = False
        for field, _direction in ix["key"]:
            vals = []
            for cand in mm_filtering.iter_key_candidates(field, doc):
                if cand is NOTHING:
                    vals.append(norm(None))
                    continue
                present = True
                if isinstance(cand, list):
                    vals.extend(norm(x) for x in cand) if cand else vals.append(("u",))
                else:
                    vals.append(norm(cand))
            per_field.append(list(dict.fromkeys(vals)) or [norm(None)])
        if ix.get("sparse") and not present:
            continue
        for combo in itertools.product(*per_field):
            out.append((name, combo))
    return list(dict.fromkeys(out))


def show_key(uk: tuple) -> str:
    return ", ".join(repr(part[1]) if len(part) == 2 else repr(part[-1]) for part in uk)

