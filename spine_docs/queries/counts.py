"""How many files match: in all (:func:`count`, :func:`total`) and per value of the facet
fields (:func:`facets`, Datasette style).

- ``count(db, flt) -> int``, ``total(db) -> int`` (estimated, O(1) on a server)
- ``facets(db, flt, fields=DEFAULT_FACETS, limit=50) -> {field: [{"value", "count"}]}``: each
  field counted under the filter minus its own selection (Datasette style); the selected values
  always appear. One index-backed aggregation per facet (never a ``$facet`` over the
  collection: its sub-pipelines use no index).
"""

from __future__ import annotations

from typing import Any, Sequence

from .errors import QueryError
from ._run import _aggregate, _collection, _is_server, _running
from .filters import FACET_FIELDS, NOT_RETIRED, Filter, _as_filter, _query

#: the retired files: served by the partial index that holds only them
RETIRED: dict = {"retired": {"$exists": True}}

DEFAULT_FACETS: tuple[str, ...] = ("site", "spine_version", "model", "dataset", "status")


def count(db: Any, flt: Filter | None = None, *, max_time_ms: int | None = None) -> int:
    """Number of files matching the filter (exact; the empty filter reads the collection's
    metadata count like :func:`total`)."""
    coll = _collection(db)
    query = _query(flt)
    if not query:
        return total(db)
    if query == NOT_RETIRED:  # all but the retired: the few retired ones are counted by their index
        kwargs = {"maxTimeMS": int(max_time_ms)} if max_time_ms and _is_server(coll) else {}
        with _running(coll, max_time_ms):
            return max(0, total(db) - coll.count_documents(RETIRED, **kwargs))
    kwargs = {"maxTimeMS": int(max_time_ms)} if max_time_ms and _is_server(coll) else {}
    with _running(coll, max_time_ms):
        return coll.count_documents(query, **kwargs)


def total(db: Any) -> int:
    """Number of files in the catalog (collection metadata on a server: O(1))."""
    return _collection(db).estimated_document_count()


def _facet_fields(fields: Sequence[str]) -> list[str]:
    bad = [f for f in fields if f not in FACET_FIELDS]
    if bad:
        raise QueryError(f"not a facet field: {', '.join(bad)} (choose from {', '.join(FACET_FIELDS)})")
    return list(dict.fromkeys(fields))


def facets_pipelines(flt: Filter | None, fields: Sequence[str] = DEFAULT_FACETS,
                     limit: int = 50) -> list[tuple[list[str], list[dict]]]:
    """``[([field], pipeline)]``: one aggregation per facet, each served by an index.

    A facet is counted under the filter minus its own selection. With no other condition the
    pipeline is ``$sort`` on the field then ``$group``, so that a server walks the field's
    index in order (covered: no document is fetched) instead of scanning the collection (no
    ``$facet``: its sub-pipelines can use no index). The retired files, hidden by default,
    are then not left out by a ``$match`` (that would fetch every document): the pipeline
    counts every file and keeps every value (no ``$limit``), and :func:`facets` subtracts
    the retired files' counts (:func:`retired_pipeline`, served by the partial index that
    holds only them). With other conditions it starts with the ``$match``, which the
    filter's index serves. Values come by count, the field's selected values first so that
    they survive the limit."""
    flt = _as_filter(flt)
    out = []
    for f in _facet_fields(fields):
        q = flt.without(f).query()
        selected = list(getattr(flt, f))
        minus_retired = q == NOT_RETIRED
        if not q or minus_retired:
            pipeline: list[dict] = [{"$sort": {f: 1}}]
        else:
            pipeline = [{"$match": q}]
        pipeline.append({"$group": {"_id": "$" + f, "count": {"$sum": 1}}})
        if minus_retired:  # every value: the limit is applied after the subtraction
            out.append(([f], pipeline))
            continue
        if selected:
            # $literal: a selected value such as "$oops" is a value, not a field path
            pipeline.append({"$addFields": {"selected": {"$in": ["$_id", {"$literal": selected}]}}})
            pipeline.append({"$sort": {"selected": -1, "count": -1, "_id": 1}})
        else:
            pipeline.append({"$sort": {"count": -1, "_id": 1}})
        pipeline.append({"$limit": int(limit)})
        out.append(([f], pipeline))
    return out


def retired_pipeline(field: str) -> list[dict]:
    """The retired files' count per value of ``field`` (the partial ``{retired: 1}`` index
    holds only them: few documents fetched)."""
    return [{"$match": RETIRED}, {"$group": {"_id": "$" + field, "count": {"$sum": 1}}}]


def _minus_retired(coll: Any, field: str, rows: list[dict], selected: list,
                   limit: int, max_time_ms: int | None) -> list[dict]:
    """Every file's counts of ``field`` (``rows``) minus the retired files', values left
    with none dropped; the selected values first, then by count, at most ``limit``."""
    retired = {_key(r["_id"]): r["count"] for r in _aggregate(coll, retired_pipeline(field), max_time_ms)}
    kept = []
    for r in rows:
        n = r["count"] - retired.get(_key(r["_id"]), 0)
        if n > 0:
            kept.append({"_id": r["_id"], "count": n})
    chosen = {_key(v) for v in selected}
    kept.sort(key=lambda r: (_key(r["_id"]) not in chosen, -r["count"], r["_id"] is not None, str(r["_id"])))
    return kept[:limit]


def _key(value: Any) -> tuple:
    """A group key as the server tells groups apart (1 and True are two groups)."""
    return (type(value) is bool, value) if isinstance(value, (bool, int, float)) else (None, repr(value))


def facets(db: Any, flt: Filter | None = None, fields: Sequence[str] = DEFAULT_FACETS,
           limit: int = 50, *, max_time_ms: int | None = None) -> dict[str, list[dict]]:
    """``{field: [{"value": v, "count": n}, ...]}`` by decreasing count (ties by value), at most
    ``limit`` values per field, each counted under the filter minus the field's own selection."""
    if not 1 <= limit < 2**63:
        raise QueryError("limit must be at least 1" if limit < 1 else "limit is too large")
    coll = _collection(db)
    result: dict[str, list[dict]] = {}
    flt = _as_filter(flt)
    for (f,), pipeline in facets_pipelines(flt, fields, limit):
        rows = _aggregate(coll, pipeline, max_time_ms)
        if flt.without(f).query() == NOT_RETIRED:
            rows = _minus_retired(coll, f, rows, list(getattr(flt, f)), int(limit), max_time_ms)
        values = [{"value": r["_id"], "count": r["count"]} for r in rows]
        values.sort(key=lambda v: (-v["count"], v["value"] is not None, str(v["value"])))
        result[f] = values
    return {f: result[f] for f in _facet_fields(fields)}
