"""Every filter and aggregation pipeline of spine-docs.

The CLI (``spine-docs query/facets/attrs/export``) and the Streamlit explorer call these plain
functions; they only parse, print and render. Every function takes a pymongo ``Database`` (a
real server, ``mongomock://`` or the embedded catalog; the ``files`` collection itself is
accepted too) and plain parameters, and returns plain Python data.

Pipelines are built by pure ``*_pipeline()`` / ``*_query()`` functions (no database) and run by
the executors, so ``tests/test_operators.py`` can check that every stage and operator we emit
is supported by both mongomock 4.3 and MongoDB 6.0.

The filter
----------
:class:`Filter` (pydantic) is the shared currency between the URL, the CLI and this module:

- facet selections (lists; ``None`` selects files where the field is null):
  ``site, status, spine_version, model, dataset, detector, config, prod_version``
- ``version_min`` / ``version_max``: SPINE version range, compared on ``spine_version_key``
  with :func:`spine_docs.spine.semver_key` (both ends inclusive; pre-releases of a release sort
  before it)
- ``run_min/run_max``, ``subrun_min/subrun_max``: files whose range ``[run, run_max]``
  (``run_max`` null means ``run``) overlaps the given range (either end may be open)
- ``events_min/events_max`` on ``num_events`` (inclusive)
- ``mtime_from`` (inclusive) / ``mtime_to``: a ``date`` means the whole day (UTC, inclusive), a
  ``datetime`` is an inclusive instant; naive datetimes are UTC
- ``path_contains`` (literal, case-sensitive substring) and ``path_regex`` (a regular expression)
- ``attr_filters``: ``[AttrFilter(key, op, value)]`` on root attributes; ``key`` is the original
  HDF5 attribute name (escaped here with :func:`spine_docs.convert.escape_key`), ``op`` one of
  ``eq ne gt gte lt lte exists in regex`` (MongoDB semantics: ``ne`` also matches files without
  the key). Build typed values with :meth:`AttrFilter.parse` / :func:`coerce_value` using the
  type label from :func:`attribute_keys`.
- ``where``: a raw MongoDB query document (the CLI's ``--where`` JSON, Extended JSON accepted);
  server-side JavaScript (``$where``, ``$function``, ``$accumulator``) is refused.

``Filter.to_mongo()`` gives the query document, ``to_params()``/``from_params()`` round-trip
through a flat ``{str: str}`` dict (URL query parameters, keys in ``PARAM_KEYS``: lists are
comma-joined with ``\\`` escapes and ``(none)`` for null, dates ISO 8601, ``attr`` and ``where``
relaxed Extended JSON; unknown keys are ignored so the same dict can hold page/sort state),
``describe()`` a one-line summary (export headers), ``without()`` a copy with some fields
cleared. Invalid input raises ``ValueError`` (pydantic's ``ValidationError`` or
:class:`QueryError`, both subclasses).

Functions (``flt=None`` means every file; ``max_time_ms`` becomes ``maxTimeMS`` on a server and
is not passed to mongomock; exceeding it raises :class:`QueryTimeout`)
--------------------------------------------------------------------------------------------
- ``count(db, flt) -> int``, ``total(db) -> int`` (estimated, O(1) on a server)
- ``facets(db, flt, fields=DEFAULT_FACETS, limit=50) -> {field: [{"value", "count"}]}``: each
  field counted under the filter minus its own selection (Datasette style); the selected values
  always appear. Facets sharing the same effective filter run in one ``$facet`` aggregation
  (no selection at all: one query).
- ``page(db, flt, sort=("mtime", -1), size=50, after=None, before=None, columns=TABLE_COLUMNS)
  -> Page(rows, next_after, prev_before, sort, size)``: keyset pagination on (sort field, _id),
  nulls first ascending / last descending like MongoDB; cursors are opaque URL-safe strings
  bound to their sort order. ``sort`` is a name of ``SORT_FIELDS`` with a direction, or text
  (``"-mtime"``; :func:`parse_sort` / :func:`format_sort`). ``iter_pages`` walks all pages.
- ``get_file(db, id_or_path, site=None, unescape=False) -> dict | None``;
  ``unescape_document(doc)`` gives attrs/cfg/... back their original keys for display.
- ``export(db, flt, fmt="jsonl"|"csv"|"paths", columns=None, sort=("_id", 1), batch_size=500)
  -> Iterator[str]``: lines (each ending in ``\\n``) streamed from one cursor; csv and paths start
  with ``#`` comment lines naming the filter; jsonl is MongoDB relaxed Extended JSON of the
  stored documents.
- ``timeline(db, flt, by="day"|"week"|"month", group=None|"dataset"|"model"|..., time_field="mtime")
  -> [{"period": "YYYY-MM-DD" (first day of the period; ISO weeks start on Monday), "group",
  "files", "events", "bytes"}]``
- ``histogram(db, flt, field="size", bins=20, log=False) -> {"field", "log", "bins": [{"lo", "hi",
  "count"}], "missing", "total"}``: bins are ``[lo, hi)`` (the last one contains the maximum)
- ``run_coverage(db, flt, dataset=None) -> [per dataset {"dataset", "files", "no_run", "run_min",
  "run_max", "run_count", "runs": [[a, b]], "gaps": [[a, b]], "missing_runs", "per_run": [{"run",
  "files", "events", "subruns": [[a, b]], "subrun_count", "subrun_gaps": [[a, b]], "missing_subruns"}]}]``
  (``[[a, b]]`` are inclusive ranges)
- ``attribute_keys(db, flt=None, max_docs=None) -> [{"key", "field", "files", "types", "type"}]``
  (cheap: reads ``attr_types`` only; for the filter picker); ``attribute_types(db)`` ->
  ``{key: type label}``
- ``attribute_dictionary(db, flt=None, examples=3, max_docs=None) -> [{"key", "field", "files",
  "types", "type", "distinct", "min", "max", "examples"}]``: ``max_docs`` limits the work to the
  newest N matching files; min/max only over orderable types; examples are the most common
  value of each type, then the min and max, deduplicated (bounded memory on a server).
- ``replicas(db, flt=None, limit=100, key="fingerprint"|"checksum") -> [{"key", "count", "sites",
  "files"}]``: contents present more than once among the matching files
- ``save_query(db, name, flt, extra=None)``, ``list_queries(db)``, ``load_query(db, name) -> Filter``,
  ``delete_query(db, name) -> bool`` (collection ``saved_queries``; writes inside
  ``store.writing(db)``)
"""

from __future__ import annotations

import base64
import csv
import io
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field as dc_field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Iterator, Literal, Mapping, Sequence

import bson
import mongomock
import pymongo.collection
from bson import json_util
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pymongo.errors import ExecutionTimeout

from spine_docs import convert, spine, store

UTC = timezone.utc

FILES = "files"
SAVED_QUERIES = "saved_queries"

# Facet (multi-select) fields of the Filter; all are promoted string fields.
FACET_FIELDS: tuple[str, ...] = (
    "site", "status", "spine_version", "model", "dataset", "detector", "config", "prod_version",
)
DEFAULT_FACETS: tuple[str, ...] = ("site", "spine_version", "model", "dataset", "status")

