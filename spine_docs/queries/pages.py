"""Browsing: keyset pages of the matching files in a chosen order, their opaque cursors, and
one file's document (:func:`get_file`).

- ``page(db, flt, sort=("mtime", -1), size=50, after=None, before=None, columns=TABLE_COLUMNS)
  -> Page(rows, next_after, prev_before, sort, size)``: keyset pagination on (sort field,
  tie-breaker) - the tie-breaker is ``_id``, or ``site`` for the path sort (path and site are
  unique together) - nulls first ascending / last descending like MongoDB; cursors are opaque
  URL-safe strings bound to their sort order. ``sort`` is a name of ``SORT_FIELDS`` with a
  direction, or text (``"-mtime"``; :func:`parse_sort` / :func:`format_sort`). ``iter_pages``
  walks all pages. Every sort is served by a schema.json index on (field, tie-breaker), walked
  forwards or backwards: a page is an index walk, never a collection scan and an in-memory
  sort (``sort_spec`` gives the spec; tests/test_query_plans.py holds it).
- ``get_file(db, id_or_path, site=None, unescape=False) -> dict | None``;
  ``unescape_document(doc)`` gives attrs/cfg/... back their original keys for display.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field as dc_field
from typing import Any, Iterator, Mapping, Sequence

from bson import json_util

from spine_docs import convert

from .errors import QueryError
from ._run import _collection, _find, _get, _projection, _running
from .filters import Filter, _query, and_queries
from .values import _from_json

# User-facing sort name -> document field (spine_version sorts by its semver key). Only
# fields holding one BSON type (plus null): keyset conditions ($gt/$lt) never cross types, so a
# mixed-type field such as format_version would lose rows between pages. Only fields that a
# schema.json index serves together with their tie-breaker: a sort no index serves is a
# collection scan and an in-memory sort on a million files, so it is not offered.
SORT_FIELDS: dict[str, str] = {
    "mtime": "mtime", "path": "path", "size": "size", "spine_version": "spine_version_key",
    "run": "run", "num_events": "num_events", "first_seen": "ingest.first_seen",
    "last_seen": "ingest.last_seen", "_id": "_id",
}
#: the second sort key that makes an order total (default ``_id``); the path sort uses
#: ``site``, which the unique {path, site} index holds
TIE_BREAKERS: dict[str, str] = {"path": "site"}
DEFAULT_SORT: tuple[str, int] = ("mtime", -1)
MAX_PAGE_SIZE = 1000

TABLE_COLUMNS: tuple[str, ...] = (
    "_id", "site", "path", "name", "size", "mtime", "status", "spine_version", "model",
    "dataset", "detector", "run", "subrun", "num_events",
)


@dataclass
class Page:
    """One page of files. ``next_after`` / ``prev_before`` are cursors for :func:`page`
    (``after=`` / ``before=``), None on the last / first page."""

    rows: list[dict]
    next_after: str | None
    prev_before: str | None
    sort: tuple[str, int]
    size: int
    columns: tuple[str, ...] = dc_field(default=TABLE_COLUMNS)


# The words of "name:direction" sorts.
_SORT_DIRECTIONS = {"asc": 1, "ascending": 1, "1": 1, "desc": -1, "descending": -1, "-1": -1}


def parse_sort(sort: str | Sequence | None) -> tuple[str, int]:
    """``"-mtime"``/``"mtime"``/``"+mtime"``/``("mtime", -1)``/``"mtime:desc"`` -> ``("mtime",
    -1)`` (after ``:``: ``asc``, ``desc``, ``ascending``, ``descending``, ``1`` or ``-1``);
    None or ``""``: :data:`DEFAULT_SORT`. Anything else raises :class:`QueryError`."""
    if sort is None or sort == "":
        return DEFAULT_SORT
    if isinstance(sort, str):
        s = sort.strip()
        sign = {"-": -1, "+": 1}.get(s[:1])
        if sign is not None:
            s = s[1:]
        name, colon, word = s.partition(":")
        direction = sign or 1
        if colon:
            direction = _SORT_DIRECTIONS.get(word.lower(), 0)
            if not direction:
                raise QueryError(f"unknown sort direction {word!r} in {sort!r} (asc or desc)")
            if sign is not None and sign != direction:
                raise QueryError(f"sort {sort!r} gives two directions")
    else:
        try:
            name, direction = sort[0], int(sort[1])
        except (TypeError, ValueError, IndexError):
            raise QueryError(f"cannot read the sort {sort!r} (try -mtime or path)") from None
    if name not in SORT_FIELDS:
        raise QueryError(f"cannot sort by {name!r} (choose from {', '.join(SORT_FIELDS)})")
    if direction not in (1, -1):
        raise QueryError("sort direction must be 1 or -1")
    return name, direction


def format_sort(sort: tuple[str, int]) -> str:
    """Inverse of :func:`parse_sort` (``("mtime", -1)`` -> ``"-mtime"``)."""
    return ("-" if sort[1] < 0 else "") + sort[0]


def tie_breaker(field: str) -> str:
    """The field that breaks ties of ``field`` in a sort (``_id`` unless said otherwise)."""
    return TIE_BREAKERS.get(field, "_id")


def sort_spec(sort: str | Sequence | None) -> list[tuple[str, int]]:
    """The MongoDB sort spec of a sort choice: ``[(field, d), (tie-breaker, d)]``."""
    name, direction = parse_sort(sort)
    field = SORT_FIELDS[name]
    return [(field, direction)] if field == "_id" else [(field, direction), (tie_breaker(field), direction)]


def encode_cursor(sort: tuple[str, int], value: Any, tie: Any) -> str:
    """The cursor of the row with sort value ``value`` and tie-breaker value ``tie``."""
    raw = json_util.dumps([sort[0], sort[1], value, tie],
                          json_options=json_util.CANONICAL_JSON_OPTIONS, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: tuple[str, int]) -> tuple[Any, Any]:
    """-> (sort value, tie-breaker value). Raises QueryError on garbage or a cursor of
    another sort order."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        name, direction, value, _id = _from_json(raw)
    except Exception:  # noqa: BLE001 - any decoding failure
        raise QueryError("invalid page cursor") from None
    if (name, direction) != tuple(sort):
        raise QueryError("the page cursor belongs to another sort order")
    return value, _id


