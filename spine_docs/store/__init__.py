"""Where the catalog lives: ``connect(url) -> Database``; the embedded catalog; the mongomock shim.

URLs (``--db`` / ``SPINE_DOCS_DB``)
    ``mongodb://...`` / ``mongodb+srv://...``
        A real server (pymongo). The database name comes from the URI path (default
        ``spine_docs``). :func:`connect` pings the server and raises :class:`StoreError` (one
        line, password hidden) when it cannot.
    ``mongomock://[name][/db]``
        In memory. ``mongomock://`` is a fresh database on every call. ``mongomock://name`` is
        shared by every :func:`connect` of the same name *in this process* (so a test and the
        CLI runner it drives see the same data); it lives until the process ends (drop the
        database to free it).
    anything else
        A directory: the **embedded catalog** (the default). In memory it is the mongomock
        shim below; on disk it is mongodump's layout, ``<dir>/spine_docs/<coll>.bson`` +
        ``<coll>.metadata.json``, so ``mongorestore --dir <dir>`` loads it into a server.
        :func:`connect` on the same directory twice in one process returns the same catalog
        (``close(db)`` first to read the files afresh).

Writing to the embedded catalog
    Every write happens inside ``with store.writing(db):`` (a write outside raises
    :class:`StoreError`). Entering takes an exclusive ``flock`` on ``<dir>/.lock`` (bounded
    wait; the error names the pid and host holding it), and reloads what another process
    saved since we loaded. Leaving saves every changed collection (unchanged ones are
    skipped) and releases the lock. Nested ``writing()`` in one thread is free; other
    threads of the process wait. Reads need no lock: :func:`refresh` picks up other
    processes' saves (a cheap check of ``<dir>/spine_docs/.generation``).
    A save rewrites each changed collection whole (mongodump's layout has no deltas), so a
    bulk writer should not open one ``writing()`` per small batch: :func:`commit_interval`
    says how long to accumulate (about 10x the last save's duration); :func:`save` commits
    inside a long ``writing()`` block.

How a save stays atomic (several collections at once)
    1. each changed collection is written to ``.tmp-<gen>-<file>.part`` files (fsync);
    2. a journal ``.commit.json`` naming the renames/deletes and the new manifest is written
       atomically (temp + fsync + rename): **this is the commit point**;
    3. the temporary files are renamed over the live ones, dropped collections' files are
       deleted, ``.generation`` (the manifest: generation number, token, and per collection
       count, size, SHA-256 of both files) is replaced, and the journal is removed.
    A crash before (2) leaves the old state (stray temporaries are removed by the next
    writer); a crash after (2) is completed ("rolled forward") by the next process that opens
    the catalog. A lock-free reader checks every file it loads against the manifest (count and
    SHA-256) and the generation again at the end, and retries - or waits for the lock - when
    a writer is committing; so it always loads one complete generation.

The mongomock shim (all mongomock workarounds live here; the real-server path never sees it)
    mongomock 4.3.0 is the in-memory engine. Measured problems and their fixes:

    * ``Cursor.__next__`` copied the whole result list on every call (iteration and every
      ``aggregate()`` quadratic): the shim's cursor streams.
    * ``find()`` deep-copied every stored document: the shim stores documents as **BSON
      bytes** (memory ~ the BSON size, not 5-7x that as Python objects) and decodes only the
      top-level fields a query needs (filter, projection, sort, pipeline dependencies),
      fully only when the whole document is returned. Decoding makes fresh objects, so
      callers still cannot mutate the store.
    * unique indexes made ``insert_many`` quadratic and upserts by a non-``_id`` filter were
      full scans: unique indexes are hash maps (maintained on every write), ``_id`` and
      unique-key equality lookups are O(1).
    * ``aggregate()``: stages that work one document at a time (``$match``, ``$project``,
      ``$addFields``/``$set``, ``$unwind``, ``$replaceRoot``, ``$limit``, ``$skip``) stream,
      ``$group``/``$count`` consume the stream, a leading ``$match`` uses the lookups above;
      ``$unwind`` no longer deep-copies the unwound array once per element; ``$group`` keys
      and accumulators of the common shapes are compiled once.
    * sorts (``find().sort()``, ``$sort``, ``$group``'s output order) compared documents
      pair by pair through ``BsonComparable``: the shim computes one native key per document
      reproducing that order (BSON type rank, then the value; objects and arrays element by
      element), one key for all sort fields (a descending field of a mixed-direction sort
      as minus its rank), and keeps only the first ``skip + limit`` with a heap when a limit
      is given (also ``$sort`` followed by ``$limit``). Values without a native key (tz-aware
      dates, regexes, ...) fall back to mongomock's comparison.
    * decoding a few top-level fields walks the BSON element headers and decodes only
      the wanted elements (one C call).
    * updates: ``$set``/``$setOnInsert`` of a plain field is an assignment (mongomock
      encoded and copied each value; the document is encoded once afterwards, with the same
      validation), and so are ``$set``/``$setOnInsert``/``$inc``/``$push`` (``$each``,
      ``$slice``) of paths through embedded documents when the types are plain (numbers for
      ``$inc``, an array for ``$push``) and no two paths overlap; anything else goes to
      mongomock's updater. An upsert by ``_id`` touches one document; ``update_many`` by
      ``{_id: {$in: [...]}}`` looks each value up instead of walking the collection. An operator update whose
      operators only change the paths they name (``$set``, ``$inc``, ``$push``, ``$unset``,
      ...; not ``$rename``, pipelines or replacements) decodes only the top-level fields it
      touches (plus the filter's), applies mongomock's update to that partial document and
      splices the re-encoded fields into the stored bytes (same bytes as encoding the whole
      updated document; unique indexes are not re-read when they use none of those fields).
    * ``bulk_write`` of ``UpdateOne``/``ReplaceOne`` with pymongo >= 4.11 raised
      ``TypeError: unexpected keyword argument 'sort'`` (mongomock issue 912).
    * validators, collection options, ``collMod``, ``listCollections`` and index options
      (collation, partialFilterExpression, wildcard, text, hidden, ...) are accepted and
      **recorded** (``list_collections()``, ``index_information()``, the dump's
      ``.metadata.json``) but not enforced. Unique indexes are enforced (binary comparison:
      a collation is recorded, not applied).
    Still missing (as in mongomock): sessions/transactions, change streams, the aggregation
    operators mongomock lacks. Deliberate differences from plain mongomock, all towards
    what a real server does: ``_id`` is stored first; ``nModified`` compares BSON bytes
    (``1`` -> ``1.0`` is a modification); a failed update leaves the document untouched; TTL
    deletions run at most once a second per collection.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import hashlib
import heapq
import itertools
import json
import os
import re
import secrets
import socket
import struct
import threading
import time
import uuid as _uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import bson
import mongomock
import pymongo
import pymongo.database
from bson.decimal128 import Decimal128
from bson.objectid import ObjectId
from bson.raw_bson import RawBSONDocument
from mongomock import aggregate as mm_aggregate
from mongomock import collection as mm_collection
from mongomock import database as mm_database
from mongomock import filtering as mm_filtering
from mongomock import helpers as mm_helpers
from mongomock import mongo_client as mm_client
from mongomock import results as mm_results
from mongomock import store as mm_store
from mongomock.command_cursor import CommandCursor
from mongomock.not_implemented import raise_for_feature as _raise_not_implemented
from mongomock.results import BulkWriteResult
from pymongo.errors import (CollectionInvalid, DuplicateKeyError, InvalidOperation,
                            OperationFailure, PyMongoError, WriteError)
from sentinels import NOTHING

from .. import dumpfmt

DEFAULT_DB = "spine_docs"
#: how long writing() waits for another process's lock before giving up (seconds)
LOCK_TIMEOUT_S = 60.0
GENERATION_FILE = ".generation"
JOURNAL_FILE = ".commit.json"
LOCK_FILE = ".lock"
_CATALOG_FORMAT = "spine-docs-embedded-catalog"

__all__ = [
    "StoreError", "connect", "writing", "refresh", "save", "describe", "is_server", "is_embedded",
    "close", "commit_interval", "catalog_path", "collection_options", "create_collection",
    "coll_mod", "forget_collection", "DEFAULT_DB",
]


class StoreError(Exception):
    """The catalog cannot be opened, locked, loaded or saved (the message is one line)."""


# =========================================================================== BSON helpers
#
# Module-level functions (not bound methods) on purpose: tests count calls by monkeypatching.

def _encode(doc: Any) -> bytes:
    return bson.encode(doc)


def _decode_full(raw: bytes) -> dict:
    """Decode a whole stored document."""
    return bson.decode(raw)


#: above this many wanted fields a full decode is cheaper than picking fields one by one
_PARTIAL_MAX_FIELDS = 12


def _materialize(value: Any) -> Any:
    if isinstance(value, RawBSONDocument):
        return bson.decode(value.raw)
    if isinstance(value, list):
        return [_materialize(v) for v in value]
    return value


_INT32 = struct.Struct("<i")
#: BSON element type -> size of its value when fixed (types with a length prefix are below)
_FIXED_SIZE = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8,
               0x12: 8, 0x13: 16, 0xFF: 0, 0x7F: 0}


def _elements(raw: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(name, start, end) of each top-level element of BSON bytes: ``raw[start:end]`` is the
    whole element (type byte, name, value). Values are skipped, not decoded."""
    pos = 4
    last = len(raw) - 1
    find = raw.index
    fixed = _FIXED_SIZE
    while pos < last:
        t = raw[pos]
        nul = find(b"\0", pos + 1)
        name = raw[pos + 1:nul]
        v = nul + 1
        size = fixed.get(t)
        if size is None:
            size = _value_size(raw, t, v)
        end = v + size
        yield name, pos, end
        pos = end


def _value_size(raw: bytes, t: int, v: int) -> int:
    """Size of the value of type ``t`` starting at ``raw[v]``."""
    if t == 0x02 or t == 0x0D or t == 0x0E:  # string, code, symbol
        return 4 + _INT32.unpack_from(raw, v)[0]
    if t == 0x03 or t == 0x04 or t == 0x0F:  # document, array, code with scope
        return _INT32.unpack_from(raw, v)[0]
    if t == 0x05:  # binary
        return 5 + _INT32.unpack_from(raw, v)[0]
    if t == 0x0B:  # regex: two C strings
        return raw.index(b"\0", raw.index(b"\0", v) + 1) + 1 - v
    if t == 0x0C:  # DBPointer
        return 16 + _INT32.unpack_from(raw, v)[0]
    raise bson.errors.InvalidBSON(f"unknown BSON element type {t:#x}")


def _pick(raw: bytes, wanted: set | frozenset) -> bytes:
    """The BSON document made of the top-level elements of ``raw`` named in ``wanted``
    (names as bytes), in the document's order (field names are unique in stored documents:
    the walk stops once every wanted name was seen)."""
    parts = []
    need = len(wanted)
    pos = 4
    last = len(raw) - 1
    find = raw.index
    unpack = _INT32.unpack_from
    fixed = _FIXED_SIZE
    while pos < last:
        t = raw[pos]
        nul = find(b"\0", pos + 1)
        v = nul + 1
        size = fixed.get(t)
        if size is None:
            size = unpack(raw, v)[0] + 4 if t == 0x02 else \
                unpack(raw, v)[0] if t == 0x03 or t == 0x04 else _value_size(raw, t, v)
        end = v + size
        if raw[pos + 1:nul] in wanted:
            parts.append(raw[pos:end])
            need -= 1
            if not need:
                break
        pos = end
    body = b"".join(parts)
    return _INT32.pack(len(body) + 5) + body + b"\0"


def _fields_decoder(fields: set | frozenset | None) -> Callable[[bytes], dict]:
    """raw -> the top-level ``fields`` of a stored document (all of them when ``fields`` is
    None), in the document's own order; other fields are not decoded. Made once per scan."""
    if fields is None:
        return _decode_full
    if not fields:
        return lambda raw: {}
    if len(fields) > _PARTIAL_MAX_FIELDS:
        return lambda raw: {k: v for k, v in _decode_full(raw).items() if k in fields}
    wanted = frozenset(f.encode("utf-8", "surrogatepass") for f in fields if isinstance(f, str))
    decode = bson.decode
    return lambda raw: decode(_pick(raw, wanted))


def raw_fields(raw: bytes, fields: Iterable[str]) -> dict:
    """The top-level ``fields`` of a BSON document, decoded (the others are skipped)."""
    return _fields_decoder(set(fields))(raw)


def _decode_fields(raw: bytes, fields: set | frozenset | None) -> dict:
    """:func:`_fields_decoder` of ``fields``, for one document."""
    return _fields_decoder(fields)(raw)


def _locate(raw: bytes, wanted: set | frozenset) -> dict[bytes, tuple[int, int]]:
    """name -> (start, end) of the top-level elements of ``raw`` named in ``wanted``."""
    out = {}
    need = len(wanted)
    pos = 4
    last = len(raw) - 1
    find = raw.index
    unpack = _INT32.unpack_from
    fixed = _FIXED_SIZE
    while pos < last and need:
        t = raw[pos]
        nul = find(b"\0", pos + 1)
        v = nul + 1
        size = fixed.get(t)
        if size is None:
            size = unpack(raw, v)[0] + 4 if t == 0x02 else \
                unpack(raw, v)[0] if t == 0x03 or t == 0x04 else _value_size(raw, t, v)
        end = v + size
        name = raw[pos + 1:nul]
        if name in wanted:
            out[name] = (pos, end)
            need -= 1
        pos = end
    return out


def _decode_spans(raw: bytes, spans: Iterable[tuple[int, int]]) -> dict:
    body = b"".join([raw[a:b] for a, b in sorted(spans)])
    return bson.decode(_INT32.pack(len(body) + 5) + body + b"\0")