# User-facing sort name -> document field (spine_version sorts by its semver key). Only
# fields holding one BSON type (plus null): keyset conditions ($gt/$lt) never cross types, so a
# mixed-type field such as format_version would lose rows between pages.
SORT_FIELDS: dict[str, str] = {
    "mtime": "mtime", "path": "path", "name": "name", "dir": "dir", "site": "site",
    "size": "size", "status": "status", "spine_version": "spine_version_key",
    "prod_version": "prod_version", "model": "model", "dataset": "dataset",
    "detector": "detector", "config": "config", "run": "run", "subrun": "subrun",
    "event_min": "event_min", "event_max": "event_max", "num_events": "num_events",
    "first_seen": "ingest.first_seen", "last_seen": "ingest.last_seen",
    "times_seen": "ingest.times_seen", "_id": "_id",
}
DEFAULT_SORT: tuple[str, int] = ("mtime", -1)
MAX_PAGE_SIZE = 1000

TABLE_COLUMNS: tuple[str, ...] = (
    "_id", "site", "path", "name", "size", "mtime", "status", "spine_version", "model",
    "dataset", "detector", "run", "subrun", "num_events",
)
EXPORT_COLUMNS: tuple[str, ...] = (
    "_id", "site", "path", "name", "dir", "size", "mtime", "status", "error", "spine_version",
    "prod_version", "model", "dataset", "detector", "config", "run", "run_max", "subrun",
    "subrun_max", "event_min", "event_max", "num_events", "format", "format_version", "complete",
    "fingerprint", "checksum.sha256",
)
EXPORT_FORMATS: tuple[str, ...] = ("jsonl", "csv", "paths")

HISTOGRAM_FIELDS: tuple[str, ...] = (
    "size", "num_events", "run", "subrun", "event_min", "event_max", "inputs_count",
    "ingest.times_seen",
)
TIME_FIELDS: tuple[str, ...] = ("mtime", "ingest.first_seen", "ingest.last_seen")
TIMELINE_GROUPS: tuple[str, ...] = (
    "dataset", "model", "spine_version", "site", "status", "detector", "config", "prod_version",
)
_PERIOD_FORMATS = {"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}

ATTR_OPS: tuple[str, ...] = ("eq", "ne", "gt", "gte", "lt", "lte", "exists", "in", "regex")
_OP_SYMBOLS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
               "in": "in", "regex": "~", "exists": "exists"}
# Type labels (convert.bson_type_name) whose values have a meaningful order for min/max.
ORDERED_TYPES: tuple[str, ...] = ("bool", "int", "long", "double", "string", "date")

# A facet selection of None (the field is null) in URL parameters.
NONE_TOKEN = "(none)"
FORBIDDEN_OPERATORS = frozenset({"$where", "$function", "$accumulator"})

MAX_RUN_SPAN = 100_000  # run_coverage expands [run, run_max] ranges up to this length
_EXAMPLE_CHARS = 200
_OLDEST_DATE = datetime(1900, 1, 1, tzinfo=UTC)


class QueryError(ValueError):
    """A query parameter that cannot be used (bad regex, unknown field, invalid cursor...)."""


class QueryTimeout(RuntimeError):
    """The server stopped the query at its time limit (``max_time_ms``)."""

    def __init__(self, max_time_ms: int | None):
        self.max_time_ms = max_time_ms
        limit = f"{max_time_ms} ms" if max_time_ms else "its time limit"
        super().__init__(f"the query took longer than {limit}; narrow the filter or raise the limit")


# ---------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------

_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.I)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_datetime(text: str | date | datetime) -> datetime:
    """ISO 8601 text (``Z`` allowed, date-only allowed) -> aware UTC datetime (ms precision)."""
    if isinstance(text, datetime):
        dt = text
    elif isinstance(text, date):
        dt = datetime.combine(text, time(), UTC)
    else:
        s = str(text).strip()
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise QueryError(f"not an ISO date/time: {text!r}") from None
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _int_or_decimal(n: int) -> Any:
    return n if -(2**63) <= n < 2**63 else bson.Decimal128(str(n))


def coerce_value(text: Any, type_label: str | None = None) -> Any:
    """Text typed by the user -> the BSON value to compare with.

    ``type_label`` is the attribute's type from the attribute dictionary (``int long double
    decimal bool string date null``...). Without one (or for array/object/summary types) the
    text is parsed: ``null``, ``true``/``false``, integers, floats, otherwise a string; quote it
    (``"12"``) to force a string. Non-string input is returned unchanged.
    """
    if not isinstance(text, str):
        return text
    s = text.strip()
    try:
        if type_label == "string":
            return text
        if type_label in ("int", "long", "decimal", "double"):
            if _INT_RE.match(s) and type_label != "double":
                return _int_or_decimal(int(s))
            if _INT_RE.match(s) or _FLOAT_RE.match(s):
                value = float(s)
                if type_label != "double" and value.is_integer() and abs(value) < 2**63:
                    return int(value)
                return value
            raise ValueError
        if type_label == "bool":
            if s.lower() in _TRUE:
                return True
            if s.lower() in _FALSE:
                return False
            raise ValueError
        if type_label == "date":
            return parse_datetime(s)
        if type_label == "null":
            if s.lower() in ("", "null", "none"):
                return None
            raise ValueError
    except (ValueError, QueryError):
        raise QueryError(f"{text!r} is not a valid {type_label} value") from None
    # untyped: guess
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    low = s.lower()
    if low in ("null", "none"):
        return None
    if low == "true":
        return True
    if low == "false":
        return False
    if _INT_RE.match(s):
        return _int_or_decimal(int(s))
    if _FLOAT_RE.match(s):
        return float(s)
    return text


def _check_bson(value: Any, what: str) -> None:
    try:
        bson.encode({"v": value})
    except Exception as exc:  # noqa: BLE001 - any encoding failure is a user error here
        raise ValueError(f"{what} cannot be stored in BSON: {exc}") from None


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return pattern


def _forbidden(obj: Any) -> str | None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if k in FORBIDDEN_OPERATORS:
                return k
            found = _forbidden(v)
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found = _forbidden(v)
            if found:
                return found
    return None


def _to_json(value: Any, ascii: bool = False) -> str:
    return json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS,
                           separators=(",", ":"), ensure_ascii=ascii)


def _from_json(text: str) -> Any:
    return json_util.loads(text, json_options=json_util.JSONOptions(tz_aware=True, tzinfo=UTC))


# ---------------------------------------------------------------------------------------------
# Filter
# ---------------------------------------------------------------------------------------------


