"""What changed between two sets of files: ``spine-docs diff --left FILTER --right FILTER``.

Files of the two sets are *matched* by a key: ``input`` (the same input file: the smallest
of a file's ``inputs``, as a sort orders an array) or a field the user names (``name``,
``run``, ``path``, ``fingerprint``, ... : any field an index can sort by). Each pair is
compared with :func:`spine_docs.diff.diff_documents`, and the differences are summed up:

* files on each side (count, events, bytes), files without a key, unmatched files on each
  side (count and the first few);
* per key that differs (attribute, cfg key path, /info key, promoted field, file fact,
  structure item): in how many pairs (``every`` pair or ``some``), how (``changed`` values,
  ``added`` in the right file, ``removed`` from it: a key that only ever changes value
  differs "only in its values"), and a few examples;
* event counts and sizes of the pairs compared (totals, pairs that differ).

**It streams.** Each side is one cursor sorted by ``(key, tie-breaker)`` that an index
serves (checked with :mod:`spine_docs.plans` before anything is read; on a server the index
is also given as a ``hint``), and the two are merged like sorted files: at any time only
the files that share the current key are held, and the summary's counters and examples
are bounded by the number of distinct keys, not of files. Two sets of 100,000 files are
compared in the memory of a few hundred documents (``bench/diff.py``). A side with
``as_of`` (``--as-of``, ``--left-as-of``/``--right-as-of``: the files as they were then, see
:mod:`spine_docs.asof`) is the exception: it is rebuilt from the history and sorted in memory.

**Ties.** Files of one side that share a key are paired with those of the other side in
the order of the tie-breaker (``_id``); the extra files of the bigger group are unmatched,
and ``ties`` counts the keys held by more than one file on a side. Files whose key is null
or missing are never matched (``no_key``).

**Sides** are filters in the CLI's filter language (:func:`side_filter`): the name of a
saved query, a MongoDB query as JSON (``{...}``), or comma-separated terms, each
``field=value`` for a filter field (``dataset=mpvmpr_v1,prod_version=v2,run_min=5``) or an
attribute condition (``energy>=1.5``, see :meth:`AttrFilter.parse_expr`); ``\\,`` is a
literal comma.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Mapping

from . import diff as docdiff
from . import plans, schema, store
from .queries import AttrFilter, Filter, QueryError, attribute_keys, list_queries, load_query
from .queries.filters import FACET_FIELDS, _split_list

#: user's key -> document field
KEY_FIELDS = {"input": "inputs"}
TIE_BREAKERS = ("_id", "site")
#: fields no comparison reads (large, and about the production rather than the file)
SKIPPED_FIELDS = ("job", "sidecar", "provenance", "ingest")
DEFAULT_EXAMPLES = 3
DEFAULT_UNMATCHED = 10


class SetDiffError(QueryError):
    """A side that is not a filter, a key no index can sort by, a cursor out of order."""


# --------------------------------------------------------------------------- the sides

def side_filter(db: Any, text: str) -> Filter:
    """The Filter a ``--left``/``--right`` value means (see the module docstring)."""
    text = (text or "").strip()
    if not text:
        raise SetDiffError("an empty side: give a filter (dataset=x,...) or a saved query's name")
    try:
        return load_query(db, text)
    except (KeyError, QueryError):
        pass
    if text.startswith("{"):
        return Filter(where=text)
    data: dict[str, Any] = {}
    attrs: list[AttrFilter] = []
    types: dict[str, str] | None = None
    for term in _split_list(text):
        key, sep, value = term.partition("=")
        key = key.strip()
        if sep and key in Filter.model_fields and key not in ("attr_filters", "where") \
                and not value.startswith("="):
            if key in FACET_FIELDS:
                data.setdefault(key, []).append(value.strip())
            else:
                data[key] = value.strip()
            continue
        if types is None:
            types = {a["key"]: a["type"] for a in attribute_keys(db)}
        try:
            attrs.append(AttrFilter.parse_expr(term, types))
        except ValueError as exc:
            saved = ", ".join(q["name"] for q in list_queries(db)) or "none saved yet"
            raise SetDiffError(f"{term!r} is neither a filter term nor a saved query "
                               f"(saved: {saved}): {str(exc).splitlines()[0]}") from None
    if attrs:
        data["attr_filters"] = attrs
    return Filter(**data)


def sort_plan(flt: Filter, key: str, indexes: list[plans.Index] | None = None) -> tuple[str, str, str]:
    """``(field, tie-breaker, index name)`` of a cursor sorted by ``key`` under ``flt`` that
    an index serves; :class:`SetDiffError` naming the keys that can be used otherwise."""
    fld = KEY_FIELDS.get(key, key)
    indexes = indexes if indexes is not None else plans.indexes_of(schema.load_schema())
    query = flt.to_mongo()
    for tie in TIE_BREAKERS:
        v = plans.choose(plans.Shape("set diff", query, ((fld, 1), (tie, 1))), indexes)
        if v.plan == "IXSCAN" and v.index:
            return fld, tie, v.index
    usable = sorted({ix.key[0][0] for ix in indexes
                     if len(ix.key) > 1 and ix.key[1][0] in TIE_BREAKERS and not ix.wildcard_prefix
                     and ix.partial is None} | {"input"} - {"inputs"})
    raise SetDiffError(f"cannot match on {key!r}: no index sorts the files by it (use one of: "
                       f"{', '.join(usable)})")


def key_value(doc: Mapping[str, Any], fld: str) -> Any:
    """The value a sort by ``fld`` orders ``doc`` by (an array: its smallest element)."""
    value: Any = doc
    for part in fld.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, list):
        items = [v for v in value if v is not None]
        value = min(items, key=order_key) if items else None
    return value


def order_key(value: Any) -> tuple:
    """MongoDB's sort order of BSON types for the values a match key takes (null, numbers,
    strings, then the rest), within a type the value's own order (strings by code point,
    as a server without collation compares them by their UTF-8 bytes)."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (8, value)
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, datetime):
        return (9, value.replace(tzinfo=None))
    return (5, repr(value))


