"""History: the previous documents of a file, kept in ``file_versions`` when ``inject``
re-indexes it and its content changed.

A file's catalog document (``files``) is its *current* version. When ``inject`` writes a new
document for a file the catalog knows, and the content differs (``fingerprint``, ``attrs``,
``cfg``, ``structure`` or ``status``: any field but ``_id`` and the ``ingest`` bookkeeping,
compared on their BSON bytes, so a NaN equals itself), the document it replaces is kept as
one ``file_versions`` document (a file only touched, whose ``mtime`` alone changed, is not
a new version)::

    _id           "<file _id>#<slot>"  (slot: (version - 1) mod keep_versions)
    file_id       the file's _id          version   1, 2, ... (the current document is the next)
    replaced_at   when the run replaced it            run_id    the run that replaced it
    valid_from    when it became the file's document (the previous version's replaced_at,
                  else the file's first_seen)
    indexed_by    the run that had written it         change    "changed" | "retried" | "reindexed"
    status        its status               changed   [top-level fields that differ]
    kind          "delta" | "whole" | "pruned" (contents dropped: beyond a lowered bound)
    delta         {"set": [[path, old value]], "unset": [path]}   (kind "delta")
    whole         the previous document without _id and ingest (kind "whole")

**Changed fields or the whole document: by size.** A re-processing usually changes a few
fields (``fingerprint``, ``size``, ``mtime``, one attribute, the input file under ``cfg.io``)
of a document that can hold hundreds of KB of ``cfg``, ``structure`` and ``job``: keeping the
whole previous document would multiply the catalog by the number of versions kept. So a
version is a *reverse delta*: the old values of the changed paths (top-level fields, and one
level into ``attrs``, ``attr_types``, ``info``, ``cfg``, ``sidecar``, ``job`` and
``provenance``, whose keys are escaped and hold no ``.``), and the paths the old document did
not have. When that delta is at least half the size of the whole previous document (most of
the file changed, or the document is small), the whole document is kept instead: it costs at
most twice the delta, and a version read from it needs no newer version. An older version is
rebuilt from the current document by undoing the deltas newest first
(:func:`reconstruct`); pruning the oldest versions never breaks a newer one. (A rebuilt
document has the old values; the order of keys within a nested field may differ.)

**Bounded**: at most ``Settings.keep_versions`` (``SPINE_DOCS_KEEP_VERSIONS``, default 10)
versions per file, kept in a ring of that many slots: version *n* replaces the slot of
version *n - keep*, so ``inject`` never deletes (the writer role has no ``remove``, see
:mod:`spine_docs.access`). After the bound was lowered, versions beyond it in higher slots
are marked ``pruned`` (their contents dropped) by the same bulk write. 0 keeps none (and
reads nothing). Lookups go through the unique ``{file_id: 1, version: 1}`` index.

Writes are made by :mod:`spine_docs.ingest`'s writer inside its ``store.writing`` block, as
one bulk write per batch of files: :func:`read_before` (the previous documents and version
numbers, read before the batch is written) then :func:`version_ops`.

**Status changes are versions too.** ``verify`` (``ok`` -> ``missing`` -> ``ok``, ``changed``,
``corrupt``), ``retire``/``unretire`` and ``supersede`` (``superseded_by`` set or removed) send
their ``files`` updates through :func:`write_updates`: one read of the documents the batch
changes and their newest versions, the updates applied in Python (:func:`updated`: ``$set``
and ``$unset``; the ``ingest`` bookkeeping is not kept), the replaced documents kept as above
(``change``: ``verify``, ``retire``, ``unretire``, ``supersede``), bounded by the same
``keep_versions``, and one bulk write of each collection. So ``--as-of`` and ``diff PATH@N``
see a file as missing, retired or superseded when it was. ``prune``/``restore-files`` keep
no version: they move a document whole, and its versions stay keyed by its ``_id``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Mapping, Sequence

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import ReplaceOne, UpdateMany, UpdateOne

VERSIONS = "file_versions"
#: fields compared but never kept: identity and bookkeeping
SKIPPED = ("_id", "ingest")
#: fields whose change alone is no new version (a touched file: same content); they are kept
#: in a version made for another reason
NOT_CONTENT = ("mtime",)
#: dict fields whose sub-keys are compared one by one (their keys are escaped: no ".")
NESTED = ("attrs", "attr_types", "info", "cfg", "sidecar", "job", "provenance")
#: a delta at least this fraction of the whole previous document keeps the whole instead
WHOLE_RATIO = 0.5
#: versions per file when no setting says (``Settings.keep_versions``' default)
DEFAULT_KEEP = 10
UTC = timezone.utc


class HistoryError(ValueError):
    """A version that does not exist, a date before a file was known, a bad ``@`` suffix."""


# --------------------------------------------------------------------------- pure parts

def _plain(doc: Any) -> Any:
    """A dict from a ``RawBSONDocument`` (a worker's document), else the value itself."""
    if isinstance(doc, RawBSONDocument):
        return bson.decode(doc.raw)
    if isinstance(doc, (bytes, bytearray)):  # a worker's BSON (see ingest.extract_many)
        return bson.decode(doc)
    return doc


def _enc(value: Any) -> bytes:
    return bson.encode({"v": value})


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return _enc(a) == _enc(b)
    except Exception:  # noqa: BLE001  (not encodable: compare as Python values)
        return a == b


def effective(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The document the catalog holds after :func:`spine_docs.ingest.upsert_op` writes
    ``new`` over ``old``: ``$set`` of every field (fields only ``old`` has stay), or only
    ``size``, ``mtime``, ``status`` and ``error`` for an ``error`` document."""
    out = {k: v for k, v in old.items() if k != "ingest"}
    if new.get("status") == "error":
        out.update({k: new.get(k) for k in ("size", "mtime", "status", "error")})
    else:
        out.update({k: v for k, v in new.items() if k not in SKIPPED})
    return out


def delta(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The reverse delta that turns ``new`` back into ``old`` (``_id`` and ``ingest`` left
    out): ``({"set": [[path, old value]], "unset": [path]}, changed top-level fields)``.
    A path is a list of keys: ``["fingerprint"]``, ``["attrs", "energy"]``."""
    sets: list[list[Any]] = []
    unset: list[list[str]] = []
    changed: list[str] = []
    keys = [k for k in old if k not in SKIPPED] + [k for k in new if k not in old and k not in SKIPPED]
    for k in keys:
        if k not in old:
            unset.append([k])
            changed.append(k)
            continue
        if k in new and _same(old[k], new[k]):
            continue
        changed.append(k)
        a, b = old[k], new.get(k)
        if k in NESTED and isinstance(a, Mapping) and isinstance(b, Mapping) \
                and not a.get("summarized") and not b.get("summarized"):
            for sub in list(a) + [s for s in b if s not in a]:
                if sub not in a:
                    unset.append([k, sub])
                elif sub not in b or not _same(a[sub], b[sub]):
                    sets.append([[k, sub], a[sub]])
        else:
            sets.append([[k], a])
    return {"set": sets, "unset": unset}, changed


def version_document(old: Mapping[str, Any], new: Mapping[str, Any], *, version: int,
                     replaced_at: datetime, run_id: str, valid_from: Any,
                     change: str = "changed") -> dict[str, Any] | None:
    """The ``file_versions`` document keeping ``old`` (the document before this write) when
    ``new`` (the document after it, see :func:`effective`) differs; None when it does not."""
    d, changed = delta(old, new)
    if not set(changed) - set(NOT_CONTENT):
        return None
    whole = {k: v for k, v in old.items() if k not in SKIPPED}
    out: dict[str, Any] = {
        "_id": f"{old['_id']}#{version - 1}", "file_id": old["_id"], "version": version,
        "replaced_at": replaced_at, "run_id": run_id, "valid_from": valid_from,
        "indexed_by": _written_by(old.get("ingest") or {}), "change": change,
        "status": old.get("status"), "changed": changed,
    }
    if len(_enc(d)) >= WHOLE_RATIO * len(_enc(whole)):
        out.update(kind="whole", whole=whole)
    else:
        out.update(kind="delta", delta=d)
    return out


def _written_by(ingest: Mapping[str, Any]) -> Any:
    """The run that wrote a document: its newest ``ingest.history`` entry (``ingest.run_id``
    is the last run that *saw* it)."""
    entries = ingest.get("history") or []
    return entries[-1].get("run_id") if entries else ingest.get("run_id")


def undo(doc: dict[str, Any], version: Mapping[str, Any]) -> dict[str, Any]:
    """The document ``version`` kept, from the document that replaced it (``doc``, changed in
    place and returned; ``_id`` and ``ingest`` are kept from ``doc``)."""
    if version.get("kind") == "whole":
        keep = {k: doc[k] for k in SKIPPED if k in doc}
        doc.clear()
        doc.update(keep)
        doc.update(copy.deepcopy(dict(version["whole"])))
        return doc
    d = version.get("delta") or {}
    for path in d.get("unset", []):
        target = doc
        for k in path[:-1]:
            target = target.get(k) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target.pop(path[-1], None)
    for path, value in d.get("set", []):
        target = doc
        for k in path[:-1]:
            if not isinstance(target.get(k), dict):
                target[k] = {}
            target = target[k]
        target[path[-1]] = copy.deepcopy(value)
    return doc


def reconstruct(current: Mapping[str, Any], versions: Sequence[Mapping[str, Any]],
                version: int) -> dict[str, Any]:
    """Version ``version`` of a file from its current document and the kept versions
    (any order; every version from ``version`` up to the newest is needed)."""
    newer = sorted((v for v in versions if v["version"] >= version), key=lambda v: -v["version"])
    wanted = [v["version"] for v in reversed(newer)]
    if not newer or wanted != list(range(version, version + len(newer))):
        raise HistoryError(f"version {version} of {current.get('_id')} is not kept")
    doc = copy.deepcopy(dict(current))
    for v in newer:
        undo(doc, v)
    return doc


# --------------------------------------------------------------------------- writing

@dataclass
class Before:
    """What a batch's files were before it was written: their documents, and the newest
    kept version number and its ``replaced_at`` per file."""
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    newest: dict[str, tuple[int, Any]] = field(default_factory=dict)


def read_before(db: Any, ids: Iterable[str]) -> Before:
    """The documents of ``ids`` as the catalog holds them now, and their newest versions
    (two index-served reads: ``_id`` and ``{file_id, version}``)."""
    ids = list(dict.fromkeys(ids))
    out = Before()
    if not ids:
        return out
    out.docs = {d["_id"]: d for d in db.files.find({"_id": {"$in": ids}})}
    for v in db[VERSIONS].find({"file_id": {"$in": list(out.docs)}},
                               {"file_id": 1, "version": 1, "replaced_at": 1}):
        prev = out.newest.get(v["file_id"])
        if prev is None or v["version"] > prev[0]:
            out.newest[v["file_id"]] = (v["version"], v.get("replaced_at"))
    return out


def version_ops(before: Before, writes: Iterable[tuple[Mapping[str, Any], str]], *,
                now: datetime, run_id: str, keep: int) -> list[Any]:
    """The bulk-write ops on ``file_versions`` for ``writes`` (``(new document, change)``
    pairs the batch wrote): the replaced document of each file whose content changed, into
    its ring slot (a ``ReplaceOne`` upsert), and, beyond ``keep``, an ``UpdateMany`` marking
    older versions ``pruned`` (none unless the bound was lowered)."""
    ops: list[Any] = []
    if keep <= 0:
        return ops
    for new, change in writes:
        new = _plain(new)
        old = before.docs.get(new["_id"])
        if old is None:
            continue
        ops += _kept(before, old, {**effective(old, new), "_id": old["_id"], "ingest": old.get("ingest")},
                     now=now, run_id=run_id, keep=keep, change=change)
    return ops


def _kept(before: Before, old: Mapping[str, Any], new: dict[str, Any], *, now: datetime,
          run_id: Any, keep: int, change: str) -> list[Any]:
    """The ops keeping ``old`` (replaced by ``new``) in its ring slot, and ``before`` moved
    on to ``new`` (a file twice in one batch); none when the content did not change."""
    number, last = before.newest.get(old["_id"], (0, None))
    valid_from = last if last is not None else (old.get("ingest") or {}).get("first_seen")
    doc = version_document(old, new, version=number + 1, replaced_at=now,
                           run_id=run_id, valid_from=valid_from, change=change)
    if doc is None:
        return []
    doc["_id"] = f"{old['_id']}#{number % keep}"
    ops: list[Any] = [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True)]
    before.newest[old["_id"]] = (number + 1, now)
    before.docs[old["_id"]] = new
    if number + 1 > keep:  # matches only after the bound was lowered
        ops.append(UpdateMany({"file_id": old["_id"], "version": {"$lte": number + 1 - keep},
                               "kind": {"$ne": "pruned"}},
                              {"$set": {"kind": "pruned"}, "$unset": {"delta": "", "whole": ""}}))
    return ops


# --------------------------------------------------------------------------- status changes

#: what a status change is recorded as (``change`` of its version): verify's verdicts (and a
#: file found again), retire, unretire, supersede (``superseded_by`` set or removed)
STATUS_CHANGES = ("verify", "retire", "unretire", "supersede")


def _op_parts(op: Any) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(filter, update document, many) of a pymongo ``UpdateOne``/``UpdateMany``."""
    if not isinstance(op, (UpdateOne, UpdateMany)):
        raise TypeError(f"a status change is an UpdateOne or UpdateMany, not {type(op).__name__}")
    return op._filter, op._doc, isinstance(op, UpdateMany)  # pymongo's own fields


def _op_ids(flt: Mapping[str, Any]) -> list[Any]:
    """The ``_id``s a files update names (``{_id: x}`` or ``{_id: {$in: [...]}}``)."""
    which = flt.get("_id")
    if isinstance(which, Mapping):
        if set(which) != {"$in"}:
            raise ValueError(f"a status change selects files by _id or _id $in: {dict(flt)!r}")
        return list(which["$in"])
    if which is None:
        raise ValueError(f"a status change selects files by _id or _id $in: {dict(flt)!r}")
    return [which]


def updated(doc: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` with ``update`` applied, as the database will: ``$set`` and
    ``$unset`` (dotted paths); any operator on the ``ingest`` bookkeeping (``$push`` of a
    history entry) is left out, it is not kept in versions. Only the containers on the
    updated paths are copied: the other fields are ``doc``'s own objects, which
    :func:`delta` then finds unchanged at once (by identity), without encoding them."""
    out = dict(doc)
    for verb, fields in update.items():
        for path, value in fields.items():
            keys = path.split(".")
            if keys[0] in SKIPPED:
                continue
            if verb not in ("$set", "$unset"):
                raise ValueError(f"a status change can $set and $unset, not {verb} {path}")
            target = out
            for k in keys[:-1]:
                child = target.get(k)
                if not isinstance(child, dict):
                    if verb == "$unset":
                        target = None
                        break
                    child = {}
                else:
                    child = dict(child)  # copied on the path: ``doc`` itself never changes
                target[k] = child
                target = child
            if target is None:
                continue
            if verb == "$set":
                target[keys[-1]] = copy.deepcopy(value)
            else:
                target.pop(keys[-1], None)
    return out


def op_ids(op: Any) -> list[Any]:
    """The ``_id``s a files ``UpdateOne``/``UpdateMany`` by ``_id`` names."""
    return _op_ids(_op_parts(op)[0])


def read_before_updates(db: Any, updates: Sequence[Any]) -> Before:
    """:func:`read_before` of the files ``updates`` (UpdateOne/UpdateMany by ``_id``) name."""
    return read_before(db, (i for op in updates for i in _op_ids(_op_parts(op)[0])))


def status_ops(before: Before, updates: Iterable[Any], *, now: datetime, run_id: Any,
               keep: int, change: str) -> list[Any]:
    """The bulk-write ops on ``file_versions`` for ``updates`` (the ``UpdateOne``/``UpdateMany``
    about to be sent to ``files``, each selecting by ``_id``): for each document of
    ``before`` an update's filter matches (a guard that no longer holds writes nothing, and
    keeps nothing), the document it replaces, as :func:`version_ops` keeps an inject's.
    ``change`` is one of :data:`STATUS_CHANGES`."""
    from mongomock.filtering import filter_applies

    ops: list[Any] = []
    if keep <= 0:
        return ops
    for op in updates:
        flt, update, many = _op_parts(op)
        for file_id in _op_ids(flt):
            old = before.docs.get(file_id)
            if old is None or not filter_applies(dict(flt), old):
                continue
            ops += _kept(before, old, updated(old, update), now=now, run_id=run_id, keep=keep,
                         change=change)
            if not many:
                break
    return ops


def write_updates(db: Any, updates: Sequence[Any], *, change: str, keep: int,
                  run_id: Any = None, now: datetime | None = None) -> Any:
    """``db.files.bulk_write(updates, ordered=False)`` and the versions the updates make
    (:func:`status_ops`): one read of the documents and their newest versions before, one
    bulk write of ``file_versions`` after. Call it inside ``store.writing(db)`` (both go
    into the same save of an embedded catalog). Returns the files' ``BulkWriteResult``."""
    updates = list(updates)
    if not updates:
        return None
    versions: list[Any] = []
    if keep > 0:
        when = now or datetime.now(UTC).replace(microsecond=0)
        versions = status_ops(read_before_updates(db, updates), updates, now=when,
                              run_id=run_id, keep=keep, change=change)
    result = db.files.bulk_write(updates, ordered=False)
    if versions:
        db[VERSIONS].bulk_write(versions, ordered=True)
    return result


# --------------------------------------------------------------------------- reading

def versions(db: Any, file_id: str) -> list[dict[str, Any]]:
    """The kept versions of a file, oldest first, without their contents: ``{version,
    replaced_at, valid_from, run_id, indexed_by, change, status, changed, kind}``."""
    return [v for v in db[VERSIONS].find({"file_id": file_id}, {"delta": 0, "whole": 0, "_id": 0},
                                         sort=[("version", 1)]) if v.get("kind") != "pruned"]


def _newer_versions(db: Any, file_id: str, version: int) -> list[dict[str, Any]]:
    return [v for v in db[VERSIONS].find({"file_id": file_id, "version": {"$gte": version}},
                                         sort=[("version", 1)]) if v.get("kind") != "pruned"]


def _annotate(doc: dict[str, Any], version: int, valid_from: Any, valid_to: Any) -> dict[str, Any]:
    doc["version"] = {"number": version, "valid_from": valid_from, "valid_to": valid_to}
    return doc


def document_version(db: Any, current: Mapping[str, Any], version: int) -> dict[str, Any]:
    """Version ``version`` of the file whose current document is ``current`` (its versions
    are 1..n, the current document n+1). The document gets ``version: {number, valid_from,
    valid_to}`` (``valid_to`` None for the current one). Raises :class:`HistoryError`."""
    file_id = current["_id"]
    if version < 1:
        raise HistoryError(f"versions are numbered from 1: {version}")
    kept = _newer_versions(db, file_id, version)
    newest = kept[-1]["version"] if kept else None
    if not kept:
        last = list(db[VERSIONS].find({"file_id": file_id}, {"version": 1, "replaced_at": 1},
                                      sort=[("version", -1)], limit=1))
        current_number = (last[0]["version"] + 1) if last else 1
        if version == current_number:
            return _annotate(copy.deepcopy(dict(current)), version,
                             last[0]["replaced_at"] if last else _first_seen(current), None)
        raise HistoryError(f"{file_id} has versions 1..{current_number}: no version {version}")
    if version == newest + 1:
        return _annotate(copy.deepcopy(dict(current)), version, kept[-1]["replaced_at"], None)
    if kept[0]["version"] != version:
        first = _oldest_kept(db, file_id)
        raise HistoryError(f"version {version} of {file_id} is not kept (kept: {first}..{newest + 1})")
    doc = reconstruct(current, kept, version)
    return _annotate(doc, version, kept[0].get("valid_from"), kept[0].get("replaced_at"))


def _oldest_kept(db: Any, file_id: str) -> int | None:
    kept = versions(db, file_id)
    return kept[0]["version"] if kept else None


def _first_seen(doc: Mapping[str, Any]) -> Any:
    return (doc.get("ingest") or {}).get("first_seen")


def _aware(when: Any) -> Any:
    if isinstance(when, datetime) and when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when


def as_of_instant(when: date | datetime | str) -> datetime:
    """A date means the end of that day (UTC): the catalog as it stood when the day was over;
    a datetime is that instant (naive: UTC)."""
    if isinstance(when, str):
        text = when.strip()
        try:
            when = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(
                text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise HistoryError(f"not an ISO date or date-time: {when!r}") from None
    if isinstance(when, datetime):
        return _aware(when)
    return datetime.combine(when + timedelta(days=1), time(), UTC) - timedelta(milliseconds=1)


def document_as_of(db: Any, current: Mapping[str, Any], when: date | datetime | str) -> dict[str, Any]:
    """The document the catalog held for this file at ``when`` (see :func:`as_of_instant`):
    the version whose ``[valid_from, replaced_at)`` holds it, or the current document.
    Raises :class:`HistoryError` before the oldest kept version (or before first_seen)."""
    at = as_of_instant(when)
    file_id = current["_id"]
    kept = versions(db, file_id)
    for v in kept:
        if _aware(v.get("replaced_at")) is not None and at < _aware(v["replaced_at"]):
            start = _aware(v.get("valid_from"))
            if start is not None and at < start:
                break
            return document_version(db, current, v["version"])
    else:
        start = _aware(kept[-1]["replaced_at"]) if kept else _aware(_first_seen(current))
        if start is None or at >= start:
            return document_version(db, current, (kept[-1]["version"] + 1) if kept else 1)
    first = _aware(kept[0].get("valid_from")) if kept else _aware(_first_seen(current))
    raise HistoryError(f"{file_id} was not in the catalog (or its version is not kept) at "
                       f"{at:%Y-%m-%d %H:%M:%S}Z; the oldest known version is from "
                       f"{first:%Y-%m-%d %H:%M:%S}Z" if first else f"{file_id}: no version at {at}")