class AttrFilter(BaseModel):
    """One condition on a root attribute: ``key`` is the original (unescaped) attribute name."""

    model_config = ConfigDict(frozen=True)

    key: str
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "exists", "in", "regex"] = "eq"
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if isinstance(data, (list, tuple)):
            data = dict(zip(("key", "op", "value"), data))
        if isinstance(data, Mapping):
            data = dict(data)
            op, v = data.get("op", "eq"), data.get("value")
            if op == "exists" and not isinstance(v, bool):
                data["value"] = True if v is None else (
                    coerce_value(v, "bool") if isinstance(v, str) else bool(v))
            elif op == "in" and not isinstance(v, (list, tuple)):
                data["value"] = [v]
            elif op == "in":
                data["value"] = list(v)
        return data

    @model_validator(mode="after")
    def _check(self) -> "AttrFilter":
        if self.op == "regex":
            if not isinstance(self.value, str):
                raise ValueError("a regex attribute filter needs a string pattern")
            _check_regex(self.value)
        _check_bson(self.value, f"value of attribute filter on {self.key!r}")
        return self

    @property
    def field(self) -> str:
        """The document field: ``attrs.<escaped key>``."""
        return "attrs." + convert.escape_key(self.key)

    def to_mongo(self) -> dict:
        return {self.field: {"$" + self.op: self.value}}

    def describe(self) -> str:
        if self.op == "exists":
            return f"has {self.key}" if self.value else f"no {self.key}"
        return f"{self.key} {_OP_SYMBOLS[self.op]} {_short(self.value)}"

    @classmethod
    def parse(cls, key: str, op: str, text: Any, type_label: str | None = None) -> "AttrFilter":
        """Build a typed filter from user text (``in`` takes comma-separated values)."""
        if op == "regex":
            return cls(key=key, op=op, value=text)
        if op == "exists":
            return cls(key=key, op=op, value=True if text in (None, "") else coerce_value(text, "bool"))
        if op == "in":
            items = text if isinstance(text, (list, tuple)) else _split_list(str(text))
            return cls(key=key, op=op, value=[coerce_value(t, type_label) for t in items])
        return cls(key=key, op=op, value=coerce_value(text, type_label))

    @classmethod
    def parse_expr(cls, expr: str, types: Mapping[str, str] | None = None) -> "AttrFilter":
        """``"key>=0.5"``, ``"key!=x"``, ``"key~regex"``, ``"key in a,b"``, ``"key?"`` (exists),
        ``"!key"`` (missing). ``types`` maps keys to type labels (see :func:`attribute_keys`)."""
        types = types or {}
        s = expr.strip()
        if s.endswith("?"):
            return cls(key=s[:-1].strip(), op="exists", value=True)
        if s.startswith("!") and not any(o in s for o in ("=", "<", ">", "~")):
            return cls(key=s[1:].strip(), op="exists", value=False)
        m = re.match(r"^(.*?)\s+in\s+(.*)$", s)
        if m:
            key = m.group(1).strip()
            return cls.parse(key, "in", m.group(2), types.get(key))
        m = re.match(r"^(.*?)\s*(!=|>=|<=|==|=|>|<|~)\s*(.*)$", s)
        if not m or not m.group(1):
            raise QueryError(f"cannot parse attribute condition {expr!r} (try key>=value)")
        key, sym, text = m.group(1), m.group(2), m.group(3)
        op = {"=": "eq", "==": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte",
              "~": "regex"}[sym]
        return cls.parse(key, op, text, types.get(key))


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else _to_json(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_RANGE_PAIRS = (("run_min", "run_max"), ("subrun_min", "subrun_max"),
                ("events_min", "events_max"))


class Filter(BaseModel):
    """Everything that selects files; see the module docstring for the meaning of each field."""

    model_config = ConfigDict(extra="forbid")

    site: list[str | None] = Field(default_factory=list)
    status: list[str | None] = Field(default_factory=list)
    spine_version: list[str | None] = Field(default_factory=list)
    model: list[str | None] = Field(default_factory=list)
    dataset: list[str | None] = Field(default_factory=list)
    detector: list[str | None] = Field(default_factory=list)
    config: list[str | None] = Field(default_factory=list)
    prod_version: list[str | None] = Field(default_factory=list)
    version_min: str | None = None
    version_max: str | None = None
    run_min: int | None = None
    run_max: int | None = None
    subrun_min: int | None = None
    subrun_max: int | None = None
    events_min: int | None = None
    events_max: int | None = None
    mtime_from: datetime | date | None = None
    mtime_to: datetime | date | None = None
    path_contains: str | None = None
    path_regex: str | None = None
    attr_filters: list[AttrFilter] = Field(default_factory=list)
    where: dict[str, Any] | None = None

    # -- validation ------------------------------------------------------------------------

    @field_validator(*FACET_FIELDS, mode="before")
    @classmethod
    def _facet_list(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, str):
            v = [v]
        out: list = []
        for item in v:
            if item not in out:
                out.append(item)
        return out

    @field_validator("version_min", "version_max", "path_contains", "path_regex", mode="before")
    @classmethod
    def _blank_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip() == "" else v

    @field_validator("version_min", "version_max")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        if v is not None and spine.semver_key(v) is None:
            raise ValueError(f"{v!r} is not a version number (e.g. 0.5 or 0.5.1rc1)")
        return v

    @field_validator("path_regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return None if v is None else _check_regex(v)

    @field_validator("mtime_from", "mtime_to", mode="before")
    @classmethod
    def _when(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        if isinstance(v, str):
            s = v.strip()
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
                return date.fromisoformat(s)
            return parse_datetime(s)
        if isinstance(v, datetime):
            return parse_datetime(v)
        return v

    @field_validator("attr_filters", mode="before")
    @classmethod
    def _attrs(cls, v: Any) -> Any:
        if v is None:
            return []
        out = []
        for item in v:
            if isinstance(item, (list, tuple)):
                item = dict(zip(("key", "op", "value"), item))
            out.append(item)
        return out

    @field_validator("where", mode="before")
    @classmethod
    def _where(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        if isinstance(v, str):
            try:
                v = _from_json(v)
            except Exception as exc:  # noqa: BLE001 - json or bson errors
                raise ValueError(f"where is not valid JSON: {exc}") from None
        if not isinstance(v, Mapping):
            raise ValueError("where must be a JSON object (a MongoDB query document)")
        bad = _forbidden(v)
        if bad:
            raise ValueError(f"{bad} (server-side JavaScript) is not allowed in where")
        _check_bson(dict(v), "where")
        return dict(v) or None

    @model_validator(mode="after")
    def _ranges(self) -> "Filter":
        for lo, hi in _RANGE_PAIRS:
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{lo} ({a}) is greater than {hi} ({b})")
        if self.version_min and self.version_max:
            if spine.semver_key(self.version_min) > spine.semver_key(self.version_max):
                raise ValueError(f"version_min {self.version_min} is above version_max {self.version_max}")
        lo, hi = self._mtime_bounds()
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError("mtime_from is after mtime_to")
        return self

    # -- queries ---------------------------------------------------------------------------

    def is_empty(self) -> bool:
        return not self.to_mongo()

    def without(self, *fields: str) -> "Filter":
        """A copy with the given fields back to their defaults (e.g. one facet's selection)."""
        unknown = set(fields) - set(type(self).model_fields)
        if unknown:
            raise QueryError(f"unknown filter field(s): {', '.join(sorted(unknown))}")
        data = self.model_dump()
        for f in fields:
            data.pop(f)
        return type(self).model_validate(data)

    def _mtime_bounds(self) -> tuple[datetime | None, datetime | None]:
        """(inclusive lower, exclusive upper) bounds."""
        lo = hi = None
        if self.mtime_from is not None:
            lo = parse_datetime(self.mtime_from)
        if self.mtime_to is not None:
            if isinstance(self.mtime_to, datetime):
                hi = self.mtime_to + timedelta(milliseconds=1)
            else:
                hi = datetime.combine(self.mtime_to + timedelta(days=1), time(), UTC)
        return lo, hi

    def clauses(self) -> list[dict]:
        """The conditions of the filter, one small query document each (implicitly AND-ed)."""
        out: list[dict] = []
        for f in FACET_FIELDS:
            values = getattr(self, f)
            if values:
                out.append({f: {"$in": list(values)}})
        vkey: dict = {}
        if self.version_min:
            vkey["$gte"] = spine.semver_key(self.version_min)
        if self.version_max:
            vkey["$lte"] = spine.semver_key(self.version_max)
        if vkey:
            out.append({"spine_version_key": vkey})
        out += _overlap("run", "run_max", self.run_min, self.run_max)
        out += _overlap("subrun", "subrun_max", self.subrun_min, self.subrun_max)
        ev: dict = {}
        if self.events_min is not None:
            ev["$gte"] = self.events_min
        if self.events_max is not None:
            ev["$lte"] = self.events_max
        if ev:
            out.append({"num_events": ev})
        lo, hi = self._mtime_bounds()
        when: dict = {}
        if lo is not None:
            when["$gte"] = lo
        if hi is not None:
            when["$lt"] = hi
        if when:
            out.append({"mtime": when})
        if self.path_contains:
            out.append({"path": {"$regex": re.escape(self.path_contains)}})
        if self.path_regex:
            out.append({"path": {"$regex": self.path_regex}})
        out += [a.to_mongo() for a in self.attr_filters]
        if self.where:
            out.append(dict(self.where))
        return out

    def to_mongo(self) -> dict:
        """The MongoDB query document (``{}`` when the filter is empty)."""
        return and_queries(*self.clauses())

    # -- URL parameters --------------------------------------------------------------------

    def to_params(self) -> dict[str, str]:
        """A flat ``{name: string}`` dict (URL query parameters); empty fields are left out."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or value == [] or value == {}:
                continue
            if name in FACET_FIELDS:
                out[name] = _join_list(value)
            elif name in ("mtime_from", "mtime_to"):
                out[name] = _format_when(value)
            elif name == "attr_filters":
                out["attr"] = _to_json([[a.key, a.op, a.value] for a in value], ascii=True)
            elif name == "where":
                out["where"] = _to_json(value, ascii=True)
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Filter":
        """Inverse of :meth:`to_params`. Unknown keys are ignored; a list value (repeated URL
        parameter) is read as its items concatenated. Raises ``ValueError`` on bad values."""
        data: dict[str, Any] = {}
        for key, raw in params.items():
            items = list(raw) if isinstance(raw, (list, tuple)) else [raw]
            items = [str(i) for i in items if i is not None]
            if not items:
                continue
            if key in FACET_FIELDS:
                values: list = []
                for item in items:
                    values += _split_list(item, none_token=True)
                data[key] = values
            elif key == "attr":
                conditions: list = []
                for item in items:
                    if item.strip():
                        try:
                            parsed = _from_json(item)
                        except Exception as exc:  # noqa: BLE001
                            raise QueryError(f"attr parameter is not valid JSON: {exc}") from None
                        if not isinstance(parsed, list):
                            raise QueryError("attr parameter must be a JSON list of [key, op, value]")
                        conditions += parsed
                data["attr_filters"] = conditions
            elif key in cls.model_fields and key != "attr_filters":
                data[key] = items[-1]
        return cls.model_validate(data)

    # -- text ------------------------------------------------------------------------------

    def describe(self) -> str:
        """A one-line human summary, e.g. ``model = uresnet; spine_version >= 0.5``."""
        parts: list[str] = []
        for f in FACET_FIELDS:
            values = getattr(self, f)
            if values:
                shown = [NONE_TOKEN if v is None else v for v in values]
                parts.append(f"{f} = {shown[0]}" if len(shown) == 1
                             else f"{f} in {{{', '.join(shown)}}}")
        if self.version_min:
            parts.append(f"spine_version >= {self.version_min}")
        if self.version_max:
            parts.append(f"spine_version <= {self.version_max}")
        for label, lo, hi in (("runs", self.run_min, self.run_max),
                              ("subruns", self.subrun_min, self.subrun_max),
                              ("events", self.events_min, self.events_max)):
            if lo is not None or hi is not None:
                a = "" if lo is None else lo
                b = "" if hi is None else hi
                parts.append(f"{label} {a}..{b}")
        if self.mtime_from is not None or self.mtime_to is not None:
            a = "" if self.mtime_from is None else _format_when(self.mtime_from)
            b = "" if self.mtime_to is None else _format_when(self.mtime_to)
            parts.append(f"modified {a}..{b}")
        if self.path_contains:
            parts.append(f"path contains {self.path_contains!r}")
        if self.path_regex:
            parts.append(f"path ~ {self.path_regex!r}")
        parts += [a.describe() for a in self.attr_filters]
        if self.where:
            parts.append(f"where {_short(self.where, 200)}")
        return "; ".join(parts) if parts else "all files"


PARAM_KEYS: frozenset[str] = frozenset(
    (set(Filter.model_fields) - {"attr_filters"}) | {"attr"}
)


def _overlap(lo_field: str, hi_field: str, a: int | None, b: int | None) -> list[dict]:
    """Documents whose [lo_field, hi_field or lo_field] range overlaps [a, b]."""
    out: list[dict] = []
    if b is not None:
        out.append({lo_field: {"$lte": b}})
    if a is not None:
        out.append({"$or": [{hi_field: {"$gte": a}}, {hi_field: None, lo_field: {"$gte": a}}]})
    return out


def and_queries(*queries: Mapping | None) -> dict:
    """AND query documents together: distinct top-level keys are merged into one document,
    the rest goes into ``$and`` (so simple filters stay readable in mongosh)."""
    merged: dict = {}
    rest: list[dict] = []
    for q in queries:
        if not q:
            continue
        if len(q) == 1:
            (k, v), = q.items()
            if k not in merged and k != "$and":
                merged[k] = v
                continue
        rest.append(dict(q))
    if rest:
        merged["$and"] = rest
    return merged


def _query(flt: Filter | Mapping | None) -> dict:
    if flt is None:
        return {}
    if isinstance(flt, Filter):
        return flt.to_mongo()
    return dict(flt)


def _as_filter(flt: Filter | None) -> Filter:
    return Filter() if flt is None else flt


def _join_list(values: Iterable[str | None]) -> str:
    out = []
    for v in values:
        if v is None:
            out.append(NONE_TOKEN)
        elif v == "":
            out.append("\\")
        else:
            token = v.replace("\\", "\\\\").replace(",", "\\,")
            out.append("\\" + token if token == NONE_TOKEN else token)
    return ",".join(out)


def _split_list(text: str, none_token: bool = False) -> list:
    """Split on unescaped commas; ``\\x`` is a literal x; a lone ``\\`` is the empty string."""
    items: list = []
    raw, cooked = [], []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, None)
            raw.append(ch)
            if nxt is not None:
                raw.append(nxt)
                cooked.append(nxt)
        elif ch == ",":
            items.append(("".join(raw), "".join(cooked)))
            raw, cooked = [], []
        else:
            raw.append(ch)
            cooked.append(ch)
    items.append(("".join(raw), "".join(cooked)))
    out: list = []
    for r, c in items:
        if none_token and r == NONE_TOKEN:
            out.append(None)
        elif r == "":
            continue  # stray comma
        else:
            out.append(c if none_token else c.strip())
    return out


def _format_when(value: date | datetime) -> str:
    if isinstance(value, datetime):
        v = parse_datetime(value)
        text = v.strftime("%Y-%m-%dT%H:%M:%S")
        if v.microsecond:
            text += f".{v.microsecond // 1000:03d}"
        return text + "Z"
    return value.isoformat()


# ---------------------------------------------------------------------------------------------
# plumbing
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# counts and facets
# ---------------------------------------------------------------------------------------------


def count(db: Any, flt: Filter | None = None, *, max_time_ms: int | None = None) -> int:
    """Number of files matching the filter (exact; the empty filter reads the collection's
    metadata count like :func:`total`)."""
    coll = _collection(db)
    query = _query(flt)
    if not query:
        return total(db)
    kwargs = {"maxTimeMS": int(max_time_ms)} if max_time_ms and _is_server(coll) else {}
    with _timeouts(max_time_ms):
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
    """``[(fields, pipeline)]``: facets whose effective filter (the filter minus their own
    selection) is the same share one ``$facet`` aggregation. Each facet lists values by count,
    the field's selected values first so that they survive the limit."""
    flt = _as_filter(flt)
    groups: dict[str, tuple[dict, list[str]]] = {}
    for f in _facet_fields(fields):
        q = flt.without(f).to_mongo()
        key = _to_json(q)
        groups.setdefault(key, (q, []))[1].append(f)
    out = []
    for q, group_fields in groups.values():
        facet: dict[str, list[dict]] = {}
        for f in group_fields:
            selected = list(getattr(flt, f))
            sub: list[dict] = [{"$group": {"_id": "$" + f, "count": {"$sum": 1}}}]
            if selected:
                sub.append({"$addFields": {"selected": {"$in": ["$_id", selected]}}})
                sub.append({"$sort": {"selected": -1, "count": -1, "_id": 1}})
            else:
                sub.append({"$sort": {"count": -1, "_id": 1}})
            sub.append({"$limit": int(limit)})
            facet[f] = sub
        pipeline = ([{"$match": q}] if q else []) + [{"$facet": facet}]
        out.append((group_fields, pipeline))
    return out


def facets(db: Any, flt: Filter | None = None, fields: Sequence[str] = DEFAULT_FACETS,
           limit: int = 50, *, max_time_ms: int | None = None) -> dict[str, list[dict]]:
    """``{field: [{"value": v, "count": n}, ...]}`` by decreasing count (ties by value), at most
    ``limit`` values per field, each counted under the filter minus the field's own selection."""
    if limit < 1:
        raise QueryError("limit must be at least 1")
    coll = _collection(db)
    result: dict[str, list[dict]] = {}
    for group_fields, pipeline in facets_pipelines(flt, fields, limit):
        rows = _aggregate(coll, pipeline, max_time_ms)
        doc = rows[0] if rows else {}
        for f in group_fields:
            values = [{"value": r["_id"], "count": r["count"]} for r in doc.get(f, [])]
            values.sort(key=lambda v: (-v["count"], v["value"] is not None, str(v["value"])))
            result[f] = values
    return {f: result[f] for f in _facet_fields(fields)}


# ---------------------------------------------------------------------------------------------
# pages
# ---------------------------------------------------------------------------------------------


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


def parse_sort(sort: str | Sequence | None) -> tuple[str, int]:
    """``"-mtime"``/``"mtime"``/``("mtime", -1)``/``"mtime:desc"`` -> ``("mtime", -1)``."""
    if sort is None or sort == "":
        return DEFAULT_SORT
    if isinstance(sort, str):
        s = sort.strip()
        direction = 1
        if s.startswith("-"):
            s, direction = s[1:], -1
        elif s.startswith("+"):
            s = s[1:]
        if ":" in s:
            s, d = s.split(":", 1)
            direction = -1 if d.lower() in ("desc", "-1", "descending") else 1
        name = s
    else:
        name, direction = sort[0], int(sort[1])
    if name not in SORT_FIELDS:
        raise QueryError(f"cannot sort by {name!r} (choose from {', '.join(SORT_FIELDS)})")
    if direction not in (1, -1):
        raise QueryError("sort direction must be 1 or -1")
    return name, direction


def format_sort(sort: tuple[str, int]) -> str:
    """Inverse of :func:`parse_sort` (``("mtime", -1)`` -> ``"-mtime"``)."""
    return ("-" if sort[1] < 0 else "") + sort[0]


def encode_cursor(sort: tuple[str, int], value: Any, _id: Any) -> str:
    raw = json_util.dumps([sort[0], sort[1], value, _id],
                          json_options=json_util.CANONICAL_JSON_OPTIONS, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: tuple[str, int]) -> tuple[Any, Any]:
    """-> (sort value, _id). Raises QueryError on garbage or a cursor of another sort order."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        name, direction, value, _id = _from_json(raw)
    except Exception:  # noqa: BLE001 - any decoding failure
        raise QueryError("invalid page cursor") from None
    if (name, direction) != tuple(sort):
        raise QueryError("the page cursor belongs to another sort order")
    return value, _id


def _after_clause(field: str, direction: int, value: Any, _id: Any) -> dict:
    """Documents strictly after (value, _id) in the order {field: direction, _id: direction}
    (MongoDB sorts null and missing as the lowest value)."""
    if field == "_id":
        return {"_id": {"$gt" if direction > 0 else "$lt": _id}}
    if direction > 0:
        if value is None:
            return {"$or": [{field: None, "_id": {"$gt": _id}}, {field: {"$ne": None}}]}
        return {"$or": [{field: {"$gt": value}}, {field: value, "_id": {"$gt": _id}}]}
    if value is None:
        return {field: None, "_id": {"$lt": _id}}
    return {"$or": [{field: {"$lt": value}}, {field: value, "_id": {"$lt": _id}}, {field: None}]}


def page_query(flt: Filter | None, sort: tuple[str, int] = DEFAULT_SORT, *,
               after: tuple[Any, Any] | None = None,
               backward: bool = False) -> tuple[dict, list[tuple[str, int]]]:
    """(query, sort spec) for one keyset page. ``after`` is the (value, _id) of the row the page
    starts after (``backward``: ends before; the sort spec is then reversed)."""
    name, direction = parse_sort(sort)
    field = SORT_FIELDS[name]
    if backward:
        direction = -direction
    query = _query(flt)
    if after is not None:
        query = and_queries(query, _after_clause(field, direction, after[0], after[1]))
    spec = [(field, direction)] if field == "_id" else [(field, direction), ("_id", direction)]
    return query, spec


def page(db: Any, flt: Filter | None = None, *, sort: str | Sequence = DEFAULT_SORT,
         size: int = 50, after: str | None = None, before: str | None = None,
         columns: Sequence[str] = TABLE_COLUMNS, max_time_ms: int | None = None) -> Page:
    """One page of matching files (``columns`` projected, plus ``_id`` and the sort field).

    Without a cursor: the first page. ``after``: the page following the row the cursor names;
    ``before``: the page preceding it (when fewer than ``size`` rows precede it, the first page).
    """
    sort = parse_sort(sort)
    if not 1 <= int(size) <= MAX_PAGE_SIZE:
        raise QueryError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
    if after and before:
        raise QueryError("give after or before, not both")
    size = int(size)
    field = SORT_FIELDS[sort[0]]
    coll = _collection(db)
    projection = _projection([*columns, field])
    cursor = after or before
    position = decode_cursor(cursor, sort) if cursor else None
    backward = bool(before)
    query, spec = page_query(flt, sort, after=position, backward=backward)
    with _timeouts(max_time_ms):
        rows = list(_find(coll, query, projection, sort=spec, limit=size + 1,
                          max_time_ms=max_time_ms))
    more = len(rows) > size
    rows = rows[:size]

    def key(row: dict) -> str:
        return encode_cursor(sort, _get(row, field), row["_id"])

    def exists_beyond(row: dict, reverse: bool) -> bool:
        q, _ = page_query(flt, sort, after=(_get(row, field), row["_id"]), backward=reverse)
        with _timeouts(max_time_ms):
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


# ---------------------------------------------------------------------------------------------
# one file
# ---------------------------------------------------------------------------------------------

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
        docs = list(_find(coll, q, sort=[("site", 1), ("_id", 1)], limit=1))
        doc = docs[0] if docs else None
    if doc is not None and unescape:
        doc = unescape_document(doc)
    return doc


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------


def export_header(flt: Filter | None) -> list[str]:
    """The ``#`` comment lines at the top of csv and paths exports."""
    flt = _as_filter(flt)
    return [f"# spine-docs export: {flt.describe()}\n",
            f"# query: {_to_json(flt.to_mongo())}\n"]


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
    coll = _collection(db)
    query = _query(flt)
    spec = None
    if sort is not None:
        name, direction = parse_sort(sort)
        f = SORT_FIELDS[name]
        spec = [(f, direction)] if f == "_id" else [(f, direction), ("_id", direction)]
    if fmt == "paths":
        cols: Sequence[str] = ("path",)
        projection: Any = _projection(cols, with_id=False)
    elif fmt == "csv":
        cols = tuple(columns or EXPORT_COLUMNS)
        projection = _projection(cols, with_id=False)
    else:
        cols = tuple(columns or ())
        projection = _projection(cols, with_id=False) if cols else None
    cursor = _find(coll, query, projection, sort=spec, limit=limit or 0,
                   batch_size=batch_size, max_time_ms=max_time_ms)
    return _export_lines(cursor, flt, fmt, cols, max_time_ms)


def _export_lines(cursor: Any, flt: Filter | None, fmt: str, cols: Sequence[str],
                  max_time_ms: int | None) -> Iterator[str]:
    if fmt in ("csv", "paths"):
        yield from export_header(flt)
    if fmt == "csv":
        yield _csv_line(cols)
    with _timeouts(max_time_ms):
        for doc in cursor:
            if fmt == "jsonl":
                yield _to_json(doc) + "\n"
            elif fmt == "csv":
                yield _csv_line([_get(doc, c) for c in cols])
            else:
                yield f"{doc.get('path')}\n"


# ---------------------------------------------------------------------------------------------
# analytics
# ---------------------------------------------------------------------------------------------


def timeline_pipeline(flt: Filter | None, by: str = "day", group: str | None = None,
                      time_field: str = "mtime") -> list[dict]:
    if by not in _PERIOD_FORMATS:
        raise QueryError(f"by must be one of {', '.join(_PERIOD_FORMATS)}")
    if group is not None and group not in TIMELINE_GROUPS:
        raise QueryError(f"group must be one of {', '.join(TIMELINE_GROUPS)}")
    if time_field not in TIME_FIELDS:
        raise QueryError(f"time_field must be one of {', '.join(TIME_FIELDS)}")
    key: dict = {"p": {"$dateToString": {"format": _PERIOD_FORMATS[by], "date": "$" + time_field}}}
    if group is not None:
        key["g"] = "$" + group
    return [
        {"$match": and_queries(_query(flt), {time_field: {"$gte": _OLDEST_DATE}})},
        {"$group": {"_id": key, "files": {"$sum": 1}, "events": {"$sum": "$num_events"},
                    "bytes": {"$sum": "$size"}}},
        {"$sort": {"_id.p": 1, "_id.g": 1}},
    ]


def _period_start(label: str, by: str) -> str:
    if by == "week":
        year, week = label.split("-W")
        return date.fromisocalendar(int(year), int(week), 1).isoformat()
    if by == "month":
        return label + "-01"
    return label


def timeline(db: Any, flt: Filter | None = None, by: str = "day", group: str | None = None, *,
             time_field: str = "mtime", max_time_ms: int | None = None) -> list[dict]:
    """Files, events and bytes per period (and per ``group`` value), oldest first. ``period``
    is the first day of the period (UTC; ISO weeks start on Monday). Files whose time field is
    null are not counted."""
    rows = _aggregate(_collection(db), timeline_pipeline(flt, by, group, time_field), max_time_ms)
    out = [{"period": _period_start(r["_id"]["p"], by), "group": r["_id"].get("g"),
            "files": r["files"], "events": r["events"] or 0, "bytes": r["bytes"] or 0}
           for r in rows]
    out.sort(key=lambda r: (r["period"], r["group"] is not None, str(r["group"])))
    return out


def _numeric(field: str, log: bool) -> dict:
    return {"$and": [{"$isNumber": "$" + field}, {"$gt": ["$" + field, 0]}]} if log \
        else {"$isNumber": "$" + field}


def histogram_stats_pipeline(flt: Filter | None, field: str, log: bool = False) -> list[dict]:
    """One row: total matching, numeric (positive when ``log``) count, min and max."""
    if field not in HISTOGRAM_FIELDS:
        raise QueryError(f"histogram field must be one of {', '.join(HISTOGRAM_FIELDS)}")
    ok = _numeric(field, log)
    q = _query(flt)
    return ([{"$match": q}] if q else []) + [
        {"$group": {"_id": None, "total": {"$sum": 1},
                    "n": {"$sum": {"$cond": [ok, 1, 0]}},
                    "lo": {"$min": {"$cond": [ok, "$" + field, None]}},
                    "hi": {"$max": {"$cond": [ok, "$" + field, None]}}}},
    ]


def histogram_pipeline(flt: Filter | None, field: str, start: float, width: float,
                       log: bool = False) -> list[dict]:
    """Counts per bin index ``floor((x - start) / width)`` (x = log10(value) when ``log``)."""
    if field not in HISTOGRAM_FIELDS:
        raise QueryError(f"histogram field must be one of {', '.join(HISTOGRAM_FIELDS)}")
    cond = {field: {"$gt": 0}} if log else {field: {"$gte": float("-inf")}}
    x: Any = {"$log10": "$" + field} if log else "$" + field
    return [
        {"$match": and_queries(_query(flt), cond)},
        {"$group": {"_id": {"$floor": {"$divide": [{"$subtract": [x, start]}, width]}},
                    "count": {"$sum": 1}}},
        {"$sort": {"_id": 1}},
    ]


def _nice(step: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= step."""
    if step <= 0:
        return 1.0
    exp = math.floor(math.log10(step))
    for m in (1, 2, 5, 10):
        if m * 10**exp >= step * (1 - 1e-12):
            return m * 10**exp
    return 10 ** (exp + 1)  # pragma: no cover


def histogram(db: Any, flt: Filter | None = None, field: str = "size", bins: int = 20, *,
              log: bool = False, max_time_ms: int | None = None) -> dict:
    """Histogram of a numeric promoted field: ``{"field", "log", "bins": [{"lo", "hi",
    "count"}], "missing", "total"}``. Linear bins have a round width (1, 2 or 5 x 10^k, at
    least 1: the fields are integers); ``log`` bins are equal in log10 and leave out values <= 0.
    ``missing`` counts matching files without a usable value."""
    if not 1 <= bins <= 1000:
        raise QueryError("bins must be between 1 and 1000")
    coll = _collection(db)
    stats = _aggregate(coll, histogram_stats_pipeline(flt, field, log), max_time_ms)
    s = stats[0] if stats else {"total": 0, "n": 0, "lo": None, "hi": None}
    result = {"field": field, "log": log, "bins": [], "missing": s["total"] - s["n"],
              "total": s["total"]}
    if not s["n"]:
        return result
    lo, hi = float(s["lo"]), float(s["hi"])
    if log:
        start = math.floor(math.log10(lo))
        span = math.log10(hi) - start
        width = span / bins if span > 0 else 1.0
        nbins = bins if span > 0 else 1
        edges = [10 ** (start + i * width) for i in range(nbins + 1)]
    else:
        width = max(1.0, _nice((hi - lo) / bins))
        start = math.floor(lo / width) * width
        nbins = int((hi - start) // width) + 1
        edges = [start + i * width for i in range(nbins + 1)]
    counts = [0] * nbins
    for r in _aggregate(coll, histogram_pipeline(flt, field, start, width, log), max_time_ms):
        if r["_id"] is None:
            continue
        i = min(max(int(r["_id"]), 0), nbins - 1)  # float rounding at the top edge
        counts[i] += r["count"]
    as_int = not log and float(width).is_integer() and float(start).is_integer()
    result["bins"] = [{"lo": int(edges[i]) if as_int else edges[i],
                       "hi": int(edges[i + 1]) if as_int else edges[i + 1],
                       "count": counts[i]} for i in range(nbins)]
    return result


def run_coverage_pipeline(flt: Filter | None, dataset: str | None = None) -> list[dict]:
    q = and_queries(_query(flt), {"dataset": dataset} if dataset is not None else None)
    return ([{"$match": q}] if q else []) + [
        {"$group": {"_id": {"d": "$dataset", "r": "$run", "rm": "$run_max", "s": "$subrun",
                            "sm": "$subrun_max"},
                    "files": {"$sum": 1}, "events": {"$sum": "$num_events"}}},
        # no $sort: run_coverage() orders everything itself (sorting one row per distinct
        # (dataset, run, subrun) costs as much as the grouping on the embedded catalog)
    ]


def _ranges(values: Iterable[int]) -> list[list[int]]:
    """Sorted ints -> inclusive ranges: [1, 2, 3, 7] -> [[1, 3], [7, 7]]."""
    out: list[list[int]] = []
    for v in sorted(set(values)):
        if out and v == out[-1][1] + 1:
            out[-1][1] = v
        else:
            out.append([v, v])
    return out


def _gaps(ranges: list[list[int]]) -> list[list[int]]:
    return [[a[1] + 1, b[0] - 1] for a, b in zip(ranges, ranges[1:])]


def _span(lo: Any, hi: Any) -> range | None:
    if not isinstance(lo, int) or isinstance(lo, bool):
        return None
    if not isinstance(hi, int) or isinstance(hi, bool) or hi < lo:
        hi = lo
    return range(lo, min(hi, lo + MAX_RUN_SPAN - 1) + 1)


def run_coverage(db: Any, flt: Filter | None = None, dataset: str | None = None, *,
                 max_time_ms: int | None = None) -> list[dict]:
    """Which runs and subruns each dataset has, and the gaps between them.

    A file covers runs ``run..run_max`` (``run_max`` null: just ``run``); a single-run file
    covers subruns ``subrun..subrun_max`` (a multi-run file adds to the ``files`` of each of its
    runs but to no run's ``events`` or subruns). Gaps are the missing numbers between the
    smallest and the largest present (inclusive ranges). ``no_run`` counts files without a run
    number. Ranges longer than ``MAX_RUN_SPAN`` are cut there.
    """
    rows = _aggregate(_collection(db), run_coverage_pipeline(flt, dataset), max_time_ms)
    per: dict[Any, dict] = {}
    for r in rows:
        k = r["_id"]
        d = per.setdefault(k.get("d"), {"files": 0, "no_run": 0, "runs": {}})
        d["files"] += r["files"]
        runs = _span(k.get("r"), k.get("rm"))
        if runs is None:
            d["no_run"] += r["files"]
            continue
        subruns = _span(k.get("s"), k.get("sm")) if len(runs) == 1 else None
        for run in runs:
            info = d["runs"].setdefault(run, {"files": 0, "events": 0, "subruns": set()})
            info["files"] += r["files"]
            if len(runs) == 1:
                info["events"] += r["events"] or 0
            if subruns is not None:
                info["subruns"].update(subruns)
    out = []
    for name in sorted(per, key=lambda n: (n is not None, str(n))):
        d = per[name]
        run_ranges = _ranges(d["runs"])
        gaps = _gaps(run_ranges)
        per_run = []
        for run in sorted(d["runs"]):
            info = d["runs"][run]
            sub_ranges = _ranges(info["subruns"])
            sub_gaps = _gaps(sub_ranges)
            per_run.append({"run": run, "files": info["files"], "events": info["events"],
                            "subruns": sub_ranges, "subrun_count": len(info["subruns"]),
                            "subrun_gaps": sub_gaps,
                            "missing_subruns": sum(b - a + 1 for a, b in sub_gaps)})
        out.append({
            "dataset": name, "files": d["files"], "no_run": d["no_run"],
            "run_min": run_ranges[0][0] if run_ranges else None,
            "run_max": run_ranges[-1][1] if run_ranges else None,
            "run_count": len(d["runs"]), "runs": run_ranges, "gaps": gaps,
            "missing_runs": sum(b - a + 1 for a, b in gaps), "per_run": per_run,
        })
    return out


# ---------------------------------------------------------------------------------------------
# attribute dictionary
# ---------------------------------------------------------------------------------------------


def _narrow(flt: Filter | None, max_docs: int | None) -> list[dict]:
    q = _query(flt)
    stages = [{"$match": q}] if q else []
    if max_docs:
        stages += [{"$sort": {"mtime": -1, "_id": -1}}, {"$limit": int(max_docs)}]
    return stages


def attribute_keys_pipeline(flt: Filter | None = None, max_docs: int | None = None) -> list[dict]:
    return _narrow(flt, max_docs) + [
        {"$project": {"_id": 0, "t": {"$objectToArray": {"$ifNull": ["$attr_types", {}]}}}},
        {"$unwind": "$t"},
        {"$group": {"_id": {"k": "$t.k", "t": "$t.v"}, "n": {"$sum": 1}}},
        {"$sort": {"_id.k": 1, "n": -1, "_id.t": 1}},
    ]


def _key_entry(escaped: str) -> dict:
    return {"key": convert.unescape_key(escaped), "field": "attrs." + escaped, "files": 0,
            "types": {}}


def _finish_types(entry: dict) -> None:
    entry["types"] = dict(sorted(entry["types"].items(), key=lambda kv: (-kv[1], kv[0])))
    entry["type"] = next(iter(entry["types"]), None)


def attribute_keys(db: Any, flt: Filter | None = None, *, max_docs: int | None = None,
                   max_time_ms: int | None = None) -> list[dict]:
    """Every root attribute key of the matching files (from ``attr_types``): ``{"key"
    (original name), "field" (``attrs.<escaped>``), "files", "types": {label: files}, "type"
    (the most common label)}``, sorted by key."""
    entries: dict[str, dict] = {}
    for r in _aggregate(_collection(db), attribute_keys_pipeline(flt, max_docs), max_time_ms):
        e = entries.setdefault(r["_id"]["k"], _key_entry(r["_id"]["k"]))
        e["files"] += r["n"]
        e["types"][r["_id"]["t"]] = e["types"].get(r["_id"]["t"], 0) + r["n"]
    for e in entries.values():
        _finish_types(e)
    return sorted(entries.values(), key=lambda e: e["key"])


def attribute_types(db: Any, flt: Filter | None = None, **kwargs: Any) -> dict[str, str]:
    """``{original key: most common type label}`` (to type attribute filter values)."""
    return {e["key"]: e["type"] for e in attribute_keys(db, flt, **kwargs)}


def attribute_dictionary_pipeline(flt: Filter | None = None,
                                  max_docs: int | None = None) -> list[dict]:
    """Per (key, type): files, distinct values, min, max and the most common value."""
    typed_attrs = {"$let": {
        "vars": {"types": {"$objectToArray": {"$ifNull": ["$attr_types", {}]}}},
        "in": {"$map": {
            "input": {"$objectToArray": {"$ifNull": ["$attrs", {}]}},
            "as": "a",
            "in": {"k": "$$a.k", "v": "$$a.v", "t": {"$ifNull": [
                {"$arrayElemAt": [{"$map": {
                    "input": {"$filter": {"input": "$$types", "as": "t",
                                          "cond": {"$eq": ["$$t.k", "$$a.k"]}}},
                    "as": "m", "in": "$$m.v"}}, 0]},
                "unknown"]}},
        }},
    }}
    orderable = {"$in": ["$_id.t", list(ORDERED_TYPES)]}
    return _narrow(flt, max_docs) + [
        {"$project": {"_id": 0, "a": typed_attrs}},
        {"$unwind": "$a"},
        # decimals are grouped by their text: mongomock cannot sort or group Decimal128
        # (MongoDB and mongomock agree on $toString of a decimal; only dates differ)
        {"$group": {"_id": {"k": "$a.k", "t": "$a.t", "v": {"$cond": [
            {"$eq": ["$a.t", "decimal"]}, {"$toString": "$a.v"}, "$a.v"]}},
            "n": {"$sum": 1}}},
        {"$sort": {"n": -1, "_id.k": 1, "_id.t": 1, "_id.v": 1}},
        {"$group": {"_id": {"k": "$_id.k", "t": "$_id.t"},
                    "files": {"$sum": "$n"}, "distinct": {"$sum": 1},
                    "top": {"$first": "$_id.v"}, "top_count": {"$first": "$n"},
                    "min": {"$min": {"$cond": [orderable, "$_id.v", None]}},
                    "max": {"$max": {"$cond": [orderable, "$_id.v", None]}}}},
        {"$sort": {"_id.k": 1, "files": -1, "_id.t": 1}},
    ]


def _decimal(text: str) -> Any:
    try:
        return bson.Decimal128(text)
    except Exception:  # noqa: BLE001 - keep the text
        return text


def _example(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _EXAMPLE_CHARS:
        return value[: _EXAMPLE_CHARS - 1] + "…"
    return value


# MongoDB's comparison order of the ORDERED_TYPES (int, long and double compare numerically).
_TYPE_CLASS = {"int": 1, "long": 1, "double": 1, "string": 2, "bool": 3, "date": 4}


def attribute_dictionary(db: Any, flt: Filter | None = None, examples: int = 3, *,
                         max_docs: int | None = None,
                         max_time_ms: int | None = None) -> list[dict]:
    """The attribute dictionary of the matching files (``max_docs``: only the newest N of them):
    for every root attribute key ``{"key", "field", "files", "types", "type", "distinct", "min",
    "max", "examples"}``, sorted by key. ``min``/``max`` cover bool, numbers, strings and dates
    (across types, the lowest/highest in MongoDB's type order; not decimals); ``examples`` lists up to
    ``examples`` values: the most common value of each type, then the minima and maxima.
    Long strings are shortened to 200 characters."""
    rows = _aggregate(_collection(db), attribute_dictionary_pipeline(flt, max_docs), max_time_ms)
    entries: dict[str, dict] = {}
    parts: dict[str, list[dict]] = {}
    for r in rows:
        k, t = r["_id"]["k"], r["_id"].get("t")
        e = entries.setdefault(k, _key_entry(k))
        e["files"] += r["files"]
        e["types"][t] = e["types"].get(t, 0) + r["files"]
        e["distinct"] = e.get("distinct", 0) + r["distinct"]
        if t == "decimal" and isinstance(r.get("top"), str):
            r = {**r, "top": _decimal(r["top"])}
        parts.setdefault(k, []).append({**r, "t": t})
    out = []
    for k, e in entries.items():
        _finish_types(e)
        ps = sorted(parts[k], key=lambda p: (-p["files"], str(p["t"])))
        ordered = [p for p in ps if p["t"] in _TYPE_CLASS and p.get("min") is not None]
        mins = [p["min"] for p in ordered]
        maxs = [p["max"] for p in ordered]
        e["min"] = e["max"] = None
        if ordered:
            lo = min(_TYPE_CLASS[p["t"]] for p in ordered)
            hi = max(_TYPE_CLASS[p["t"]] for p in ordered)
            e["min"] = _example(min(p["min"] for p in ordered if _TYPE_CLASS[p["t"]] == lo))
            e["max"] = _example(max(p["max"] for p in ordered if _TYPE_CLASS[p["t"]] == hi))
        candidates = [p["top"] for p in ps] + mins + maxs
        ex: list = []
        for c in candidates:
            c = _example(c)
            if len(ex) >= examples:
                break
            if not any(c == x and type(c) is type(x) for x in ex):
                ex.append(c)
        e["examples"] = ex
        out.append(e)
    return sorted(out, key=lambda e: e["key"])


# ---------------------------------------------------------------------------------------------
# replicas
# ---------------------------------------------------------------------------------------------

REPLICA_KEYS = {"fingerprint": "fingerprint", "checksum": "checksum.sha256"}


def replicas_pipeline(flt: Filter | None = None, limit: int = 100,
                      key: str = "fingerprint") -> list[dict]:
    if key not in REPLICA_KEYS:
        raise QueryError(f"key must be one of {', '.join(REPLICA_KEYS)}")
    f = REPLICA_KEYS[key]
    q = _query(flt)
    # one $group on the key alone (the sites are read with the members); keys that are not
    # non-empty strings (missing, null, "") are dropped after grouping, which is the same as
    # matching {f: {$gt: ""}} first but spares a filter per document when there is no filter
    return ([{"$match": q}] if q else []) + [
        {"$group": {"_id": "$" + f, "count": {"$sum": 1}}},
        {"$match": {"count": {"$gt": 1}, "_id": {"$gt": ""}}},
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
    with _timeouts(max_time_ms):
        for doc in _find(coll, q, projection, sort=[("site", 1), ("path", 1)],
                         max_time_ms=max_time_ms):
            members[_get(doc, f)].append({c: doc.get(c) for c in REPLICA_COLUMNS})
    return [{"key": g["_id"], "count": g["count"],
             "sites": sorted({m["site"] for m in members[g["_id"]]}, key=str),
             "files": members[g["_id"]]} for g in groups]


# ---------------------------------------------------------------------------------------------
# saved queries
# ---------------------------------------------------------------------------------------------


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
