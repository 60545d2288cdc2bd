"""Where the catalog lives: ``connect(url) -> Database``, and the calls that work on every
kind of database (``writing``, ``save``, ``refresh``, ``describe``, ``close``, ...).

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
        A directory: the **embedded catalog** (the default). In memory it is an engine
        database; on disk it is mongodump's layout, ``<dir>/spine_docs/<coll>.bson`` +
        ``<coll>.metadata.json``, so ``mongorestore --dir <dir>`` loads it into a server.
        :func:`connect` on the same directory twice in one process returns the same catalog
        (``close(db)`` first to read the files afresh). Every write goes inside
        ``with store.writing(db):``.

Creating, or only opening (``create``)
    ``connect(path)`` creates the embedded catalog when the directory holds none (what
    ``setup``, ``inject`` and the other writing commands need). ``connect(path,
    create=False)`` - every command that only reads - raises :class:`NoCatalog` ("no catalog
    at ...", one line) instead and writes nothing: not the directory, not ``.lock``, not
    ``spine_docs/``. Opening an existing catalog never writes, so one that is read-only here
    (a read-only mount, another user's) can be read; a write to it raises "... is read-only
    here". ``create`` does not matter for a server or ``mongomock://``.

Where each part lives
    :mod:`.server` (a real server: connect, ping, one-line errors), :mod:`.memory`
    (``mongomock://``), :mod:`.embedded` (the embedded catalog: locking, loading, the atomic
    save), :mod:`.engine` (the in-memory engine serving the last two: mongomock 4.3 made
    fast; its docstring lists every change to mongomock and every known difference from a
    real server), :mod:`.common` (:class:`StoreError`, :data:`DEFAULT_DB`).
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import embedded, memory, server
from .common import DEFAULT_DB, NoCatalog, StoreError
from .embedded import LOCK_TIMEOUT_S, Replacement
from .engine import raw_fields
from .server import is_server

__all__ = [
    "StoreError", "NoCatalog", "connect", "embedded_dir", "replacing", "Replacement", "writing", "keep_columns", "refresh", "save", "describe", "is_server", "is_embedded",
    "close", "commit_interval", "catalog_path", "collection_options", "create_collection",
    "coll_mod", "forget_collection", "DEFAULT_DB", "LOCK_TIMEOUT_S", "raw_fields",
]


def connect(url: str | os.PathLike, *, timeout_ms: int = 5000, create: bool = True,
            failover_timeout_ms: int | None = None, username: str | None = None,
            password: str | None = None) -> Any:
    """A Database for a ``mongodb://``/``mongodb+srv://`` URI, a ``mongomock://`` URL or an
    embedded-catalog directory (see the module docstring). Raises :class:`StoreError`.

    :param create: for a directory that holds no catalog: True (the default, what writers
        need) creates one; False raises :class:`NoCatalog` and writes nothing. Read-only
        commands pass False. Servers and ``mongomock://`` ignore it.
    :param failover_timeout_ms: server only: the server selection timeout of the operations
        that follow the quick ``timeout_ms`` check (long commands that must wait out an
        election).
    :param username, password: server only: credentials given apart from the URI (see
        :mod:`spine_docs.access`).

    Example: ``db = store.connect("./catalog", create=False)``."""
    text, scheme = _parse(url)
    if scheme in ("mongodb", "mongodb+srv"):
        return server.connect(text, timeout_ms, failover_timeout_ms=failover_timeout_ms,
                              username=username, password=password)
    if scheme == "mongomock":
        return memory.connect(text)
    return embedded.open_catalog(text, create=create).db


def embedded_dir(url: str | os.PathLike) -> Path | None:
    """The directory of an embedded-catalog URL (absolute), None for a server or
    ``mongomock://``; opens nothing. Raises :class:`StoreError` for a URL
    :func:`connect` refuses."""
    text, scheme = _parse(url)
    if scheme:
        return None
    try:
        return Path(text).expanduser().resolve()
    except OSError as exc:
        raise StoreError(f"bad embedded catalog path {text!r}: {exc.strerror or exc}") from None


def _parse(url: str | os.PathLike) -> tuple[str, str]:
    """``(url, scheme)``: scheme "" for a directory; :class:`StoreError` for none or an
    unsupported one."""
    if url is None or not str(os.fspath(url)).strip():
        raise StoreError("no catalog given: pass --db (mongodb://..., mongomock://... or a directory)")
    text = str(os.fspath(url)).strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme and scheme not in ("mongodb", "mongodb+srv", "mongomock"):
        raise StoreError(f"unsupported catalog URL scheme {scheme!r}: use mongodb://, "
                         "mongodb+srv://, mongomock:// or a directory path")
    return text, scheme


def replacing(path: str | os.PathLike, *, timeout: float | None = None) -> Any:
    """Embedded catalog only: replace the catalog in directory ``path`` whole without
    loading it first, under its file lock and through the save protocol - how a catalog
    that no longer loads is restored. A context manager yielding a :class:`Replacement`
    (``db``: the new content, starting empty; ``collections``: the names on disk now;
    ``load(name)``: copy one of them into ``db``, :class:`StoreError` when damaged). A
    clean exit commits ``db`` as the whole catalog; an exception writes nothing.

    Example::

        with store.replacing("./catalog") as new:
            new.load("changelog")
            new.db.files.insert_many(docs)
    """
    return embedded.replacing(path, timeout=timeout)


@contextlib.contextmanager
def writing(db: Any, *, timeout: float | None = None) -> Iterator[Any]:
    """Wrap every write. Embedded catalog: exclusive file lock (bounded wait), reload what
    others saved, run the block, save atomically (also when the block raises: like a server,
    what was written stays written), release. Nested calls in one thread only save at the
    outermost. Server and mongomock: nothing."""
    cat = embedded.catalog_of(db)
    if cat is None:
        yield db
        return
    with cat.writing(timeout):
        yield db


def save(db: Any) -> bool:
    """Checkpoint inside a long ``writing()`` block (embedded catalog); True if it wrote."""
    cat = embedded.catalog_of(db)
    return cat.checkpoint() if cat is not None else False


def keep_columns(db: Any) -> None:
    """Embedded catalog: from now on, when a read of this process builds a collection's
    column cache for the state on disk, save it next to the collection
    (:mod:`spine_docs.store.columnfile`; best effort), so that the next process opening that
    state - the explorer's first view - restores it instead of decoding every document. Off
    by default: other reads write nothing. Elsewhere: nothing."""
    cat = embedded.catalog_of(db)
    if cat is not None:
        cat.keep_columns = True


def refresh(db: Any) -> bool:
    """Embedded catalog: load what other processes saved since we loaded (a cheap check when
    nothing changed); True when something was reloaded. Elsewhere: nothing."""
    cat = embedded.catalog_of(db)
    return cat.refresh() if cat is not None else False


def commit_interval(db: Any) -> float:
    """Seconds a bulk writer should let pass between ``writing()`` blocks: 0 for a server or
    mongomock; for the embedded catalog ~20x the duration of a save (the last one, or an
    estimate from the catalog's size), between 2 and 30 s, so that rewriting the files stays
    a small part of the work. Ask again after each block: it grows with the catalog."""
    cat = embedded.catalog_of(db)
    return cat.commit_interval() if cat is not None else 0.0


def describe(db: Any) -> str:
    """``embedded catalog at /x``, ``mongomock://name/db`` or the server URI (password hidden)."""
    cat = embedded.catalog_of(db)
    if cat is not None:
        return f"embedded catalog at {cat.root}"
    if is_server(db):
        return server.describe(db)
    return memory.describe(db)


def is_embedded(db: Any) -> bool:
    return embedded.catalog_of(db) is not None


def catalog_path(db: Any) -> Path | None:
    """The embedded catalog's directory (None for other databases)."""
    cat = embedded.catalog_of(db)
    return cat.root if cat is not None else None


def close(db: Any) -> None:
    """Server: close the client. Embedded: forget the catalog (the next connect() reloads it
    from disk). mongomock://name: nothing (its data lives as long as the process)."""
    cat = embedded.catalog_of(db)
    if cat is not None:
        cat.close()
        return
    if is_server(db):
        db.client.close()


def collection_options(db: Any, name: str) -> dict:
    """``{"validator", "validationLevel", "validationAction"}`` of a collection - the ones it
    has (server: listCollections; engine: what was recorded); {} for a missing collection."""
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
    """``collMod`` on any kind of database (on the engine: recorded; ``None`` removes an option)."""
    return db.command("collMod", name, **options)


def forget_collection(db: Any, name: str) -> None:
    """Nothing to do: dropping a collection forgets its recorded options (kept for callers
    written before the engine recorded options)."""
    return None
