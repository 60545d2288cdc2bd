"""Which index serves a query shape: MongoDB's planner rules, applied without a server.

:func:`choose` takes a query shape (a find filter or a pipeline's leading ``$match``, and a
sort) and the indexes of ``schema.json`` and says which index a MongoDB 6.0+ server can use
for it and how:

``IXSCAN``
    an index bounds the scan on its leading fields and, when there is a sort, returns the
    documents in that order (no blocking in-memory sort);
``IXSCAN+SORT``
    an index bounds the scan, but the documents must then be sorted in memory (a blocking
    sort: fine on a small match, a timeout on a million files);
``COLLSCAN``
    no index applies: every document is read.

The rules (MongoDB's documented planner behaviour, simplified where our shapes allow):

* a predicate is *sargable* when it gives index bounds: equality (``{f: v}``, ``$eq``,
  ``null``, ``$exists: false``), ``$in`` (a set of points), ranges (``$gt``/``$gte``/``$lt``/
  ``$lte``), an anchored regex (``^prefix``); an unanchored regex or ``$exists: true`` scans
  the whole index of that field (still no document is fetched that the index can rule out);
  ``$ne``/``$nin``/``$not``/``$expr``/``$where`` give no bounds;
* an index is usable when its first key has a sargable predicate, or when it provides the
  requested sort (an IXSCAN walking the index in order);
* equality-sort-range: an index provides a sort when the keys before the sort fields all have
  point predicates (``$in`` with at most 200 points counts: the server merges them, as
  ``SORT_MERGE``) and the sort fields follow in order, with all directions equal to the
  index's or all reversed; sort fields fixed by an equality are ignored;
* a top-level ``$or`` is served only when every branch is; ``$or`` inside an ``$and`` is a
  residual filter on the index scan chosen for the rest;
* a partial index is usable only by a query that implies its ``partialFilterExpression``;
  a wildcard index (``attrs.$**``) serves one predicate on one path below it, no sort.

Among usable indexes the checker prefers, as the server's planner would after its trial runs:
one that serves the sort with the most bounded key fields, then the most bounded fields.
It never claims what a server would measure: ``spine-docs doctor --explain`` asks the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: the server explodes an $in into points for a sort only up to this many
MAX_SORT_MERGE_POINTS = 200

POINT, IN, RANGE, SCAN = "point", "in", "range", "scan"
_RANGE_OPS = {"$gt", "$gte", "$lt", "$lte"}
_NO_BOUNDS_OPS = {"$ne", "$nin", "$not", "$mod", "$size", "$all", "$elemMatch", "$type",
                  "$bitsAllSet", "$bitsAnySet", "$bitsAllClear", "$bitsAnyClear", "$geoWithin",
                  "$geoIntersects", "$near", "$nearSphere", "$jsonSchema"}


@dataclass(frozen=True)
class Index:
    """An index as ``schema.json`` declares it."""
    key: tuple[tuple[str, int], ...]
    partial: Mapping[str, Any] | None = None
    name: str = ""

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "Index":
        key = tuple((k, v) for k, v in spec["key"].items())
        name = spec.get("name") or "_".join(f"{k}_{v}" for k, v in key)
        return cls(key=key, partial=spec.get("partialFilterExpression"), name=name)

    @property
    def wildcard_prefix(self) -> str | None:
        first = self.key[0][0]
        return first[: -len("$**")] if first.endswith("$**") else None


@dataclass(frozen=True)
class Shape:
    """One query the CLI or the explorer sends: ``query`` (find filter or leading $match),
    ``sort`` (``[(field, direction)]``, empty for none)."""
    name: str
    query: Mapping[str, Any]
    sort: tuple[tuple[str, int], ...] = ()
    source: str = ""
    #: the whole pipeline, for a shape that is an aggregation (what ``explain`` is sent)
    pipeline: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)


@dataclass
class Verdict:
    shape: Shape
    plan: str                      # IXSCAN, IXSCAN+SORT, COLLSCAN
    index: str | None = None       # the index used (several joined with " | " for an $or)
    bounded: tuple[str, ...] = ()  # key fields with bounds
    note: str = ""
    allowed: str | None = None     # the allow-list's reason, when the plan is not IXSCAN

    @property
    def ok(self) -> bool:
        return self.plan == "IXSCAN" or self.allowed is not None


@dataclass
class _Preds:
    kinds: dict[str, str] = field(default_factory=dict)   # field -> POINT/IN/RANGE/SCAN
    values: dict[str, Any] = field(default_factory=dict)  # field -> its condition
    ors: list[list[Mapping[str, Any]]] = field(default_factory=list)
    in_sizes: dict[str, int] = field(default_factory=dict)


def _kind(cond: Any) -> tuple[str | None, int]:
    """(kind of bounds, number of $in points) for one field's condition; None: no bounds."""
    if not isinstance(cond, Mapping) or not any(str(k).startswith("$") for k in cond):
        return POINT, 1  # a literal value, null included
    kinds = []
    points = 0
    for op, arg in cond.items():
        if op == "$eq":
            kinds.append(POINT)
        elif op == "$in":
            n = len(arg) if isinstance(arg, (list, tuple)) else 0
            if any(isinstance(a, (re.Pattern,)) for a in arg or []):
                kinds.append(SCAN)
            else:
                kinds.append(POINT if n == 1 else IN)
                points = n
        elif op in _RANGE_OPS:
            kinds.append(RANGE)
        elif op == "$regex":
            pattern = arg.pattern if isinstance(arg, re.Pattern) else str(arg)
            anchored = (pattern.startswith("^") or pattern.startswith("\\A")) and \
                "i" not in str(cond.get("$options", ""))
            kinds.append(RANGE if anchored and not re.match(r"^\^?\.\*", pattern) else SCAN)
        elif op == "$options":
            continue
        elif op == "$exists":
            kinds.append(POINT if not arg else SCAN)
        elif op in _NO_BOUNDS_OPS:
            continue  # a residual filter; other operators on the field may still bound it
        else:
            continue
    if not kinds:
        return None, 0
    for k in (POINT, IN, RANGE, SCAN):  # the tightest bound wins
        if k in kinds:
            return k, points
    return None, 0


