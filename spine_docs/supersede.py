"""Supersede: a newer version of a file marks the older ones ``superseded_by`` it.

Two files are versions of one product when their ``inputs`` (as a set of texts) and their
``config`` name are the same, at any site. Among such files, those with the highest
``(production, SPINE version)`` (``prod_version`` compared as a version number with
:func:`spine_docs.versions.semver_key`, else as nothing; then ``spine_version_key``) are the
latest; every other one gets ``superseded_by: <_id of a latest file>`` (one at its own site
when there is one, else the smallest ``_id``). Files with equal keys (copies at two sites, a
re-index) supersede nothing; a latest file loses a mark it had. Files without inputs or
without a config name are never grouped.

:func:`mark` runs after each inject for the files it indexed, in either order: an older file
arriving after the newer one is marked at once. The group of a file is found by its first
input and config (``{inputs: {$in}, config: {$in}}`` for a batch of groups: the
``{inputs: 1, _id: 1}`` index, multikey) and checked in Python. ``Filter(latest_only=True)`` hides the marked files.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable, Mapping

from pymongo import UpdateOne

from . import history, store
from .versions import semver_key

BATCH = 500
PROJECTION = {"_id": 1, "site": 1, "inputs": 1, "config": 1, "prod_version": 1,
              "spine_version_key": 1, "superseded_by": 1}


def version_key(doc: Mapping[str, Any]) -> tuple[str, str]:
    """What orders the versions of one product: (production, SPINE version), as strings
    whose order is version order ("" when unknown)."""
    prod = doc.get("prod_version")
    return ((_semver(prod) if isinstance(prod, str) else None) or "", doc.get("spine_version_key") or "")


_semver = lru_cache(maxsize=4096)(semver_key)  # a production's files share their version


def group_of(doc: Mapping[str, Any]) -> tuple[tuple[str, ...], str] | None:
    """``(sorted inputs, config)``, or None for a file that is in no group."""
    inputs = doc.get("inputs")
    config = doc.get("config")
    if not isinstance(inputs, list) or not inputs or not isinstance(config, str) or not config:
        return None
    return tuple(sorted({str(i) for i in inputs})), config


def group_query(group: tuple[tuple[str, ...], str]) -> dict:
    """The query that finds a group's candidates (checked against the whole group after)."""
    inputs, config = group
    return {"inputs": inputs[0], "config": config}


def groups_query(groups: list[tuple[tuple[str, ...], str]]) -> dict:
    """The query that finds the candidates of many groups at once: their first inputs
    (``$in``, the ``{inputs, _id}`` index) and configs (checked against each group after)."""
    return {"inputs": {"$in": sorted({g[0][0] for g in groups})},
            "config": {"$in": sorted({g[1] for g in groups})}}


def _members(db: Any, groups: list[tuple]) -> dict[tuple, list[dict]]:
    """Every member of ``groups``, by one read per :data:`BATCH` groups (a server)."""
    out: dict[tuple, list[dict]] = {g: [] for g in groups}
    for i in range(0, len(groups), BATCH):
        for m in db.files.find(groups_query(groups[i:i + BATCH]), PROJECTION):
            g = group_of(m)
            if g in out:
                out[g].append(m)
    return out


def plan(members: list[Mapping[str, Any]]) -> dict[str, str | None]:
    """``{_id: the _id it is superseded by, or None}`` for every member of one group."""
    if not members:
        return {}
    newest = max(version_key(m) for m in members)
    latest = sorted((m for m in members if version_key(m) == newest), key=lambda m: m["_id"])
    out: dict[str, str | None] = {}
    for m in members:
        if version_key(m) == newest:
            out[m["_id"]] = None
        else:
            same_site = [x for x in latest if x.get("site") == m.get("site")]
            out[m["_id"]] = (same_site or latest)[0]["_id"]
    return out


def mark(db: Any, paths: Iterable[str], site: str | None = None, *,
         keep_versions: int = history.DEFAULT_KEEP, run_id: str | None = None, now: Any = None,
         fresh: Iterable[str] = ()) -> int:
    """Mark (or unmark) the groups of the documents at ``paths`` (just indexed); returns the
    number of documents changed. The documents a mark changes are kept in the history (at
    most ``keep_versions`` per file; ``run_id`` and ``now``: the inject that marked them),
    but those of the files in ``fresh`` (see :func:`write_marks`)."""
    with store.writing(db):  # one save of the embedded catalog for all of it
        return _mark(db, list(dict.fromkeys(paths)), site,
                     {"keep": keep_versions, "run_id": run_id, "now": now, "fresh": set(fresh)})


def _groups_in_process(db: Any) -> dict[tuple, list[dict]]:
    """Every group's members, from one pass over the catalog: in process (the embedded
    catalog, mongomock) a query on ``inputs`` (an array) reads every document, so one query
    per group would read the catalog once per group."""
    groups: dict[tuple, list[dict]] = {}
    for m in db.files.find({"config": {"$type": "string"}}, PROJECTION):
        g = group_of(m)
        if g is not None:
            groups.setdefault(g, []).append(m)
    return groups


def mark_op(fid: str, by: str | None) -> UpdateOne:
    """The write that marks file ``fid`` superseded by ``by`` (None: unmarks it)."""
    return UpdateOne({"_id": fid}, {"$set": {"superseded_by": by}} if by else {"$unset": {"superseded_by": ""}})


def mark_ops(members: list[Mapping[str, Any]]) -> list[UpdateOne]:
    """The writes that bring one group's marks to :func:`plan`."""
    current = {m["_id"]: m.get("superseded_by") for m in members}
    return [mark_op(fid, by) for fid, by in plan(members).items() if by != current[fid]]


def _mark(db: Any, paths: list[str], site: str | None, marks: Mapping[str, Any]) -> int:
    """:func:`mark`; ``marks``: :func:`write_marks`' keyword arguments."""
    seen: set = set()
    changed = 0
    snapshot = None if store.is_server(db) else _groups_in_process(db)
    if snapshot is not None and site is not None:  # in process: the groups of the new files, one write
        from .extract import doc_id

        wanted = {doc_id(site, p) for p in paths}
        ops = [op for members in snapshot.values() if any(m["_id"] in wanted for m in members)
               for op in mark_ops(members)]
        return write_marks(db, ops, **marks)
    for i in range(0, len(paths), BATCH):
        query: dict[str, Any] = {"path": {"$in": paths[i:i + BATCH]}}
        if site is not None:
            query["site"] = site
        ops = []
        groups = []
        for d in db.files.find(query, PROJECTION):
            group = group_of(d)
            if group is None or group in seen:
                continue
            seen.add(group)
            groups.append(group)
        found = {g: snapshot.get(g, []) for g in groups} if snapshot is not None else _members(db, groups)
        for members in found.values():
            ops += mark_ops(members)
        changed += write_marks(db, ops, **marks)
    return changed


def write_marks(db: Any, ops: list[UpdateOne], *, keep: int, run_id: Any = None, now: Any = None,
                fresh: Iterable[str] = ()) -> int:
    """Write the marks ``ops``; the documents they change are kept in the history (at most
    ``keep`` versions per file), but those of the files in ``fresh`` (inserted by the run
    that marks them: the mark is part of their indexing, as their lineage is). Returns the
    number of documents changed."""
    fresh = set(fresh)
    new, old = [], []
    for op in ops:
        (new if history.op_ids(op)[0] in fresh else old).append(op)
    n = db.files.bulk_write(new, ordered=False).modified_count if new else 0
    if old:
        n += history.write_updates(db, old, change="supersede", keep=keep, run_id=run_id,
                                   now=now).modified_count
    return n