def _cursor(db: Any, flt: Filter, fld: str, tie: str, index: str) -> Iterator[Mapping[str, Any]]:
    kwargs: dict[str, Any] = {"sort": [(fld, 1), (tie, 1)], "batch_size": 500}
    if store.is_server(db):
        kwargs["hint"] = index  # the planner's trial could pick a filter index and sort in memory
    # on a server, the large parts no comparison reads stay there; the in-process engines
    # hand documents over as they are (a projection would copy each one)
    projection = {f: 0 for f in SKIPPED_FIELDS} if store.is_server(db) else None
    return db.files.find(flt.to_mongo(), projection, **kwargs)


def _as_of_sorted(db: Any, flt: Filter, fld: str, tie: str) -> Iterator[Mapping[str, Any]]:
    """The files of a side as of ``flt.as_of`` (:mod:`spine_docs.asof`), in the order of
    :func:`_cursor` (key, tie-breaker). Not streamed: the history is no index, so the side's
    documents as they were are rebuilt and sorted in memory."""
    from . import asof

    # the same selection as _cursor (to_mongo(): retired and superseded files included)
    flt = flt.model_copy(update={"include_retired": True, "latest_only": False})
    docs = list(asof.documents(db, flt))
    docs.sort(key=lambda d: (order_key(key_value(d, fld)), order_key(d.get(tie))))
    return iter(docs)


def _side(db: Any, flt: Filter, fld: str, tie: str, index: str) -> Iterator[Mapping[str, Any]]:
    return _cursor(db, flt, fld, tie, index) if flt.as_of is None else _as_of_sorted(db, flt, fld, tie)


def _groups(docs: Iterable[Mapping[str, Any]], fld: str, side: str,
            on_no_key: Callable[[Mapping[str, Any]], None]) -> Iterator[tuple[tuple, Any, list]]:
    """``(order key, key, [docs])`` per key, in order; docs without a key go to ``on_no_key``."""
    group: list = []
    current: tuple | None = None
    value: Any = None
    for doc in docs:
        v = key_value(doc, fld)
        if v is None:
            on_no_key(doc)
            continue
        k = order_key(v)
        if current is not None and k < current:
            raise SetDiffError(f"the {side} files came out of order by {fld} ({value!r} then {v!r}): "
                               "the index and the comparison disagree")
        if current is not None and k != current:
            yield current, value, group
            group = []
        current, value = k, v
        group.append(doc)
    if group:
        yield current, value, group  # type: ignore[misc]


# --------------------------------------------------------------------------- the summary

