"""What changed between two catalog documents: ``spine-docs diff A B``.

:func:`diff_documents` is pure: two file documents in (as ``files`` holds them, keys
escaped), a structured diff out (plain data, JSON-ready)::

    {"a": {ref, _id, path, site, version}, "b": {...}, "same": bool,
     "attrs":     [{"key", "change", "a", "b", "type_a", "type_b"}],   root attributes
     "promoted":  [{"key", "change", "a", "b"}],       spine_version, model, dataset, run, ...
     "cfg":       [{"key", "change", "a", "b"}],       key paths: "model.network.depth"
     "info":      [{"key", "change", "a", "b"}],       /info attributes (key paths)
     "structure": {"added": [item], "removed": [item],
                   "reshaped": [{"path", "a", "b"}], "dtype": [{"path", "a", "b"}],
                   "changed": [{"path", "field", "a", "b"}]},   kind, target, error, ...
     "facts":     [{"key", "change", "a", "b"}]}       size, mtime, status, checksum, inputs, ...

``change`` is ``added`` (only in B), ``removed`` (only in A) or ``changed``. Keys are the
original HDF5/YAML names (unescaped); a key path joins them with ``.``, and a name that
holds a ``.``, a space or a quote, or is empty, is written JSON-quoted (``attrs."a.b"``), so
a path is never ambiguous. Arrays and summaries (large arrays, long strings: see
:mod:`spine_docs.convert`) are compared whole (summaries by their ``sha256``) and are values,
never paths. :func:`text_lines` renders a diff as styled lines for a terminal.

:func:`resolve` (reads the catalog) turns ``A``/``B`` into documents: a path or an ``_id``
(any site), or a version, ``PATH@2`` (the file's second version; see
:mod:`spine_docs.history`) or ``PATH@2026-11-01`` (as of that date: the end of the day, UTC).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Iterable, Mapping

from . import convert, history
from .extract import PROMOTED, normalise_path
from .queries import get_file

#: file facts compared (identity and bookkeeping the diff is about are in "a"/"b")
FACTS = ("size", "mtime", "status", "error", "checksum", "fingerprint", "format", "format_version",
         "complete", "inputs_count", "inputs", "cfg_error", "sidecar_error", "shrunk")
#: structure item fields compared besides shape and dtype
ITEM_FIELDS = ("kind", "nbytes", "target", "error", "truncated")
SECTIONS = ("facts", "promoted", "attrs", "cfg", "info")
_PLAIN_KEY = re.compile(r"\A[^.\s\"'\[\]]+\Z")


class DiffError(ValueError):
    """A reference that names no file, or a version that is not kept (one line)."""


# --------------------------------------------------------------------------- pure parts

def key_segment(name: str) -> str:
    """One key of a path as shown: as it is, or JSON-quoted when it holds ``.``, spaces,
    quotes or brackets, or is empty."""
    return name if _PLAIN_KEY.match(name) else json.dumps(name, ensure_ascii=False)


def join_path(keys: Iterable[str]) -> str:
    return ".".join(key_segment(k) for k in keys)


_SCALARS = (str, int, float, bool, type(None), list, datetime)


def _is_map(value: Any) -> bool:
    """A mapping (a dict, fast; any Mapping otherwise: ABC checks are slow on every leaf)."""
    return type(value) is dict or (type(value) not in _SCALARS and isinstance(value, Mapping))


def _is_leaf(value: Any) -> bool:
    return not _is_map(value) or bool(value.get("summarized")) or not value


def flatten(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """``{key path: leaf}`` of nested mappings, keys unescaped; lists, summaries and empty
    mappings are leaves."""
    if _is_leaf(value):
        return {prefix: value}
    out: dict[tuple[str, ...], Any] = {}
    for k, v in value.items():
        out.update(flatten(v, prefix + (convert.unescape_key(str(k)),)))
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type (``1`` and ``1.0`` differ; NaN equals NaN); summaries by
    their sha256. Inside lists and mappings, Python's equality (fast) decides."""
    if type(a) is not type(b):
        return False
    if a == b:
        return True
    if _is_map(a) and a.get("summarized") and b.get("summarized") and a.get("sha256") and b.get("sha256"):
        return a.get("sha256") == b.get("sha256") and a.get("kind") == b.get("kind")
    return history._same(a, b)  # NaN: compared on the BSON bytes


