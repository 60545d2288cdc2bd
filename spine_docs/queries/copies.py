"""Replicas: contents (same ``fingerprint`` or same ``checksum.sha256``) catalogued at more than
one path or site among the matching files.

- ``replicas(db, flt=None, limit=100, key="fingerprint"|"checksum") -> [{"key", "count", "sites",
  "files"}]``: contents present more than once among the matching files
"""

from __future__ import annotations

from typing import Any

from .errors import QueryError
from ._run import _aggregate, _collection, _find, _get, _running
from .filters import Filter, _query, and_queries

REPLICA_KEYS = {"fingerprint": "fingerprint", "checksum": "checksum.sha256"}


def replicas_pipeline(flt: Filter | None = None, limit: int = 100,
                      key: str = "fingerprint") -> list[dict]:
    if key not in REPLICA_KEYS:
        raise QueryError(f"key must be one of {', '.join(REPLICA_KEYS)}")
    f = REPLICA_KEYS[key]
    # only non-empty string keys ({$gt: ""} also bounds a scan of the key's index, so a server
    # never reads the whole collection: files without a key are not even fetched); one
    # $group on the key alone (the sites are read with the members)
    return [
        {"$match": and_queries(_query(flt), {f: {"$gt": ""}})},
        {"$group": {"_id": "$" + f, "count": {"$sum": 1}}},
        {"$match": {"count": {"$gt": 1}}},
        {"$sort": {"count": -1, "_id": 1}},
        {"$limit": int(limit)},
    ]


REPLICA_COLUMNS = ("_id", "site", "path", "size", "mtime", "status")


def replicas(db: Any, flt: Filter | None = None, limit: int = 100, *, key: str = "fingerprint",
             max_time_ms: int | None = None) -> list[dict]:
    """Contents (same ``fingerprint``, or same ``checksum.sha256``) present at more than one
    path or site among the matching files, most copies first: ``{"key", "count", "sites":
    [site, ...], "files": [{"_id", "site", "path", "size", "mtime", "status"}]}``."""
    coll = _collection(db)
    groups = _aggregate(coll, replicas_pipeline(flt, limit, key), max_time_ms)
    if not groups:
        return []
    f = REPLICA_KEYS[key]
    values = [g["_id"] for g in groups]
    q = and_queries(_query(flt), {f: {"$in": values}})
    members: dict[str, list[dict]] = {v: [] for v in values}
    projection = {c: 1 for c in REPLICA_COLUMNS} | {f: 1}
    with _running(coll, max_time_ms):
        for doc in _find(coll, q, projection, sort=[("site", 1), ("path", 1)],
                         max_time_ms=max_time_ms):
            members[_get(doc, f)].append({c: doc.get(c) for c in REPLICA_COLUMNS})
    return [{"key": g["_id"], "count": g["count"],
             "sites": sorted({m["site"] for m in members[g["_id"]]}, key=str),
             "files": members[g["_id"]]} for g in groups]