def _after_clause(field: str, direction: int, value: Any, tie: Any) -> dict:
    """Documents strictly after (value, tie) in the order {field: direction, tie-breaker:
    direction} (MongoDB sorts null and missing as the lowest value)."""
    if field == "_id":
        return {"_id": {"$gt" if direction > 0 else "$lt": tie}}
    t = tie_breaker(field)
    if direction > 0:
        if value is None:
            return {"$or": [{field: None, t: {"$gt": tie}}, {field: {"$ne": None}}]}
        return {"$or": [{field: {"$gt": value}}, {field: value, t: {"$gt": tie}}]}
    if value is None:
        return {field: None, t: {"$lt": tie}}
    return {"$or": [{field: {"$lt": value}}, {field: value, t: {"$lt": tie}}, {field: None}]}


def page_query(flt: Filter | None, sort: tuple[str, int] = DEFAULT_SORT, *,
               after: tuple[Any, Any] | None = None,
               backward: bool = False) -> tuple[dict, list[tuple[str, int]]]:
    """(query, sort spec) for one keyset page. ``after`` is the (value, tie-breaker value) of
    the row the page starts after (``backward``: ends before; the sort spec is then reversed)."""
    spec = sort_spec(sort)
    if backward:
        spec = [(f, -d) for f, d in spec]
    field, direction = spec[0]
    query = _query(flt)
    if after is not None:
        query = and_queries(query, _after_clause(field, direction, after[0], after[1]))
    return query, spec


def page_args(sort: Any, size: int, after: str | None, before: str | None) -> tuple[tuple[str, int], int]:
    """A page request's sort (:func:`parse_sort`) and size, checked: a size out of
    1..:data:`MAX_PAGE_SIZE`, or both cursors, is a :class:`QueryError`."""
    sort = parse_sort(sort)
    if not 1 <= int(size) <= MAX_PAGE_SIZE:
        raise QueryError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
    if after and before:
        raise QueryError("give after or before, not both")
    return sort, int(size)