def _splice(raw: bytes, part: Mapping, touched: set,
            spans: dict[bytes, tuple[int, int]] | None = None) -> bytes:
    """``raw`` with its top-level fields named in ``touched`` replaced by those of ``part``
    (encoded), removed when ``part`` lacks them; fields of ``part`` that ``raw`` lacks are
    appended in ``part``'s order. The result equals encoding the whole updated document.
    ``spans``: :func:`_locate` of ``raw`` and ``touched``, when already known."""
    enc = _encode(part)
    new = {name: enc[a:b] for name, a, b in _elements(enc)}
    if spans is None:
        spans = _locate(raw, {f.encode("utf-8", "surrogatepass") for f in touched})
    parts = []
    start = 4  # raw[start:a] is a run of kept elements
    for a, b, name in sorted((a, b, name) for name, (a, b) in spans.items()):
        parts.append(raw[start:a])
        elem = new.pop(name, None)
        if elem is not None:
            parts.append(elem)
        start = b
    parts.append(raw[start:len(raw) - 1])
    parts.extend(new.values())
    body = b"".join(parts)
    return _INT32.pack(len(body) + 5) + body + b"\0"


_ATOMIC_TYPES = frozenset({str, int, float, bool, type(None), bytes, ObjectId, Decimal128})


def _patch_dt(value: Any) -> Any:
    """mongomock's ``patch_datetime_awareness_in_document`` (copy containers, dates to naive
    UTC milliseconds), with a fast path for plain dicts, lists and atomic values."""
    t = type(value)
    if t is dict:
        return {k: _patch_dt(v) for k, v in value.items()}
    if t is list:
        return [_patch_dt(v) for v in value]
    if t in _ATOMIC_TYPES:
        return value
    if t is datetime:  # exactly mongomock's helper: naive UTC, milliseconds
        ms = (value.microsecond // 1000) * 1000
        if value.tzinfo:
            return (value - value.utcoffset()).replace(tzinfo=None, microsecond=ms)
        return value.replace(microsecond=ms)
    return mm_helpers.patch_datetime_awareness_in_document(value)


def _plain_field(name: Any) -> bool:
    """A ``$set`` target that is a plain top-level field (no path, no positional operator)."""
    return isinstance(name, str) and "." not in name and "$" not in name and "\0" not in name


def _patch_update(document: Any) -> Any:
    """:func:`_patch_dt` of an update document, except the values ``$set``/``$setOnInsert``
    assign to plain fields: they are encoded (which does the same conversion) right after."""
    if type(document) is not dict:
        return _patch_dt(document)
    out = {}
    for op, arg in document.items():
        if op in ("$set", "$setOnInsert") and type(arg) is dict:
            out[op] = {k: (v if _plain_field(k) else _patch_dt(v)) for k, v in arg.items()}
        else:
            out[op] = _patch_dt(arg)
    return out


_MISSING = object()


_FAST_UPDATERS = frozenset({"$set", "$setOnInsert", "$inc", "$push"})
_PUSH_MODIFIERS = frozenset({"$each", "$slice"})


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def _paths_disjoint(document: Mapping) -> bool:
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
    """The targets of ``{op: arg}`` for :func:`_fast_apply`: ``(parts, name, value)``, parts
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


def _fast_apply(doc: dict, op: str, targets: list[tuple[list[str] | None, str, Any]],
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


def _update_plan(document: Mapping) -> list[tuple[str, Any, Any]] | None:
    """``[(op, arg, fast targets or None)]`` of an operator update document (None when it is
    not one: mongomock handles it whole)."""
    if not document or not all(isinstance(k, str) and k.startswith("$") for k in document):
        return None
    paths_ok = _paths_disjoint(document)
    return [(op, arg, _fast_plan(op, arg) if paths_ok and op in _FAST_UPDATERS
             and type(arg) is dict else None) for op, arg in document.items()]


#: values ``$set`` may write straight into BSON bytes (their encoding needs no context)
_LEAF_VALUE_TYPES = frozenset({str, int, float, bool, datetime, type(None)})
_DOUBLE = struct.Struct("<d")


def _leaf_plan(plan: list[tuple[str, Any, Any]] | None) -> dict | None:
    """For an update made only of ``$set`` and ``$inc`` of plain values (``$setOnInsert``
    changes nothing in a document that exists), the tree its paths make: name (bytes) ->
    subtree, or ``(b"", element bytes)`` for a ``$set`` leaf, or ``(name, amount)`` for an
    ``$inc`` one. :func:`_patch_leaves` applies it to a stored document's bytes. None when
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
                leaf = ((b"", _encode({name: value})[4:-1]) if op == "$set"
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


def _inc_element(t: int, raw: bytes, v: int, name: bytes, amount: Any) -> bytes | None:
    """The element ``$inc`` makes of the number of type ``t`` at ``raw[v]`` (None: leave it
    to the general path: an int64, a result beyond int32, not a number)."""
    if t == 0x10:
        new = int.from_bytes(raw[v:v + 4], "little", signed=True) + amount
        if type(new) is int:
            if -0x80000000 <= new <= 0x7FFFFFFF:
                return b"\x10" + name + b"\0" + new.to_bytes(4, "little", signed=True)
            return None
        return b"\x01" + name + b"\0" + _DOUBLE.pack(new)
    if t == 0x01:
        return b"\x01" + name + b"\0" + _DOUBLE.pack(_DOUBLE.unpack_from(raw, v)[0] + amount)
    return None


def _leaf_edits(raw: bytes, start: int, tree: dict, edits: list) -> int | None:
    """Append to ``edits`` the ``[a, b, bytes]`` replacements that write the leaves of
    ``tree`` into the document at ``raw[start:]``, in the order of their positions; return
    how many bytes longer the document gets (None: a path is missing or runs through
    anything but embedded documents, or an ``$inc`` meets what :func:`_inc_element` leaves
    alone). Walks the elements as :func:`_pick` and :func:`_locate` do, inline: built on
    :func:`_locate` it took 20-30% longer (measured), and this is a re-scan's hot path."""
    need = len(tree)
    delta = 0
    pos = start + 4
    last = start + _INT32.unpack_from(raw, start)[0] - 1
    find = raw.index
    unpack = _INT32.unpack_from
    fixed = _FIXED_SIZE
    get = tree.get
    while pos < last:
        t = raw[pos]
        nul = find(b"\0", pos + 1)
        v = nul + 1
        size = fixed.get(t)
        if size is None:
            size = unpack(raw, v)[0] + 4 if t == 0x02 else \
                unpack(raw, v)[0] if t == 0x03 or t == 0x04 else _value_size(raw, t, v)
        end = v + size
        node = get(raw[pos + 1:nul])
        if node is not None:
            if type(node) is dict:
                if t != 0x03:
                    return None
                prefix = [v, v + 4, b""]  # the embedded document's length, if it changes
                edits.append(prefix)
                grown = _leaf_edits(raw, v, node, edits)
                if grown is None:
                    return None
                if grown:
                    prefix[2] = _INT32.pack(size + grown)
                    delta += grown
                else:
                    prefix[1] = v  # nothing to replace
            else:
                elem = node[1] if node[0] == b"" else _inc_element(t, raw, v, node[0], node[1])
                if elem is None:
                    return None
                edits.append([pos, end, elem])
                delta += len(elem) - (end - pos)
            need -= 1
            if not need:
                return delta
        pos = end
    return None


def _patch_leaves(raw: bytes, tree: dict) -> bytes | None:
    """``raw`` with the leaves of a :func:`_leaf_plan` written into its bytes, and the other
    bytes kept: equal to decoding, updating and encoding the document. None (nothing
    done) when a path is missing or runs through anything but embedded documents, or an
    ``$inc`` meets a value :func:`_inc_element` leaves alone."""
    edits: list = []
    grown = _leaf_edits(raw, 0, tree, edits)
    if grown is None:
        return None
    parts = [_INT32.pack(len(raw) + grown)]
    at = 4
    for a, b, new in edits:
        parts.append(raw[at:a])
        parts.append(new)
        at = b
    parts.append(raw[at:])
    return b"".join(parts)


def _store_key(value: Any) -> Any:
    return mm_helpers.hashdict(value) if isinstance(value, dict) else value


def _raw_id(raw: bytes) -> Any:
    """The store key (``_id``) of BSON bytes; fast when ``_id`` comes first (it always does
    in what bson.encode and mongodump write)."""
    if raw[5:9] == b"_id\x00":
        t = raw[4]
        if t == 0x02:
            n = int.from_bytes(raw[9:13], "little")
            return raw[13:12 + n].decode("utf-8")
        if t == 0x07:
            return ObjectId(raw[9:21])
        if t == 0x10:
            return int.from_bytes(raw[9:13], "little", signed=True)
        if t == 0x12:
            return int.from_bytes(raw[9:17], "little", signed=True)
    try:
        value = RawBSONDocument(raw)["_id"]
    except KeyError:
        raise StoreError("a stored document has no _id") from None
    return _store_key(_materialize(value))


# =========================================================================== field dependencies
#
# Which top-level fields a filter / projection / pipeline reads. None means "cannot tell:
# decode everything". Over-inclusion is harmless; under-inclusion would change results, so
# every unknown construct answers None.

def _union(a: set | None, b: set | None) -> set | None:
    if a is None or b is None:
        return None
    return a | b


def _top(path: str) -> str:
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
                out.add(_top(e[1:]))
        elif isinstance(e, Mapping):
            for k, v in e.items():
                if k in _WHOLE_DOC_OPERATORS:
                    return None
                stack.append(v)
        elif isinstance(e, (list, tuple)):
            stack.extend(e)
    return out


def _filter_fields(spec: Any) -> set | None:
    """Fields a query filter references."""
    if not isinstance(spec, Mapping):
        return None
    out: set = set()
    for k, v in spec.items():
        if k in ("$and", "$or", "$nor"):
            if not isinstance(v, (list, tuple)):
                return None
            for sub in v:
                f = _filter_fields(sub)
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
            out.add(_top(k))
    return out


#: update operators that change only the fields (paths) named in their argument
_FIELD_UPDATERS = frozenset({"$set", "$setOnInsert", "$inc", "$mul", "$min", "$max", "$unset",
                             "$push", "$addToSet", "$pull", "$pullAll", "$pop", "$currentDate"})


def _update_fields(document: Any) -> set | None:
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


def _projection_fields(projection: Any) -> set | None:
    """Fields a find() projection needs from the stored document (mirrors mongomock's
    ``_copy_only_fields``: inclusion -> the included fields and ``_id``; else everything)."""
    if projection is None:
        return None
    if not isinstance(projection, Mapping):
        return {"_id"} | {_top(k) for k in projection}
    if not projection:
        return None
    id_value = projection.get("_id", 1)
    ops = {k for k, v in projection.items() if isinstance(v, dict)}
    plain = {k: v for k, v in projection.items() if k != "_id" and k not in ops}
    if not plain:
        return ({"_id"} | {_top(k) for k in ops}) if id_value else None
    if len(set(plain.values())) > 1:
        return None
    if next(iter(plain.values())):
        return {"_id"} | {_top(k) for k in plain} | {_top(k) for k in ops}
    return None


def _project_is_inclusion(spec: Mapping) -> bool:
    method = None
    for field, value in spec.items():
        if method is None and (field != "_id" or value):
            method = "include" if value else "exclude"
    return method == "include"


def _pipeline_fields(stages: list[tuple[str, Any]]) -> set | None:
    """Fields of the input documents a pipeline can observe (None: all of them)."""
    needed = {"_id"}
    for op, arg in stages:
        if op == "$match":
            f = _filter_fields(arg)
            if f is None:
                return None
            needed |= f
        elif op == "$sort":
            if not isinstance(arg, Mapping) or any(k.startswith("$") for k in arg):
                return None
            needed |= {_top(k) for k in arg}
        elif op in ("$limit", "$skip", "$sample"):
            continue
        elif op == "$unwind":
            path = arg.get("path") if isinstance(arg, Mapping) else arg
            if not isinstance(path, str) or not path.startswith("$") or path.startswith("$$"):
                return None
            needed.add(_top(path[1:]))
        elif op in ("$addFields", "$set"):
            f = _expr_fields(arg)
            if f is None or not isinstance(arg, Mapping):
                return None
            needed |= f | {_top(k) for k in arg}
        elif op == "$project":
            if not isinstance(arg, Mapping):
                return None
            f = _expr_fields(arg)
            if f is None:
                return None
            needed |= f | {_top(k) for k in arg}
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
                f = _pipeline_fields([(o, a) for s in sub for o, a in s.items()])
                if f is None:
                    return None
                needed |= f
            return needed
        elif op == "$lookup":
            if not isinstance(arg, Mapping) or "let" in arg or "pipeline" in arg:
                return None
            local = arg.get("localField")
            if isinstance(local, str):
                needed.add(_top(local))
        else:
            return None
    return None  # the documents themselves reach the output


# =========================================================================== hashable keys

_NOKEY = object()


def _norm(v: Any) -> Any:
    """A hashable key with MongoDB's equality (1 == 1.0, true != 1, key order matters)."""
    t = type(v)  # exact types first: the common cases, cheaply
    if t is str:
        return ("s", v)
    if t is int or t is float:
        return ("nan",) if v != v else ("n", v)
    if t is dict:
        return ("d", tuple([(k, _norm(x)) for k, x in v.items()]))
    if v is None:
        return ("z",)
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, float)):
        return ("nan",) if v != v else ("n", v)
    if isinstance(v, Decimal128):
        d = v.to_decimal()
        return ("nan",) if d.is_nan() else ("n", d)
    if isinstance(v, Decimal):
        return ("nan",) if v.is_nan() else ("n", v)
    if isinstance(v, str):
        return ("s", v)
    if isinstance(v, Mapping):
        return ("d", tuple((k, _norm(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return ("a", tuple(_norm(x) for x in v))
    if isinstance(v, datetime):
        return ("t", v)
    if isinstance(v, (bytes, bytearray)):
        return ("y", bytes(v))
    if isinstance(v, ObjectId):
        return ("o", v)
    try:
        hash(v)
        return ("x", type(v).__name__, v)
    except TypeError:
        return ("r", type(v).__name__, repr(v))


def _is_simple(v: Any) -> bool:
    """A value whose equality match can use a hash lookup."""
    t = type(v)
    return t is str or t is ObjectId or t is int or (t is float and v == v)


def _index_entries(doc: Mapping, specs: list[tuple[str, dict]]) -> list[tuple[str, tuple]]:
    """(index name, key tuple) pairs a document occupies in unique indexes ``specs``."""
    out = []
    for name, ix in specs:
        pfe = ix.get("partialFilterExpression")
        if pfe is not None and not mm_filtering.filter_applies(pfe, doc):
            continue
        per_field = []
        present = False
        for field, _direction in ix["key"]:
            vals = []
            for cand in mm_filtering.iter_key_candidates(field, doc):
                if cand is NOTHING:
                    vals.append(_norm(None))
                    continue
                present = True
                if isinstance(cand, list):
                    vals.extend(_norm(x) for x in cand) if cand else vals.append(("u",))
                else:
                    vals.append(_norm(cand))
            per_field.append(list(dict.fromkeys(vals)) or [_norm(None)])
        if ix.get("sparse") and not present:
            continue
        for combo in itertools.product(*per_field):
            out.append((name, combo))
    return list(dict.fromkeys(out))


def _show_key(uk: tuple) -> str:
    return ", ".join(repr(part[1]) if len(part) == 2 else repr(part[-1]) for part in uk)


# =========================================================================== in-memory stores

_VERSIONS = itertools.count(1)  # one counter for all stores: a version names one state


class _CollectionStore(mm_store.CollectionStore):
    """mongomock's collection store holding BSON bytes, with unique-index hash maps and the
    recorded collection options. ``guard`` (embedded catalog) refuses writes outside
    ``writing()``."""

    #: TTL deletions run at most this often (a real server runs them once a minute)
    ttl_interval_s = 1.0

    def __init__(self, name: str, guard: Any = None):
        self._guard = guard
        self._uniq: dict | None = None
        self._ukeys: dict | None = None
        self._uinfo: tuple[bool, set | None] | None = None
        self._uspecs: list = []
        self._ufields: set | None = None
        super().__init__(name)
        self.options: dict = {}
        self.uuid = _uuid.uuid4().hex
        self.version = next(_VERSIONS)
        self._ttl_checked = float("-inf")

    # ---- the indexes dict: every replacement resets the derived maps
    @property
    def indexes(self) -> dict:
        return self._indexes

    @indexes.setter
    def indexes(self, value: dict) -> None:
        if hasattr(self, "version"):
            self._check_write()
        self._indexes = value
        self._ttl_indexes = {n: d for n, d in value.items() if d.get("expireAfterSeconds") is not None}
        self._forget_unique()
        if hasattr(self, "version"):
            self.version = next(_VERSIONS)

    def _check_write(self) -> None:
        if self._guard is not None:
            self._guard()

    # ---- reads (no reader lock needed: dict reads and list(...) snapshots are atomic)
    def __contains__(self, key: Any) -> bool:
        self._remove_expired_documents()
        return key in self._documents

    def __getitem__(self, key: Any) -> dict:
        self._remove_expired_documents()
        return _decode_full(self._documents[key])

    def __len__(self) -> int:
        self._remove_expired_documents()
        return len(self._documents)

    @property
    def is_empty(self) -> bool:
        self._remove_expired_documents()
        return not self._documents

    @property
    def documents(self) -> Iterator[dict]:
        self._remove_expired_documents()
        for raw in list(self._documents.values()):
            yield _decode_full(raw)

    def raw_items(self) -> list[tuple[Any, bytes]]:
        """Snapshot of (key, BSON bytes) in natural order."""
        return list(self._documents.items())

    def raw_bytes(self) -> int:
        return sum(len(r) for r in list(self._documents.values()))

    # ---- writes
    def create(self) -> None:
        self._check_write()
        super().create()
        self.version = next(_VERSIONS)

    def drop(self) -> None:
        self._check_write()
        self._reset()

    def _reset(self) -> None:
        self._documents = OrderedDict()
        self._indexes = {}
        self._ttl_indexes = {}
        self._is_force_created = False
        self._forget_unique()
        self.options = {}
        self.uuid = _uuid.uuid4().hex
        self.version = next(_VERSIONS)

    def create_index(self, index_name: str, index_dict: dict) -> None:
        self._check_write()
        super().create_index(index_name, index_dict)
        self._forget_unique()
        self.version = next(_VERSIONS)

    def drop_index(self, index_name: str) -> None:
        self._check_write()
        super().drop_index(index_name)
        self._forget_unique()
        self.version = next(_VERSIONS)

    def modify_index(self, spec: Mapping) -> None:
        """collMod ``index: {name|keyPattern, option: value}``."""
        self._check_write()
        target = None
        for name, ix in self._indexes.items():
            if name == spec.get("name") or ("keyPattern" in spec and list(ix["key"]) == list(
                    dict(spec["keyPattern"]).items())):
                target = name
                break
        if target is None:
            raise OperationFailure(f"cannot find index {dict(spec)} for ns {self.name}", 27)
        new = dict(self._indexes[target])
        for k, v in spec.items():
            if k not in ("name", "keyPattern"):
                new[k] = copy.deepcopy(v)
        indexes = dict(self._indexes)
        indexes[target] = new
        self.indexes = indexes

    def set_options(self, options: dict) -> None:
        self._check_write()
        self.options = options
        self.version = next(_VERSIONS)

    def __setitem__(self, key: Any, doc: Mapping) -> None:  # mongomock's own write paths
        self.put(key, _encode(doc))

    def __delitem__(self, key: Any) -> None:
        self._check_write()
        self._unindex(key)
        del self._documents[key]
        self.version = next(_VERSIONS)

    def put(self, key: Any, raw: bytes, touched: set | None = None) -> None:
        """Store a document (BSON bytes) under ``key``, enforcing the unique indexes.
        ``touched``: the only top-level fields that differ from the stored document under
        ``key`` (None: unknown); when no unique index reads them, its entries stand."""
        self._check_write()
        has_unique, ufields = self._unique_info()
        if has_unique:
            if touched is not None and ufields is not None \
                    and key in self._documents and not (touched & ufields):
                # the maps (built or not) stand; a re-scan's first write in a fresh process
                # does not build them
                self._documents[key] = raw
                self.version = next(_VERSIONS)
                return
            uniq = self._unique_maps()
            entries = _index_entries(_decode_fields(raw, self._ufields), self._uspecs)
            for name, uk in entries:
                owner = uniq[name].get(uk, _NOKEY)
                if owner is not _NOKEY and owner != key:
                    raise self._dup_error(name, uk)
            self._unindex(key)
            for name, uk in entries:
                uniq[name][uk] = key
            if entries:
                self._ukeys[key] = entries
        self._documents[key] = raw
        self.version = next(_VERSIONS)

    # ---- unique indexes
    def _forget_unique(self) -> None:
        """The indexes changed: the maps and what is known of the unique fields are stale."""
        self._uniq = self._ukeys = None
        self._uinfo = None

    def _unique_info(self) -> tuple[bool, set | None]:
        """(whether a unique index exists, the top-level fields the unique indexes read, None
        when that cannot be told), without building the maps."""
        info = self._uinfo
        if info is None:
            specs = [(n, ix) for n, ix in self._indexes.items() if ix.get("unique")]
            info = self._uinfo = (bool(specs), self._unique_fields(specs))
        return info

    def _dup_error(self, name: str, uk: tuple) -> DuplicateKeyError:
        pattern = dict(self._indexes[name]["key"]) if name in self._indexes else {}
        msg = (f"E11000 duplicate key error collection: {self.name} index: {name} "
               f"dup key: {{ {_show_key(uk)} }}")
        return DuplicateKeyError(msg, 11000, {"index": name, "keyPattern": pattern, "errmsg": msg})

    @staticmethod
    def _unique_fields(specs: list) -> set | None:
        fields: set | None = set()
        for _n, ix in specs:
            fields = _union(fields, {_top(f) for f, _d in ix["key"]})
            if ix.get("partialFilterExpression") is not None:
                fields = _union(fields, _filter_fields(ix["partialFilterExpression"]))
        return fields

    def _unique_maps(self) -> dict:
        if self._uniq is None:
            specs = [(n, ix) for n, ix in self._indexes.items() if ix.get("unique")]
            fields = self._unique_fields(specs)
            uniq, ukeys = self._build_unique(specs, fields)
            self._uspecs, self._ufields, self._uniq, self._ukeys = specs, fields, uniq, ukeys
        return self._uniq

    def create_unique_index(self, index_name: str, index_dict: dict) -> None:
        """Add a unique index: one scan both checks the documents (DuplicateKeyError, nothing
        changed) and builds the hash maps of every unique index."""
        self._check_write()
        specs = [(n, ix) for n, ix in self._indexes.items() if ix.get("unique") and n != index_name]
        specs.append((index_name, index_dict))
        fields = self._unique_fields(specs)
        uniq, ukeys = self._build_unique(specs, fields)
        mm_store.CollectionStore.create_index(self, index_name, index_dict)
        self._uinfo = None
        self._uspecs, self._ufields, self._uniq, self._ukeys = specs, fields, uniq, ukeys
        self.version = next(_VERSIONS)

    def _build_unique(self, specs: list, fields: set | None) -> tuple[dict, dict]:
        uniq: dict = {n: {} for n, _ix in specs}
        ukeys: dict = {}
        decode = _fields_decoder(fields)
        for key, raw in list(self._documents.items()):
            entries = _index_entries(decode(raw), specs)
            for name, uk in entries:
                owner = uniq[name].get(uk, _NOKEY)
                if owner is not _NOKEY and owner != key:
                    raise self._dup_error(name, uk)
                uniq[name][uk] = key
            if entries:
                ukeys[key] = entries
        return uniq, ukeys

    def _unindex(self, key: Any) -> None:
        if self._ukeys is None:
            return
        for name, uk in self._ukeys.pop(key, ()):
            m = self._uniq.get(name) if self._uniq is not None else None
            if m is not None and m.get(uk, _NOKEY) == key:
                del m[uk]

    def unique_candidates(self, spec: Mapping) -> list | None:
        """The one document an equality filter on a unique index can match ([] when none),
        or None when no unique index applies."""
        for name, ix in self._indexes.items():
            if not ix.get("unique") or ix.get("partialFilterExpression") is not None:
                continue
            fields = [f for f, _d in ix["key"]]
            if not all("." not in f and f in spec for f in fields):
                continue
            vals = []
            for f in fields:
                v = spec[f]
                if isinstance(v, Mapping) and len(v) == 1 and "$eq" in v:
                    v = v["$eq"]
                if not _is_simple(v):
                    break
                vals.append(_norm(v))
            else:
                try:
                    uniq = self._unique_maps()
                except DuplicateKeyError:
                    return None
                owner = uniq[name].get(tuple(vals), _NOKEY)
                if owner is _NOKEY:
                    return []
                raw = self._documents.get(owner)
                return [] if raw is None else [(owner, raw)]
        return None

    # ---- TTL (rate-limited; deletions are the server's, so they bypass the write guard)
    def _remove_expired_documents(self) -> None:
        if not self._ttl_indexes:
            return
        now = time.monotonic()
        if now - self._ttl_checked < self.ttl_interval_s:
            return
        self._ttl_checked = now
        for index in list(self._ttl_indexes.values()):
            self._expire(index)

    def _expire(self, index: dict) -> None:
        try:
            expiry = int(index["expireAfterSeconds"])
        except (TypeError, ValueError):
            return
        keys = list(index["key"])
        if len(keys) != 1:
            return
        field = keys[0][0]
        ttl_now = mongomock.utcnow()
        expired = []
        decode = _fields_decoder({_top(field)})
        for key, raw in list(self._documents.items()):
            doc = decode(raw)
            try:
                value = mm_helpers.get_value_by_dot(doc, field)
            except KeyError:
                continue
            if self._value_meets_expiry(value, expiry, ttl_now):
                expired.append(key)
        for key in expired:
            self._unindex(key)
            self._documents.pop(key, None)
        if expired:
            self.version = next(_VERSIONS)

    # ---- persistence helpers (no write guard: loading is not a user write)
    def index_documents(self) -> list[dict]:
        """The indexes as listIndexes documents (``_id_`` first)."""
        out = [{"v": 2, "key": {"_id": 1}, "name": "_id_"}]
        for name, ix in self._indexes.items():
            doc = {"v": 2, "key": dict(ix["key"]), "name": name}
            doc.update({k: v for k, v in ix.items() if k != "key"})
            out.append(doc)
        return out

    def load(self, docs: OrderedDict, indexes: dict, options: dict, uuid_hex: str | None) -> None:
        self._documents = docs
        self._indexes = indexes
        self._ttl_indexes = {n: d for n, d in indexes.items() if d.get("expireAfterSeconds") is not None}
        self._forget_unique()
        self.options = options
        self.uuid = uuid_hex or _uuid.uuid4().hex
        self._is_force_created = True
        self.version = next(_VERSIONS)


class _DatabaseStore(mm_store.DatabaseStore):
    def __init__(self, guard: Any = None):
        super().__init__()
        self._guard = guard
        self.catalog: _Catalog | None = None
        self.label: str | None = None

    def __getitem__(self, col_name: str) -> _CollectionStore:
        try:
            return self._collections[col_name]
        except KeyError:
            col = self._collections[col_name] = _CollectionStore(col_name, self._guard)
            return col

    def rename(self, name: str, new_name: str) -> None:
        if self._guard is not None:
            self._guard()
        col = self._collections.pop(name, None)
        if col is None:
            col = _CollectionStore(new_name, self._guard)
        col.name = new_name
        col.version = next(_VERSIONS)
        self._collections[new_name] = col


class _ServerStore(mm_store.ServerStore):
    def __init__(self, guard: Any = None):
        super().__init__()
        self._guard = guard

    def __getitem__(self, db_name: str) -> _DatabaseStore:
        try:
            return self._databases[db_name]
        except KeyError:
            db = self._databases[db_name] = _DatabaseStore(self._guard)
            return db


# =========================================================================== aggregation

_PER_DOC_STAGES = frozenset({"$match", "$project", "$addFields", "$set", "$unwind", "$replaceRoot"})
_END = object()


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _vanilla_stage(docs: list, op: str, arg: Any, database: Any) -> list:
    return list(mm_aggregate.process_pipeline(docs, database, [{op: arg}], None))


def _unwind(in_collection: Iterable[dict], options: Any) -> list[dict]:
    """mongomock's $unwind, without deep-copying the unwound array once per element."""
    if not isinstance(options, dict):
        options = {"path": options}
    path = options["path"]
    if not isinstance(path, str) or path[0] != "$":
        raise ValueError("$unwind failed: exception: field path references must be prefixed "
                         "with a '$' '%s'" % path)
    path = path[1:]
    preserve = options.get("preserveNullAndEmptyArrays")
    index_field = options.get("includeArrayIndex")
    out = []
    for doc in in_collection:
        try:
            array_value = mm_helpers.get_value_by_dot(doc, path)
        except KeyError:
            if preserve:
                out.append(doc)
            continue
        if array_value is None:
            if preserve:
                out.append(doc)
            continue
        if array_value == []:
            if preserve:
                new_doc = copy.deepcopy(doc)
                mm_helpers.delete_value_by_dot(new_doc, path)
                out.append(new_doc)
            continue
        pairs = enumerate(array_value) if isinstance(array_value, list) else [(None, array_value)]
        top_level = "." not in path and type(doc) is dict
        for index, item in pairs:
            # deepcopy(doc) as mongomock does, but the memo makes it reuse the array itself
            # (replaced right after) and atomic values are not sent through deepcopy
            memo = {id(array_value): array_value}
            if top_level:
                new_doc = {k: item if k == path else v if type(v) in _ATOMIC_TYPES
                           else copy.deepcopy(v, memo) for k, v in doc.items()}
            else:
                new_doc = copy.deepcopy(doc, memo)
                new_doc = mm_helpers.set_value_by_dot(new_doc, path, item)
            if index_field:
                new_doc = mm_helpers.set_value_by_dot(new_doc, index_field, index)
            out.append(new_doc)
    return out


def _compile(expr: Any, ignore_missing_keys: bool = False):
    """doc -> mongomock's ``_parse_expression(expr, doc, ignore_missing_keys)``, with the
    parser's work done once for the common shapes (field paths, constants, object literals
    of those); anything else is handed to mongomock's parser for every document."""
    if isinstance(expr, str) and expr.startswith("$") and not expr.startswith("$$"):
        path = expr[1:]
        get = mm_helpers.get_value_by_dot
        return lambda doc: get(doc, path, can_generate_array=True)
    if not isinstance(expr, dict) and not (isinstance(expr, str) and expr.startswith("$")):
        return lambda doc: expr  # mongomock returns any other non-dict value as it is
    if type(expr) is dict and expr and not any(k.startswith("$") for k in expr):
        parts = [(k, _compile(v, ignore_missing_keys)) for k, v in expr.items()]

        def literal(doc):
            out = {}
            for k, fn in parts:
                try:
                    out[k] = fn(doc)
                except KeyError:
                    if ignore_missing_keys:
                        continue
                    raise
            return out
        return literal
    parse = mm_aggregate._parse_expression
    return lambda doc: parse(expr, doc, ignore_missing_keys=ignore_missing_keys)


def _group(docs: Iterable[dict], options: Mapping) -> list[dict]:
    """mongomock's $group (same grouping, order and accumulators), consuming a stream and
    keeping only the accumulated values, not the documents."""
    _id = options["_id"]
    key_of = _compile(_id, ignore_missing_keys=True)
    accs = []
    for field, value in options.items():
        if field == "_id":
            continue
        for operator, expr in value.items():
            accs.append((field, operator, _compile(expr)))
    groups: dict = {}
    if not _id:
        groups[None] = [None, [[] for _a in accs]]
    for doc in docs:
        if _id:
            try:
                key = key_of(doc)
            except KeyError:
                key = None
            hk = _norm(key)
            g = groups.get(hk)
            if g is None:
                g = groups[hk] = [key, [[] for _a in accs]]
        else:
            g = groups[None]
        for i, (_f, _op, value_of) in enumerate(accs):
            try:
                g[1][i].append(value_of(doc))
            except KeyError:
                pass
    ordered = list(groups.values())
    if _id:
        keys = [_bson_key(g[0]) for g in ordered]
        if None in keys:
            ordered.sort(key=lambda g: mm_filtering.BsonComparable(g[0]))
        else:
            ordered = [ordered[j] for j in sorted(range(len(ordered)), key=keys.__getitem__)]
    out = []
    ops = mm_aggregate._GROUPING_OPERATOR_MAP
    for key, values in ordered:
        doc_dict: dict = {}
        for (field, operator, _e), vals in zip(accs, values):
            if operator in ops:
                doc_dict[field] = ops[operator](vals)
            elif operator == "$addToSet":
                value = []
                for elt in (v or None for v in vals):
                    if elt not in value:
                        value.append(elt)
                doc_dict[field] = value
            elif operator == "$push":
                if field not in doc_dict:
                    doc_dict[field] = vals
                else:
                    doc_dict[field].extend(vals)
            elif operator in mm_aggregate.group_operators:
                raise NotImplementedError(
                    "Although %s is a valid group operator for the aggregation pipeline, it is "
                    "currently not implemented in Mongomock." % operator)
            else:
                raise NotImplementedError(
                    "%s is not a valid group operator for the aggregation pipeline. See "
                    "http://docs.mongodb.org/manual/meta/aggregation-quick-reference/ for a "
                    "complete list of valid operators." % operator)
        doc_dict["_id"] = key
        out.append(doc_dict)
    return out


def _count(docs: Iterable[dict], options: Any) -> list[dict]:
    if not isinstance(options, str) or options == "":
        raise OperationFailure("the count field must be a non-empty string")
    if options.startswith("$"):
        raise OperationFailure("the count field cannot be a $-prefixed path")
    if "." in options:
        raise OperationFailure("the count field cannot contain '.'")
    return [{options: sum(1 for _d in docs)}]


def _facet(docs: list[dict], options: Mapping, database: Any) -> list[dict]:
    out = {}
    for title, pipeline in options.items():
        stages = [(op, arg) for stage in pipeline for op, arg in stage.items()]
        out[title] = list(_run_stages(docs, stages, database))
    return [out]


def _per_doc(docs: Iterable[dict], op: str, arg: Any, database: Any) -> Iterator[dict]:
    for doc in docs:
        if op == "$unwind":
            yield from _unwind((doc,), arg)
        else:
            yield from mm_aggregate.process_pipeline([doc], database, [{op: arg}], None)


def _run_stages(docs: Iterable[dict], stages: list[tuple[str, Any]], database: Any) -> Iterator[dict]:
    """Run pipeline stages over a stream: per-document stages stay lazy, $group/$count
    consume the stream, anything else runs mongomock's own handler on a list."""
    it: Iterator[dict] = iter(docs)
    for i, (op, arg) in enumerate(stages):
        if op in _PER_DOC_STAGES:
            it = _per_doc(it, op, arg, database)
        elif op == "$limit" and _is_count(arg):
            it = itertools.islice(it, arg)
        elif op == "$skip" and _is_count(arg):
            it = itertools.islice(it, arg, None)
        elif op == "$group" and isinstance(arg, Mapping):
            it = iter(_group(it, arg))
        elif op == "$count":
            it = iter(_count(it, arg))
        elif op == "$sort" and isinstance(arg, Mapping) and all(
                isinstance(d, (int, float)) and not isinstance(d, bool) for d in arg.values()):
            nxt = stages[i + 1] if i + 1 < len(stages) else (None, None)
            top = nxt[1] if nxt[0] == "$limit" and _is_count(nxt[1]) else 0
            it = iter(_sort_stage(it, arg, top))
        elif op == "$facet" and isinstance(arg, Mapping):
            it = iter(_facet(list(it), arg, database))
        else:
            it = iter(_vanilla_stage(list(it), op, arg, database))
    return it


def _first(entry: tuple) -> Any:
    return entry[0]


def _identity(doc: Any) -> Any:
    return doc


def _sort_stage(docs: Iterable[dict], options: Mapping, top: int = 0) -> list[dict]:
    """mongomock's $sort (same order, same stability) with :func:`_sort_list`; only the
    first ``top`` documents when ``top`` > 0 (a $limit follows)."""
    return _sort_list(list(docs), _identity, list(options.items()), top)


def _primed(it: Iterator) -> Iterator:
    """Evaluate the first item now, so that most errors surface at aggregate() time."""
    first = next(it, _END)
    if first is _END:
        return iter(())
    return itertools.chain((first,), it)


def _distinct(key: str, docs: Iterable[dict]) -> list:
    """mongomock's Cursor.distinct over a stream."""
    unique = set()
    for x in docs:
        for values in mm_filtering.iter_key_candidates(key, x):
            if values is NOTHING:
                continue
            if not isinstance(values, (tuple, list)):
                values = [values]
            for value in values:
                unique.add(mm_helpers.hashdict(value) if isinstance(value, dict) else value)
    return [dict(v) if isinstance(v, mm_helpers.hashdict) else v for v in unique]


# =========================================================================== collection / cursor

class _BulkBuilder(mm_collection.BulkOperationBuilder):
    """Accepts the ``sort`` argument pymongo >= 4.11 passes (mongomock issue 912)."""

    def add_update(self, selector, doc, multi=False, upsert=False, collation=None,
                   array_filters=None, hint=None, sort=None):
        if sort:
            raise NotImplementedError("UpdateOne(sort=...) is not supported by the mongomock shim")
        return super().add_update(selector, doc, multi=multi, upsert=upsert, collation=collation,
                                  array_filters=array_filters, hint=hint)

    def add_replace(self, selector, doc, upsert, collation=None, hint=None, sort=None):
        if sort:
            raise NotImplementedError("ReplaceOne(sort=...) is not supported by the mongomock shim")
        return super().add_replace(selector, doc, upsert, collation=collation, hint=hint)


def _bson_key(value: Any) -> tuple | None:
    """A native key that orders values as mongomock's ``BsonComparable`` does (BSON type
    rank first - null < numbers < strings < objects < arrays < binary < ObjectId < bool <
    date < regex -, then the value: numbers across int/float/Decimal/Decimal128, strings by
    code point, objects field by field as (type rank, name, value), arrays element by
    element, shorter first on a tie). None for a value it cannot key (the caller then falls
    back to mongomock's comparison)."""
    t = type(value)
    if t is str:
        return (15, value)
    if t is int or t is float:
        return (10, value)
    if t is datetime:
        return (45, value)
    if value is None:
        return (5, 0)
    if t is bool:
        return (40, value)
    if t is ObjectId:
        return (35, value)
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            kv = _bson_key(v)
            if kv is None:
                return None
            parts.append((kv[0], k, kv))
        return (20, tuple(parts))
    if isinstance(value, (list, tuple)):
        parts = []
        for v in value:
            kv = _bson_key(v)
            if kv is None:
                return None
            parts.append(kv)
        return (25, tuple(parts))
    if isinstance(value, bool):
        return (40, value)
    if isinstance(value, (int, float, Decimal)):
        return (10, value)
    if isinstance(value, Decimal128):
        d = value.to_decimal()
        return None if d.is_nan() else (10, d)
    if isinstance(value, str):
        return (15, value)
    if isinstance(value, datetime):
        return None if value.tzinfo is not None else (45, value)
    if isinstance(value, bytes):
        return (30, (len(value), value))
    if isinstance(value, ObjectId):
        return (35, value)
    return None


_MISSING_KEY = (1, (5, 0))
_EMPTY_ARRAY_KEY = (0, (5, 0))


def _field_sort_key(key: str, doc: Any) -> tuple | None:
    """mongomock's ``resolve_sort_key(key, doc)`` as a native key: missing and null sort
    alike, an empty array before them, any other array as its first element."""
    if type(doc) is dict and "." not in key and key in doc:
        value = doc[key]
    else:
        value = mm_filtering.resolve_key(key, doc)
        if value is NOTHING:
            return _MISSING_KEY
    if isinstance(value, (tuple, list)):
        if not value:
            return _EMPTY_ARRAY_KEY
        value = value[0]
    k = _bson_key(value)
    return None if k is None else (1, k)


def _sort_list(entries: list, doc_of: Any, sort: list[tuple[str, Any]], top: int = 0) -> list:
    """``entries`` ordered like mongomock's multi-key sort of the documents ``doc_of(entry)``
    by ``sort`` ((key, direction) pairs; one stable pass per key, last key first), keeping
    only the first ``top`` when ``top`` > 0. One native key per entry; the first ``top``
    are selected with a heap instead of a full sort. Falls back to mongomock's comparison
    passes when a value has no native key."""
    reverse = [direction < 0 for _key, direction in sort]  # raises as mongomock does
    n = len(entries)
    if not sort or n < 2:
        return entries[:top] if top else entries
    names = [key for key, _d in sort]
    keys: list = []
    fsk = _field_sort_key
    if len(names) == 1:
        name = names[0]
        for e in entries:
            k = fsk(name, doc_of(e))
            if k is None:
                return _sort_fallback(entries, doc_of, sort, top)
            keys.append(k)
    else:
        for e in entries:
            doc = doc_of(e)
            k = tuple([fsk(name, doc) for name in names])
            if None in k:
                return _sort_fallback(entries, doc_of, sort, top)
            keys.append(k)
    if len(set(reverse)) > 1:
        # mixed directions: a descending field's key becomes minus its rank among the
        # field's distinct keys, so that one ascending native key orders everything
        columns = list(zip(*keys))
        for i, r in enumerate(reverse):
            if r:
                rank = {k: -j for j, k in enumerate(sorted(set(columns[i])))}
                columns[i] = [rank[k] for k in columns[i]]
        keys = list(zip(*columns))
        rev = False
    else:
        rev = reverse[0]
    get = keys.__getitem__
    if top and top < n:
        pick = heapq.nlargest if rev else heapq.nsmallest
        order = pick(top, range(n), key=get)
    else:
        order = sorted(range(n), key=get, reverse=rev)
    return [entries[i] for i in order]


def _sort_fallback(entries: list, doc_of: Any, sort: list, top: int) -> list:
    out = list(entries)
    for key, direction in reversed(sort):
        out.sort(key=lambda x, key=key: mm_filtering.resolve_sort_key(key, doc_of(x)),
                 reverse=direction < 0)
    return out[:top] if top else out


def _exact_id_spec(spec: Mapping) -> bool:
    """``{"_id": v}`` or ``{"_id": {"$in": [v, ...]}}`` of hashable simple values: the
    candidates :func:`_candidates` returns for it are exactly the matches."""
    if len(spec) != 1 or "_id" not in spec:
        return False
    v = spec["_id"]
    if _is_simple(v):
        return True
    if isinstance(v, Mapping) and len(v) == 1 and "$in" in v:
        arg = v["$in"]
        return isinstance(arg, (list, tuple)) and all(_is_simple(x) for x in arg)
    return False


def _candidates(store: _CollectionStore, spec: Mapping, ordered: bool = True
                ) -> list[tuple[Any, bytes]]:
    """The (key, raw) pairs a filter can possibly match, in natural order (with
    ``ordered=False``, for callers that visit every match, ``{_id: {$in: [...]}}`` is a
    lookup per value instead of a pass over the collection)."""
    docs = store._documents
    if "_id" in spec:
        v = spec["_id"]
        if isinstance(v, Mapping) and len(v) == 1:
            (op, arg), = v.items()
            if op == "$eq" and _is_simple(arg):
                v = arg
            elif op == "$in" and isinstance(arg, (list, tuple)) and all(_is_simple(x) for x in arg):
                if not ordered:
                    return [(k, docs[k]) for k in dict.fromkeys(arg) if k in docs]
                wanted = set(arg)
                return [(k, r) for k, r in list(docs.items()) if k in wanted]
        if _is_simple(v):
            raw = docs.get(v)
            return [] if raw is None else [(v, raw)]
    hit = store.unique_candidates(spec)
    if hit is not None:
        return hit
    return list(docs.items())


class _Collection(mm_collection.Collection):
    """mongomock's Collection over a BSON-bytes store; see the module docstring."""

    # ------------------------------------------------------------------ scanning
    def _scan(self, spec: Mapping | None, needed: set | None, *,
              patched: bool = False, ordered: bool = True) -> Iterator[tuple[Any, bytes, dict]]:
        """(key, raw, doc) of the documents matching ``spec``; ``doc`` holds at least the
        top-level fields ``needed`` (None: the whole document). ``ordered=False``: in any
        order (see :func:`_candidates`)."""
        store = self._store
        store._remove_expired_documents()
        if not spec:
            spec = {}
        elif not patched:
            spec = _patch_dt(spec)
        if not store._documents:
            if spec:
                mm_filtering.filter_applies(spec, {})  # validate the filter, as mongomock does
            return
        items = _candidates(store, spec, ordered)
        if not spec or _exact_id_spec(spec):
            # no filter, or {"_id": v} / {"_id": {"$in": [...]}} whose hash lookup is the match
            id_only = needed is not None and needed <= {"_id"} and bool(spec)
            decode = _fields_decoder(needed)
            for key, raw in items:
                if id_only and type(key) is str:  # a string key is the _id itself
                    yield key, raw, {"_id": key}
                else:
                    yield key, raw, decode(raw)
            return
        match = mm_filtering.filter_applies
        ffields = _filter_fields(spec)
        text = None
        if len(spec) == 1:
            (field, want), = spec.items()
            if type(want) is str and type(field) is str and not field.startswith("$") \
                    and "." not in field:
                # {field: "text"} (e.g. one site's documents): a string field equal to it
                # matches, a string field not equal does not; anything else (arrays, other
                # types, missing) is mongomock's to decide
                text = field, want
                real = match

                def match(spec, doc, _f=field, _w=want):  # noqa: F811
                    v = doc.get(_f)
                    if type(v) is str:
                        return v == _w
                    return real(spec, doc)
        if needed is None and ffields is not None:
            decode = _fields_decoder(ffields)
            for key, raw in items:  # filter on a partial decode, decode whole only matches
                if match(spec, decode(raw)):
                    yield key, raw, _decode_full(raw)
            return
        decode = _fields_decoder(_union(needed, ffields))
        if text is not None:  # the same test as match(), without a call per document
            field, want = text
            for key, raw in items:
                doc = decode(raw)
                v = doc.get(field)
                if v == want if type(v) is str else real(spec, doc):
                    yield key, raw, doc
            return
        for key, raw in items:
            doc = decode(raw)
            if match(spec, doc):
                yield key, raw, doc

    def _iter_documents(self, filter):  # noqa: A002 - mongomock's name
        return (doc for _k, _r, doc in self._scan(filter, None))

    def _get_dataset(self, spec, sort, fields, as_class):
        return self._find_stream(spec, sort, fields)

    def _ensure_uniques(self, new_data):  # the store enforces unique indexes
        return None

    def _shaper(self, projection: Any):
        """doc -> what find() returns for it (``doc`` is a fresh partial decode)."""
        if projection is None or (isinstance(projection, Mapping) and not projection):
            return lambda doc: doc
        proj = (dict(projection) if isinstance(projection, Mapping)
                else mm_helpers.fields_list_to_dict(projection))
        plain = {k: v for k, v in proj.items() if k != "_id"}
        if plain and all(not isinstance(v, Mapping) and "." not in k and "$" not in k
                         for k, v in plain.items()) \
                and len(set(plain.values())) == 1 and next(iter(plain.values())):
            # a plain inclusion of top-level fields: mongomock's result (included fields in
            # document order, then _id unless excluded) without copying fresh values again
            include = set(plain)
            keep_id = bool(proj.get("_id", 1))

            def shape(doc):
                if doc.keys() <= include:  # nothing to drop, no _id to move last
                    return doc
                out = {k: v for k, v in doc.items() if k in include}
                if keep_id and "_id" in doc:
                    out["_id"] = doc["_id"]
                return out
            return shape
        return lambda doc: self._copy_only_fields(doc, proj, dict)

    def _find_stream(self, spec, sort, projection, skip: int = 0, limit: int = 0) -> Iterator[dict]:
        fields = _projection_fields(projection)
        shape = self._shaper(projection)
        if not sort:
            it = self._scan(spec, fields)
            if skip or limit:
                it = itertools.islice(it, skip, skip + limit if limit else None)
            for _k, _r, doc in it:
                yield shape(doc)
            return
        sort = list(sort.items()) if isinstance(sort, Mapping) else list(sort)
        sort_fields = set()
        for key, _direction in sort:
            if key == "$natural":
                continue
            if key.startswith("$"):
                raise NotImplementedError(f"Sorting by {key} is not implemented in mongomock yet")
            sort_fields.add(_top(key))
        entries = [(doc, raw) for _k, raw, doc in self._scan(spec, sort_fields)]
        if any(key == "$natural" for key, _d in sort):
            for key, direction in reversed(sort):
                if key == "$natural":
                    if direction < 0:
                        entries.reverse()
                    continue
                entries = _sort_list(entries, _first, [(key, direction)])
        else:
            entries = _sort_list(entries, _first, sort, skip + limit if limit else 0)
        selected = entries[skip:(skip + limit) if limit else None]
        del entries
        decode = _fields_decoder(fields)
        for _doc, raw in selected:
            yield shape(decode(raw))

    # ------------------------------------------------------------------ reads
    def find(self, filter=None, projection=None, skip=0, limit=0, no_cursor_timeout=False,
             cursor_type=None, sort=None, allow_partial_results=False, oplog_replay=False,
             modifiers=None, batch_size=0, manipulate=True, collation=None, session=None,
             max_time_ms=None, allow_disk_use=False, hint=None, comment=None, **kwargs):
        spec = {} if filter is None else filter
        mm_collection.validate_is_mapping("filter", spec)
        for kwarg, value in kwargs.items():
            if value:
                raise OperationFailure("Unrecognized field '%s'" % kwarg)
        return _Cursor(self, spec, sort, projection, skip, limit, collation=collation) \
            .max_time_ms(max_time_ms).allow_disk_use(allow_disk_use)

    def count_documents(self, filter, **kwargs):
        kwargs.pop("comment", None)
        if kwargs.pop("collation", None):
            _raise_not_implemented("collation", "The collation argument of count_documents is "
                                   "valid but has not been implemented in mongomock yet")
        if kwargs.pop("session", None):
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        skip = kwargs.pop("skip", 0)
        if "limit" in kwargs:
            limit = kwargs.pop("limit")
            if not isinstance(limit, (int, float)):
                raise OperationFailure("the limit must be specified as a number")
            if limit <= 0:
                raise OperationFailure("the limit must be positive")
            limit = int(limit)
        else:
            limit = None
        unknown = set(kwargs) - {"maxTimeMS", "hint"}
        if unknown:
            raise OperationFailure("unrecognized field '%s'" % unknown.pop())
        if not filter:
            self._store._remove_expired_documents()
            n = len(self._store._documents)
        else:
            n = sum(1 for _x in self._scan(filter, set()))
        count = max(n - skip, 0)
        return count if limit is None else min(count, limit)

    def distinct(self, key, filter=None, session=None, comment=None, hint=None, **kwargs):
        if session:
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        if not isinstance(key, str):
            raise TypeError("cursor.distinct key must be a string")
        return _distinct(key, (doc for _k, _r, doc in self._scan(filter or {}, {_top(key)})))

    def aggregate(self, pipeline, session=None, **unused_kwargs):
        if session:
            raise NotImplementedError("Mongomock does not handle sessions yet")
        stages = [(op, arg) for stage in pipeline for op, arg in stage.items()]
        needed = _pipeline_fields(stages)
        spec: Mapping = {}
        if stages and stages[0][0] == "$match" and isinstance(stages[0][1], Mapping):
            spec = stages[0][1]
            stages = stages[1:]
        source = (doc for _k, _r, doc in self._scan(spec, needed))
        out = _run_stages(source, stages, self.database)
        if all(op in _PER_DOC_STAGES or op in ("$limit", "$skip") for op, _a in stages):
            return CommandCursor(_primed(out))  # documents flow out one by one
        return CommandCursor(list(out))

    def options(self, session=None, comment=None):
        if not self._store.is_created:
            return {}
        return copy.deepcopy(self._store.options)

    # ------------------------------------------------------------------ writes
    def _insert(self, data, session=None, ordered=True):
        if session:
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        if not isinstance(data, Mapping):
            return super()._insert(data, session, ordered=ordered)
        if isinstance(data, RawBSONDocument) and data.raw[5:9] == b"_id\x00" \
                and data.raw[4] in (0x02, 0x07):
            # a string or ObjectId _id first (what ingest inserts): no inflating the document
            raw = data.raw
            object_id = key = _raw_id(raw)
        else:
            if not isinstance(data, RawBSONDocument):
                if not all(isinstance(k, str) for k in data):
                    raise ValueError("Document keys must be strings")
                for k in data:  # nested keys with NUL: bson.encode raises the same InvalidDocument
                    if k.startswith("$") or "\0" in k:
                        raise bson.errors.InvalidDocument(
                            f'Top-level field names cannot start with the "$" sign nor contain '
                            f'the null character (found: {k})')
                if "_id" not in data:
                    data["_id"] = ObjectId()
            elif "_id" not in data:
                raise ValueError("a RawBSONDocument to insert must have an _id")
            object_id = data["_id"]
            key = _store_key(_materialize(object_id))
            raw = _encode(data)
        store = self._store
        if key in store._documents:
            raise DuplicateKeyError(
                f"E11000 duplicate key error collection: {self.name} index: _id_ dup key: "
                f"{{ _id: {object_id!r} }}", 11000)
        store.put(key, raw)
        return object_id

    # pymongo inserts a RawBSONDocument as it is (ingest sends new files' documents so);
    # mongomock refuses anything but a mutable mapping
    def insert_one(self, document, bypass_document_validation=False, session=None, comment=None):
        if isinstance(document, RawBSONDocument):
            return mm_results.InsertOneResult(self._insert(document, session), acknowledged=True)
        return super().insert_one(document, bypass_document_validation=bypass_document_validation,
                                  session=session)

    def insert_many(self, documents, ordered=True, bypass_document_validation=False, session=None,
                    comment=None):
        if isinstance(documents, Iterable) and not isinstance(documents, Mapping):
            documents = list(documents)
            if documents and any(isinstance(d, RawBSONDocument) for d in documents):
                for d in documents:
                    if not isinstance(d, RawBSONDocument):
                        mm_collection.validate_is_mutable_mapping("document", d)
                return mm_results.InsertManyResult(self._insert(documents, session, ordered=ordered),
                                                   acknowledged=True)
        return super().insert_many(documents, ordered=ordered,
                                   bypass_document_validation=bypass_document_validation,
                                   session=session)

    def update_one(self, filter, update, upsert=False, bypass_document_validation=False,
                   collation=None, array_filters=None, hint=None, session=None, let=None,
                   sort=None, comment=None):
        if sort is not None:
            raise NotImplementedError("update_one(sort=...) is not supported by the mongomock shim")
        return super().update_one(filter, update, upsert=upsert,
                                  bypass_document_validation=bypass_document_validation,
                                  collation=collation, array_filters=array_filters, hint=hint,
                                  session=session, let=let)

    def update_many(self, filter, update, upsert=False, array_filters=None,
                    bypass_document_validation=False, collation=None, hint=None, session=None,
                    let=None, comment=None):
        return super().update_many(filter, update, upsert=upsert, array_filters=array_filters,
                                   bypass_document_validation=bypass_document_validation,
                                   collation=collation, hint=hint, session=session, let=let)

    def replace_one(self, filter, replacement, upsert=False, bypass_document_validation=False,
                    session=None, hint=None, collation=None, let=None, sort=None, comment=None):
        if sort is not None:
            raise NotImplementedError("replace_one(sort=...) is not supported by the mongomock shim")
        if collation:
            _raise_not_implemented("collation", "collation is not implemented in mongomock")
        return super().replace_one(filter, replacement, upsert=upsert,
                                   bypass_document_validation=bypass_document_validation,
                                   session=session, hint=hint)

    def delete_one(self, filter, collation=None, hint=None, session=None, let=None, comment=None):
        return super().delete_one(filter, collation=collation, hint=hint, session=session)

    def delete_many(self, filter, collation=None, hint=None, session=None, let=None, comment=None):
        return super().delete_many(filter, collation=collation, hint=hint, session=session)

    def _update(self, spec, document, upsert=False, manipulate=False, multi=False,
                check_keys=False, hint=None, session=None, collation=None, let=None,
                array_filters=None, **kwargs):
        if session:
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        if hint:
            raise NotImplementedError("The hint argument of update is valid but has not been "
                                      "implemented in mongomock yet")
        if collation:
            _raise_not_implemented("collation", "The collation argument of update is valid but "
                                   "has not been implemented in mongomock yet")
        if array_filters:
            _raise_not_implemented("array_filters", "Array filters are not implemented in "
                                   "mongomock yet.")
        if let:
            _raise_not_implemented("let", "The let argument of update is valid but has not been "
                                   "implemented in mongomock yet")
        spec = _patch_dt(spec)
        document = _patch_update(document)
        mm_collection.validate_is_mapping("spec", spec)
        mm_collection.validate_list_or_mapping("document", document)
        if isinstance(document, list):
            mm_collection._validate_document_stages(document)
        if self.database.client.server_info()["versionArray"] < [5]:
            for operator in mm_collection._updaters:
                if not document.get(operator, True):
                    raise WriteError("'%s' is empty. You must specify a field like so: "
                                     "{%s: {<field>: ...}}" % (operator, operator))
        self._plan_for = None if isinstance(document, list) else (document, _update_plan(document))
        try:
            return self._update_with_plan(spec, document, upsert, multi, session)
        finally:
            self._plan_for = None

    def _update_with_plan(self, spec, document, upsert, multi, session):
        updated_existing = False
        upserted_id = None
        num_updated = 0
        num_matched = 0
        touched = _update_fields(document)
        needed = None if touched is None else _union({"_id"}, _filter_fields(spec))
        if needed is not None:
            wanted = {f.encode("utf-8", "surrogatepass") for f in touched}
        memo = self._plan_for
        leaves: Any = _MISSING  # made at the first match (an upsert may match nothing)
        for key, raw, doc in self._scan(spec, needed, patched=True, ordered=not multi):
            num_matched += 1
            updated_existing = True
            if leaves is _MISSING:
                leaves = _leaf_plan(memo[1]) if memo is not None and memo[0] is document else None
            if leaves is not None:  # e.g. a re-scan's "seen again": a few leaves, in place
                new_raw = _patch_leaves(raw, leaves)
                if new_raw is not None:
                    if new_raw != raw:
                        self._store.put(key, new_raw, touched)
                        num_updated += 1
                    if not multi:
                        break
                    continue
            if needed is not None:  # add the fields the update touches to the filter's
                spans = _locate(raw, wanted)
                if spans:
                    for k, v in _decode_spans(raw, spans.values()).items():
                        if k not in doc:
                            doc[k] = v
            original_id = doc.get("_id")
            if isinstance(document, list):
                self._apply_update_pipeline(doc, document, session)
            else:
                self._apply_update_document(doc, spec, document, False)
            if needed is None:
                new_raw = _encode(doc)
            else:  # re-encode only the fields the update can change, keep the others' bytes
                new_raw = _splice(raw, {k: v for k, v in doc.items() if k in touched}, touched,
                                  spans)
            if new_raw != raw:
                if doc.get("_id") != original_id:
                    raise WriteError("After applying the update, the (immutable) field '_id' was "
                                     "found to have been altered to _id: {}".format(doc.get("_id")))
                self._store.put(key, new_raw, touched if needed is not None else None)
                num_updated += 1
            if not multi:
                break
        if upsert and not num_matched:
            if spec.get("_id") is not None:
                _id = spec["_id"]
            elif not isinstance(document, list) and document.get("_id") is not None:
                _id = document["_id"]
            else:
                _id = ObjectId()
            to_insert = self._expand_dots(dict(spec, _id=_id))
            to_insert, _unused = self._discard_operators(to_insert)
            if isinstance(document, list):
                self._apply_update_pipeline(to_insert, document, session)
            else:
                self._apply_update_document(to_insert, spec, document, True)
            upserted_id = self._insert(to_insert)
            num_matched += 1
            num_updated += 1
        return {
            "connectionId": self.database.client._id,
            "err": None,
            "n": num_matched,
            "nModified": num_updated if updated_existing else 0,
            "ok": 1,
            "upserted": upserted_id,
            "updatedExisting": updated_existing,
        }

    _plan_for: Any = None  # (update document, its _update_plan) while _update runs

    def _apply_update_document(self, existing_document, spec, document, was_insert):
        """mongomock's, except that ``$set``/``$setOnInsert``/``$inc``/``$push`` of fields
        reached through embedded documents only (``a``, ``a.b.c``; see :func:`_fast_apply`)
        are applied here directly (mongomock encoded and copied every value one by one; here
        the whole document is encoded once afterwards, which validates the values the same
        way), and ``$set``/``$setOnInsert`` of plain top-level fields are plain assignments
        in any case. Operators are still applied in the order given. The plan is made once
        per update document (``update_many`` applies one update to many documents)."""
        memo = self._plan_for
        plan = memo[1] if memo is not None and memo[0] is document else _update_plan(document)
        if plan is None:
            return super()._apply_update_document(existing_document, spec, document, was_insert)
        chunk: dict = {}
        for op, arg, targets in plan:
            if targets is not None:
                if chunk:
                    super()._apply_update_document(existing_document, spec, chunk, was_insert)
                    chunk = {}
                if _fast_apply(existing_document, op, targets, was_insert):
                    continue
            if op in ("$set", "$setOnInsert") and isinstance(arg, Mapping):
                fast = [(k, v) for k, v in arg.items() if _plain_field(k)]
                if fast:
                    if chunk:
                        super()._apply_update_document(existing_document, spec, chunk, was_insert)
                        chunk = {}
                    if op == "$set" or was_insert:
                        for k, v in fast:
                            existing_document[k] = v
                    slow = {k: v for k, v in arg.items() if not _plain_field(k)}
                    if slow:
                        chunk[op] = slow
                    continue
            chunk[op] = arg
        if chunk:
            super()._apply_update_document(existing_document, spec, chunk, was_insert)
        return None

    def _delete(self, filter, collation=None, hint=None, multi=False, session=None):
        if hint:
            raise NotImplementedError("The hint argument of delete is valid but has not been "
                                      "implemented in mongomock yet")
        if collation:
            _raise_not_implemented("collation", "The collation argument of delete is valid but "
                                   "has not been implemented in mongomock yet")
        if session:
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        filter = _patch_dt(filter)
        if filter is None:
            filter = {}
        if not isinstance(filter, Mapping):
            filter = {"_id": filter}
        deleted = 0
        for key, _raw, _doc in self._scan(filter, {"_id"}):
            del self._store[key]
            deleted += 1
            if not multi:
                break
        return {"connectionId": self.database.client._id, "n": deleted, "ok": 1.0, "err": None}

    def bulk_write(self, requests, ordered=True, bypass_document_validation=None, session=None,
                   comment=None, let=None):
        # bypass_document_validation: validators are recorded, never enforced, so it is moot
        if session:
            _raise_not_implemented("session", "Sessions are valid in MongoDB 3.6 and newer; "
                                   "however Mongomock does not support them yet.")
        if let is not None:
            raise NotImplementedError("bulk_write(let=...) is not supported by the mongomock shim")
        bulk = _BulkBuilder(self, ordered=ordered)
        for operation in requests:
            operation._add_to_bulk(bulk)
        return BulkWriteResult(bulk.execute(), True)

    # ------------------------------------------------------------------ indexes
    def create_index(self, key_or_list, cache_for=300, session=None, **kwargs):
        if session:
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        if isinstance(key_or_list, Mapping):
            index_list = list(key_or_list.items())
        else:
            index_list = [tuple(kv) for kv in mm_helpers.create_index_list(key_or_list)]
        for k in ("background", "comment", "maxTimeMS", "commitQuorum", "ns", "v"):
            kwargs.pop(k, None)
        unique = kwargs.pop("unique", False)
        sparse = kwargs.pop("sparse", False)
        name = kwargs.pop("name", None) or mm_helpers.gen_index_name(index_list)
        index_dict: dict = {"key": index_list}
        if sparse:
            index_dict["sparse"] = True
        if unique:
            index_dict["unique"] = True
        for k, v in kwargs.items():
            if v is not None:
                index_dict[k] = copy.deepcopy(v)
        _encode({k: v for k, v in index_dict.items() if k != "key"})  # options must be BSON
        store = self._store
        existing = store.indexes.get(name)
        if existing is not None:
            if existing == index_dict:
                return name
            raise OperationFailure("Index with name: %s already exists with different options"
                                   % name, 85)
        for other_name, other in store.indexes.items():
            if list(other["key"]) == index_list and \
                    {k: v for k, v in other.items() if k != "key"} == \
                    {k: v for k, v in index_dict.items() if k != "key"}:
                raise OperationFailure("Index already exists with a different name: %s"
                                       % other_name, 85)
        if unique:
            store.create_unique_index(name, index_dict)
        else:
            store.create_index(name, index_dict)
        return name

    def create_indexes(self, indexes, session=None, comment=None, **kwargs):
        names = []
        for index in indexes:
            if not isinstance(index, pymongo.operations.IndexModel):
                raise TypeError("%s is not an instance of pymongo.operations.IndexModel" % index)
            doc = dict(index.document)
            key = list(doc.pop("key").items())
            names.append(self.create_index(key, session=session, **doc))
        return names

    def with_options(self, codec_options=None, read_preference=None, write_concern=None,
                     read_concern=None):
        other = super().with_options(codec_options, read_preference, write_concern, read_concern)
        if other is self:
            return self
        return _Collection(other.database, other.name, other._db_store,
                           write_concern=other._write_concern, read_concern=other._read_concern,
                           read_preference=other._read_preference,
                           codec_options=other._codec_options)


class _Cursor(mm_collection.Cursor):
    """A cursor that streams (mongomock's copied its whole result list on every next())."""

    _stream: Iterator | None = None
    _exhausted = False

    def _make_stream(self) -> Iterator[dict]:
        limit = abs(self._limit) if self._limit else 0
        it = self.collection._find_stream(self._spec, self._sort, self._projection,
                                          self._skip or 0, limit)
        if self.collection.codec_options.tz_aware:
            it = map(mm_helpers.make_datetime_timezone_aware_in_document, it)
        return it

    def __next__(self):
        if self._exhausted:
            raise StopIteration
        if self._stream is None:
            self._stream = self._make_stream()
        try:
            doc = next(self._stream)
        except StopIteration:
            self._exhausted = True
            self._stream = None
            raise
        self._emitted += 1
        return doc

    next = __next__

    def _check_not_started(self) -> None:
        if self._stream is not None or self._exhausted:
            raise InvalidOperation("cannot set options after executing query")

    def rewind(self):
        self._emitted = 0
        self._stream = None
        self._exhausted = False
        return self

    def clone(self):
        return _Cursor(self.collection, self._spec, self._sort, self._projection, self._skip,
                       self._limit)

    def close(self):
        self._stream = None
        self._exhausted = True

    def sort(self, key_or_list, direction=None):
        self._check_not_started()
        return super().sort(key_or_list, direction)

    def skip(self, count):
        self._check_not_started()
        return super().skip(count)

    def limit(self, count):
        self._check_not_started()
        return super().limit(count)

    def __getitem__(self, index):
        if isinstance(index, int) and not isinstance(index, bool):
            if index < 0:
                raise IndexError("Cursor instances do not support negative indices")
            for i, doc in enumerate(self._make_stream()):
                if i == index:
                    return doc
            raise IndexError("no such item for Cursor instance")
        return super().__getitem__(index)

    @property
    def alive(self):
        return not self._exhausted

    def distinct(self, key, session=None):
        if session:
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        return self.collection.distinct(key, self._spec)

    def to_list(self, length=None):
        out = []
        for doc in self:
            out.append(doc)
            if length and len(out) >= length:
                break
        return out


# =========================================================================== database / client

_COMMAND_NOISE = ("comment", "writeConcern", "$db", "lsid", "$readPreference", "maxTimeMS")


class _Database(mm_database.Database):
    """mongomock's Database with recorded collection options and more commands."""

    def get_collection(self, name, codec_options=None, read_preference=None, write_concern=None,
                       read_concern=None):
        if read_preference is not None:
            mm_database.read_preferences.ensure_read_preference_type("read_preference", read_preference)
        mm_database.mongomock_codec_options.is_supported(codec_options)
        try:
            return self._collection_accesses[name].with_options(
                codec_options=codec_options or self._codec_options,
                read_preference=read_preference or self.read_preference,
                read_concern=read_concern, write_concern=write_concern)
        except KeyError:
            self._ensure_valid_collection_name(name)
            collection = self._collection_accesses[name] = _Collection(
                self, name=name, read_concern=read_concern, write_concern=write_concern,
                read_preference=read_preference or self.read_preference,
                codec_options=codec_options or self._codec_options, _db_store=self._store)
            return collection

    def create_collection(self, name, codec_options=None, read_preference=None,
                          write_concern=None, read_concern=None, session=None, check_exists=True,
                          **kwargs):
        if session:
            raise NotImplementedError("Mongomock does not handle sessions yet")
        self._ensure_valid_collection_name(name)
        if name in self.list_collection_names():
            if check_exists:
                raise CollectionInvalid("collection %s already exists" % name)
            raise OperationFailure(f"Collection {self.name}.{name} already exists.", 48)
        for k in _COMMAND_NOISE:
            kwargs.pop(k, None)
        if "viewOn" in kwargs:
            raise NotImplementedError("views are not supported by the mongomock shim")
        options = {k: copy.deepcopy(v) for k, v in kwargs.items() if v is not None}
        _encode(options)  # recorded options must be BSON
        col = self._store.create_collection(name)
        col.set_options(options)
        return self.get_collection(name, codec_options=codec_options, read_preference=read_preference,
                                   write_concern=write_concern, read_concern=read_concern)

    def list_collections(self, filter=None, session=None, nameOnly=False, authorizedCollections=None,
                         comment=None, **kwargs):
        if session:
            raise NotImplementedError("Mongomock does not handle sessions yet")
        docs = []
        for name in sorted(self._store.list_created_collection_names()):
            if name.startswith("system."):
                continue
            col = self._store[name]
            if nameOnly:
                docs.append({"name": name, "type": "collection"})
                continue
            docs.append({
                "name": name, "type": "collection", "options": copy.deepcopy(col.options),
                "info": {"readOnly": False, "uuid": bson.Binary(bytes.fromhex(col.uuid), 4)},
                "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            })
        if filter:
            docs = [d for d in docs if mm_filtering.filter_applies(filter, d)]
        return CommandCursor(docs)

    def list_collection_names(self, filter=None, session=None, comment=None, **kwargs):
        if session:
            raise NotImplementedError("Mongomock does not handle sessions yet")
        if filter:
            return [d["name"] for d in self.list_collections(filter=filter, nameOnly=True)]
        return super().list_collection_names()

    def with_options(self, codec_options=None, read_preference=None, write_concern=None,
                     read_concern=None):
        other = super().with_options(codec_options, read_preference, write_concern, read_concern)
        if other is self:
            return self
        return _Database(self._client, self.name, self._store, read_preference=other.read_preference,
                         codec_options=other.codec_options, read_concern=other.read_concern)

    def command(self, command, value=1, check=True, allowable_errors=None, read_preference=None,
                codec_options=None, session=None, comment=None, **kwargs):
        if session:
            raise NotImplementedError("Mongomock does not handle sessions yet")
        if isinstance(command, str):
            cmd = {command: value}
        else:
            cmd = dict(command)
        cmd.update(kwargs)
        verb = next(iter(cmd))
        arg = cmd.pop(verb)
        for k in _COMMAND_NOISE:
            cmd.pop(k, None)
        name = verb.lower()
        ok = {"ok": 1.0}
        if name == "ping":
            return ok
        if name == "buildinfo":
            return {"version": mongomock.SERVER_VERSION, "versionArray":
                    mm_client._convert_version_to_list(mongomock.SERVER_VERSION),
                    "sysInfo": "spine-docs mongomock shim", "ok": 1.0}
        if name in ("hello", "ismaster"):
            return {"isWritablePrimary": True, "ismaster": True, "maxBsonObjectSize": 16777216,
                    "maxWireVersion": 17, "ok": 1.0}
        if name == "create":
            self.create_collection(arg, **cmd)
            return ok
        if name == "collmod":
            return self._coll_mod(arg, cmd)
        if name == "listcollections":
            batch = list(self.list_collections(filter=cmd.get("filter"),
                                               nameOnly=cmd.get("nameOnly", False)))
            return {"cursor": {"id": 0, "ns": f"{self.name}.$cmd.listCollections",
                               "firstBatch": batch}, "ok": 1.0}
        if name == "listindexes":
            batch = list(self[arg].list_indexes())
            return {"cursor": {"id": 0, "ns": f"{self.name}.{arg}", "firstBatch": batch}, "ok": 1.0}
        if name == "createindexes":
            for spec in cmd.get("indexes", []):
                spec = dict(spec)
                key = list(dict(spec.pop("key")).items())
                self[arg].create_index(key, **spec)
            return ok
        if name == "dropindexes":
            index = cmd.get("index")
            if index == "*":
                self[arg].drop_indexes()
            else:
                self[arg].drop_index(index)
            return ok
        if name == "drop":
            self.drop_collection(arg)
            return {"ns": f"{self.name}.{arg}", "ok": 1.0}
        if name == "count":
            return {"n": self[arg].count_documents(cmd.get("query") or {}), "ok": 1.0}
        if name == "dbstats":
            names = self.list_collection_names()
            return {"db": self.name, "collections": len(names),
                    "objects": sum(len(self._store[n]._documents) for n in names),
                    "dataSize": sum(self._store[n].raw_bytes() for n in names), "ok": 1.0}
        if name == "collstats":
            col = self._store[arg]
            return {"ns": f"{self.name}.{arg}", "count": len(col._documents),
                    "size": col.raw_bytes(), "nindexes": 1 + len(col.indexes), "ok": 1.0}
        raise NotImplementedError(f"command {verb!r} is not supported by the mongomock shim")

    def _coll_mod(self, name: str, opts: dict) -> dict:
        if name not in self.list_collection_names():
            raise OperationFailure(f"ns does not exist: {self.name}.{name}", 26)
        col = self._store[name]
        index = opts.pop("index", None)
        opts.pop("dryRun", None)
        new = copy.deepcopy(col.options)
        for k, v in opts.items():
            if v is None:
                new.pop(k, None)
            else:
                new[k] = copy.deepcopy(v)
        _encode(new)
        if index is not None:
            col.modify_index(index)
        col.set_options(new)
        return {"ok": 1.0}


class _Client(mm_client.MongoClient):
    """mongomock's client creating the shim's databases over BSON-bytes stores."""

    def __init__(self, *, guard: Any = None, **kwargs):
        super().__init__(_store=_ServerStore(guard), **kwargs)

    def get_database(self, name=None, codec_options=None, read_preference=None,
                     write_concern=None, read_concern=None):
        if name is None:
            return self.get_default_database(codec_options=codec_options,
                                             read_preference=read_preference,
                                             write_concern=write_concern, read_concern=read_concern)
        db = self._database_accesses.get(name)
        if db is None:
            db = self._database_accesses[name] = _Database(
                self, name, read_preference=read_preference or self.read_preference,
                codec_options=codec_options or self._codec_options, _store=self._store[name],
                read_concern=read_concern)
        return db


# =========================================================================== embedded catalog

class _Inconsistent(Exception):
    """A lock-free read saw files of two different generations (retry)."""


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _indexes_from_metadata(meta: Mapping) -> dict:
    out = {}
    for ix in meta.get("indexes") or []:
        name = ix.get("name")
        if name == "_id_":
            continue
        key = ix["key"]
        d = {"key": [tuple(kv) for kv in (key.items() if isinstance(key, Mapping) else key)]}
        d.update({k: v for k, v in ix.items() if k not in ("v", "key", "name", "ns")})
        out[name or dumpfmt.index_name(key)] = d
    return out


class _Catalog:
    """One embedded catalog directory: the in-memory shim plus its files."""

    def __init__(self, root: Path, db_name: str = DEFAULT_DB):
        self.root = root
        self.db_dir = root / db_name
        self.lock_path = root / LOCK_FILE
        self.lock_timeout = LOCK_TIMEOUT_S
        self.client = _Client(guard=self._guard)
        self.db = self.client.get_database(db_name)
        self.db._store.catalog = self
        self.db._store.label = f"embedded catalog at {root}"
        self.state: dict | None = None     # the manifest of the generation in memory
        self.saved: dict[str, int] = {}    # collection -> store version at load/save
        self.broken = False                # memory may differ from disk: reload everything
        self.mutex = threading.RLock()
        self.owner: int | None = None      # thread inside writing()
        self.depth = 0
        self.lock_fd: int | None = None
        self.last_save_s = 0.0
        self.pid = os.getpid()
        self.closed = False

    def _guard(self) -> None:
        if self.owner != threading.get_ident():
            raise StoreError(f"write to the embedded catalog at {self.root} outside "
                             "store.writing(db): wrap the write in `with store.writing(db):`")

    # ------------------------------------------------------------------ file lock
    def acquire(self, timeout: float) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {self.lock_path}: {exc.strerror}") from exc
        deadline = time.monotonic() + max(0.0, timeout)
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise StoreError(f"cannot lock {self.lock_path}: {exc.strerror}") from exc
            if time.monotonic() >= deadline:
                try:
                    holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
                except OSError:
                    holder = ""
                os.close(fd)
                raise StoreError(f"the embedded catalog at {self.root} is locked by "
                                 f"{holder or 'another process'} (waited {timeout:g} s); "
                                 "retry when it has finished")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            info = f"pid {os.getpid()} on {socket.gethostname()} since {_now_iso()}\n".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        except OSError:
            pass
        self.lock_fd = fd

    def release(self) -> None:
        fd, self.lock_fd = self.lock_fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ reading the disk
    def _read_generation(self) -> dict | None:
        path = self.db_dir / GENERATION_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            gen = json.loads(data)
            if not isinstance(gen, dict) or not isinstance(gen.get("collections"), dict):
                raise ValueError("not a manifest")
        except ValueError as exc:
            raise StoreError(f"{path} is corrupt ({exc}); restore the catalog from a backup") from exc
        return gen

    @staticmethod
    def _stamp(manifest: dict | None) -> tuple:
        if manifest is None:
            return (None, 0)
        return (manifest.get("token"), manifest.get("generation", 0))

    def _journal_exists(self) -> bool:
        return (self.db_dir / JOURNAL_FILE).exists()

    def _created(self) -> dict[str, _CollectionStore]:
        return {n: st for n, st in self.db._store._collections.items() if st.is_created}

    def _read_collection(self, name: str, info: dict | None, locked: bool) -> tuple:
        h = hashlib.sha256()
        docs: OrderedDict = OrderedDict()
        count = size = 0
        try:
            for raw in dumpfmt.iter_raw(self.db_dir, name, hasher=h):
                docs[_raw_id(raw)] = raw
                count += 1
                size += len(raw)
            meta_path = dumpfmt.collection_paths(self.db_dir, name)[1]
            try:
                meta_bytes: bytes | None = meta_path.read_bytes()
            except FileNotFoundError:
                meta_bytes = None
            meta = (dumpfmt.parse_metadata(meta_bytes.decode("utf-8"), source=str(meta_path), name=name)
                    if meta_bytes is not None else dumpfmt.parse_metadata("", name=name))
        except (dumpfmt.DumpError, OSError, UnicodeDecodeError) as exc:
            if not locked and info is not None:
                raise _Inconsistent(name) from exc
            raise StoreError(f"cannot load collection {name!r} of the embedded catalog at "
                             f"{self.root}: {exc}") from exc
        computed = {"count": count, "sha256": h.hexdigest(), "bytes": size,
                    "metadata_sha256": hashlib.sha256(meta_bytes).hexdigest() if meta_bytes is not None else None,
                    "bson": dumpfmt.collection_paths(self.db_dir, name)[0].name,
                    "metadata": dumpfmt.collection_paths(self.db_dir, name)[1].name}
        if info is not None and any(computed[k] != info.get(k) for k in ("count", "sha256", "metadata_sha256")):
            if not locked:
                raise _Inconsistent(name)
            raise StoreError(f"collection {name!r} of the embedded catalog at {self.root} does not "
                             "match its manifest (damaged files?); restore it from a backup")
        if len(docs) != count:
            raise StoreError(f"{name}.bson in the embedded catalog at {self.root} holds duplicate _id values")
        return docs, meta, computed

    def _plan(self, disk: dict | None, locked: bool) -> tuple:
        full = self.broken or self.state is None
        if disk is None:
            wanted: dict = {n: None for n in dumpfmt.list_collections(self.db_dir)}
        else:
            wanted = dict(disk["collections"])
        old = {} if full else self.state["collections"]
        loads = {}
        for name, info in wanted.items():
            if not full and info is not None and old.get(name) == info:
                continue
            loads[name] = self._read_collection(name, info, locked)
        drops = [n for n in self._created() if n not in wanted]
        if disk is None:
            disk = {"generation": 0, "token": None,
                    "collections": {n: loads[n][2] for n in wanted}}
        return loads, drops, disk

    def _apply(self, plan: tuple) -> None:
        loads, drops, manifest = plan
        dbstore = self.db._store
        for name in drops:
            dbstore[name]._reset()
        for name, (docs, meta, _info) in loads.items():
            dbstore[name].load(docs, _indexes_from_metadata(meta), dict(meta.get("options") or {}),
                               meta.get("uuid"))
        self.state = manifest
        self.saved = {n: st.version for n, st in self._created().items()}
        self.broken = False

    def sync(self, *, locked: bool) -> bool:
        """Make memory match the last complete generation on disk; True when it reloaded."""
        if locked:
            if self._journal_exists():
                self._roll_forward()
            self._clean_temporaries()
            disk = self._read_generation()
            if not self.broken and self.state is not None and self._stamp(disk) == self._stamp(self.state):
                return False
            self._apply(self._plan(disk, locked=True))
            return True
        for _attempt in range(5):
            if self._journal_exists():
                break  # a writer is committing, or died doing it: recover under the lock
            disk = self._read_generation()
            if not self.broken and self.state is not None and self._stamp(disk) == self._stamp(self.state):
                return False
            try:
                plan = self._plan(disk, locked=False)
            except _Inconsistent:
                continue
            if self._journal_exists() or self._stamp(self._read_generation()) != self._stamp(disk):
                continue
            self._apply(plan)
            return True
        self.acquire(self.lock_timeout)
        try:
            return self.sync(locked=True)
        finally:
            self.release()

    # ------------------------------------------------------------------ writing the disk
    def _clean_temporaries(self) -> None:
        try:
            entries = list(self.db_dir.iterdir())
        except FileNotFoundError:
            return
        for p in entries:
            if p.name.startswith(".") and p.name.endswith(".part"):
                try:
                    p.unlink()
                except OSError:
                    pass

    def _apply_journal(self, journal: dict) -> None:
        d = self.db_dir
        for tmp, final in journal["renames"]:
            if (d / tmp).exists():
                os.replace(d / tmp, d / final)
            elif not (d / final).exists():
                raise StoreError(f"the commit journal of the embedded catalog at {self.root} names "
                                 f"{tmp}, which is missing; restore the catalog from a backup")
        for final in journal["deletes"]:
            try:
                (d / final).unlink()
            except FileNotFoundError:
                pass
        dumpfmt.fsync_dir(d)
        dumpfmt.atomic_write_bytes(d / GENERATION_FILE,
                                   json.dumps(journal["generation"], indent=1, sort_keys=True).encode())
        (d / JOURNAL_FILE).unlink()
        dumpfmt.fsync_dir(d)

    def _roll_forward(self) -> None:
        path = self.db_dir / JOURNAL_FILE
        try:
            journal = json.loads(path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read the commit journal {path}: {exc}") from exc
        self._apply_journal(journal)

    def save(self) -> bool:
        """Write every changed collection and commit them at once (under the lock)."""
        current = self._created()
        old = self.state["collections"] if self.state else {}
        changed = [n for n, st in current.items() if self.saved.get(n) != st.version or n not in old]
        dropped = [n for n in old if n not in current]
        if not changed and not dropped:
            return False
        started = time.monotonic()
        generation = (self.state or {}).get("generation", 0) + 1
        token = (self.state or {}).get("token") or secrets.token_hex(8)
        tag = f"g{generation}-{secrets.token_hex(3)}"
        versions = {n: st.version for n, st in current.items()}
        manifest = {n: info for n, info in old.items() if n in current and n not in changed}
        written: list[str] = []
        renames: list[list[str]] = []
        try:
            self.db_dir.mkdir(parents=True, exist_ok=True)
            for name in changed:
                st = current[name]
                info = dumpfmt.write_collection_temp(
                    self.db_dir, name, (raw for _k, raw in st.raw_items()),
                    indexes=st.index_documents(), options=st.options, uuid=st.uuid, tag=tag)
                written += [info["tmp_bson"], info["tmp_metadata"]]
                renames += [[info["tmp_bson"], info["bson"]], [info["tmp_metadata"], info["metadata"]]]
                manifest[name] = {k: info[k] for k in ("count", "sha256", "bytes", "metadata_sha256",
                                                       "bson", "metadata")}
            live = {f for info in manifest.values() for f in (info["bson"], info["metadata"])}
            deletes = [f for n in dropped for f in (old[n].get("bson"), old[n].get("metadata"))
                       if f and f not in live]
            new_state = {"format": _CATALOG_FORMAT, "version": 1, "generation": generation,
                         "token": token, "database": self.db.name, "collections": manifest,
                         "saved_at": _now_iso(), "pid": os.getpid(), "host": socket.gethostname()}
            journal = {"generation": new_state, "renames": renames, "deletes": deletes}
            dumpfmt.fsync_dir(self.db_dir)
            dumpfmt.atomic_write_bytes(self.db_dir / JOURNAL_FILE, json.dumps(journal).encode())
        except BaseException:
            for f in written:
                try:
                    (self.db_dir / f).unlink()
                except OSError:
                    pass
            self.broken = True  # memory holds unsaved changes: the next sync reloads the disk
            raise
        try:
            self._apply_journal(journal)
        except BaseException:
            self.broken = True  # committed: the next writer or reader rolls the journal forward
            raise
        self.state = new_state
        self.saved = versions
        self.last_save_s = time.monotonic() - started
        return True


# =========================================================================== public API

_CATALOGS: "weakref.WeakValueDictionary[str, _Catalog]" = weakref.WeakValueDictionary()
_MOCK_CLIENTS: dict[str, _Client] = {}
_SERVER_LABELS: dict[int, str] = {}  # id(client) -> redacted URI (pymongo clients compare by address)
_REGISTRY_LOCK = threading.Lock()
_MOCK_NAME = re.compile(r"[A-Za-z0-9_.-]*")


def _redact(url: str) -> str:
    return re.sub(r"(://[^:@/]+):[^@/]*@", r"\1:***@", url)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for cut in (", Timeout:", " (configured timeouts"):
        if cut in text:
            text = text.split(cut)[0]
    return text[:300]


def _catalog(db: Any) -> _Catalog | None:
    store = db.__dict__.get("_store") if hasattr(db, "__dict__") else None
    return getattr(store, "catalog", None) if isinstance(store, _DatabaseStore) else None


def connect(url: str | os.PathLike, *, timeout_ms: int = 5000) -> Any:
    """A Database for a ``mongodb://``/``mongodb+srv://`` URI, a ``mongomock://`` URL or an
    embedded-catalog directory (see the module docstring). Raises :class:`StoreError`."""
    if url is None or not str(os.fspath(url)).strip():
        raise StoreError("no catalog given: pass --db (mongodb://..., mongomock://... or a directory)")
    text = str(os.fspath(url)).strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("mongodb", "mongodb+srv"):
        return _connect_server(text, timeout_ms)
    if scheme == "mongomock":
        return _connect_mongomock(text)
    if scheme:
        raise StoreError(f"unsupported catalog URL scheme {scheme!r}: use mongodb://, "
                         "mongodb+srv://, mongomock:// or a directory path")
    return _connect_embedded(text)


def _connect_server(url: str, timeout_ms: int) -> Any:
    shown = _redact(url)
    query = url.split("?", 1)[1].lower() if "?" in url else ""
    opts: dict[str, Any] = {"appname": "spine-docs", "tz_aware": False}
    if "serverselectiontimeoutms=" not in query:
        opts["serverSelectionTimeoutMS"] = timeout_ms
    if "connecttimeoutms=" not in query:
        opts["connectTimeoutMS"] = timeout_ms
    try:
        client = pymongo.MongoClient(url, **opts)
    except (PyMongoError, ValueError, TypeError) as exc:
        raise StoreError(f"bad MongoDB URI {shown}: {_one_line(exc)}") from None
    try:
        db = client.get_default_database(default=DEFAULT_DB)
        db.command("ping")
    except (PyMongoError, ValueError, TypeError) as exc:
        client.close()
        raise StoreError(f"cannot reach MongoDB at {shown}: {_one_line(exc)}") from None
    _SERVER_LABELS[id(client)] = shown
    weakref.finalize(client, _SERVER_LABELS.pop, id(client), None)
    return db


def _connect_mongomock(url: str) -> Any:
    rest = url.split("://", 1)[1].split("?", 1)[0]
    name, _sep, dbname = rest.partition("/")
    dbname = dbname.strip("/") or DEFAULT_DB
    if not _MOCK_NAME.fullmatch(name) or not re.fullmatch(r"[A-Za-z0-9_-]+", dbname):
        raise StoreError(f"bad mongomock URL {url!r}: use mongomock://[name][/database] "
                         "(letters, digits, '_', '-', '.')")
    with _REGISTRY_LOCK:
        if name:
            client = _MOCK_CLIENTS.get(name)
            if client is None:
                client = _MOCK_CLIENTS[name] = _Client()
        else:
            client = _Client()
    db = client.get_database(dbname)
    db._store.label = f"mongomock://{name}/{dbname}" if name else f"in-memory mongomock database {dbname!r}"
    return db


def _connect_embedded(path: str) -> Any:
    root = Path(path).expanduser()
    try:
        root = root.resolve()
    except OSError as exc:
        raise StoreError(f"bad embedded catalog path {path!r}: {exc.strerror or exc}") from None
    key = str(root)
    with _REGISTRY_LOCK:
        cat = _CATALOGS.get(key)
        if cat is not None and cat.pid == os.getpid() and not cat.closed:
            return cat.db
        if root.exists() and not root.is_dir():
            raise StoreError(f"embedded catalog path {root} is not a directory")
        try:
            (root / DEFAULT_DB).mkdir(parents=True, exist_ok=True)
            fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            os.close(fd)
        except OSError as exc:
            raise StoreError(f"embedded catalog directory {root} is not writable: "
                             f"{exc.strerror or exc}") from None
        if not os.access(root / DEFAULT_DB, os.W_OK | os.X_OK):
            raise StoreError(f"embedded catalog directory {root} is not writable")
        cat = _Catalog(root)
        cat.sync(locked=False)
        _CATALOGS[key] = cat
        return cat.db


@contextlib.contextmanager
def writing(db: Any, *, timeout: float | None = None) -> Iterator[Any]:
    """Wrap every write. Embedded catalog: exclusive file lock (bounded wait), reload what
    others saved, run the block, save atomically (also when the block raises: like a server,
    what was written stays written), release. Nested calls in one thread only save at the
    outermost. Server and mongomock: nothing."""
    cat = _catalog(db)
    if cat is None:
        yield db
        return
    if cat.pid != os.getpid():
        raise StoreError("this embedded catalog was opened in another process: connect() again")
    wait = cat.lock_timeout if timeout is None else timeout
    if not cat.mutex.acquire(timeout=wait):
        raise StoreError(f"the embedded catalog at {cat.root} is busy in another thread of this "
                         f"process (waited {wait:g} s)")
    try:
        outer = cat.depth == 0
        if outer:
            cat.acquire(wait)
            cat.owner = threading.get_ident()
            try:
                cat.sync(locked=True)
            except BaseException:
                cat.owner = None
                cat.release()
                raise
        cat.depth += 1
        try:
            yield db
        except BaseException:
            cat.depth -= 1
            if outer:
                try:
                    cat.save()
                except Exception:  # noqa: BLE001 - the block's own error is the one to report
                    pass
                finally:
                    cat.owner = None
                    cat.release()
            raise
        cat.depth -= 1
        if outer:
            try:
                cat.save()
            finally:
                cat.owner = None
                cat.release()
    finally:
        cat.mutex.release()


def save(db: Any) -> bool:
    """Checkpoint inside a long ``writing()`` block (embedded catalog); True if it wrote."""
    cat = _catalog(db)
    if cat is None:
        return False
    if cat.owner != threading.get_ident():
        raise StoreError("store.save(db) must be called inside store.writing(db)")
    return cat.save()


def refresh(db: Any) -> bool:
    """Embedded catalog: load what other processes saved since we loaded (a cheap check when
    nothing changed); True when something was reloaded. Elsewhere: nothing."""
    cat = _catalog(db)
    if cat is None or cat.owner == threading.get_ident() or cat.pid != os.getpid():
        return False
    if not cat.mutex.acquire(blocking=False):
        return False  # another thread is writing: memory is already the newest state
    try:
        if cat.depth:
            return False
        return cat.sync(locked=False)
    finally:
        cat.mutex.release()


def commit_interval(db: Any) -> float:
    """Seconds a bulk writer should let pass between ``writing()`` blocks: 0 for a server or
    mongomock; for the embedded catalog ~10x the duration of a save (the last one, or an
    estimate from the catalog's size), between 1 and 30 s, so that rewriting the files stays
    a small part of the work. Ask again after each block: it grows with the catalog."""
    cat = _catalog(db)
    if cat is None:
        return 0.0
    # before the first save of this process, estimate it from the size (~150 MB/s)
    size = sum(st.raw_bytes() for st in cat._created().values())
    return min(30.0, max(1.0, 10.0 * max(cat.last_save_s, size / 150e6)))


def describe(db: Any) -> str:
    """``embedded catalog at /x``, ``mongomock://name/db`` or the server URI (password hidden)."""
    cat = _catalog(db)
    if cat is not None:
        return f"embedded catalog at {cat.root}"
    if is_server(db):
        label = _SERVER_LABELS.get(id(db.client))
        if label:
            return label
        hosts = ",".join(f"{h}:{p}" for h, p in db.client.topology_description.server_descriptions())
        return f"mongodb://{hosts}/{db.name}"
    store = db.__dict__.get("_store") if hasattr(db, "__dict__") else None
    label = getattr(store, "label", None)
    return label or f"in-memory mongomock database {db.name!r}"


def is_server(db: Any) -> bool:
    """True for a real MongoDB server (pymongo), False for mongomock and the embedded catalog."""
    return isinstance(db, pymongo.database.Database)


def is_embedded(db: Any) -> bool:
    return _catalog(db) is not None


def catalog_path(db: Any) -> Path | None:
    """The embedded catalog's directory (None for other databases)."""
    cat = _catalog(db)
    return cat.root if cat is not None else None


def close(db: Any) -> None:
    """Server: close the client. Embedded: forget the catalog (the next connect() reloads it
    from disk). mongomock://name: nothing (its data lives as long as the process)."""
    cat = _catalog(db)
    if cat is not None:
        if cat.depth:
            raise StoreError("store.close(db) inside store.writing(db)")
        with _REGISTRY_LOCK:
            if _CATALOGS.get(str(cat.root)) is cat:
                del _CATALOGS[str(cat.root)]
        cat.closed = True
        return
    if is_server(db):
        db.client.close()


def collection_options(db: Any, name: str) -> dict:
    """``{"validator", "validationLevel", "validationAction"}`` of a collection - the ones it
    has (server: listCollections; shim: what was recorded); {} for a missing collection."""
    try:
        infos = list(db.list_collections(filter={"name": name}))
    except NotImplementedError:
        return {}
    if not infos:
        return {}
    opts = infos[0].get("options") or {}
    return {k: copy.deepcopy(opts[k]) for k in ("validator", "validationLevel", "validationAction")
            if k in opts}


def create_collection(db: Any, name: str, **options: Any) -> Any:
    """``create`` with options (validator, ...) on any kind of database."""
    return db.create_collection(name, **options)


def coll_mod(db: Any, name: str, **options: Any) -> dict:
    """``collMod`` on any kind of database (on the shim: recorded; ``None`` removes an option)."""
    return db.command("collMod", name, **options)


def forget_collection(db: Any, name: str) -> None:
    """Nothing to do: dropping a collection forgets its recorded options (kept for callers
    written before the shim recorded options)."""
    return None
