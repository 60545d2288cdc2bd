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
from .filters import FACET_FIELDS, NOT_RETIRED, Filter, _as_filter, _query, only_hidden

#: the retired files: served by the partial index that holds only them
RETIRED: dict = {"retired": {"$exists": True}}
#: the superseded files that are not retired (the partial index on superseded_by)
SUPERSEDED_NOT_RETIRED: dict = {"superseded_by": {"$exists": True}, **NOT_RETIRED}

DEFAULT_FACETS: tuple[str, ...] = ("site", "spine_version", "model", "dataset", "status")


def count_queries(flt: Filter | Any = None) -> list[dict]:
    """The queries :func:`count` sends for ``flt`` and sums (the excluded ones subtracted
    from the metadata total when the filter is nothing but the default exclusions): ``[]``
    when it reads the collection's metadata count only."""
    query = _query(flt)
    if not query:
        return []
    if only_hidden(query):  # all but the retired and/or superseded: those few, by their indexes
        out = [RETIRED] if "retired" in query else []
        if "superseded_by" in query:
            out.append(SUPERSEDED_NOT_RETIRED if "retired" in query else {"superseded_by": {"$exists": True}})
        return out
    return [query]


def count(db: Any, flt: Filter | None = None, *, max_time_ms: int | None = None) -> int:
    """Number of files matching the filter (exact; the empty filter reads the collection's
    metadata count like :func:`total`; a filter of only the default exclusions counts the
    few excluded files by their partial indexes and subtracts them from it)."""
    coll = _collection(db)
    query = _query(flt)
    sent = count_queries(flt)
    if not sent:
        return total(db)
    kwargs = {"maxTimeMS": int(max_time_ms)} if max_time_ms and _is_server(coll) else {}
    with _running(coll, max_time_ms):
        if only_hidden(query):
            return max(0, total(db) - sum(coll.count_documents(q, **kwargs) for q in sent))
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
        minus_retired = _minus_retired_case(flt, f)
        if not q or minus_retired:
            pipeline: list[dict] = [{"$sort": {f: 1}}]
        elif only_hidden(q):  # the field's index in order, the excluded ones skipped as fetched
            pipeline = [{"$sort": {f: 1}}, {"$match": q}]
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


def _minus_retired_case(flt: Filter, field: str) -> bool:
    """Whether ``field``'s facet counts every file and has the retired ones subtracted
    (the filter, without the field's own selection, is only the default exclusion)."""
    return flt.without(field).query() == NOT_RETIRED


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
        if _minus_retired_case(flt, f):
            rows = _minus_retired(coll, f, rows, list(getattr(flt, f)), int(limit), max_time_ms)
        values = [{"value": r["_id"], "count": r["count"]} for r in rows]
        values.sort(key=lambda v: (-v["count"], v["value"] is not None, str(v["value"])))
        result[f] = values
    return {f: result[f] for f in _facet_fields(fields)}


#: the statuses ``spine-docs verify`` records (:data:`spine_docs.extract.LIFECYCLE_STATUSES`)
LIFECYCLE_COUNTED: tuple[str, ...] = ("missing", "changed", "corrupt")


def lifecycle_pipelines() -> list[tuple[str, list[dict]]]:
    """``[("status", pipeline), ("retired", pipeline)]``: the files with a verify verdict
    by site and status (the status index bounds the ``$match``) and the retired files by
    site (the partial index that holds only them). Retired or not, every document counts:
    these are the catalog's documents as they stand, not a filter's view."""
    by_status = [{"$match": {"status": {"$in": list(LIFECYCLE_COUNTED)}}},
                 {"$group": {"_id": {"site": "$site", "status": "$status"}, "count": {"$sum": 1}}}]
    retired = [{"$match": dict(RETIRED)}, {"$group": {"_id": "$site", "count": {"$sum": 1}}}]
    return [("status", by_status), ("retired", retired)]


def lifecycle_counts(db: Any, *, max_time_ms: int | None = None) -> dict[Any, dict[str, int]]:
    """``{site: {"missing", "changed", "corrupt", "retired"}}`` for every site that has at
    least one such file (sites in sorted order; a site of ``None`` last)."""
    coll = _collection(db)
    out: dict[Any, dict[str, int]] = {}

    def row(site: Any) -> dict[str, int]:
        return out.setdefault(site, {**{s: 0 for s in LIFECYCLE_COUNTED}, "retired": 0})

    for kind, pipeline in lifecycle_pipelines():
        for r in _aggregate(coll, pipeline, max_time_ms):
            if kind == "status":
                key = r["_id"] or {}
                row(key.get("site"))[key.get("status")] += r["count"]
            else:
                row(r["_id"])["retired"] += r["count"]
    return {s: out[s] for s in sorted(out, key=lambda s: (s is None, str(s)))}
