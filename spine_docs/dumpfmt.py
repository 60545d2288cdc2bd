"""mongodump's directory layout: read and write it, dump and restore whole databases.

One collection is two files in a database directory::

    <dir>/<collection>.bson            the documents, concatenated BSON, nothing else
    <dir>/<collection>.metadata.json   {"options": {...}, "indexes": [{"v": 2, "key": {...},
                                        "name": ...}, ...], "uuid": "<32 hex>",
                                        "collectionName": ..., "type": "collection"}

The metadata is canonical Extended JSON, as mongodump writes it (``{"$numberInt": "2"}``), so
``mongorestore`` reads what this module writes and this module reads what mongodump writes.
Collection names that are not plain ``[A-Za-z0-9_.-]`` are percent-escaped in file names
(the real name is always in ``collectionName``).

A *dump* is ``<out>/<db>/...`` plus ``<out>/manifest.json`` (spine-docs' own record: the
document count and SHA-256 of every collection). :func:`verify_dump` recounts and rehashes;
:func:`restore_database` verifies first and only then replaces collection by collection.

Writers stream (no collection is ever held encoded in memory) and are atomic per file
(temporary name, fsync, rename). The embedded catalog (``store/embedded.py``) uses
:func:`write_collection_temp` and renames the files itself, so that a whole multi-collection
save commits at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import uuid as _uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.son import SON

from .store.engine import raw_documents

MANIFEST = "manifest.json"
DUMP_FORMAT = "spine-docs-dump"
_BUF = 1 << 20
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_CANONICAL = json_util.CANONICAL_JSON_OPTIONS
_RAW = CodecOptions(document_class=RawBSONDocument)
#: how many documents restore_database inserts per insert_many call
RESTORE_BATCH = 1000


class DumpError(Exception):
    """A dump directory is missing, truncated, corrupt or does not match its manifest."""


# --------------------------------------------------------------------------- file names

def file_stem(name: str) -> str:
    """The file name (without extension) of collection ``name``."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    return quote(name, safe="").replace(".", "%2E") if name.startswith(".") else quote(name, safe="")


def collection_paths(directory: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """``(<dir>/<stem>.bson, <dir>/<stem>.metadata.json)``."""
    d = Path(directory)
    stem = file_stem(name)
    return d / f"{stem}.bson", d / f"{stem}.metadata.json"


# --------------------------------------------------------------------------- small I/O helpers

def fsync_dir(directory: str | os.PathLike) -> None:
    """Make renames/creations inside ``directory`` durable (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    fsync_dir(path.parent)


def _unlink(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def to_raw(doc: Any) -> bytes:
    """BSON bytes of a document given as a mapping, a RawBSONDocument or BSON bytes."""
    if isinstance(doc, (bytes, bytearray, memoryview)):
        raw = doc if type(doc) is bytes else bytes(doc)  # stored documents are bytes: no copy
        if len(raw) < 5 or int.from_bytes(raw[:4], "little") != len(raw) or raw[-1] != 0:
            raise DumpError("not a BSON document (bad length prefix or terminator)")
        return raw
    if isinstance(doc, RawBSONDocument):
        return bytes(doc.raw)
    return bson.encode(doc)


# --------------------------------------------------------------------------- metadata

def _index_key(key: Any) -> SON:
    if isinstance(key, Mapping):
        return SON(list(key.items()))
    if isinstance(key, str):
        return SON([(key, 1)])
    return SON([tuple(kv) for kv in key])


def index_name(key: Any) -> str:
    """pymongo's default name of an index on ``key`` (``a_1_b_-1``)."""
    return "_".join(f"{k}_{v}" for k, v in _index_key(key).items())


def metadata_document(name: str, *, indexes: Iterable[Mapping] | None = None,
                      options: Mapping | None = None, uuid: str | None = None) -> SON:
    """The ``.metadata.json`` document of a collection, in mongodump's field order.

    ``indexes`` are listIndexes-style documents (``key`` a mapping or a list of pairs); the
    ``_id_`` index is added when missing; ``ns`` is dropped (mongorestore rewrites it).
    """
    out_indexes: list[SON] = []
    for ix in indexes or ():
        key = _index_key(ix["key"])
        doc = SON([("v", ix.get("v", 2)), ("key", key), ("name", ix.get("name") or index_name(key))])
        for k, v in ix.items():
            if k not in ("v", "key", "name", "ns"):
                doc[k] = v
        out_indexes.append(doc)
    if not any(ix["name"] == "_id_" for ix in out_indexes):
        out_indexes.insert(0, SON([("v", 2), ("key", SON([("_id", 1)])), ("name", "_id_")]))
    meta = SON()
    if options:
        meta["options"] = SON(list(options.items()))
    meta["indexes"] = out_indexes
    meta["uuid"] = uuid or _uuid.uuid4().hex
    meta["collectionName"] = name
    meta["type"] = "collection"
    return meta


def metadata_json(meta: Mapping) -> str:
    """Canonical Extended JSON, as mongodump writes it."""
    return json_util.dumps(meta, json_options=_CANONICAL)


def read_metadata(directory: str | os.PathLike, name: str) -> dict:
    """The metadata of collection ``name`` (defaults when there is no ``.metadata.json``):
    ``{"options": {}, "indexes": [...], "uuid": str|None, "collectionName": name, "type": ...}``."""
    path = collection_paths(directory, name)[1]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"options": {}, "indexes": [], "uuid": None, "collectionName": name, "type": "collection"}
    except OSError as exc:
        raise DumpError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_metadata(text, source=str(path), name=name)