def predicates(query: Mapping[str, Any]) -> _Preds:
    """The sargable predicates of a filter (top level and ``$and``), and its ``$or`` lists."""
    out = _Preds()

    def walk(q: Mapping[str, Any]) -> None:
        for k, v in q.items():
            if k == "$and":
                for sub in v:
                    walk(sub)
            elif k in ("$or",):
                out.ors.append(list(v))
            elif k in ("$nor", "$expr", "$where", "$text", "$comment", "$jsonSchema"):
                continue
            else:
                kind, points = _kind(v)
                if kind is None:
                    continue
                prev = out.kinds.get(k)
                if prev is None or (POINT, IN, RANGE, SCAN).index(kind) < (POINT, IN, RANGE, SCAN).index(prev):
                    out.kinds[k] = kind
                    out.values[k] = v
                    if kind == IN:
                        out.in_sizes[k] = points

    walk(query)
    return out


def _implies(preds: _Preds, partial: Mapping[str, Any]) -> bool:
    """Whether the query's predicates imply a partial index's filter (the simple forms only)."""
    for f, cond in partial.items():
        kind = preds.kinds.get(f)
        if kind is None:
            return False
        if isinstance(cond, Mapping) and cond.get("$exists") is True:
            value = preds.values.get(f)
            if value is None or (isinstance(value, Mapping) and value.get("$exists") is False):
                return False
            continue
        if preds.values.get(f) != cond:
            return False
    return True


@dataclass
class _Use:
    index: Index
    bounded: tuple[str, ...]
    sorts: bool


def _use(index: Index, preds: _Preds, sort: Sequence[tuple[str, int]]) -> _Use | None:
    """How ``index`` would serve the predicates and sort, or None when it cannot be used."""
    if index.partial and not _implies(preds, index.partial):
        return None
    prefix = index.wildcard_prefix
    if prefix is not None:  # one path below the prefix, no sort
        for f, kind in preds.kinds.items():
            if f.startswith(prefix) and kind in (POINT, IN, RANGE):
                return _Use(index, (f,), sorts=not sort)
        return None
    keys = [k for k, _ in index.key]
    bounded = []
    for k in keys:
        if k not in preds.kinds:
            break
        bounded.append(k)
        if preds.kinds[k] in (RANGE, SCAN):
            break  # fields after a range are not bounded
    sorts = _provides_sort(index, preds, sort)
    if not bounded and not (sort and sorts):
        return None
    return _Use(index, tuple(bounded), sorts)


