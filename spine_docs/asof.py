"""The catalog as of a date: the files it held at that instant, with the values they had
then (``query``/``facets``/``attrs`` and each side of ``diff --left/--right`` with ``--as-of DATE``,
the explorer's "as of" control; :attr:`spine_docs.queries.Filter.as_of`).

**Evaluated client-side, and bounded by the catalog's size.** The candidates are the files
first seen at or before the instant (``ingest.first_seen <= at``: an index walk of
``{ingest.first_seen, _id}``); their kept versions are read per batch of 500 files
(``file_versions`` by ``{file_id, version}``), and a file with a version replaced after the
instant is rebuilt as it was then (:func:`spine_docs.history.document_as_of`). The rest of
the filter is then applied in Python (mongomock's matcher, on the rebuilt documents), and
the count, facets and exports are computed from the same stream. So an as-of query reads
every file known at that date: seconds per 10,000s of files, not an index lookup.

What it cannot know: a file whose version at the instant is no longer kept (beyond
``SPINE_DOCS_KEEP_VERSIONS``) is left out and counted in :attr:`AsOf.unknown`; files moved to
``files_archive`` (``prune``) are not read; ``ingest`` bookkeeping is the current one.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from mongomock.filtering import filter_applies

from . import history
from .queries import Filter

BATCH = 500


@dataclass
class AsOf:
    """The files ``flt`` selects as of ``flt.as_of``: iterate :meth:`documents` once; then
    ``matched``, ``candidates`` and ``unknown`` (files whose version then is not kept)."""
    db: Any
    flt: Filter
    candidates: int = 0
    matched: int = 0
    unknown: list = field(default_factory=list)

    def documents(self) -> Iterator[dict]:
        at = self.flt.as_of
        if at is None:
            raise ValueError("AsOf needs a filter with as_of")
        query = self.flt.model_copy(update={"as_of": None}).query()
        cursor = self.db.files.find({"ingest.first_seen": {"$lte": at}},
                                    sort=[("ingest.first_seen", 1), ("_id", 1)], batch_size=BATCH)
        batch: list[dict] = []
        for doc in cursor:
            batch.append(doc)
            if len(batch) >= BATCH:
                yield from self._batch(batch, at, query)
                batch = []
        if batch:
            yield from self._batch(batch, at, query)

    def _batch(self, docs: list[dict], at: Any, query: dict) -> Iterator[dict]:
        later = set()
        for v in self.db[history.VERSIONS].find({"file_id": {"$in": [d["_id"] for d in docs]}},
                                                {"file_id": 1, "replaced_at": 1}):
            if history._aware(v.get("replaced_at")) is not None and history._aware(v["replaced_at"]) > at:
                later.add(v["file_id"])
        for doc in docs:
            self.candidates += 1
            if doc["_id"] in later:
                try:
                    doc = history.document_as_of(self.db, doc, at)
                except history.HistoryError:
                    self.unknown.append(doc["_id"])
                    continue
                doc.pop("version", None)
            if filter_applies(query, doc):
                self.matched += 1
                yield doc


def documents(db: Any, flt: Filter) -> Iterator[dict]:
    """The documents ``flt`` selects as of ``flt.as_of`` (first-seen order)."""
    return AsOf(db, flt).documents()


def count(db: Any, flt: Filter) -> int:
    a = AsOf(db, flt)
    for _ in a.documents():
        pass
    return a.matched


def facets(db: Any, flt: Filter, fields: Sequence[str], limit: int = 20) -> dict[str, list[dict]]:
    """``{field: [{value, count}]}`` as :func:`spine_docs.queries.facets` (each field counted
    under the filter minus its own selection; by decreasing count, ties by value) over the
    documents as of ``flt.as_of``: one pass over the files the filter without any of these
    fields' selections selects."""
    base = flt.without(*fields)
    per_field = {f: flt.without(f).model_copy(update={"as_of": None}).query() for f in fields}
    counts: dict[str, Counter] = {f: Counter() for f in fields}
    for doc in documents(db, base):
        for f in fields:
            if filter_applies(per_field[f], doc):
                v = doc.get(f)
                counts[f][tuple(v) if isinstance(v, list) else v] += 1
    return {f: [{"value": v, "count": n} for v, n in
                sorted(c.items(), key=lambda kv: (-kv[1], order_key(kv[0])))[:limit]]
            for f, c in counts.items()}


