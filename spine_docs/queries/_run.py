"""The runtime every executor shares: the collection a ``db`` argument names, ``find`` and
``aggregate`` with the server-only options (``allowDiskUse``, ``maxTimeMS``), the server's
time limit turned into :class:`QueryTimeout`, projections and dotted-path reads."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

import mongomock
import pymongo.collection
from pymongo.errors import ExecutionTimeout

from .errors import QueryTimeout

FILES = "files"

_COLLECTION_TYPES = (pymongo.collection.Collection, mongomock.collection.Collection)


def _collection(db: Any, name: str = FILES) -> Any:
    """``db[name]``; when ``db`` is already a collection, its sibling ``name``."""
    if isinstance(db, _COLLECTION_TYPES):
        return db if db.name == name else db.database[name]
    return db[name]


def _database(db: Any) -> Any:
    return db.database if isinstance(db, _COLLECTION_TYPES) else db


def _is_server(coll: Any) -> bool:
    return isinstance(coll, pymongo.collection.Collection)


@contextmanager
def _timeouts(max_time_ms: int | None) -> Iterator[None]:
    try:
        yield
    except ExecutionTimeout as exc:
        raise QueryTimeout(max_time_ms) from exc


def _aggregate(coll: Any, pipeline: list[dict], max_time_ms: int | None = None) -> list[dict]:
    kwargs: dict[str, Any] = {}
    if _is_server(coll):
        kwargs["allowDiskUse"] = True
        if max_time_ms:
            kwargs["maxTimeMS"] = int(max_time_ms)
    with _timeouts(max_time_ms):
        return list(coll.aggregate(pipeline, **kwargs))


def _find(coll: Any, query: dict, projection: Any = None, *, sort: list | None = None,
          limit: int = 0, max_time_ms: int | None = None, batch_size: int | None = None) -> Any:
    kwargs: dict[str, Any] = {}
    if sort:
        kwargs["sort"] = sort
    if limit:
        kwargs["limit"] = limit
    if batch_size:
        kwargs["batch_size"] = batch_size
    if max_time_ms and _is_server(coll):
        kwargs["max_time_ms"] = int(max_time_ms)
    return coll.find(query, projection, **kwargs)


def _projection(columns: Iterable[str], *, with_id: bool = True) -> dict:
    """An inclusion projection; a dotted path under another listed path is dropped (MongoDB
    refuses such path collisions)."""
    cols = list(dict.fromkeys(columns))
    keep = [c for c in cols if not any(c.startswith(o + ".") for o in cols if o != c)]
    proj = {c: 1 for c in keep}
    if "_id" not in proj:
        if with_id:
            proj = {"_id": 1, **proj}
        else:
            proj["_id"] = 0
    return proj


def _get(doc: Mapping, dotted: str) -> Any:
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur
