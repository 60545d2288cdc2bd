"""The filter: :class:`Filter` and :class:`AttrFilter` select files, give their MongoDB query
document, a one-line description and a flat URL-parameter form; :func:`and_queries` combines
query documents.

:class:`Filter` (pydantic) is the shared currency between the URL, the CLI and every query:

- facet selections (lists; ``None`` selects files where the field is null):
  ``site, status, spine_version, model, dataset, detector, config, prod_version``; a status
  is one of :data:`spine_docs.extract.STATUSES` (``ok``, ``incomplete``, ``error``, and
  ``verify``'s ``missing``, ``changed``, ``corrupt``)
- ``version_min`` / ``version_max``: SPINE version range, compared on ``spine_version_key``
  with :func:`spine_docs.spine.semver_key` (both ends inclusive; pre-releases of a release sort
  before it)
- ``run_min/run_max``, ``subrun_min/subrun_max``: files whose range ``[run, run_max]``
  (``run_max`` null means ``run``) overlaps the given range (either end may be open)
- ``events_min/events_max`` on ``num_events`` (inclusive)
- ``mtime_from`` (inclusive) / ``mtime_to``: a ``date`` means the whole day (UTC, inclusive), a
  ``datetime`` is an inclusive instant; naive datetimes are UTC
- ``path_contains`` (literal, case-sensitive substring) and ``path_regex`` (a regular expression,
  read as a server's PCRE reads it: see :mod:`.pcre`; so are ``regex`` attribute filters)
- ``attr_filters``: ``[AttrFilter(key, op, value)]`` on root attributes; ``key`` is the original
  HDF5 attribute name (escaped here with :func:`spine_docs.convert.escape_key`), ``op`` one of
  ``ATTR_OPS`` (see :data:`ATTR_OP_TABLE`; MongoDB semantics: ``ne`` also matches files without
  the key). Build typed values with :meth:`AttrFilter.parse` / :func:`coerce_value` using the
  type label from :func:`attribute_keys`, or parse ``key>=value`` text with
  :meth:`AttrFilter.parse_expr` (its docstring gives the quoting rule and what it refuses).
- ``include_retired``: retired files (``spine-docs retire``) are left out unless this is true
  (:data:`NOT_RETIRED`; :meth:`Filter.is_empty` ignores that default condition)
- ``latest_only``: files superseded by a newer version (``superseded_by``, see
  :mod:`spine_docs.supersede`) are left out (:data:`NOT_SUPERSEDED`; ignored by ``is_empty``
  too)
- ``where``: a raw MongoDB query document (the CLI's ``--where`` JSON object, Extended JSON
  accepted) of MongoDB 6.0's operators (:data:`QUERY_OPERATORS`); unknown ``$names``, server-side
  JavaScript (``$where``, ``$function``, ``$accumulator``) and the arguments a server refuses
  before running (``$or: []``, ``$in: 5``, ...) are refused. Operators the embedded catalog
  lacks are refused when the query runs (see ``_run._running``).

``Filter.to_mongo()`` gives the chosen conditions as a query document, ``Filter.query()`` the
document the queries send (with the default exclusion of retired files), ``to_params()``/``from_params()`` round-trip
through a flat ``{str: str}`` dict (URL query parameters, keys in ``PARAM_KEYS``: lists are
comma-joined with ``\\`` escapes and ``(none)`` for null, dates ISO 8601, ``attr`` and ``where``
relaxed Extended JSON; unknown keys are ignored so the same dict can hold page/sort state),
``describe()`` a one-line summary (export headers), ``without()`` a copy with some fields
cleared. Invalid input raises ``ValueError`` (pydantic's ``ValidationError`` or
:class:`QueryError`, both subclasses).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Iterable, Literal, Mapping

import bson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spine_docs import convert, spine
from spine_docs.extract import STATUSES

from .errors import QueryError
from .pcre import PatternError, to_pcre
from .values import UTC, _format_when, _from_json, _to_json, coerce_value, parse_datetime

# Facet (multi-select) fields of the Filter; all are promoted string fields.
FACET_FIELDS: tuple[str, ...] = (
    "site", "status", "spine_version", "model", "dataset", "detector", "config", "prod_version",
)

# A facet selection of None (the field is null) in URL parameters.
NONE_TOKEN = "(none)"
FORBIDDEN_OPERATORS = frozenset({"$where", "$function", "$accumulator"})

# MongoDB 6.0's query operators (reference/operator/query), server-side JavaScript excepted.
QUERY_OPERATORS: frozenset[str] = frozenset({
    # comparison
    "$eq", "$gt", "$gte", "$in", "$lt", "$lte", "$ne", "$nin",
    # logical
    "$and", "$not", "$nor", "$or",
    # element
    "$exists", "$type",
    # evaluation ($regex's $options too)
    "$expr", "$jsonSchema", "$mod", "$regex", "$options", "$text",
    # geospatial, and their geometry specifiers
    "$geoIntersects", "$geoWithin", "$near", "$nearSphere",
    "$box", "$center", "$centerSphere", "$geometry", "$maxDistance", "$minDistance", "$polygon",
    # array
    "$all", "$elemMatch", "$size",
    # bitwise
    "$bitsAllClear", "$bitsAllSet", "$bitsAnyClear", "$bitsAnySet",
    # miscellaneous
    "$comment", "$rand",
})
# Operators whose argument is not a query: an aggregation expression, a JSON schema, text
# search options, GeoJSON, a comment, or a value to compare with (never read as operators).
_OPAQUE_OPERATORS = frozenset({
    "$expr", "$jsonSchema", "$text", "$geometry", "$comment", "$rand",
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$all",
}) | FORBIDDEN_OPERATORS
_LOGICAL_OPERATORS = ("$and", "$or", "$nor")


def _check_bson(value: Any, what: str) -> None:
    try:
        bson.encode({"v": value})
    except Exception as exc:  # noqa: BLE001 - any encoding failure is a user error here
        raise ValueError(f"{what} cannot be stored in BSON: {exc}") from None


def _check_regex(pattern: str) -> str:
    """A pattern both engines read alike (see :mod:`.pcre`), as the user wrote it; the query
    carries :func:`~.pcre.to_pcre` of it."""
    try:
        with warnings.catch_warnings():  # "possible nested set": to_pcre names it
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(pattern)
        to_pcre(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    except PatternError as exc:
        raise ValueError(f"regular expression {pattern!r} uses {exc}") from None
    return pattern


def _regex_problem(obj: Any) -> None:
    """Check the string patterns of ``$regex`` in a query document (``where``) as
    :func:`_check_regex` does; they are sent as written."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if k == "$regex" and isinstance(v, str):
                _check_regex(v)
            elif k not in _OPAQUE_OPERATORS:
                _regex_problem(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _regex_problem(v)


def _unknown_operators(obj: Any, found: set[str]) -> set[str]:
    """The ``$names`` of a query document that are not MongoDB query operators (arguments that
    are not queries, such as ``$expr``'s, are not looked into)."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if isinstance(k, str) and k.startswith("$"):
                if k not in QUERY_OPERATORS and k not in FORBIDDEN_OPERATORS:
                    found.add(k)
                if k in _OPAQUE_OPERATORS:
                    continue
            _unknown_operators(v, found)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _unknown_operators(v, found)
    return found


def _query_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _whole_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()


_PATTERN_TYPES = (str, bson.regex.Regex, re.Pattern)

# What a server checks before it runs a query, checked here so that every engine says the same
# (mongomock does not check these, and fails, or matches nothing, while evaluating them).
_ARGUMENTS: dict[str, tuple[str, Any]] = {
    **{op: ("a non-empty list of query documents", _query_list) for op in _LOGICAL_OPERATORS},
    **{op: ("a list", lambda v: isinstance(v, (list, tuple))) for op in ("$in", "$nin", "$all")},
    "$regex": ("a string or a regular expression", lambda v: isinstance(v, _PATTERN_TYPES)),
    "$options": ("a string", lambda v: isinstance(v, str)),
    "$elemMatch": ("a document", lambda v: isinstance(v, Mapping)),
    "$not": ("a document or a regular expression",
             lambda v: isinstance(v, (Mapping, *_PATTERN_TYPES[1:]))),
    "$size": ("a whole number", _whole_number),
    "$mod": ("a list [divisor, remainder]", lambda v: isinstance(v, (list, tuple)) and len(v) == 2
             and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)),
}


def _bad_argument(obj: Any) -> str | None:
    """The first operator of a query document whose argument is of the wrong kind."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if k in _ARGUMENTS and not _ARGUMENTS[k][1](v):
                return f"{k} needs {_ARGUMENTS[k][0]}"
            if k in _OPAQUE_OPERATORS:
                continue
            found = _bad_argument(v)
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found = _bad_argument(v)
            if found:
                return found
    return None


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


# ---------------------------------------------------------------------------------------------
# attribute conditions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttrOp:
    """One operator of attribute conditions. :data:`ATTR_OP_TABLE` is the only list of them:
    :class:`AttrFilter` validates, parses, builds its query and describes itself from it, and
    the explorer's operator picker shows its labels (``app/explorer_ui.py``).

    ``symbols`` are the spellings :meth:`AttrFilter.parse_expr` accepts between key and value,
    spaces optional (``"k>=1"``); a word such as ``in`` needs spaces around it and is tried
    before the symbols, so that its values may contain them (``"k in a=b,c"``). A flag's two
    symbols mark true after the key and false before it (``"k?"``; ``"!k"`` unless a symbol
    follows).

    ``takes`` is the kind of value: ``value`` is :func:`coerce_value` of the text, typed with
    the key's type label; ``values`` a list of them (comma-separated text); ``pattern`` the text
    as it is, a regular expression; ``flag`` a bool (no text means true).
    """

    name: str                  # AttrFilter.op, also in the URL's [key, op, value]
    mongo: str                 # the query operator: {"attrs.<key>": {mongo: value}}
    symbols: tuple[str, ...]   # parse_expr's spellings (see above)
    label: str                 # the explorer's operator picker
    phrase: str                # describe(): {key} and {value} (shortened) are filled in
    takes: Literal["value", "values", "pattern", "flag"] = "value"
    phrase_false: str = ""     # describe() of a flag that is false


ATTR_OP_TABLE: tuple[AttrOp, ...] = (
    #      name      mongo      symbols      label             phrase
    AttrOp("eq",     "$eq",     ("=", "=="), "=",              "{key} = {value}"),
    AttrOp("ne",     "$ne",     ("!=",),     "≠",              "{key} != {value}"),
    AttrOp("gt",     "$gt",     (">",),      ">",              "{key} > {value}"),
    AttrOp("gte",    "$gte",    (">=",),     "≥",              "{key} >= {value}"),
    AttrOp("lt",     "$lt",     ("<",),      "<",              "{key} < {value}"),
    AttrOp("lte",    "$lte",    ("<=",),     "≤",              "{key} <= {value}"),
    AttrOp("in",     "$in",     ("in",),     "in (a, b, ...)", "{key} in {value}", "values"),
    AttrOp("regex",  "$regex",  ("~",),      "matches regex",  "{key} ~ {value}", "pattern"),
    AttrOp("exists", "$exists", ("?", "!"),  "exists",         "has {key}", "flag", "no {key}"),
)
ATTR_OPS: tuple[str, ...] = tuple(o.name for o in ATTR_OP_TABLE)
_ATTR_OP: dict[str, AttrOp] = {o.name: o for o in ATTR_OP_TABLE}

# parse_expr's grammar, derived from the table (longest symbols first: ">=" before ">")
_FLAG_OPS = tuple(o for o in ATTR_OP_TABLE if o.takes == "flag")
_OP_OF_SYMBOL = {sym: o for o in ATTR_OP_TABLE if o.takes != "flag" for sym in o.symbols}
_WORD_SYMBOLS = sorted((sym for sym in _OP_OF_SYMBOL if sym.isalpha()), key=len, reverse=True)
_MARK_SYMBOLS = sorted((sym for sym in _OP_OF_SYMBOL if not sym.isalpha()), key=len, reverse=True)
_WORD_RE = re.compile(r"\A(.*?)\s+(%s)\s+(.*)\Z" % "|".join(map(re.escape, _WORD_SYMBOLS)), re.S)
_MARK_RE = re.compile(r"\A(.*?)\s*(%s)\s*(.*)\Z" % "|".join(map(re.escape, _MARK_SYMBOLS)), re.S)


def _op(name: Any) -> AttrOp | None:
    """The table entry of an operator name (None for anything else: the model refuses it)."""
    return _ATTR_OP.get(name) if isinstance(name, str) else None


class AttrFilter(BaseModel):
    """One condition on a root attribute: ``key`` is the original (unescaped) attribute name."""

    model_config = ConfigDict(frozen=True)

    key: str
    op: Literal[ATTR_OPS] = "eq"  # type: ignore[valid-type]  # the names of ATTR_OP_TABLE
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if isinstance(data, (list, tuple)):
            data = dict(zip(("key", "op", "value"), data))
        if isinstance(data, Mapping):
            data = dict(data)
            spec, v = _op(data.get("op", "eq")), data.get("value")
            takes = spec.takes if spec else None
            if takes == "flag" and not isinstance(v, bool):
                data["value"] = True if v is None else (
                    coerce_value(v, "bool") if isinstance(v, str) else bool(v))
            elif takes == "values" and not isinstance(v, (list, tuple)):
                data["value"] = [v]
            elif takes == "values":
                data["value"] = list(v)
        return data

    @model_validator(mode="after")
    def _check(self) -> "AttrFilter":
        if _ATTR_OP[self.op].takes == "pattern":
            if not isinstance(self.value, str):
                raise ValueError(f"a {self.op} attribute filter needs a string pattern")
            _check_regex(self.value)
        _check_bson(self.value, f"value of attribute filter on {self.key!r}")
        return self

    @property
    def field(self) -> str:
        """The document field: ``attrs.<escaped key>``."""
        return "attrs." + convert.escape_key(self.key)

    def to_mongo(self) -> dict:
        spec = _ATTR_OP[self.op]
        value = to_pcre(self.value) if spec.takes == "pattern" else self.value
        return {self.field: {spec.mongo: value}}

    def describe(self) -> str:
        spec = _ATTR_OP[self.op]
        phrase = spec.phrase_false if spec.takes == "flag" and not self.value else spec.phrase
        return phrase.format(key=self.key, value=_short(self.value))

    @classmethod
    def parse(cls, key: str, op: str, text: Any, type_label: str | None = None) -> "AttrFilter":
        """Build a typed filter from user text (``in`` takes comma-separated values)."""
        spec = _op(op)
        takes = spec.takes if spec else "value"
        if takes == "pattern":
            return cls(key=key, op=op, value=text)
        if takes == "flag":
            return cls(key=key, op=op, value=True if text in (None, "") else coerce_value(text, "bool"))
        if takes == "values":
            items = text if isinstance(text, (list, tuple)) else _split_list(str(text))
            return cls(key=key, op=op, value=[coerce_value(t, type_label) for t in items])
        return cls(key=key, op=op, value=coerce_value(text, type_label))

    @classmethod
    def parse_expr(cls, expr: str, types: Mapping[str, str] | None = None) -> "AttrFilter":
        """``"key>=0.5"``, ``"key!=x"``, ``"key~regex"``, ``"key in a,b"``, ``"key?"`` (exists),
        ``"!key"`` (missing). ``types`` maps keys to type labels (see :func:`attribute_keys`).

        A value is typed like the key (else guessed: null, true/false, numbers, else text); a
        quoted value (``'...'`` or ``"..."``) is exactly the text inside, also for ``~`` and each
        item of ``in``. Refused with :class:`QueryError`, never read another way: no key, no
        value (``k>=``; ``k=""`` is the empty string), a value starting with one of ``= ! < > ~``
        unless quoted (``x>>5``; ``x>'>5'`` is the text ">5")."""
        types = types or {}
        s = expr.strip()
        m = _WORD_RE.match(s)
        if m and any(sym in m.group(1) for sym in _MARK_SYMBOLS):
            m = None  # "comment=made in Italy" is an equality, not "in"
        if not m:
            m = _MARK_RE.match(s)
        if not m:
            return cls._parse_flag(expr, s)
        key, sym, text = m.group(1).strip(), m.group(2), m.group(3).strip()
        if not key:
            raise QueryError(f"attribute condition {expr!r} has no key (try key{sym}value)")
        spec = _OP_OF_SYMBOL[sym]
        if spec.takes == "values":
            items = [_expr_value(expr, key, sym, item, types.get(key))
                     for item in _split_list(text)]
            if not items:
                raise QueryError(f"attribute condition {expr!r} has no values after 'in'")
            return cls(key=key, op=spec.name, value=items)
        label = "string" if spec.takes == "pattern" else types.get(key)
        return cls(key=key, op=spec.name, value=_expr_value(expr, key, sym, text, label))

    @classmethod
    def _parse_flag(cls, expr: str, s: str) -> "AttrFilter":
        """``key?`` / ``!key`` (no operator in ``s``)."""
        for flag in _FLAG_OPS:
            true_mark, false_mark = flag.symbols
            if s.endswith(true_mark) and not s.startswith(false_mark):
                key, value = s[:-len(true_mark)].strip(), True
            elif s.startswith(false_mark) and not s.endswith(true_mark):
                key, value = s[len(false_mark):].strip(), False
            else:
                continue
            if not key:
                raise QueryError(f"attribute condition {expr!r} has no key (try key? or !key)")
            return cls(key=key, op=flag.name, value=value)
        raise QueryError(f"cannot parse attribute condition {expr!r} "
                         "(try key>=value, key~regex, key in a,b, key? or !key)")


# The characters of the operator symbols: a value starting with one is refused unless quoted.
_OP_CHARS = frozenset("".join(_MARK_SYMBOLS))


def _expr_value(expr: str, key: str, sym: str, text: str, type_label: str | None) -> Any:
    """The value of one condition of :meth:`AttrFilter.parse_expr` (see its rules)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    op = f" {sym} " if sym.isalpha() else sym
    if not text:
        raise QueryError(f"attribute condition {expr!r} has no value after {sym!r} "
                         f"(write {key}{op}\"\" for the empty string)")
    if text[0] in _OP_CHARS:
        raise QueryError(f"attribute condition {expr!r}: the value {text!r} starts with "
                         f"{text[0]!r}; quote it ({key}{op}'{text}') to mean that text")
    return text if type_label == "string" else coerce_value(text, type_label)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else _to_json(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


#: the condition every filter adds unless ``include_retired``: retired files (``spine-docs
#: retire``) are hidden from queries, counts, facets and exports. It is a residual predicate:
#: no index has ``retired`` in it, so it never changes which index serves the rest of a query
#: (the sort stays index-served); it is checked on the documents the index scan fetches. The
#: queries that would otherwise read no document (the total count, a facet without other
#: conditions) are special-cased in ``counts``: total minus the retired ones (a partial index
#: holds only those), and the facet's own index walked in order.
NOT_RETIRED: dict = {"retired": {"$exists": False}}

#: the condition ``latest_only`` adds: files a newer version superseded (same inputs and
#: config name, newer production or SPINE version: :mod:`spine_docs.supersede`) are left out.
#: A residual predicate like :data:`NOT_RETIRED`; a partial index holds the superseded ones.
NOT_SUPERSEDED: dict = {"superseded_by": {"$exists": False}}


def only_hidden(query: Mapping) -> bool:
    """Whether a (non-empty) query is nothing but the default exclusions
    (:data:`NOT_RETIRED`, :data:`NOT_SUPERSEDED`): no index serves it, and the counts and
    facets answer it otherwise (total minus the excluded files, the facet's index in order)."""
    return (bool(query) and set(query) <= {"retired", "superseded_by"}
            and all(v == {"$exists": False} for v in query.values()))

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
    include_retired: bool = False
    latest_only: bool = False
    #: the catalog as it stood at that instant (see :mod:`spine_docs.asof`: evaluated there,
    #: client-side; every other query refuses a filter that has it)
    as_of: datetime | None = None

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

    @field_validator("status")
    @classmethod
    def _status(cls, v: list[str | None]) -> list[str | None]:
        unknown = [s for s in v if s is not None and s not in STATUSES]
        if unknown:
            raise ValueError(f"unknown status {', '.join(map(repr, unknown))} "
                             f"(choose from {', '.join(STATUSES)})")
        return v

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

    @field_validator("as_of", mode="before")
    @classmethod
    def _as_of(cls, v: Any) -> Any:
        from ..history import HistoryError, as_of_instant

        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        try:
            return as_of_instant(v)   # a date: the end of that day (UTC)
        except HistoryError as exc:
            raise ValueError(str(exc)) from None

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
                raise ValueError(f"where must be a JSON object (a MongoDB query document), "
                                 f"not {_json_kind(v)}")
        if not isinstance(v, Mapping):
            raise ValueError("where must be a JSON object (a MongoDB query document)")
        bad = _forbidden(v)
        if bad:
            raise ValueError(f"{bad} (server-side JavaScript) is not allowed in where")
        unknown = _unknown_operators(v, set())
        if unknown:
            raise ValueError(f"unknown query operator{'s' if len(unknown) > 1 else ''} in where: "
                             f"{', '.join(sorted(unknown))} (MongoDB's are listed at "
                             "https://www.mongodb.com/docs/manual/reference/operator/query/)")
        problem = _bad_argument(v)
        if problem:
            raise ValueError(f"{problem} in where")
        _regex_problem(v)
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
        _check_bson(self.to_mongo(), "the filter")  # e.g. a run number beyond 64 bits
        return self

    # -- queries ---------------------------------------------------------------------------

    def is_empty(self) -> bool:
        """Nothing selected: every file (but the retired ones, unless they are included)."""
        return not self.selection_clauses()

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
        """The conditions chosen, one small query document each (implicitly AND-ed)."""
        return self.selection_clauses()

    def selection_clauses(self) -> list[dict]:
        """The conditions the user chose (without the default exclusion of retired files)."""
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
            out.append({"path": {"$regex": to_pcre(self.path_regex)}})
        out += [a.to_mongo() for a in self.attr_filters]
        if self.where:
            out.append(dict(self.where))
        return out

    def to_mongo(self) -> dict:
        """The conditions chosen, as a MongoDB query document (``{}`` when the filter is
        empty); what the queries send is :meth:`query`."""
        return and_queries(*self.selection_clauses())

    def hidden_clauses(self) -> list[dict]:
        """The default exclusions this filter adds: :data:`NOT_RETIRED` unless
        ``include_retired``, :data:`NOT_SUPERSEDED` with ``latest_only``."""
        return [NOT_RETIRED] * (not self.include_retired) + [NOT_SUPERSEDED] * self.latest_only

    def query(self) -> dict:
        """The MongoDB query document every query of this package sends: :meth:`to_mongo`
        and :meth:`hidden_clauses` (unless ``include_retired``, :data:`NOT_RETIRED`; with
        ``latest_only``, :data:`NOT_SUPERSEDED`). A filter that is one ``$or`` (an open run
        range) stays a rooted ``$or``, each branch served by its own index: the exclusions go
        into every branch."""
        if self.as_of is not None:
            raise QueryError("an as-of filter is evaluated from the history (spine_docs.asof: "
                             "query, facets and export with --as-of); this query cannot answer it")
        query = self.to_mongo()
        hidden = self.hidden_clauses()
        if not hidden:
            return query
        if set(query) == {"$or"}:
            return {"$or": [and_queries(branch, *hidden) for branch in query["$or"]]}
        if any(k in query for h in hidden for k in h):  # the user's own condition stays too
            return and_queries(query, *hidden)
        out = dict(query)
        for h in hidden:
            out.update(h)
        return out

    # -- URL parameters --------------------------------------------------------------------

    def to_params(self) -> dict[str, str]:
        """A flat ``{name: string}`` dict (URL query parameters); empty fields are left out."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or value == [] or value == {} or value is False:
                continue
            if name in FACET_FIELDS:
                out[name] = _join_list(value)
            elif name == "as_of":
                out[name] = value.isoformat()
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
        if self.include_retired:
            parts.append("retired files included")
        if self.latest_only:
            parts.append("latest versions only")
        if self.as_of is not None:
            parts.append(f"as of {self.as_of:%Y-%m-%d %H:%M:%S}Z")
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
        return flt.query()
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