def sorted_documents(db: Any, flt: Filter, sort: Any = "-mtime", limit: int | None = None) -> list[dict]:
    """The documents as of ``flt.as_of`` in the order ``sort`` names (as the live queries:
    ``-mtime``, ``run``, ...; ties by ``_id``), at most ``limit``. Sorted in memory: every
    matching document is held."""
    from .queries import sort_spec

    docs = list(documents(db, flt))
    for fld, direction in reversed(list(sort_spec(sort)) + [("_id", 1)]):
        docs.sort(key=lambda d: order_key(_get(d, fld)), reverse=direction < 0)
    return docs[:limit] if limit else docs


def export(db: Any, flt: Filter, fmt: str = "jsonl", *, sort: Any = "-mtime",
           limit: int | None = None) -> Iterator[str]:
    """The lines of :func:`spine_docs.queries.export` for the documents as of ``flt.as_of``."""
    from .queries import EXPORT_FORMATS, QueryError
    from .queries.exporting import EXPORT_COLUMNS, _export_lines

    if fmt not in EXPORT_FORMATS:
        raise QueryError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    cols = ("path",) if fmt == "paths" else tuple(EXPORT_COLUMNS) if fmt == "csv" else ()
    return _export_lines(db.files, sorted_documents(db, flt, sort, limit), flt, fmt, cols, None)


def page(db: Any, flt: Filter, *, sort: Any = "-mtime", size: int = 50, after: str | None = None,
         before: str | None = None, columns: Sequence[str] | None = None) -> Any:
    """One page of the documents as of ``flt.as_of`` (a :class:`spine_docs.queries.Page`,
    as :func:`spine_docs.queries.page` returns). The cursors are positions in the sorted
    documents (``@<n>``): the history is no index, so every page sorts them all again."""
    from .queries import TABLE_COLUMNS, Page, QueryError
    from .queries.pages import page_args

    sort, size = page_args(sort, size, after, before)
    start = 0
    cursor = after or before
    if cursor:
        if not (isinstance(cursor, str) and cursor.startswith("@") and cursor[1:].isdigit()):
            raise QueryError(f"not a cursor of an as-of page: {cursor!r}")
        start = int(cursor[1:]) if after else max(0, int(cursor[1:]) - size)
    docs = sorted_documents(db, flt, sort)
    cols = ("_id", *(columns or TABLE_COLUMNS))
    rows = [{c: d[c] for c in cols if c in d} for d in docs[start:start + size]]
    return Page(rows=rows, next_after=f"@{start + size}" if start + size < len(docs) else None,
                prev_before=f"@{start}" if start > 0 else None, sort=sort, size=size)


def attribute_dictionary(db: Any, flt: Filter, examples: int = 3, *,
                         max_docs: int | None = None) -> list[dict]:
    """:func:`spine_docs.queries.attribute_dictionary` of the documents as of ``flt.as_of``:
    their attributes (``attrs``, ``attr_types``, ``mtime``) are copied into an in-memory
    catalog and the same pipeline counts them there (so the rows are the live ones' shape
    and rules). Holds the attributes of every matching file."""
    from . import queries, store

    scratch = store.connect(f"mongomock://asof{uuid.uuid4().hex}")
    try:
        docs = [{k: d[k] for k in ("_id", "attrs", "attr_types", "mtime") if k in d}
                for d in documents(db, flt)]
        if docs:
            scratch.files.insert_many(docs)
        return queries.attribute_dictionary(scratch, Filter(include_retired=True), examples,
                                            max_docs=max_docs)
    finally:
        scratch.client.drop_database(scratch.name)


def _get(doc: dict, fld: str) -> Any:
    value: Any = doc
    for part in fld.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def order_key(value: Any) -> tuple:
    from .setdiff import order_key as key
    return key(value)