@dataclass
class Side:
    filter: str
    files: int = 0
    events: int = 0
    bytes: int = 0
    no_key: int = 0
    unmatched: int = 0
    unmatched_examples: list = field(default_factory=list)

    def count(self, doc: Mapping[str, Any]) -> None:
        self.files += 1
        self.events += doc.get("num_events") or 0
        self.bytes += doc.get("size") or 0


@dataclass
class KeyStats:
    section: str
    key: str
    pairs: int = 0
    changed: int = 0
    added: int = 0
    removed: int = 0
    examples: list = field(default_factory=list)


@dataclass
class SetDiff:
    """The summary of a set diff (plain data through :meth:`as_dict`)."""
    match_on: str
    left: Side
    right: Side
    pairs: int = 0
    identical: int = 0
    ties: int = 0
    keys: dict = field(default_factory=dict)
    events: dict = field(default_factory=lambda: {"left": 0, "right": 0, "pairs_differ": 0})
    sizes: dict = field(default_factory=lambda: {"left": 0, "right": 0, "pairs_differ": 0})
    examples: int = DEFAULT_EXAMPLES

    def note(self, section: str, key: str, change: str, a_doc: Mapping, b_doc: Mapping,
             a: Any, b: Any) -> None:
        st = self.keys.get((section, key))
        if st is None:
            st = self.keys[(section, key)] = KeyStats(section, key)
        st.pairs += 1
        setattr(st, change, getattr(st, change) + 1)
        if len(st.examples) < self.examples:
            st.examples.append({"left": a_doc.get("_id"), "right": b_doc.get("_id"),
                                "a": a, "b": b})

    def pair(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
        self.pairs += 1
        d = docdiff.diff_documents(a, b)
        if d["same"]:
            self.identical += 1
        for section in docdiff.SECTIONS:
            for r in d[section]:
                self.note(section, r["key"], r["change"], a, b, r["a"], r["b"])
        s = d["structure"]
        for item in s["added"]:
            self.note("structure", item.get("path", ""), "added", a, b, None, docdiff._item_text(item))
        for item in s["removed"]:
            self.note("structure", item.get("path", ""), "removed", a, b, docdiff._item_text(item), None)
        for r in s["reshaped"]:
            self.note("structure", f"{r['path']} (shape)", "changed", a, b, r["a"], r["b"])
        for r in s["dtype"]:
            self.note("structure", f"{r['path']} (dtype)", "changed", a, b, r["a"], r["b"])
        for r in s["changed"]:
            self.note("structure", f"{r['path'] or '(structure)'} ({r['field']})", "changed", a, b, r["a"], r["b"])
        ea, eb = a.get("num_events") or 0, b.get("num_events") or 0
        self.events["left"] += ea
        self.events["right"] += eb
        self.events["pairs_differ"] += ea != eb
        sa, sb = a.get("size") or 0, b.get("size") or 0
        self.sizes["left"] += sa
        self.sizes["right"] += sb
        self.sizes["pairs_differ"] += sa != sb

    def rows(self) -> list[dict[str, Any]]:
        """Per differing key, most frequent first: ``{section, key, pairs, scope, changed,
        added, removed, values_only, examples}``."""
        out = []
        for st in sorted(self.keys.values(), key=lambda s: (-s.pairs, s.section, s.key)):
            out.append({"section": st.section, "key": st.key, "pairs": st.pairs,
                        "scope": "every" if st.pairs == self.pairs else "some",
                        "changed": st.changed, "added": st.added, "removed": st.removed,
                        "values_only": st.added == 0 and st.removed == 0,
                        "examples": st.examples})
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"match_on": self.match_on, "left": vars(self.left), "right": vars(self.right),
                "pairs": self.pairs, "identical": self.identical, "ties": self.ties,
                "events": self.events, "sizes": self.sizes, "keys": self.rows()}


