"""Update documents on the engine's fast paths, planned once per update.

Which paths an update names and whether they overlap (:func:`paths_disjoint`), applying
``$set``/``$setOnInsert``/``$inc``/``$push`` through embedded documents directly
(:func:`update_plan`, :func:`fast_apply`) instead of through mongomock's updater, and the
leaves a ``$set``/``$inc`` writes straight into the stored bytes (:func:`leaf_plan`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import bson

from . import rawbson


def plain_field(name: Any) -> bool:
    """A ``$set`` target that is a plain top-level field (no path, no positional operator)."""
    return isinstance(name, str) and "." not in name and "$" not in name and "\0" not in name


def patch_update(document: Any) -> Any:
    """:func:`rawbson.patch_dt` of an update document, except the values
    ``$set``/``$setOnInsert`` assign to plain fields: they are encoded (which does the same
    conversion) right after."""
    if type(document) is not dict:
        return rawbson.patch_dt(document)
    out = {}
    for op, arg in document.items():
        if op in ("$set", "$setOnInsert") and type(arg) is dict:
            out[op] = {k: (v if plain_field(k) else rawbson.patch_dt(v)) for k, v in arg.items()}
        else:
            out[op] = rawbson.patch_dt(arg)
    return out


_MISSING = object()


_FAST_UPDATERS = frozenset({"$set", "$setOnInsert", "$inc", "$push"})
_PUSH_MODIFIERS = frozenset({"$each", "$slice"})


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def paths_disjoint(document: Mapping) -> bool:
    """No field path of an update document is another's, or leads into another's (MongoDB
    refuses such updates; leave them to mongomock's own handling)."""
    tops: dict[str, list[str]] = {}
    shared = False
    for arg in document.values():
        if type(arg) is not dict:
            return False
        for path in arg:
            if type(path) is not str:
                return False
            top = path.split(".", 1)[0] if "." in path else path
            same = tops.get(top)
            if same is None:
                tops[top] = [path]
            else:
                same.append(path)
                shared = True
    if not shared:
        return True
    for paths in tops.values():
        if len(paths) > 1:
            paths.sort()
            for a, b in zip(paths, paths[1:]):
                if a == b or b.startswith(a + "."):
                    return False
    return True


def _fast_plan(op: str, arg: dict) -> list[tuple[list[str] | None, str, Any]] | None:
    """The targets of ``{op: arg}`` for :func:`fast_apply`: ``(parts, name, value)``, parts
    None for a plain top-level field of ``$set``/``$setOnInsert``; None when some path or
    value is not for the fast path (positional operators, ``_id``, empty parts, ``$push``
    modifiers other than ``$each``/``$slice``, ``$inc`` by a non-number). Depends on the
    update only, so an update of many documents makes it once."""
    setting = op in ("$set", "$setOnInsert")
    targets: list[tuple[list[str] | None, str, Any]] = []
    for path, value in arg.items():
        if not path or "$" in path or "\0" in path:
            return None
        if setting and "." not in path:
            if path == "_id":
                return None
            targets.append((None, path, value))  # a plain field: nothing to look at
            continue
        parts = path.split(".")
        if parts[0] == "_id" or "" in parts:
            return None
        if op == "$inc" and not _number(value):
            return None
        if op == "$push" and type(value) is dict and any(k.startswith("$") for k in value):
            if not set(value) <= _PUSH_MODIFIERS or type(value.get("$each")) is not list:
                return None
            if "$slice" in value and type(value["$slice"]) is not int:
                return None
        targets.append((parts, parts[-1], value))
    return targets


def fast_apply(doc: dict, op: str, targets: list[tuple[list[str] | None, str, Any]],
                was_insert: bool) -> bool:
    """Apply a :func:`_fast_plan` to ``doc`` when every path runs through embedded documents
    (or through nothing yet: they are created) and the values it meets are plain: numbers
    for ``$inc``, an array (or nothing) for ``$push``. Returns False, having changed
    nothing, otherwise (arrays or other values on the way), which mongomock then handles.
    ``$set``, ``$setOnInsert`` (on insert only), ``$inc`` and ``$push`` (a value, or
    ``{$each: [...], $slice: n}``) mean here what they mean to MongoDB."""
    if op == "$setOnInsert" and not was_insert:
        return True  # as mongomock (and MongoDB): not applied to a document that exists
    for parts, name, _value in targets:
        if parts is None:
            continue
        node: Any = doc
        for part in parts[:-1]:
            node = node.get(part, _MISSING)
            if node is _MISSING:
                break
            if type(node) is not dict:
                return False
        if node is _MISSING:
            continue
        leaf = node.get(name, _MISSING)
        if leaf is _MISSING:
            continue
        if op == "$inc" and not _number(leaf):
            return False
        if op == "$push" and type(leaf) is not list:
            return False
    for parts, name, value in targets:
        if parts is None:
            doc[name] = value
            continue
        node = doc
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if op == "$inc":
            node[name] = node[name] + value if name in node else value
        elif op == "$push":
            items = node.get(name)
            items = [] if items is None else items
            if type(value) is dict and "$each" in value:
                items = items + value["$each"]
                cut = value.get("$slice")
                if cut is not None:
                    items = items[:cut] if cut >= 0 else items[cut:]
            else:
                items = items + [value]
            node[name] = items
        else:
            node[name] = value
    return True


def update_plan(document: Mapping) -> list[tuple[str, Any, Any]] | None:
    """``[(op, arg, fast targets or None)]`` of an operator update document (None when it is
    not one: mongomock handles it whole)."""
    if not document or not all(isinstance(k, str) and k.startswith("$") for k in document):
        return None
    paths_ok = paths_disjoint(document)
    return [(op, arg, _fast_plan(op, arg) if paths_ok and op in _FAST_UPDATERS
             and type(arg) is dict else None) for op, arg in document.items()]


#: values ``$set`` may write straight into BSON bytes (their encoding needs no context)
_LEAF_VALUE_TYPES = frozenset({str, int, float, bool, datetime, type(None)})


def leaf_plan(plan: list[tuple[str, Any, Any]] | None) -> dict | None:
    """For an update made only of ``$set`` and ``$inc`` of plain values (``$setOnInsert``
    changes nothing in a document that exists), the tree its paths make: name (bytes) ->
    subtree, or ``(b"", element bytes)`` for a ``$set`` leaf, or ``(name, amount)`` for an
    ``$inc`` one. :func:`rawbson.patch_leaves` applies it to a stored document's bytes. None when
    the update is anything else. Depends on the update only: made once per update."""
    if plan is None:
        return None
    leaf_types = _LEAF_VALUE_TYPES
    for op, _arg, targets in plan:  # look before encoding anything
        if op == "$setOnInsert" and targets is not None:
            continue
        if op not in ("$set", "$inc") or targets is None \
                or not all(type(value) in leaf_types for _p, _n, value in targets):
            return None
    tree: dict = {}
    for op, _arg, targets in plan:
        if op == "$setOnInsert":
            continue
        for parts, name, value in targets:
            path = [name] if parts is None else parts
            try:
                names = [p.encode("utf-8") for p in path]
                leaf = ((b"", rawbson.encode({name: value})[4:-1]) if op == "$set"
                        else (names[-1], value))
            except (ValueError, OverflowError, bson.errors.BSONError):  # the general path says why
                return None
            node = tree
            for part in names[:-1]:
                node = node.setdefault(part, {})
                if type(node) is not dict:
                    return None
            if names[-1] in node:
                return None
            node[names[-1]] = leaf
    return tree or None