def compare_flat(a: Mapping[tuple[str, ...], Any], b: Mapping[tuple[str, ...], Any],
                 missing_is_none: bool = False) -> list[dict[str, Any]]:
    """Rows ``{key, change, a, b}`` for the paths whose leaves differ, in A's order then B's."""
    rows: list[dict[str, Any]] = []
    for path in list(a) + [p for p in b if p not in a]:
        in_a, in_b = path in a, path in b
        va, vb = a.get(path), b.get(path)
        if in_a and in_b:
            if _same(va, vb):
                continue
            change = "changed"
        elif missing_is_none and (va is None and vb is None):
            continue
        else:
            change = "removed" if in_a else "added"
        rows.append({"key": join_path(path), "change": change, "a": va, "b": vb})
    return rows


def _tree(doc: Mapping[str, Any], field: str) -> dict[tuple[str, ...], Any]:
    value = doc.get(field)
    if value is None:
        return {}
    if not _is_map(value):      # cfg kept as text (not YAML)
        return {("(text)",): value}
    return {p: v for p, v in flatten(value).items() if p}


def _compare_tree(a: Mapping[str, Any], b: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    if _same(a.get(field), b.get(field)):
        return []
    return compare_flat(_tree(a, field), _tree(b, field))


def diff_attrs(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Root attributes: one row per attribute (a value, never a path), with the type labels."""
    aa, ba = a.get("attrs") or {}, b.get("attrs") or {}
    ta, tb = a.get("attr_types") or {}, b.get("attr_types") or {}
    rows = compare_flat({(convert.unescape_key(k),): v for k, v in aa.items()},
                        {(convert.unescape_key(k),): v for k, v in ba.items()})
    esc = {convert.unescape_key(k): k for k in list(aa) + list(ba)}
    for r in rows:
        name = json.loads(r["key"]) if r["key"].startswith('"') else r["key"]
        r["type_a"], r["type_b"] = ta.get(esc.get(name, name)), tb.get(esc.get(name, name))
    return rows


def _items(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    s = doc.get("structure") or {}
    items = s.get("items") if isinstance(s, Mapping) else None
    return {str(i.get("path")): i for i in items or [] if isinstance(i, Mapping)}


def _brief(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: item.get(k) for k in ("path", "kind", "shape", "dtype") if item.get(k) is not None}


def diff_structure(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, list]:
    """Datasets and groups added, removed, reshaped, with another dtype, or otherwise changed."""
    out: dict[str, list] = {"added": [], "removed": [], "reshaped": [], "dtype": [], "changed": []}
    if a.get("structure") == b.get("structure"):
        return out
    ia, ib = _items(a), _items(b)
    for path, x in ia.items():
        y = ib.get(path)
        if y is None:
            out["removed"].append(_brief(x))
            continue
        if not _same(x.get("shape"), y.get("shape")):
            out["reshaped"].append({"path": path, "a": x.get("shape"), "b": y.get("shape")})
        if not _same(x.get("dtype"), y.get("dtype")):
            out["dtype"].append({"path": path, "a": x.get("dtype"), "b": y.get("dtype")})
        for f in ITEM_FIELDS:
            if not _same(x.get(f), y.get(f)):
                out["changed"].append({"path": path, "field": f, "a": x.get(f), "b": y.get(f)})
    out["added"] = [_brief(y) for p, y in ib.items() if p not in ia]
    sa, sb = a.get("structure") or {}, b.get("structure") or {}
    if isinstance(sa, Mapping) and isinstance(sb, Mapping):
        for f in ("count", "truncated"):
            if not _same(sa.get(f), sb.get(f)):
                out["changed"].append({"path": "", "field": f, "a": sa.get(f), "b": sb.get(f)})
    return out


def _fields(doc: Mapping[str, Any], names: Iterable[str]) -> dict[tuple[str, ...], Any]:
    return {(n,): doc.get(n) for n in names if n in doc}


def identity(doc: Mapping[str, Any], ref: str | None = None) -> dict[str, Any]:
    out = {"ref": ref, "_id": doc.get("_id"), "path": doc.get("path"), "site": doc.get("site")}
    if isinstance(doc.get("version"), Mapping):
        out["version"] = dict(doc["version"])
    return out


def diff_documents(a: Mapping[str, Any], b: Mapping[str, Any], *, ref_a: str | None = None,
                   ref_b: str | None = None) -> dict[str, Any]:
    """The structured diff of two file documents (see the module docstring)."""
    out: dict[str, Any] = {
        "a": identity(a, ref_a), "b": identity(b, ref_b),
        "facts": compare_flat(_fields(a, FACTS), _fields(b, FACTS), missing_is_none=True),
        "promoted": compare_flat(_fields(a, PROMOTED), _fields(b, PROMOTED), missing_is_none=True),
        "attrs": diff_attrs(a, b),
        "cfg": _compare_tree(a, b, "cfg"),
        "info": _compare_tree(a, b, "info"),
        "structure": diff_structure(a, b),
    }
    out["same"] = not any(out[s] for s in SECTIONS) and not any(out["structure"].values())
    return out


def _all_rows(a: Mapping[tuple[str, ...], Any], b: Mapping[tuple[str, ...], Any],
              missing_is_none: bool = False) -> list[dict[str, Any]]:
    """Rows ``{key, change, a, b}`` for every path of either side; ``change`` is ``same``
    for equal leaves (else as :func:`compare_flat`)."""
    rows: list[dict[str, Any]] = []
    for path in list(a) + [p for p in b if p not in a]:
        in_a, in_b = path in a, path in b
        va, vb = a.get(path), b.get(path)
        if in_a and in_b:
            change = "same" if _same(va, vb) else "changed"
        elif missing_is_none and va is None and vb is None:
            change = "same"
        else:
            change = "removed" if in_a else "added"
        rows.append({"key": join_path(path), "change": change, "a": va, "b": vb})
    return rows


def side_by_side(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every key of two documents, side by side: rows ``{section, key, change, a, b}`` in
    the sections of :func:`diff_documents` (``structure`` rows are items by path, shown as
    ``kind shape dtype``), ``change`` ``same`` for equal values. The rows whose change is not
    ``same`` are the keys :func:`diff_documents` reports (the explorer's "changed only")."""
    out: list[dict[str, Any]] = []

    def add(section: str, rows: list[dict[str, Any]]) -> None:
        out.extend({"section": section, **r} for r in rows)

    add("facts", _all_rows(_fields(a, FACTS), _fields(b, FACTS), missing_is_none=True))
    add("promoted", _all_rows(_fields(a, PROMOTED), _fields(b, PROMOTED), missing_is_none=True))
    add("attrs", _all_rows({(convert.unescape_key(k),): v for k, v in (a.get("attrs") or {}).items()},
                           {(convert.unescape_key(k),): v for k, v in (b.get("attrs") or {}).items()}))
    for section in ("cfg", "info"):
        add(section, _all_rows(_tree(a, section), _tree(b, section)))
    ia, ib = _items(a), _items(b)
    rows = []
    for path in list(ia) + [p for p in ib if p not in ia]:
        x, y = ia.get(path), ib.get(path)
        tx = _item_text(x) if x is not None else None
        ty = _item_text(y) if y is not None else None
        if x is None or y is None:
            change = "added" if x is None else "removed"
        else:
            same = all(_same(x.get(f), y.get(f)) for f in ("shape", "dtype", *ITEM_FIELDS))
            change = "same" if same else "changed"
        rows.append({"key": path, "change": change, "a": tx, "b": ty})
    add("structure", rows)
    return out


def count_changes(d: Mapping[str, Any]) -> int:
    return sum(len(d[s]) for s in SECTIONS) + sum(len(v) for v in d["structure"].values())


# --------------------------------------------------------------------------- text

def show(value: Any, limit: int = 80) -> str:
    """A value on one line: summaries as ``<array [1000] float64 sha256:1a2b3c4d>``, text
    quoted, dates ISO, long values cut with ``...``."""
    if isinstance(value, Mapping) and value.get("summarized"):
        kind = value.get("kind", "value")
        parts = [kind]
        if value.get("shape") is not None:
            parts.append(str(list(value["shape"])))
        elif value.get("size") is not None:
            parts.append(f"{value['size']} {'bytes' if kind != 'array' else 'items'}")
        if value.get("dtype"):
            parts.append(str(value["dtype"]))
        if value.get("sha256"):
            parts.append(f"sha256:{str(value['sha256'])[:8]}")
        return "<" + " ".join(parts) + ">"
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond // 1000:03d}"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_MARK = {"added": "+", "removed": "-", "changed": "~"}


def _row_text(r: Mapping[str, Any]) -> str:
    if r["change"] == "added":
        return f"+ {r['key']}: {show(r['b'])}"
    if r["change"] == "removed":
        return f"- {r['key']}: {show(r['a'])}"
    return f"~ {r['key']}: {show(r['a'])} -> {show(r['b'])}"


def _label(side: Mapping[str, Any]) -> str:
    text = str(side.get("_id"))
    v = side.get("version")
    if v:
        text += f" (version {v.get('number')}" + (", current" if v.get("valid_to") is None else "") + ")"
    return text


def text_lines(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(style, text)`` lines: style ``head``, ``added``, ``removed``, ``changed`` or ``""``."""
    lines: list[tuple[str, str]] = [("head", f"A: {_label(d['a'])}"), ("head", f"B: {_label(d['b'])}")]
    if d["same"]:
        lines.append(("", "no differences"))
        return lines
    titles = {"facts": "file", "promoted": "promoted fields", "attrs": "root attributes",
              "cfg": "cfg", "info": "/info"}
    for section in SECTIONS:
        rows = d[section]
        if not rows:
            continue
        lines.append(("head", f"{titles[section]} ({len(rows)})"))
        for r in rows:
            extra = ""
            if section == "attrs" and r["change"] == "changed" and r.get("type_a") != r.get("type_b"):
                extra = f"  [{r.get('type_a')} -> {r.get('type_b')}]"
            lines.append((r["change"], "  " + _row_text(r) + extra))
    s = d["structure"]
    if any(s.values()):
        lines.append(("head", f"structure ({sum(len(v) for v in s.values())})"))
        for item in s["added"]:
            lines.append(("added", f"  + {item.get('path')} {_item_text(item)}"))
        for item in s["removed"]:
            lines.append(("removed", f"  - {item.get('path')} {_item_text(item)}"))
        for r in s["reshaped"]:
            lines.append(("changed", f"  ~ {r['path']}: shape {show(r['a'])} -> {show(r['b'])}"))
        for r in s["dtype"]:
            lines.append(("changed", f"  ~ {r['path']}: dtype {show(r['a'])} -> {show(r['b'])}"))
        for r in s["changed"]:
            lines.append(("changed", f"  ~ {r['path'] or '(structure)'}: {r['field']} {show(r['a'])} -> {show(r['b'])}"))
    lines.append(("", f"{count_changes(d)} differences"))
    return lines


def _item_text(item: Mapping[str, Any]) -> str:
    bits = [str(item.get("kind") or "")]
    if item.get("shape") is not None:
        bits.append(show(item["shape"]))
    if item.get("dtype") is not None:
        bits.append(str(item["dtype"]))
    return " ".join(b for b in bits if b)


# --------------------------------------------------------------------------- references

_VERSION = re.compile(r"\A\d+\Z")
_WHEN = re.compile(r"\A\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?\Z")


def _lookup(db: Any, ref: str, site: str | None) -> dict | None:
    doc = get_file(db, ref, site=site)
    if doc is None and not ref.startswith("/") and ":" not in ref:
        doc = get_file(db, normalise_path(ref), site=site)
    elif doc is None and ref.startswith("/"):
        norm = normalise_path(ref)
        if norm != ref:
            doc = get_file(db, norm, site=site)
    return doc


def resolve(db: Any, ref: str, *, site: str | None = None) -> dict[str, Any]:
    """The document ``ref`` names: a path or ``_id`` (current document), ``REF@N`` (version
    N) or ``REF@DATE`` (as of that date). A path that itself holds ``@`` is found as it is
    first. Raises :class:`DiffError`."""
    doc = _lookup(db, ref, site)
    if doc is not None:
        return doc
    base, sep, suffix = ref.rpartition("@")
    if sep and base and (_VERSION.match(suffix) or _WHEN.match(suffix)):
        current = _lookup(db, base, site)
        if current is None:
            raise DiffError(f"not in the catalog: {base}")
        try:
            if _VERSION.match(suffix):
                return history.document_version(db, current, int(suffix))
            return history.document_as_of(db, current, suffix)
        except history.HistoryError as exc:
            raise DiffError(str(exc)) from None
    raise DiffError(f"not in the catalog: {ref}")