def compare_sets(db: Any, left: Filter, right: Filter, *, match_on: str = "input",
                 left_text: str = "", right_text: str = "", examples: int = DEFAULT_EXAMPLES,
                 unmatched_examples: int = DEFAULT_UNMATCHED) -> SetDiff:
    """Compare the files ``left`` and ``right`` select, matched by ``match_on`` (see the
    module docstring). Streams both sides; raises :class:`SetDiffError` before reading when
    no index sorts by the key."""
    fld, tie_l, ix_l = sort_plan(left, match_on)
    _, tie_r, ix_r = sort_plan(right, match_on)
    out = SetDiff(match_on=match_on, left=Side(left_text or left.describe()),
                  right=Side(right_text or right.describe()), examples=examples)

    def unmatched(side: Side, doc: Mapping[str, Any], value: Any) -> None:
        side.unmatched += 1
        if len(side.unmatched_examples) < unmatched_examples:
            side.unmatched_examples.append({"_id": doc.get("_id"), "key": value})

    def counted(docs: Iterable[Mapping[str, Any]], side: Side) -> Iterator[Mapping[str, Any]]:
        for d in docs:
            side.count(d)
            yield d

    def no_key(side: Side) -> Callable[[Mapping[str, Any]], None]:
        def f(doc: Mapping[str, Any]) -> None:
            side.no_key += 1
        return f

    lg = _groups(counted(_side(db, left, fld, tie_l, ix_l), out.left), fld, "left", no_key(out.left))
    rg = _groups(counted(_side(db, right, fld, tie_r, ix_r), out.right), fld, "right", no_key(out.right))
    a, b = next(lg, None), next(rg, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            for d in a[2]:  # type: ignore[index]
                unmatched(out.left, d, a[1])  # type: ignore[index]
            a = next(lg, None)
        elif a is None or b[0] < a[0]:
            for d in b[2]:
                unmatched(out.right, d, b[1])
            b = next(rg, None)
        else:
            la, rb = a[2], b[2]
            if len(la) > 1 or len(rb) > 1:
                out.ties += 1
            for x, y in zip(la, rb):
                out.pair(x, y)
            for d in la[len(rb):]:
                unmatched(out.left, d, a[1])
            for d in rb[len(la):]:
                unmatched(out.right, d, b[1])
            a, b = next(lg, None), next(rg, None)
    return out


# --------------------------------------------------------------------------- text

def text_lines(s: SetDiff) -> list[tuple[str, str]]:
    """``(style, text)`` lines of a set diff (styles as :func:`spine_docs.diff.text_lines`)."""
    def mb(n: int) -> str:
        return f"{n / 1e6:,.1f} MB"

    lines: list[tuple[str, str]] = [("head", f"matched on {s.match_on}")]
    for name, side in (("left", s.left), ("right", s.right)):
        lines.append(("", f"{name:<5}  {side.files:>7,} files  {side.events:>10,} events  {mb(side.bytes):>12}  "
                          f"({side.filter})"))
    lines.append(("", f"pairs  {s.pairs:>7,}  identical {s.identical:,}  keys shared by several files: {s.ties:,}"))
    for name, side, style in (("left", s.left, "removed"), ("right", s.right, "added")):
        if side.unmatched or side.no_key:
            lines.append(("head", f"only {name}: {side.unmatched:,} files"
                          + (f" (and {side.no_key:,} without a {s.match_on})" if side.no_key else "")))
            for ex in side.unmatched_examples:
                lines.append((style, f"  {'-' if name == 'left' else '+'} {ex['_id']}  [{docdiff.show(ex['key'], 60)}]"))
            if side.unmatched > len(side.unmatched_examples):
                lines.append(("", f"  ... {side.unmatched - len(side.unmatched_examples):,} more"))
    if s.pairs:
        lines.append(("head", f"events in the pairs: {s.events['left']:,} -> {s.events['right']:,} "
                              f"({s.events['pairs_differ']:,} pairs differ); sizes: {mb(s.sizes['left'])} -> "
                              f"{mb(s.sizes['right'])} ({s.sizes['pairs_differ']:,} pairs differ)"))
    rows = s.rows()
    if rows:
        lines.append(("head", f"keys that differ ({len(rows)})"))
    for r in rows:
        how = "values only" if r["values_only"] else ", ".join(
            f"{k} {r[k]:,}" for k in ("changed", "added", "removed") if r[k])
        style = "changed" if r["values_only"] else ("added" if r["added"] and not r["removed"] else
                                                    "removed" if r["removed"] and not r["added"] else "changed")
        scope = "every pair" if r["scope"] == "every" else f"{r['pairs']:,} of {s.pairs:,} pairs"
        lines.append((style, f"  {r['section']}: {r['key']}  [{scope}; {how}]"))
        for ex in r["examples"]:
            lines.append(("", f"      {docdiff.show(ex['a'], 50)} -> {docdiff.show(ex['b'], 50)}   ({ex['left']})"))
    if s.pairs and not rows:
        lines.append(("", "every pair is identical"))
    return lines
