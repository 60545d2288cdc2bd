"""The embedded catalog: a directory in mongodump's layout, served in memory by the engine.

On disk it is ``<dir>/spine_docs/<coll>.bson`` + ``<coll>.metadata.json`` (written and read
by :mod:`spine_docs.dumpfmt`), so ``mongorestore --dir <dir>`` loads it into a server; in
memory it is one :mod:`spine_docs.store.engine` database. Every file it keeps::

    <dir>/.lock                               the flock target (names the holder)
    <dir>/spine_docs/<coll>.bson + .metadata.json
    <dir>/spine_docs/.generation              the manifest (see below)
    <dir>/spine_docs/.commit.json             the journal, only while a save commits
    <dir>/spine_docs/.tmp-<gen>-<file>.part   temporaries of a save in progress
    <dir>/spine_docs/.columns-<coll>.bson     a cache of the engine's columns of one
                                              content of <coll> (:mod:`.columnfile`)

Writing to the embedded catalog
    Every write happens inside ``with store.writing(db):`` (a write outside raises
    :class:`StoreError`). Entering takes an exclusive ``flock`` on ``<dir>/.lock`` (bounded
    wait; the error names the pid and host holding it), and reloads what another process
    saved since we loaded. Leaving saves every changed collection (unchanged ones are
    skipped) and releases the lock. Nested ``writing()`` in one thread is free; other
    threads of the process wait. Reads need no lock: ``store.refresh(db)`` picks up other
    processes' saves (a cheap check of ``<dir>/spine_docs/.generation``).
    A save that fails (a full disk, a directory it may not write) raises a one-line
    :class:`StoreError` naming the catalog; before the commit point (below) it removes its
    temporary files and the catalog stays at its previous generation.
    A save rewrites each changed collection whole (mongodump's layout has no deltas), so a
    bulk writer should not open one ``writing()`` per small batch: ``store.commit_interval``
    says how long to accumulate (about 20x the last save's duration); ``store.save`` commits
    inside a long ``writing()`` block.

Opening without creating, and reading without write access
    ``connect(path, create=False)`` (every command that only reads) opens an existing
    catalog and raises :class:`NoCatalog` where there is none - a missing directory, an
    empty one, or one holding other files - without creating or writing anything there.
    Loading, reading and ``refresh`` take no lock and write nothing (unless
    ``store.keep_columns(db)`` asked reads to save the column caches they build, best
    effort: the explorer), so a catalog on a read-only mount, or another user's, can be read; a write to it (``writing()``) raises "... is
    read-only here". Only an unfinished commit (below) needs a process that can write.

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
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shlex
import socket
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from .. import dumpfmt
from . import columnfile, engine
from .common import DEFAULT_DB, NoCatalog, StoreError

#: how long writing() waits for another process's lock before giving up (seconds)
LOCK_TIMEOUT_S = 60.0
GENERATION_FILE = ".generation"
JOURNAL_FILE = ".commit.json"
LOCK_FILE = ".lock"
_CATALOG_FORMAT = "spine-docs-embedded-catalog"
#: errors that mean "this process may not write here" (a read-only mount, file modes)
_READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


class _Inconsistent(Exception):
    """A lock-free read saw files of two different generations (retry)."""


class _ReadOnly(StoreError):
    """The lock file cannot be opened for writing: this process cannot write the catalog."""


class Replacement(NamedTuple):
    """What :func:`replacing` yields: the catalog's new content (``db``, an engine database
    that starts empty), the names of the collections the catalog has on disk now, and
    ``load(name)``, which copies one of them into ``db`` (checked against the manifest;
    :class:`StoreError` when damaged; False when the catalog has no such collection)."""

    db: Any
    collections: list[str]
    load: Callable[[str], bool]


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


class Catalog:
    """One embedded catalog directory: an engine database plus its files."""

    def __init__(self, root: Path, db_name: str = DEFAULT_DB):
        self.root = root
        self.db_dir = root / db_name
        self.lock_path = root / LOCK_FILE
        self.lock_timeout = LOCK_TIMEOUT_S
        self.client = engine.Client(guard=self._guard)
        self.db = self.client.get_database(db_name)
        self.store = engine.database_store(self.db)
        self.store.opened_by = self
        self.store.label = f"embedded catalog at {root}"
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
        self.keep_columns = False          # store.keep_columns(db): save the columns reads build

    def _keeps_columns(self) -> bool:
        return self.keep_columns

    def _guard(self) -> None:
        if self.owner != threading.get_ident():
            raise StoreError(f"write to the embedded catalog at {self.root} outside "
                             "store.writing(db): wrap the write in `with store.writing(db):`")

    # ------------------------------------------------------------------ file lock
    def acquire(self, timeout: float) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            if exc.errno in _READ_ONLY_ERRNOS:
                raise _ReadOnly(f"the embedded catalog at {self.root} is read-only here: cannot open "
                                f"its lock file {self.lock_path} for writing ({exc.strerror})") from exc
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

    def wait_for_writer(self, timeout: float) -> None:
        """Wait (bounded) until no process holds the lock, without taking it for writing:
        a shared ``flock`` on a read-only descriptor (a reader without write access)."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # no lock file: no spine-docs process ever wrote here
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {self.lock_path}: {exc.strerror}") from exc
        try:
            deadline = time.monotonic() + max(0.0, timeout)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    return
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise StoreError(f"cannot lock {self.lock_path}: {exc.strerror}") from exc
                if time.monotonic() >= deadline:
                    raise StoreError(f"the embedded catalog at {self.root} is locked by another "
                                     f"process (waited {timeout:g} s); retry when it has finished")
                time.sleep(0.05)
        finally:
            os.close(fd)

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

    def _created(self) -> dict[str, engine.CollectionStore]:
        return self.store.created()

    def _read_collection(self, name: str, info: dict | None, locked: bool) -> tuple:
        h = hashlib.sha256()
        docs: OrderedDict = OrderedDict()
        count = size = 0
        try:
            for raw in dumpfmt.iter_raw(self.db_dir, name, hasher=h):
                try:
                    key = engine.raw_id(raw)
                except KeyError:
                    raise StoreError("a stored document has no _id") from None
                docs[key] = raw
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
        for name in drops:
            self.store[name].reset()
        for name, (docs, meta, info) in loads.items():
            st = self.store[name]
            st.load(docs, _indexes_from_metadata(meta), dict(meta.get("options") or {}),
                    meta.get("uuid"))
            if manifest.get("token") is not None:  # a catalog, not a plain mongodump directory
                st.columns_file = columnfile.ColumnsFile(self.db_dir, name, info, st.version,
                                                         keep=self._keeps_columns)
                st.track_drift()
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
        done = self._sync_lock_free()
        if done is not None:
            return done
        # a writer is committing, or died doing it: recover under the lock
        try:
            self.acquire(self.lock_timeout)
        except _ReadOnly:
            # we cannot complete another's commit: wait for the writer, then read again
            self.wait_for_writer(self.lock_timeout)
            done = self._sync_lock_free()
            if done is not None:
                return done
            if self._journal_exists():
                raise StoreError(f"the embedded catalog at {self.root} has an unfinished save (its "
                                 "writer stopped after the commit point) and is read-only here: "
                                 "any spine-docs command run by a user who can write there "
                                 "completes it") from None
            raise StoreError(f"the embedded catalog at {self.root} kept changing while it was "
                             "read; retry") from None
        try:
            return self.sync(locked=True)
        finally:
            self.release()

    def _sync_lock_free(self) -> bool | None:
        """Load the newest complete generation without the lock (True: reloaded, False:
        nothing new); None when that takes the lock (a journal, or files kept changing)."""
        for _attempt in range(5):
            if self._journal_exists():
                return None
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
        return None

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
        try:
            self._apply_journal(journal)
        except OSError as exc:
            raise StoreError(f"cannot complete the interrupted save of the embedded catalog at "
                             f"{self.root}: {exc.strerror or exc}") from exc

    def save(self, *, replace: bool = False) -> bool:
        """Write every changed collection and commit them at once (under the lock).

        ``replace``: write every collection in memory and delete the files of every other
        collection in the directory, listed in the manifest or not (:func:`replacing`).
        An ``OSError`` becomes a one-line :class:`StoreError` naming the catalog; before the
        commit point the temporary files are removed and the catalog is as it was."""
        current = self._created()
        old = self.state["collections"] if self.state else {}
        if replace:
            changed = list(current)
        else:
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
            if replace:
                deletes += [p.name for p in self.db_dir.iterdir()
                            if not p.name.startswith(".") and p.name not in live and p.name not in deletes
                            and (p.name.endswith(".bson") or p.name.endswith(".metadata.json"))]
            new_state = {"format": _CATALOG_FORMAT, "version": 1, "generation": generation,
                         "token": token, "database": self.db.name, "collections": manifest,
                         "saved_at": _now_iso(), "pid": os.getpid(), "host": socket.gethostname()}
            journal = {"generation": new_state, "renames": renames, "deletes": deletes}
            dumpfmt.fsync_dir(self.db_dir)
            dumpfmt.atomic_write_bytes(self.db_dir / JOURNAL_FILE, json.dumps(journal).encode())
        except BaseException as exc:
            for f in written:
                try:
                    (self.db_dir / f).unlink()
                except OSError:
                    pass
            self.broken = True  # memory holds unsaved changes: the next sync reloads the disk
            if isinstance(exc, OSError):
                raise self._save_error(exc, committed=False) from exc
            raise
        try:
            self._apply_journal(journal)
        except BaseException as exc:
            self.broken = True  # committed: the next writer or reader rolls the journal forward
            if isinstance(exc, OSError):
                raise self._save_error(exc, committed=True) from exc
            raise
        self.state = new_state
        self.saved = versions
        for name in changed:  # the column caches of the new state (see .columnfile)
            st = current[name]
            new_file = columnfile.ColumnsFile(self.db_dir, name, manifest[name], versions[name],
                                              keep=self._keeps_columns)
            columnfile.carry_over(st.columns_file, new_file, st)
            st.columns_file = new_file
            st.track_drift()
        for name in dropped:
            columnfile.path_for(self.db_dir, name).unlink(missing_ok=True)
        if replace:
            for p in columnfile.any_present(self.db_dir):
                if p.name not in {columnfile.path_for(self.db_dir, n).name for n in changed}:
                    p.unlink(missing_ok=True)
        self.last_save_s = time.monotonic() - started
        return True

    def _save_error(self, exc: OSError, *, committed: bool) -> StoreError:
        reason = exc.strerror or str(exc)
        if committed:
            err = StoreError(f"could not finish saving the embedded catalog at {self.root} ({reason}): "
                             "the save is committed, and the next spine-docs command that opens "
                             "the catalog completes it")
            err.committed = True
            return err
        if exc.errno in _READ_ONLY_ERRNOS:
            return StoreError(f"the embedded catalog at {self.root} is read-only here: cannot write "
                              f"in {self.db_dir} ({reason}); nothing was saved")
        if not (self.state or {}).get("collections"):
            return StoreError(f"cannot save the embedded catalog at {self.root}: {reason}; nothing "
                              "was saved")
        return StoreError(f"cannot save the embedded catalog at {self.root}: {reason}; it is as it "
                          "was before this write")

    # ------------------------------------------------------------------ replacing it whole
    @contextlib.contextmanager
    def replacing(self, timeout: float | None = None) -> Iterator[Replacement]:
        """:func:`replacing` on this (unregistered, never loaded) catalog object."""
        wait = self.lock_timeout if timeout is None else timeout
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the embedded catalog directory {self.root}: "
                             f"{exc.strerror or exc}") from None
        self.acquire(wait)
        self.owner = threading.get_ident()
        self.depth = 1
        try:
            if self._journal_exists():
                try:
                    self._roll_forward()
                except StoreError:
                    pass  # a commit that cannot complete: the replacement's own journal supersedes it
            if not self._journal_exists():
                self._clean_temporaries()
            try:
                self.state = self._read_generation()
            except StoreError:
                self.state = None  # a corrupt manifest: the replacement writes a new one
            names = (sorted(self.state["collections"]) if self.state is not None
                     else dumpfmt.list_collections(self.db_dir))
            yield Replacement(self.db, names, self._load_from_disk)
            self.save(replace=True)
        finally:
            self.depth = 0
            self.owner = None
            self.release()

    def _load_from_disk(self, name: str) -> bool:
        info = None
        if self.state is not None:
            info = self.state["collections"].get(name)
            if info is None:
                return False
        elif not dumpfmt.collection_paths(self.db_dir, name)[0].is_file():
            return False
        docs, meta, _computed = self._read_collection(name, info, locked=True)
        self.store[name].load(docs, _indexes_from_metadata(meta), dict(meta.get("options") or {}),
                              meta.get("uuid"))
        return True

    # ------------------------------------------------------------------ store's calls, here
    @contextlib.contextmanager
    def writing(self, timeout: float | None = None) -> Iterator[None]:
        """``store.writing(db)`` on this catalog: exclusive file lock (bounded wait), reload
        what others saved, run the block, save atomically (also when the block raises: like
        a server, what was written stays written), release. Nested calls in one thread only
        save at the outermost; other threads wait."""
        if self.pid != os.getpid():
            raise StoreError("this embedded catalog was opened in another process: connect() again")
        wait = self.lock_timeout if timeout is None else timeout
        if not self.mutex.acquire(timeout=wait):
            raise StoreError(f"the embedded catalog at {self.root} is busy in another thread of this "
                             f"process (waited {wait:g} s)")
        try:
            outer = self.depth == 0
            if outer:
                self.acquire(wait)
                self.owner = threading.get_ident()
                try:
                    self.sync(locked=True)
                except BaseException:
                    self.owner = None
                    self.release()
                    raise
            self.depth += 1
            try:
                yield
            except BaseException:
                self.depth -= 1
                if outer:
                    try:
                        self.save()
                    except Exception:  # noqa: BLE001 - the block's own error is the one to report
                        pass
                    finally:
                        self.owner = None
                        self.release()
                raise
            self.depth -= 1
            if outer:
                try:
                    self.save()
                finally:
                    self.owner = None
                    self.release()
        finally:
            self.mutex.release()

    def checkpoint(self) -> bool:
        """``store.save(db)``: save inside a long ``writing()`` block; True if it wrote."""
        if self.owner != threading.get_ident():
            raise StoreError("store.save(db) must be called inside store.writing(db)")
        return self.save()

    def refresh(self) -> bool:
        """``store.refresh(db)``: load what other processes saved since we loaded (a cheap
        check when nothing changed); True when something was reloaded."""
        if self.owner == threading.get_ident() or self.pid != os.getpid():
            return False
        if not self.mutex.acquire(blocking=False):
            return False  # another thread is writing: memory is already the newest state
        try:
            if self.depth:
                return False
            return self.sync(locked=False)
        finally:
            self.mutex.release()

    def commit_interval(self) -> float:
        """~20x the duration of a save (the last one, or an estimate from the catalog's
        size), between 2 and 30 s: the saves take about 5% of a long inject (each rewrites
        every changed collection whole), and a kill -9 loses at most that much work, which
        the next run redoes."""
        # before the first save of this process, estimate it from the size (~150 MB/s)
        size = sum(st.raw_bytes() for st in self._created().values())
        return min(30.0, max(2.0, 20.0 * max(self.last_save_s, size / 150e6)))

    def close(self) -> None:
        """``store.close(db)``: forget the catalog (the next connect() reloads it from disk)."""
        if self.depth:
            raise StoreError("store.close(db) inside store.writing(db)")
        with _REGISTRY_LOCK:
            if _CATALOGS.get(str(self.root)) is self:
                del _CATALOGS[str(self.root)]
        self.closed = True