def page(db: Any, flt: Filter | None = None, *, sort: str | Sequence = DEFAULT_SORT,
         size: int = 50, after: str | None = None, before: str | None = None,
         columns: Sequence[str] = TABLE_COLUMNS, max_time_ms: int | None = None) -> Page:
    """One page of matching files (``columns`` projected, plus ``_id``, the sort field and
    its tie-breaker).

    Without a cursor: the first page. ``after``: the page following the row the cursor names;
    ``before``: the page preceding it (when fewer than ``size`` rows precede it, the first page).
    """
    sort, size = page_args(sort, size, after, before)
    field = SORT_FIELDS[sort[0]]
    tie = tie_breaker(field)
    coll = _collection(db)
    projection = _projection([*columns, field, tie])
    cursor = after or before
    position = decode_cursor(cursor, sort) if cursor else None
    backward = bool(before)
    query, spec = page_query(flt, sort, after=position, backward=backward)
    with _running(coll, max_time_ms):
        rows = list(_find(coll, query, projection, sort=spec, limit=size + 1,
                          max_time_ms=max_time_ms))
    more = len(rows) > size
    rows = rows[:size]

    def key(row: dict) -> str:
        return encode_cursor(sort, _get(row, field), _get(row, tie))

    def exists_beyond(row: dict, reverse: bool) -> bool:
        q, _ = page_query(flt, sort, after=(_get(row, field), _get(row, tie)), backward=reverse)
        with _running(coll, max_time_ms):
            return bool(list(_find(coll, q, {"_id": 1}, limit=1, max_time_ms=max_time_ms)))

    if backward:
        rows.reverse()
        if not more:  # reached the start: show a full first page instead
            return page(db, flt, sort=sort, size=size, columns=columns, max_time_ms=max_time_ms)
        has_prev = True
        has_next = bool(rows) and exists_beyond(rows[-1], False)
    else:
        has_next = more
        has_prev = bool(rows) and position is not None and exists_beyond(rows[0], True)
    prev_before = key(rows[0]) if rows and has_prev else None
    if not rows and after:  # past the end (rows deleted since): offer the way back
        prev_before = after
    return Page(
        rows=rows,
        next_after=key(rows[-1]) if rows and has_next else None,
        prev_before=prev_before,
        sort=sort, size=size, columns=tuple(columns),
    )


def iter_pages(db: Any, flt: Filter | None = None, **kwargs: Any) -> Iterator[Page]:
    """Every page in order (follows ``next_after``)."""
    after = None
    while True:
        p = page(db, flt, after=after, **kwargs)
        yield p
        if not p.next_after:
            return
        after = p.next_after


ESCAPED_SUBDOCUMENTS: tuple[str, ...] = ("attrs", "attr_types", "info", "cfg", "sidecar", "job")


def _unescape_keys(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {convert.unescape_key(k): _unescape_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unescape_keys(v) for v in obj]
    return obj


def unescape_document(doc: Mapping) -> dict:
    """A copy of a file document whose attrs/attr_types/info/cfg/sidecar/job have their
    original (unescaped) keys again, for display. Do not write it back."""
    out = dict(doc)
    for name in ESCAPED_SUBDOCUMENTS:
        if isinstance(out.get(name), Mapping):
            out[name] = _unescape_keys(out[name])
    return out


def get_file(db: Any, id_or_path: str, *, site: str | None = None,
             unescape: bool = False) -> dict | None:
    """The document of one file by ``_id`` (``site:path``) or by path (optionally at ``site``;
    the first site in alphabetical order when the path is catalogued at several)."""
    coll = _collection(db)
    doc = None
    if site is None:
        doc = coll.find_one({"_id": id_or_path})
    if doc is None:
        q: dict = {"path": id_or_path}
        if site is not None:
            q["site"] = site
        docs = list(_find(coll, q, sort=[("site", 1)], limit=1))  # {path, site} is unique
        doc = docs[0] if docs else None
    if doc is not None and unescape:
        doc = unescape_document(doc)
    return doc
