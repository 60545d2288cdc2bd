"""Building blocks for migration files (like Alembic's ``op``): idempotent, plannable.

Structural changes are written as MongoDB commands (``create``, ``collMod``,
``createIndexes``, ``dropIndexes``, ``drop``) with *ensure* semantics:

* :func:`pending` - the commands that would still change something on this database
  (read-only; what ``migrate plan`` prints);
* :func:`ensure` - send exactly those (so running a step twice is harmless);
* :func:`inverse` - the commands that undo a list of ``create``/``createIndexes``.

Data changes use :func:`backfill` (keyset batches over ``_id``, resumable) and
:func:`count` for the plan.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

from .. import schema as sch
from . import reconcile


def _pending_one(snap: dict, command: Mapping) -> list[dict]:
    cmd = dict(command)
    verb = next(iter(cmd))
    name = cmd[verb]
    opts = {k: v for k, v in cmd.items() if k != verb}
    state = snap.get(name)
    if verb == "create":
        if state is None:
            return [copy.deepcopy(cmd)]
        if opts.get("validator") and not sch.validator_matches(opts, state.options):
            return [{"collMod": name, **copy.deepcopy(opts)}]
        return []
    if verb == "drop":
        return [copy.deepcopy(cmd)] if state is not None else []
    if verb == "collMod":
        if "index" in opts:
            mod = opts["index"]
            idx = None if state is None else next(
                (i for i in state.indexes if i.get("name") == mod.get("name")
                 or ("keyPattern" in mod and dict(i["key"]) == dict(mod["keyPattern"]))), None)
            if idx is not None and all(sch._canon(idx.get(k)) == sch._canon(v)
                                       for k, v in mod.items() if k not in ("name", "keyPattern")):
                return []
            return [copy.deepcopy(cmd)]
        if state is None:
            return [{"create": name, **copy.deepcopy(opts)}]
        want = opts if opts.get("validator") else {}
        if sch.validator_matches(want, state.options):
            return []
        return [copy.deepcopy(cmd)]
    if verb == "createIndexes":
        out: list[dict] = []
        creates = []
        existing = list(state.indexes) if state is not None else []
        for doc in cmd["indexes"]:
            doc = {**doc, "name": doc.get("name") or sch.index_name(doc)}
            if any(sch.same_index(doc, a) for a in existing):
                continue
            same_key = next((a for a in existing if sch.index_identity(a) == sch.index_identity(doc)), None)
            clash = next((a for a in existing if a.get("name") == doc["name"]), None)
            for old in (same_key, clash):
                if old is not None and old in existing:
                    out.append({"dropIndexes": name, "index": old["name"]})
                    existing.remove(old)
            creates.append(copy.deepcopy(doc))
        if creates:
            out.append({"createIndexes": name, "indexes": creates})
        return out
    if verb == "dropIndexes":
        target = cmd["index"]
        if state is None:
            return []
        for i in state.indexes:
            if reconcile._index_matches(i, target):
                return [{"dropIndexes": name, "index": i["name"]}]
        return []
    raise sch.SchemaError(f"unsupported schema command {verb!r}")


def pending(target, commands: list[Mapping]) -> list[dict]:
    """The subset of ``commands`` (rewritten where needed, e.g. drop-then-create for an
    index whose options changed) that would change ``target`` (a Database or a
    :data:`reconcile.Snapshot`). Never writes."""
    snap = copy.deepcopy(target) if isinstance(target, dict) else reconcile.snapshot(target)
    out: list[dict] = []
    for c in commands:
        for p in _pending_one(snap, c):
            out.append(p)
            reconcile.apply_command(snap, p)
    return out


def ensure(db, commands: list[Mapping]) -> list[dict]:
    """Send the :func:`pending` commands; returns what was sent."""
    todo = pending(db, commands)
    for c in todo:
        sch.execute(db, c)
    return todo


def inverse(commands: list[Mapping]) -> list[dict]:
    """Commands undoing ``commands`` (``create`` -> ``drop``, ``createIndexes`` ->
    ``dropIndexes`` by key), in reverse order. Other commands cannot be inverted blindly."""
    out: list[dict] = []
    for c in reversed(list(commands)):
        verb = next(iter(c))
        name = c[verb]
        if verb == "create":
            out.append({"drop": name})
        elif verb == "createIndexes":
            for doc in reversed(c["indexes"]):
                out.append({"dropIndexes": name, "index": dict(sch.index_key(doc))})
        else:
            raise sch.SchemaError(f"cannot invert {verb!r}: write down() explicitly")
    return out


def _key_text(key: Mapping) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in dict(key).items()) + "}"


def describe_command(command: Mapping) -> str:
    """One line saying what a schema command (or a plan's ``bulkWrite`` entry) does, for
    people: ``create 3 indexes on files: path_1_site_1 {path: 1, site: 1} unique, ...``."""
    cmd = dict(command)
    verb = next(iter(cmd))
    name = cmd[verb]
    if verb == "createIndexes":
        parts = []
        for doc in cmd["indexes"]:
            extra = [k for k in ("unique", "sparse", "hidden") if doc.get(k)]
            if doc.get("partialFilterExpression"):
                extra.append("partial")
            label = doc.get("name") or sch.index_name(doc)
            parts.append(f"{label} {_key_text(doc['key'])}" + (f" {' '.join(extra)}" if extra else ""))
        n = len(parts)
        return f"create {n} index{'es' if n != 1 else ''} on {name} in one pass: " + ", ".join(parts)
    if verb == "dropIndexes":
        index = cmd["index"]
        return f"drop index {name}.{index if isinstance(index, str) else _key_text(index)}"
    if verb == "create":
        what = " with its validator" if cmd.get("validator") else ""
        return f"create collection {name}{what}"
    if verb == "collMod":
        if "index" in cmd:
            return f"change index options on {name}: {cmd['index']}"
        return f"set the validator of {name}" if cmd.get("validator") else f"remove the validator of {name}"
    if verb == "drop":
        return f"drop collection {name}"
    if verb == "bulkWrite":
        return f"update {cmd.get('documents', '?')} documents of {name} in batches of {cmd.get('batchSize', '?')}"
    return f"{verb} {name}"


def count(db, collection: str, filter: Mapping) -> int:
    return db[collection].count_documents(dict(filter))


def backfill(db, collection: str, filter: Mapping, compute: Callable[[dict], Mapping | None], *,
             batch_size: int = 500, projection: Mapping | None = None,
             progress: Callable[[int], None] | None = None) -> int:
    """Update every document matching ``filter`` with ``compute(doc)`` (an update document
    such as ``{"$set": {...}}``, or None to leave it), in batches of ``batch_size``.

    Walks ``_id`` in ascending order (keyset, so each document is visited once per call even
    if the update leaves it matching). Each update is guarded by ``filter`` again, so a
    concurrent writer is not overwritten and re-running after an interruption only touches
    what is left. Returns the number of documents modified.
    """
    from pymongo import UpdateOne

    coll = db[collection]
    modified = 0
    last: Any = None
    base = dict(filter)
    while True:
        q = dict(base) if last is None else {"$and": [base, {"_id": {"$gt": last}}]}
        batch = list(coll.find(q, projection).sort("_id", 1).limit(batch_size))
        if not batch:
            return modified
        last = batch[-1]["_id"]
        ops = []
        for doc in batch:
            upd = compute(doc)
            if upd:
                guard = {"_id": doc["_id"], **base} if "_id" not in base else {"$and": [{"_id": doc["_id"]}, base]}
                ops.append(UpdateOne(guard, dict(upd)))
        if ops:
            modified += _bulk(coll, ops)
        if progress is not None:
            progress(modified)
        if len(batch) < batch_size:
            return modified


def _bulk(coll, ops) -> int:
    return coll.bulk_write(ops, ordered=False).modified_count
