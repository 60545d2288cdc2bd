"""Where documents live: collection, database and server stores holding BSON bytes.

A collection store keeps each document as bytes under its ``_id`` key, in insertion order;
it maintains unique indexes as hash maps (built when first needed), records options and
index options, expires TTL documents, and has a ``version`` that names its state. Writes go
through an optional guard; the persistence helpers (load, raw items) do not.
"""

from __future__ import annotations

import copy
import itertools
import time
import uuid as _uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import mongomock
from mongomock import helpers as mm_helpers
from mongomock import store as mm_store
from pymongo.errors import DuplicateKeyError, OperationFailure

from . import rawbson
from .deps import filter_fields, top, union
from .keys import NOKEY, index_entries, is_simple, norm, show_key


_VERSIONS = itertools.count(1)  # one counter for all stores: a version names one state


class CollectionStore(mm_store.CollectionStore):
    """mongomock's collection store holding BSON bytes, with unique-index hash maps and the
    recorded collection options. ``guard``, when given, is called before every user write
    and refuses it by raising (the embedded catalog's refuses writes outside ``writing()``).
    ``version`` changes with every change: a persister compares it to what it saved."""

    #: TTL deletions run at most this often (a real server runs them once a minute)
    ttl_interval_s = 1.0

    def __init__(self, name: str, guard: Any = None):
        self._guard = guard
        self._uniq: dict | None = None
        self._ukeys: dict | None = None
        self._uinfo: tuple[bool, set | None] | None = None
        self._uspecs: list = []
        self._udecode: Any = None  # rawbson.fields_decoder of the unique indexes' fields
        super().__init__(name)
        self.options: dict = {}
        self.uuid = _uuid.uuid4().hex
        self.version = next(_VERSIONS)
        self._ttl_checked = float("-inf")
        #: the column cache (:mod:`.columns`), valid while ``version`` is the one it names
        self.columns: Any = None
        #: a persister's columns of one state (``.version``, ``.read()`` -> payload or None,
        #: ``.write(payload)``): :func:`.columns.columns_of` restores them instead of building
        self.columns_file: Any = None
        #: the top-level fields changed in place (names and order kept) since version
        #: ``drift_base``, by writes of existing documents only; None: anything else changed
        self.drift: set | None = None
        self.drift_base = 0
        #: the documents inserted since ``drift_base`` (at the end of the natural order),
        #: while :attr:`drift` is tracked
        self.appended = 0

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
        return rawbson.decode_full(self._documents[key])

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
            yield rawbson.decode_full(raw)

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
        self.reset()

    def reset(self) -> None:
        """Empty the collection and forget its indexes and options, without the write guard
        (a persister's: the collection was dropped by another process)."""
        self._documents = OrderedDict()
        self._indexes = {}
        self._ttl_indexes = {}
        self._is_force_created = False
        self._forget_unique()
        self.options = {}
        self.uuid = _uuid.uuid4().hex
        self.version = next(_VERSIONS)
        self.columns = None  # stale now: let its values go
        self.columns_file = None
        self.drift = None

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
        self.put(key, rawbson.encode(doc))

    def __delitem__(self, key: Any) -> None:
        self._check_write()
        self._unindex(key)
        del self._documents[key]
        self.drift = None
        self.version = next(_VERSIONS)

    def track_drift(self) -> None:
        """Start recording :attr:`drift` from the present state."""
        self.drift = set()
        self.drift_base = self.version
        self.appended = 0

    def put(self, key: Any, raw: bytes, touched: set | None = None, in_place: bool = False) -> None:
        """Store a document (BSON bytes) under ``key``, enforcing the unique indexes.
        ``touched``: the only top-level fields that differ from the stored document under
        ``key`` (None: unknown); when no unique index reads them, its entries stand.
        ``in_place``: the document under ``key`` keeps its top-level names in their order,
        only the values of ``touched`` changed (:attr:`drift`)."""
        self._check_write()
        inserted = key not in self._documents
        if self.drift is not None and not inserted:
            if in_place and touched is not None:
                self.drift.update(touched)
            else:
                self.drift = None
        has_unique, ufields = self._unique_info()
        if has_unique:
            if touched is not None and ufields is not None \
                    and not inserted and not (touched & ufields):
                # the maps (built or not) stand; a re-scan's first write in a fresh process
                # does not build them
                self._documents[key] = raw
                self.version = next(_VERSIONS)
                return
            uniq = self._unique_maps()
            entries = index_entries(self._udecode(raw), self._uspecs)
            for name, uk in entries:
                owner = uniq[name].get(uk, NOKEY)
                if owner is not NOKEY and owner != key:
                    raise self._dup_error(name, uk)
            self._unindex(key)
            for name, uk in entries:
                uniq[name][uk] = key
            if entries:
                self._ukeys[key] = entries
        self._documents[key] = raw
        if inserted and self.drift is not None:
            self.appended += 1
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
               f"dup key: {{ {show_key(uk)} }}")
        return DuplicateKeyError(msg, 11000, {"index": name, "keyPattern": pattern, "errmsg": msg})

    @staticmethod
    def _unique_fields(specs: list) -> set | None:
        fields: set | None = set()
        for _n, ix in specs:
            fields = union(fields, {top(f) for f, _d in ix["key"]})
            if ix.get("partialFilterExpression") is not None:
                fields = union(fields, filter_fields(ix["partialFilterExpression"]))
        return fields

    def _unique_maps(self) -> dict:
        if self._uniq is None:
            specs = [(n, ix) for n, ix in self._indexes.items() if ix.get("unique")]
            fields = self._unique_fields(specs)
            uniq, ukeys = self._build_unique(specs, fields)
            self._set_unique(specs, fields, uniq, ukeys)
        return self._uniq

    def _set_unique(self, specs: list, fields: set | None, uniq: dict, ukeys: dict) -> None:
        self._uspecs, self._uniq, self._ukeys = specs, uniq, ukeys
        self._udecode = rawbson.fields_decoder(fields)

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
        self._set_unique(specs, fields, uniq, ukeys)
        self.version = next(_VERSIONS)

    def _build_unique(self, specs: list, fields: set | None) -> tuple[dict, dict]:
        uniq: dict = {n: {} for n, _ix in specs}
        ukeys: dict = {}
        decode = rawbson.fields_decoder(fields)
        for key, raw in list(self._documents.items()):
            entries = index_entries(decode(raw), specs)
            for name, uk in entries:
                owner = uniq[name].get(uk, NOKEY)
                if owner is not NOKEY and owner != key:
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
            if m is not None and m.get(uk, NOKEY) == key:
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
                if not is_simple(v):
                    break
                vals.append(norm(v))
            else:
                try:
                    uniq = self._unique_maps()
                except DuplicateKeyError:
                    return None
                owner = uniq[name].get(tuple(vals), NOKEY)
                if owner is NOKEY:
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
        decode = rawbson.fields_decoder({top(field)})
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
            self.drift = None
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
        self.columns = None  # stale now: let its values (and the old bytes) go
        self.columns_file = None
        self.drift = None


