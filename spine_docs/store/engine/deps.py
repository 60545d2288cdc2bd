"""Which top-level fields a filter, projection, update or pipeline reads or changes.

The engine decodes only those fields of each stored document. None means "cannot tell:
decode everything": over-inclusion is harmless, under-inclusion would change results, so
every unknown construct answers None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def union(a: set | None, b: set | None) -> set | None:
    if a is None or b is None:
        return None
    return a | b


def top(path: str) -> str:
    return path.split(".", 1)[0]


_WHOLE_DOC_OPERATORS = frozenset({"$getField", "$setField", "$unsetField", "$function",
                                  "$accumulator", "$where", "$jsonSchema", "$text"})


def _expr_fields(expr: Any) -> set | None:
    """Fields an aggregation expression references ("$a.b" -> "a")."""
    out: set = set()
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, str):
            if e.startswith("$$"):
                var = e[2:].split(".", 1)[0]
                if var in ("ROOT", "CURRENT"):
                    return None
            elif e.startswith("$") and len(e) > 1:
                out.add(top(e[1:]))
        elif isinstance(e, Mapping):
            for k, v in e.items():
                if k in _WHOLE_DOC_OPERATORS:
                    return None
                stack.append(v)
        elif isinstance(e, (list, tuple)):
            stack.extend(e)
    return out


def filter_fields(spec: Any) -> set | None:
    """Fields a query filter references."""
    if not isinstance(spec, Mapping):
        return None
    out: set = set()
    for k, v in spec.items():
        if k in ("$and", "$or", "$nor"):
            if not isinstance(v, (list, tuple)):
                return None
            for sub in v:
                f = filter_fields(sub)
                if f is None:
                    return None
                out |= f
        elif k == "$expr":
            f = _expr_fields(v)
            if f is None:
                return None
            out |= f
        elif k == "$comment":
            continue
        elif k.startswith("$"):
            return None
        else:
            out.add(top(k))
    return out


#: update operators that change only the fields (paths) named in their argument
_FIELD_UPDATERS = frozenset({"$set", "$setOnInsert", "$inc", "$mul", "$min", "$max", "$unset",
                             "$push", "$addToSet", "$pull", "$pullAll", "$pop", "$currentDate"})


def update_fields(document: Any) -> set | None:
    """The top-level fields an update document can change (never ``_id``); None when it
    cannot tell (pipelines, replacements, ``$rename``, an ``_id`` path, unknown operators)."""
    if type(document) is not dict or not document:
        return None
    out = set()
    for op, arg in document.items():
        if op not in _FIELD_UPDATERS or not isinstance(arg, Mapping):
            return None
        for k in arg:
            if not isinstance(k, str) or not k:
                return None
            top = k.split(".", 1)[0] if "." in k else k
            if top == "_id" or top[0] == "$":
                return None
            out.add(top)
    return out or None


def projection_fields(projection: Any) -> set | None:
    """Fields a find() projection needs from the stored document (mirrors mongomock's
    ``_copy_only_fields``: inclusion -> the included fields and ``_id``; else everything)."""
    if projection is None:
        return None
    if not isinstance(projection, Mapping):
        return {"_id"} | {top(k) for k in projection}
    if not projection:
        return None
    id_value = projection.get("_id", 1)
    ops = {k for k, v in projection.items() if isinstance(v, dict)}
    plain = {k: v for k, v in projection.items() if k != "_id" and k not in ops}
    if not plain:
        return ({"_id"} | {top(k) for k in ops}) if id_value else None
    if len(set(plain.values())) > 1:
        return None
    if next(iter(plain.values())):
        return {"_id"} | {top(k) for k in plain} | {top(k) for k in ops}
    return None


def _project_is_inclusion(spec: Mapping) -> bool:
    method = None
    for field, value in spec.items():
        if method is None and (field != "_id" or value):
            method = "include" if value else "exclude"
    return method == "include"


def pipeline_fields(stages: list[tuple[str, Any]]) -> set | None:
    """Fields of the input documents a pipeline can observe (None: all of them)."""
    needed = {"_id"}
    for op, arg in stages:
        if op == "$match":
            f = filter_fields(arg)
            if f is None:
                return None
            needed |= f
        elif op == "$sort":
            if not isinstance(arg, Mapping) or any(k.startswith("$") for k in arg):
                return None
            needed |= {top(k) for k in arg}
        elif op in ("$limit", "$skip", "$sample"):
            continue
        elif op == "$unwind":
            path = arg.get("path") if isinstance(arg, Mapping) else arg
            if not isinstance(path, str) or not path.startswith("$") or path.startswith("$$"):
                return None
            needed.add(top(path[1:]))
        elif op in ("$addFields", "$set"):
            f = _expr_fields(arg)
            if f is None or not isinstance(arg, Mapping):
                return None
            needed |= f | {top(k) for k in arg}
        elif op == "$project":
            if not isinstance(arg, Mapping):
                return None
            f = _expr_fields(arg)
            if f is None:
                return None
            needed |= f | {top(k) for k in arg}
            if _project_is_inclusion(arg):
                return needed
        elif op in ("$group", "$replaceRoot", "$replaceWith", "$bucket", "$bucketAuto",
                    "$sortByCount"):
            f = _expr_fields(arg)
            return None if f is None else needed | f
        elif op == "$count":
            return needed
        elif op == "$facet":
            if not isinstance(arg, Mapping):
                return None
            for sub in arg.values():
                if not isinstance(sub, (list, tuple)) or not all(isinstance(s, Mapping) for s in sub):
                    return None
                f = pipeline_fields([(o, a) for s in sub for o, a in s.items()])
                if f is None:
                    return None
                needed |= f
            return needed
        elif op == "$lookup":
            if not isinstance(arg, Mapping) or "let" in arg or "pipeline" in arg:
                return None
            local = arg.get("localField")
            if isinstance(local, str):
                needed.add(top(local))
        else:
            return None
    return None  # the documents themselves reach the output