def parse_metadata(text: str, *, source: str = "metadata", name: str | None = None) -> dict:
    try:
        meta = json_util.loads(text) if text.strip() else {}
    except (ValueError, TypeError) as exc:
        raise DumpError(f"{source} is not valid Extended JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise DumpError(f"{source} is not a JSON object")
    meta.setdefault("options", {})
    meta.setdefault("indexes", [])
    meta.setdefault("uuid", None)
    meta.setdefault("collectionName", name)
    meta.setdefault("type", "collection")
    return meta


# --------------------------------------------------------------------------- write

class _Hasher:
    """Feeds blocks to a hash, in order: the first block in the caller's thread, the next ones
    in a helper thread while the caller writes them (both release the GIL on large buffers,
    so on two cores hashing a large collection costs no time)."""

    def __init__(self, h: Any):
        self.h = h
        self.pool: ThreadPoolExecutor | None = None
        self.pending: Any = None
        self.blocks = 0

    def update(self, block: bytes) -> None:
        self.blocks += 1
        if self.blocks == 1:
            self.h.update(block)
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="spine-docs-hash")
        self.wait()
        self.pending = self.pool.submit(self.h.update, block)

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def __enter__(self) -> _Hasher:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def write_collection_temp(directory: str | os.PathLike, name: str, docs: Iterable[Any], *,
                          indexes: Iterable[Mapping] | None = None, options: Mapping | None = None,
                          uuid: str | None = None, tag: str | None = None) -> dict:
    """Write both files of collection ``name`` under temporary names (fsynced, not renamed).

    ``docs`` items may be mappings, RawBSONDocuments or BSON bytes; they are streamed. Returns
    ``{"count", "sha256", "bytes", "metadata_sha256", "uuid", "tmp_bson", "tmp_metadata",
    "bson", "metadata"}`` (file names relative to ``directory``). Temporary names start with
    ``.tmp-`` and end with ``.part`` so that mongorestore never mistakes them for collections.
    On error nothing is left behind.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    bson_path, meta_path = collection_paths(d, name)
    tag = tag or secrets.token_hex(4)
    tmp_bson = d / f".tmp-{tag}-{bson_path.name}.part"
    tmp_meta = d / f".tmp-{tag}-{meta_path.name}.part"
    h = hashlib.sha256()
    count = size = 0
    try:
        with open(tmp_bson, "wb", buffering=_BUF) as fh, _Hasher(h) as hasher:
            chunk: list[bytes] = []
            pending = 0
            for doc in docs:
                raw = to_raw(doc)
                chunk.append(raw)
                count += 1
                pending += len(raw)
                if pending >= _BUF:
                    block = b"".join(chunk)
                    hasher.update(block)
                    fh.write(block)
                    size += pending
                    chunk, pending = [], 0
            if chunk:
                block = b"".join(chunk)
                hasher.update(block)
                fh.write(block)
                size += pending
            hasher.wait()
            fh.flush()
            os.fsync(fh.fileno())
        meta = metadata_document(name, indexes=indexes, options=options, uuid=uuid)
        text = metadata_json(meta).encode("utf-8")
        with open(tmp_meta, "wb") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _unlink(tmp_bson)
        _unlink(tmp_meta)
        raise
    return {"count": count, "sha256": h.hexdigest(), "bytes": size,
            "metadata_sha256": hashlib.sha256(text).hexdigest(), "uuid": meta["uuid"],
            "tmp_bson": tmp_bson.name, "tmp_metadata": tmp_meta.name,
            "bson": bson_path.name, "metadata": meta_path.name}


def write_collection(directory: str | os.PathLike, name: str, docs: Iterable[Any], *,
                     indexes: Iterable[Mapping] | None = None, options: Mapping | None = None,
                     uuid: str | None = None) -> dict:
    """Write ``<dir>/<name>.bson`` and ``<dir>/<name>.metadata.json`` (each atomically,
    streaming). ``docs`` items: mappings, RawBSONDocuments or BSON bytes.
    Returns ``{"count": n, "sha256": hex of the .bson file, "bytes": n}``."""
    info = write_collection_temp(directory, name, docs, indexes=indexes, options=options, uuid=uuid)
    d = Path(directory)
    try:
        os.replace(d / info["tmp_bson"], d / info["bson"])
        os.replace(d / info["tmp_metadata"], d / info["metadata"])
    except BaseException:
        _unlink(d / info["tmp_bson"])
        _unlink(d / info["tmp_metadata"])
        raise
    fsync_dir(d)
    return {"count": info["count"], "sha256": info["sha256"], "bytes": info["bytes"]}


# --------------------------------------------------------------------------- read

def iter_raw_file(path: str | os.PathLike, *, hasher: Any = None) -> Iterator[bytes]:
    """The BSON documents of a ``.bson`` file as bytes, checking the framing of each one;
    ``hasher`` (a hashlib object) is fed every byte read."""
    try:
        fh = open(path, "rb", buffering=_BUF)
    except OSError as exc:
        raise DumpError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with fh:
        offset = 0
        while True:
            head = fh.read(4)
            if not head:
                return
            if len(head) < 4:
                raise DumpError(f"{path}: truncated at byte {offset}")
            n = int.from_bytes(head, "little")
            if n < 5 or n > 48 * 1024 * 1024:
                raise DumpError(f"{path}: bad document length {n} at byte {offset}")
            body = fh.read(n - 4)
            if len(body) != n - 4 or body[-1] != 0:
                raise DumpError(f"{path}: truncated document at byte {offset}")
            raw = head + body
            if hasher is not None:
                hasher.update(raw)
            offset += n
            yield raw


def iter_raw(directory: str | os.PathLike, name: str, *, hasher: Any = None) -> Iterator[bytes]:
    """The documents of collection ``name`` as BSON bytes (see :func:`iter_raw_file`)."""
    return iter_raw_file(collection_paths(directory, name)[0], hasher=hasher)


def read_collection(directory: str | os.PathLike, name: str) -> Iterator[dict]:
    """The documents of collection ``name``, decoded (``bson.decode_file_iter``)."""
    path = collection_paths(directory, name)[0]
    try:
        fh = open(path, "rb", buffering=_BUF)
    except OSError as exc:
        raise DumpError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with fh:
        try:
            yield from bson.decode_file_iter(fh)
        except bson.errors.InvalidBSON as exc:
            raise DumpError(f"{path}: {exc}") from exc


def list_collections(directory: str | os.PathLike) -> list[str]:
    """Names of the collections dumped in ``directory`` (one per ``.bson`` file), sorted."""
    d = Path(directory)
    try:
        entries = list(d.iterdir())
    except FileNotFoundError:
        return []
    names = []
    for p in entries:
        if p.name.startswith(".") or not p.name.endswith(".bson") or not p.is_file():
            continue
        stem = p.name[: -len(".bson")]
        name = unquote(stem)
        meta = d / f"{stem}.metadata.json"
        if meta.is_file():
            try:
                name = parse_metadata(meta.read_text(encoding="utf-8"), source=str(meta)).get("collectionName") or name
            except (DumpError, OSError):
                pass
        names.append(name)
    return sorted(names)


# --------------------------------------------------------------------------- whole databases

def _database_collections(db: Any) -> list[str]:
    return sorted(n for n in db.list_collection_names() if not n.startswith("system."))


def _collection_info(db: Any, name: str) -> tuple[dict, str | None]:
    """(options, uuid hex) of a collection, where the database can tell."""
    try:
        infos = list(db.list_collections(filter={"name": name}))
    except (NotImplementedError, AttributeError, TypeError):
        return {}, None
    if not infos:
        return {}, None
    info = infos[0]
    uid = (info.get("info") or {}).get("uuid")
    if isinstance(uid, bytes) and len(uid) == 16:
        uid = bytes(uid).hex()
    elif isinstance(uid, _uuid.UUID):
        uid = uid.hex
    else:
        uid = None
    return dict(info.get("options") or {}), uid


def _raw_documents(coll: Any) -> Iterator[Any]:
    raws = raw_documents(coll)
    if raws is not None:  # spine-docs' in-memory engine keeps documents as BSON
        yield from raws
        return
    try:
        import pymongo.collection
        if isinstance(coll, pymongo.collection.Collection):
            for doc in coll.with_options(codec_options=_RAW).find({}):
                yield doc.raw
            return
    except ImportError:  # pragma: no cover - pymongo is a dependency
        pass
    yield from coll.find({})


def dump_database(db: Any, out_dir: str | os.PathLike) -> dict:
    """Dump every collection of ``db`` (pymongo or mongomock) to ``<out_dir>/<db.name>/`` and
    write ``<out_dir>/manifest.json`` last (a dump without a manifest is incomplete).
    Refuses a non-empty target. Returns the manifest."""
    out = Path(out_dir)
    target = out / db.name
    if (out / MANIFEST).exists() or (target.is_dir() and any(target.iterdir())):
        raise DumpError(f"refusing to overwrite the dump in {out}")
    target.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"format": DUMP_FORMAT, "version": 1, "database": db.name,
                                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                "collections": {}}
    for name in _database_collections(db):
        coll = db[name]
        options, uid = _collection_info(db, name)
        indexes = [dict(ix) for ix in coll.list_indexes()]
        info = write_collection_temp(target, name, _raw_documents(coll), indexes=indexes,
                                     options=options, uuid=uid)
        os.replace(target / info["tmp_bson"], target / info["bson"])
        os.replace(target / info["tmp_metadata"], target / info["metadata"])
        manifest["collections"][name] = {k: info[k] for k in
                                         ("count", "sha256", "bytes", "metadata_sha256", "bson", "metadata")}
    fsync_dir(target)
    atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest


def read_manifest(dump_dir: str | os.PathLike) -> dict:
    path = Path(dump_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DumpError(f"{dump_dir} is not a complete dump (no {MANIFEST})") from exc
    except (OSError, ValueError) as exc:
        raise DumpError(f"cannot read {path}: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("collections"), dict) \
            or not isinstance(manifest.get("database"), str):
        raise DumpError(f"{path} is not a spine-docs dump manifest")
    return manifest


def verify_dump(dump_dir: str | os.PathLike) -> dict:
    """Recount and rehash every collection of a dump against its manifest; returns the
    manifest or raises :class:`DumpError` naming every problem."""
    manifest = read_manifest(dump_dir)
    d = Path(dump_dir) / manifest["database"]
    problems = []
    for name, want in sorted(manifest["collections"].items()):
        h = hashlib.sha256()
        count = size = 0
        try:
            for raw in iter_raw(d, name, hasher=h):
                bson.decode(raw)  # every document must decode, not just frame
                count += 1
                size += len(raw)
            meta_path = collection_paths(d, name)[1]
            meta_bytes = meta_path.read_bytes() if meta_path.exists() else None
            if meta_bytes is not None:
                parse_metadata(meta_bytes.decode("utf-8"), source=str(meta_path), name=name)
        except (DumpError, OSError, bson.errors.InvalidBSON, UnicodeDecodeError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        if count != want.get("count"):
            problems.append(f"{name}: {count} documents, manifest says {want.get('count')}")
        if h.hexdigest() != want.get("sha256"):
            problems.append(f"{name}: SHA-256 of the .bson file does not match the manifest")
        want_meta = want.get("metadata_sha256")
        if want_meta and (meta_bytes is None or hashlib.sha256(meta_bytes).hexdigest() != want_meta):
            problems.append(f"{name}: the .metadata.json file does not match the manifest")
    if problems:
        raise DumpError(f"dump {dump_dir} does not verify: " + "; ".join(problems))
    return manifest


def _index_kwargs(ix: Mapping) -> tuple[list, dict]:
    key = list(_index_key(ix["key"]).items())
    opts = {k: v for k, v in ix.items() if k not in ("v", "key", "ns")}
    return key, opts


def restore_database(db: Any, dump_dir: str | os.PathLike, *, drop_extra: bool = True) -> dict:
    """Put every collection of a dump back into ``db`` (documents, options, indexes) and,
    with ``drop_extra``, drop the collections the dump does not have.

    The dump is verified first (:class:`DumpError`, nothing touched). Each collection is
    loaded into a temporary collection that then replaces the live one with
    ``renameCollection(dropTarget=True)``: a collection is never seen empty or half-loaded.
    On the embedded catalog call this inside ``store.writing(db)``.
    Returns ``{"restored": {name: count}, "dropped": [names]}``.
    """
    manifest = verify_dump(dump_dir)
    d = Path(dump_dir) / manifest["database"]
    restored: dict[str, int] = {}
    token = secrets.token_hex(3)
    for name in sorted(manifest["collections"]):
        meta = read_metadata(d, name)
        tmp = f"{name}.restore-{token}"
        if tmp in db.list_collection_names():
            db.drop_collection(tmp)
        db.create_collection(tmp, **dict(meta.get("options") or {}))
        coll = db[tmp]
        batch: list[RawBSONDocument] = []
        n = 0
        for raw in iter_raw(d, name):
            batch.append(RawBSONDocument(raw))
            if len(batch) >= RESTORE_BATCH:
                coll.insert_many(batch, ordered=True, bypass_document_validation=True)
                n += len(batch)
                batch = []
        if batch:
            coll.insert_many(batch, ordered=True, bypass_document_validation=True)
            n += len(batch)
        for ix in meta.get("indexes") or []:
            if ix.get("name") == "_id_":
                continue
            key, opts = _index_kwargs(ix)
            coll.create_index(key, **opts)
        coll.rename(name, dropTarget=True)
        restored[name] = n
    dropped = []
    if drop_extra:
        for name in _database_collections(db):
            if name not in manifest["collections"]:
                db.drop_collection(name)
                dropped.append(name)
    return {"restored": restored, "dropped": dropped}