class DatabaseStore(mm_store.DatabaseStore):
    """mongomock's database store, making :class:`CollectionStore` objects. Every view of a
    database (``with_options``, ``client[name]``) shares it, so it carries what whoever opened
    the database set: ``opened_by`` (the embedded catalog) and ``label`` (a description)."""

    def __init__(self, guard: Any = None):
        super().__init__()
        self._guard = guard
        self.opened_by: Any = None
        self.label: str | None = None

    def created(self) -> dict[str, CollectionStore]:
        """name -> store of each created collection (what a persister saves)."""
        return {n: st for n, st in self._collections.items() if st.is_created}

    def __getitem__(self, col_name: str) -> CollectionStore:
        try:
            return self._collections[col_name]
        except KeyError:
            col = self._collections[col_name] = CollectionStore(col_name, self._guard)
            return col

    def rename(self, name: str, new_name: str) -> None:
        if self._guard is not None:
            self._guard()
        col = self._collections.pop(name, None)
        if col is None:
            col = CollectionStore(new_name, self._guard)
        col.name = new_name
        col.version = next(_VERSIONS)
        self._collections[new_name] = col


class ServerStore(mm_store.ServerStore):
    """mongomock's server store, making :class:`DatabaseStore` objects that share one ``guard``."""

    def __init__(self, guard: Any = None):
        super().__init__()
        self._guard = guard

    def __getitem__(self, db_name: str) -> DatabaseStore:
        try:
            return self._databases[db_name]
        except KeyError:
            db = self._databases[db_name] = DatabaseStore(self._guard)
            return db