def _provides_sort(index: Index, preds: _Preds, sort: Sequence[tuple[str, int]]) -> bool:
    if not sort:
        return True
    fixed = {f for f, k in preds.kinds.items() if k == POINT}
    wanted = [(f, d) for f, d in sort if f not in fixed]
    if not wanted:
        return True
    keys = list(index.key)
    pos = 0
    # keys before the sort fields must be points (or a small $in, merged by the server)
    while pos < len(keys) and keys[pos][0] != wanted[0][0]:
        f = keys[pos][0]
        kind = preds.kinds.get(f)
        if kind == POINT or (kind == IN and preds.in_sizes.get(f, 0) <= MAX_SORT_MERGE_POINTS):
            pos += 1
            continue
        return False
    flip = None
    for f, d in wanted:
        while pos < len(keys) and keys[pos][0] != f and preds.kinds.get(keys[pos][0]) == POINT:
            pos += 1  # a key fixed by equality between two sort fields
        if pos >= len(keys) or keys[pos][0] != f:
            return False
        same = (keys[pos][1] > 0) == (d > 0)
        if flip is None:
            flip = not same
        elif flip == same:
            return False
        pos += 1
    return True


def _best(uses: Iterable[_Use]) -> _Use | None:
    return max(uses, key=lambda u: (u.sorts, len(u.bounded), -len(u.index.key)), default=None)


def choose(shape: Shape, indexes: Sequence[Index]) -> Verdict:
    """The plan a server would pick for ``shape`` among ``indexes`` (see the module docs)."""
    preds = predicates(shape.query)
    sort = list(shape.sort)
    best = _best(u for u in (_use(ix, preds, sort) for ix in indexes) if u is not None)
    if best is not None and (best.bounded or best.sorts):
        plan = "IXSCAN" if best.sorts else "IXSCAN+SORT"
        if best.bounded and all(preds.kinds.get(f) == SCAN for f in best.bounded[:1]):
            note = f"scans the whole {best.index.name} index (no bounds on {best.bounded[0]})"
        else:
            note = ""
        return Verdict(shape, plan, best.index.name, best.bounded, note)
    # a rooted $or: every branch needs its own index
    if len(preds.ors) == 1 and not preds.kinds:
        names = []
        for branch in preds.ors[0]:
            v = choose(Shape(shape.name, branch), indexes)
            if v.plan == "COLLSCAN":
                return Verdict(shape, "COLLSCAN", note=f"an $or branch has no index: {branch}")
            names.append(v.index or "")
        return Verdict(shape, "IXSCAN" if not sort else "IXSCAN+SORT", " | ".join(names),
                       note="OR of index scans")
    return Verdict(shape, "COLLSCAN")


def indexes_of(schema: Mapping[str, Any], collection: str = "files") -> list[Index]:
    """The indexes ``schema.json`` declares for ``collection``, plus ``_id``'s."""
    specs = schema["collections"][collection].get("indexes", [])
    return [Index(key=(("_id", 1),), name="_id_")] + [Index.from_spec(s) for s in specs]


def check(shapes: Iterable[Shape], indexes: Sequence[Index],
          allow: Mapping[str, str] | None = None) -> list[Verdict]:
    """A verdict per shape; ``allow`` maps shape names to the reason they may scan or sort."""
    allow = allow or {}
    out = []
    for s in shapes:
        v = choose(s, indexes)
        if v.plan != "IXSCAN":
            v.allowed = allow.get(s.name)
        out.append(v)
    return out


def table(verdicts: Sequence[Verdict]) -> str:
    """A Markdown table of verdicts (for docs/query-plans.md)."""
    lines = ["| shape | plan | index | bounded fields | note |", "|---|---|---|---|---|"]
    for v in verdicts:
        note = v.note
        if v.allowed:
            note = (note + "; " if note else "") + "allowed: " + v.allowed
        lines.append(f"| {v.shape.name} | {v.plan} | {v.index or ''} | "
                     f"{', '.join(v.bounded)} | {note} |")
    return "\n".join(lines) + "\n"
