"""Saved queries: a filter (and other URL state such as the sort) kept under a name in the
catalog's ``saved_queries`` collection, shared by the CLI (``--saved``) and the explorer.

- ``save_query(db, name, flt, extra=None)``, ``list_queries(db)``, ``load_query(db, name) -> Filter``,
  ``delete_query(db, name) -> bool`` (collection ``saved_queries``; writes inside
  ``store.writing(db)``)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from spine_docs import store

from .errors import QueryError
from ._run import _collection, _database
from .filters import PARAM_KEYS, Filter
from .values import UTC

SAVED_QUERIES = "saved_queries"


def _query_name(name: str) -> str:
    n = (name or "").strip()
    if not n or len(n) > 200:
        raise QueryError("a saved query needs a name of 1 to 200 characters")
    return n


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def save_query(db: Any, name: str, flt: Filter, *, extra: Mapping[str, str] | None = None,
               overwrite: bool = True) -> dict:
    """Save ``flt`` (plus ``extra`` URL parameters such as the sort) under ``name``."""
    name = _query_name(name)
    coll = _collection(_database(db), SAVED_QUERIES)
    params = {str(k): str(v) for k, v in (extra or {}).items() if str(k) not in PARAM_KEYS}
    params.update(flt.to_params())
    with store.writing(_database(db)):
        old = coll.find_one({"_id": name})
        if old is not None and not overwrite:
            raise QueryError(f"a saved query named {name!r} exists")
        now = _now()
        doc = {"_id": name, "name": name, "params": params, "description": flt.describe(),
               "created": old.get("created", now) if old else now, "updated": now}
        coll.replace_one({"_id": name}, doc, upsert=True)
    return doc


def list_queries(db: Any) -> list[dict]:
    """Saved queries sorted by name: ``{"name", "description", "params", "created", "updated"}``."""
    coll = _collection(_database(db), SAVED_QUERIES)
    return [{k: d.get(k) for k in ("name", "description", "params", "created", "updated")}
            for d in coll.find({}, sort=[("name", 1)])]


def load_query(db: Any, name: str) -> Filter:
    """The Filter saved under ``name`` (KeyError when there is none)."""
    doc = _collection(_database(db), SAVED_QUERIES).find_one({"_id": _query_name(name)})
    if doc is None:
        raise KeyError(name)
    return Filter.from_params(doc.get("params") or {})


def delete_query(db: Any, name: str) -> bool:
    """Delete a saved query; False when it did not exist."""
    coll = _collection(_database(db), SAVED_QUERIES)
    with store.writing(_database(db)):
        return coll.delete_one({"_id": _query_name(name)}).deleted_count > 0
