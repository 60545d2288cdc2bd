"""Building blocks for migration files (like Alembic's ``op``): idempotent, plannable.

Structural changes are written as MongoDB commands (``create``, ``collMod``,
``createIndexes``, ``dropIndexes``, ``drop``) with *ensure* semantics:

* :func:`pending` - the commands that would still change something on this database
  (read-only; what ``migrate plan`` prints);
* :func:`ensure` - send exactly those (so running a step twice is harmless);
* :func:`inverse` - the commands that undo a list of ``create``/``createIndexes``.

Data changes use :func:`backfill` (keyset batches over ``_id``, resumable) and
:func:`count` for the plan.

**The history follows the documents.** ``file_versions`` keeps earlier documents of each
file (see :mod:`spine_docs.history`): as reverse deltas (the old values of the changed paths)
or whole documents, rebuilt from the *current* ``files`` document. A migration that rewrites
``files`` documents must apply the same change to the versions kept of them, or ``--as-of``
and ``diff PATH@N`` would rebuild old documents of the old shape onto the new one (a renamed
field would show both names, a removed one would come back); if a change need not reach
the history, the migration's docstring says why (e.g. 0002's derived key: versions are only
kept from schema version 5 on, and every document written since has the key). Use
:func:`transform_files`: it applies one document transformation to both, in batches. Adding
only validators, indexes or collections (0003-0006) touches no document and needs nothing.
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


def transform_files(db, transform: Callable[[dict], dict | None], *, filter: Mapping | None = None,
                    batch_size: int = 500) -> tuple[int, int]:
    """Apply ``transform`` to every ``files`` document ``filter`` selects *and to every
    version of it kept in* ``file_versions``, so that the history stays consistent with the
    documents (see the module docstring). Returns (files documents changed, versions
    rewritten).

    ``transform(doc)`` takes a whole document (a copy: change it in place and return it, or
    return a new one; None leaves it as it is) and must be idempotent, like every
    migration step. For each file, the kept versions are first rebuilt whole from the
    current document (:func:`spine_docs.history.reconstruct`), each is transformed, and the
    stored versions are recomputed from the transformed chain (a delta or the whole
    document, by size, as :mod:`spine_docs.history` chooses; their metadata -- number,
    dates, run, change -- is kept). Versions marked ``pruned`` hold nothing and stay.

    Keyset batches over ``_id``; each batch's two bulk writes (versions, then documents) go
    into one save of an embedded catalog. On a server they are two writes: a step
    interrupted between them is what the runner's backup and restore are for.
    """
    from pymongo import ReplaceOne

    from .. import history

    coll, versions_coll = db["files"], db[history.VERSIONS]
    changed = rewritten = 0
    last: Any = None
    base = dict(filter or {})
    while True:
        q = dict(base) if last is None else {"$and": [base, {"_id": {"$gt": last}}]}
        batch = list(coll.find(q).sort("_id", 1).limit(batch_size))
        if not batch:
            return changed, rewritten
        last = batch[-1]["_id"]
        kept: dict[Any, list[dict]] = {}
        for v in versions_coll.find({"file_id": {"$in": [d["_id"] for d in batch]}}):
            if v.get("kind") != "pruned":
                kept.setdefault(v["file_id"], []).append(v)
        file_ops, version_ops = [], []
        for doc in batch:
            new = transform(copy.deepcopy(doc))
            new = doc if new is None else new
            for v in _transformed_versions(doc, new, kept.get(doc["_id"], []), transform):
                version_ops.append(ReplaceOne({"_id": v["_id"]}, v))
            if new is not doc and new != doc:
                file_ops.append(ReplaceOne({"_id": doc["_id"]}, new))
        with sch.writing(db):
            if version_ops:
                versions_coll.bulk_write(version_ops, ordered=True)
                rewritten += len(version_ops)
            if file_ops:
                changed += coll.bulk_write(file_ops, ordered=False).modified_count
        if len(batch) < batch_size:
            return changed, rewritten


def _transformed_versions(doc: dict, new: dict, versions: list[dict],
                          transform: Callable[[dict], dict | None]) -> list[dict]:
    """The stored versions of one file recomputed after ``transform`` (``doc``: its current
    document before, ``new``: after); only the ones that differ from what is stored. The
    chain rebuilt is the unbroken one down from the newest version (an older one, cut off
    by a gap, could not be read anyway and stays as it is)."""
    from .. import history

    chain: list[dict] = []
    for v in sorted(versions, key=lambda v: -v["version"]):
        if chain and v["version"] != chain[-1]["version"] - 1:
            break
        chain.append(v)
    out = []
    current: dict = doc
    newer = new
    for v in chain:                                  # newest first; a copy each: ``newer`` shares it
        current = history.undo(copy.deepcopy(current), v)   # the document this version kept, whole
        old = transform(copy.deepcopy(current))
        old = current if old is None else old
        rebuilt = _version_like(v, old, newer)
        if rebuilt != v:
            out.append(rebuilt)
        newer = {**old, "_id": doc["_id"], "ingest": new.get("ingest")}
    return out


def _version_like(v: Mapping, old: dict, newer: dict) -> dict:
    """Version ``v`` (its metadata kept) keeping ``old`` against the next document ``newer``."""
    from .. import history

    d, changed = history.delta(old, newer)
    whole = {k: val for k, val in old.items() if k not in history.SKIPPED}
    out = {k: val for k, val in v.items() if k not in ("delta", "whole", "kind", "changed", "status")}
    out.update(status=old.get("status"), changed=changed)
    if len(history._enc(d)) >= history.WHOLE_RATIO * len(history._enc(whole)):
        out.update(kind="whole", whole=whole)
    else:
        out.update(kind="delta", delta=d)
    return out
