"""Export: every matching file streamed as jsonl, csv or a list of paths, from one cursor.

- ``export(db, flt, fmt="jsonl"|"csv"|"paths", columns=None, sort=("_id", 1), batch_size=500)
  -> Iterator[str]``: lines (each ending in ``\\n``) streamed from one cursor; csv and paths start
  with ``#`` comment lines naming the filter; jsonl is MongoDB relaxed Extended JSON of the
  stored documents.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, Iterator, Sequence

from .errors import QueryError
from ._run import _collection, _find, _get, _projection, _running
from .filters import Filter, _as_filter, _query
from .pages import sort_spec
from .values import _format_when, _to_json

EXPORT_COLUMNS: tuple[str, ...] = (
    "_id", "site", "path", "name", "dir", "size", "mtime", "status", "error", "spine_version",
    "prod_version", "model", "dataset", "detector", "config", "run", "run_max", "subrun",
    "subrun_max", "event_min", "event_max", "num_events", "format", "format_version", "complete",
    "fingerprint", "checksum.sha256",
)
EXPORT_FORMATS: tuple[str, ...] = ("jsonl", "csv", "paths")


def export_header(flt: Filter | None) -> list[str]:
    """The ``#`` comment lines at the top of csv and paths exports."""
    flt = _as_filter(flt)
    # a value with a line break must not end the comment line: the next would be read as a path
    text = flt.describe().replace("\r", "\\r").replace("\n", "\\n")
    return [f"# spine-docs export: {text}\n", f"# query: {_to_json(flt.to_mongo())}\n"]


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _format_when(value)
    if isinstance(value, (dict, list)):
        return _to_json(value)
    return str(value)


def _csv_line(values: Sequence[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_csv_cell(v) for v in values])
    return buf.getvalue()


def export(db: Any, flt: Filter | None = None, fmt: str = "jsonl", *,
           columns: Sequence[str] | None = None, sort: str | Sequence | None = ("_id", 1),
           batch_size: int = 500, limit: int | None = None,
           max_time_ms: int | None = None) -> Iterator[str]:
    """Every matching file, streamed as text lines from one cursor (never all in memory).

    ``jsonl``: one relaxed Extended JSON document per line (the stored document, or only
    ``columns``); ``csv``: comment lines, a header row and one row per file (``EXPORT_COLUMNS``
    by default; nested values as JSON); ``paths``: comment lines then one path per line.
    ``max_time_ms`` is off by default: a full export legitimately takes long.
    """
    if fmt not in EXPORT_FORMATS:
        raise QueryError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    if limit is not None and not 0 <= limit < 2**63:
        raise QueryError("limit must be between 0 and 2**63 - 1")
    coll = _collection(db)
    query = _query(flt)
    spec = None
    if sort is not None:
        spec = sort_spec(sort)
    if fmt == "paths":
        cols: Sequence[str] = ("path",)
        projection: Any = _projection(cols, with_id=False)
    elif fmt == "csv":
        cols = tuple(columns or EXPORT_COLUMNS)
        projection = _projection(cols, with_id=False)
    else:
        cols = tuple(columns or ())
        projection = _projection(cols, with_id=False) if cols else None
    with _running(coll, max_time_ms):
        cursor = _find(coll, query, projection, sort=spec, limit=limit or 0,
                       batch_size=batch_size, max_time_ms=max_time_ms)
    return _export_lines(coll, cursor, flt, fmt, cols, max_time_ms)


def _export_lines(coll: Any, cursor: Any, flt: Filter | None, fmt: str, cols: Sequence[str],
                  max_time_ms: int | None) -> Iterator[str]:
    if fmt in ("csv", "paths"):
        yield from export_header(flt)
    if fmt == "csv":
        yield _csv_line(cols)
    docs = iter(cursor)
    while True:
        with _running(coll, max_time_ms):  # only the database's part: not the formatting
            doc = next(docs, None)
        if doc is None:
            return
        if fmt == "jsonl":
            yield _to_json(doc) + "\n"
        elif fmt == "csv":
            yield _csv_line([_get(doc, c) for c in cols])
        else:
            yield f"{doc.get('path')}\n"