# =========================================================================== open catalogs

_CATALOGS: "weakref.WeakValueDictionary[str, Catalog]" = weakref.WeakValueDictionary()
_REGISTRY_LOCK = threading.Lock()


def _root(path: str | os.PathLike) -> Path:
    try:
        return Path(path).expanduser().resolve()
    except OSError as exc:
        raise StoreError(f"bad embedded catalog path {str(path)!r}: {exc.strerror or exc}") from None


def holds_catalog(root: Path) -> bool:
    """Whether directory ``root`` holds an embedded catalog: ``<root>/spine_docs/`` with a
    manifest, a commit journal or a collection's ``.bson`` file (a mongodump directory
    counts). An empty ``spine_docs/`` is no catalog."""
    try:
        names = os.listdir(root / DEFAULT_DB)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise StoreError(f"cannot read the embedded catalog at {root}: {exc.strerror or exc}") from None
    return (GENERATION_FILE in names or JOURNAL_FILE in names
            or any(n.endswith(".bson") and not n.startswith(".") for n in names))


def no_catalog_message(root: Path) -> str:
    q = shlex.quote(str(root))
    return (f"no catalog at {root} (create one with `spine-docs setup --db {q}` or "
            f"`spine-docs inject --db {q} --source ...`)")


def open_catalog(path: str | os.PathLike, *, create: bool = True) -> Catalog:
    """The catalog in directory ``path``, loaded from its files; the same object for the
    same directory in one process until it is closed. Where there is no catalog yet,
    ``create`` makes one (the directory, ``spine_docs/`` and ``.lock``), else
    :class:`NoCatalog` is raised and nothing is written. Opening an existing catalog
    writes nothing (it may be read-only here: writes then fail in ``writing()``)."""
    root = _root(path)
    key = str(root)
    with _REGISTRY_LOCK:
        cat = _CATALOGS.get(key)
        if cat is not None and cat.pid == os.getpid() and not cat.closed:
            return cat
        if root.exists() and not root.is_dir():
            raise StoreError(f"embedded catalog path {root} is not a directory")
        if not holds_catalog(root):
            if not create:
                raise NoCatalog(no_catalog_message(root))
            try:
                (root / DEFAULT_DB).mkdir(parents=True, exist_ok=True)
                fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
                os.close(fd)
            except OSError as exc:
                raise StoreError(f"embedded catalog directory {root} is not writable: "
                                 f"{exc.strerror or exc}") from None
            if not os.access(root / DEFAULT_DB, os.W_OK | os.X_OK):
                raise StoreError(f"embedded catalog directory {root} is not writable")
        cat = Catalog(root)
        cat.sync(locked=False)
        _CATALOGS[key] = cat
        return cat


