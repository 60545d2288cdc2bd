"""Desired (``schema.json``) versus actual (the database): drift and the commands that fix it.

Indexes are paired by *key* (text indexes normalised) and compared by *options*; names are
never used to decide whether an index matches. The result of :func:`diff` is a list of
:class:`Drift` items, each carrying the MongoDB commands that would fix it (empty for an
index the schema does not declare: it is reported, never dropped automatically).

Nothing here writes. :func:`snapshot` reads the database into a plain :class:`Snapshot`;
:func:`apply_command` applies a command to a snapshot *in memory* so ``plan`` can show what
reconciliation would still do after the pending migrations ran, without running them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

from .. import schema as sch


@dataclass
class CollectionState:
    options: dict = field(default_factory=dict)
    indexes: list[dict] = field(default_factory=list)  # listIndexes entries, without _id_


Snapshot = dict  # collection name -> CollectionState (absent: the collection does not exist)


@dataclass
class Drift:
    """One difference between schema.json and the database.

    ``kind``: ``missing_collection``, ``validator``, ``missing_index``, ``index_options``,
    ``extra_index``. ``blocking`` is False only for ``extra_index`` (an index the schema does
    not declare: reported by status/check, left in place by ``up``).
    """

    kind: str
    collection: str
    detail: str
    index: str | None = None
    commands: list[dict] = field(default_factory=list)

    @property
    def blocking(self) -> bool:
        return self.kind != "extra_index"

    def __str__(self) -> str:
        where = f"{self.collection}.{self.index}" if self.index else self.collection
        return f"{where}: {self.detail}"


def snapshot(db, names: list[str] | None = None) -> Snapshot:
    """Read collection options and indexes (read-only)."""
    existing = set(db.list_collection_names())
    names = sorted(existing) if names is None else names
    snap: Snapshot = {}
    for n in names:
        if n not in existing:
            continue
        snap[n] = CollectionState(
            options=sch.collection_options(db, n) or {},
            indexes=[i for i in sch.list_indexes(db, n) if i.get("name") != "_id_"],
        )
    return snap


# --------------------------------------------------------------------------- diff

def _index_label(spec: Mapping) -> str:
    return sch.index_name(spec)


def diff(schema: Mapping, snap: Snapshot) -> list[Drift]:
    """Every difference between ``schema`` and ``snap``, in schema order."""
    out: list[Drift] = []
    for cname, cspec in schema["collections"].items():
        want_opts = sch.collection_spec_options(cspec)
        desired = list(cspec.get("indexes", []))
        state = snap.get(cname)
        if state is None:
            cmds = [{"create": cname, **want_opts}]
            docs = [sch.index_document(i) for i in desired]
            if docs:
                cmds.append({"createIndexes": cname, "indexes": docs})
            out.append(Drift("missing_collection", cname, "collection missing", commands=cmds))
            continue
        if not sch.validator_matches(want_opts, state.options):
            if want_opts:
                what = "validator missing" if not state.options.get("validator") else "validator/level/action differ"
                cmd = {"collMod": cname, **want_opts}
            else:
                what, cmd = "validator present but schema.json declares none", {"collMod": cname, "validator": {}}
            out.append(Drift("validator", cname, what, commands=[cmd]))
        unmatched = list(state.indexes)
        pending_checks = []
        # first pass: exact matches consume actual indexes
        for ispec in desired:
            match = next((a for a in unmatched if sch.same_index(ispec, a)), None)
            if match is not None:
                unmatched.remove(match)
            else:
                pending_checks.append(ispec)
        for ispec in pending_checks:
            doc = sch.index_document(ispec)
            same_key = next((a for a in unmatched if sch.index_identity(a) == sch.index_identity(ispec)), None)
            if same_key is not None:
                unmatched.remove(same_key)
                changed = sch.index_option_diff(ispec, same_key)
                ttl_change = ("expireAfterSeconds" not in changed
                              or ("expireAfterSeconds" in ispec and "expireAfterSeconds" in same_key))
                if set(changed) <= {"expireAfterSeconds", "hidden"} and ttl_change:
                    # collMod changes a TTL value or hides/unhides in place (no rebuild)
                    mod = {"name": same_key["name"]}
                    for k in changed:
                        mod[k] = ispec.get(k, False) if k == "hidden" else ispec[k]
                    cmds = [{"collMod": cname, "index": mod}]
                else:
                    cmds = [{"dropIndexes": cname, "index": same_key["name"]},
                            {"createIndexes": cname, "indexes": [doc]}]
                out.append(Drift("index_options", cname, f"options differ: {', '.join(changed)}",
                                 index=same_key["name"], commands=cmds))
                continue
            cmds = []
            clash = next((a for a in unmatched if a.get("name") == doc["name"]), None)
            detail = "index missing"
            if clash is not None:  # an index with the generated name but another key
                unmatched.remove(clash)
                cmds.append({"dropIndexes": cname, "index": clash["name"]})
                detail = f"index missing (the name {doc['name']} is taken by key {dict(clash['key'])})"
            cmds.append({"createIndexes": cname, "indexes": [doc]})
            out.append(Drift("missing_index", cname, detail, index=doc["name"], commands=cmds))
        for extra in unmatched:
            out.append(Drift("extra_index", cname, f"index not declared in schema.json: key {dict(extra['key'])}",
                             index=extra.get("name")))
    return out


def commands(drift: list[Drift]) -> list[dict]:
    """The commands that fix the blocking drift, with createIndexes for one collection merged."""
    out: list[dict] = []
    for d in drift:
        for c in d.commands:
            if (out and "createIndexes" in c and "createIndexes" in out[-1]
                    and out[-1]["createIndexes"] == c["createIndexes"]):
                out[-1]["indexes"] += copy.deepcopy(c["indexes"])
            else:
                out.append(copy.deepcopy(c))
    return out


def summary(drift: list[Drift]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in drift:
        counts[d.kind] = counts.get(d.kind, 0) + 1
    return counts


# --------------------------------------------------------------------------- virtual apply

def apply_command(snap: Snapshot, command: Mapping) -> None:
    """Apply a schema command to a snapshot in memory (what the server would end up with)."""
    cmd = dict(command)
    verb = next(iter(cmd))
    name = cmd.pop(verb)
    if verb == "create":
        snap.setdefault(name, CollectionState(options=copy.deepcopy(cmd)))
    elif verb == "drop":
        snap.pop(name, None)
    elif verb == "collMod":
        state = snap.setdefault(name, CollectionState())
        if "index" in cmd:
            mod = cmd["index"]
            for idx in state.indexes:
                if idx.get("name") == mod.get("name") or ("keyPattern" in mod and dict(idx["key"]) == dict(mod["keyPattern"])):
                    for k, v in mod.items():
                        if k not in ("name", "keyPattern"):
                            idx[k] = v
        else:
            for k, v in cmd.items():
                if v in (None, {}):
                    state.options.pop(k, None)
                else:
                    state.options[k] = copy.deepcopy(v)
    elif verb == "createIndexes":
        state = snap.setdefault(name, CollectionState())
        for doc in cmd["indexes"]:
            if not any(sch.same_index(doc, a) for a in state.indexes):
                state.indexes.append(copy.deepcopy(doc))
    elif verb == "dropIndexes":
        state = snap.get(name)
        if state is not None:
            target = cmd["index"]
            state.indexes = [i for i in state.indexes if not _index_matches(i, target)]


def _index_matches(idx: Mapping, target: Any) -> bool:
    if isinstance(target, str):
        return idx.get("name") == target
    return sch.index_identity(idx) == sch.index_identity({"key": target})


def simulate(snap: Snapshot, commands_: list[dict]) -> Snapshot:
    """A copy of ``snap`` with ``commands_`` applied."""
    out = copy.deepcopy(snap)
    for c in commands_:
        if isinstance(c, Mapping) and next(iter(c), None) in {"create", "drop", "collMod", "createIndexes", "dropIndexes"}:
            apply_command(out, c)
    return out