@contextlib.contextmanager
def replacing(path: str | os.PathLike, *, timeout: float | None = None) -> Iterator[Replacement]:
    """Replace the catalog in directory ``path`` whole, without loading it (created when
    missing): under its file lock (bounded wait), a pending commit is completed when it
    can be, then the block fills ``Replacement.db`` - loading only what it chooses of the
    old catalog with ``load(name)`` - and on a clean exit that database is committed as the
    catalog's entire content through the save protocol (temporary files, journal, renames,
    new manifest); the files of every other collection are deleted. If the block raises,
    nothing is written. A catalog of that directory open in this process reloads from disk
    at its next refresh or write. This is how a catalog that no longer loads (a damaged
    file) is restored from a backup."""
    root = _root(path)
    if root.exists() and not root.is_dir():
        raise StoreError(f"embedded catalog path {root} is not a directory")
    with _REGISTRY_LOCK:
        opened = _CATALOGS.get(str(root))
    if opened is not None and opened.depth and opened.owner == threading.get_ident():
        raise StoreError(f"cannot replace the embedded catalog at {root} inside store.writing() on it")
    # a catalog of that directory open here reloads at its next use: the new manifest has
    # another generation (and each collection new checksums)
    with Catalog(root).replacing(timeout) as replacement:
        yield replacement


def catalog_of(db: Any) -> Catalog | None:
    """The catalog whose database ``db`` is (any view of it); None for other databases."""
    st = engine.database_store(db)
    return st.opened_by if st is not None else None
