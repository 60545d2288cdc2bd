"""Backups in mongodump's layout: take, verify, rotate, restore.

A backup is a directory ``<root>/<db>_<YYYYMMDD_HHMMSS>/`` holding

* ``<db>/<collection>.bson`` + ``<db>/<collection>.metadata.json`` - mongodump's own layout,
  written by ``mongodump`` when it is on PATH and the database is a server (the URI goes in
  a temporary 0600 config file, never on the command line), else by the built-in writer of
  :mod:`spine_docs.dumpfmt` (the code the embedded catalog persists with). ``mongorestore``
  reads either;
* ``manifest.json`` - :mod:`spine_docs.dumpfmt`'s manifest (per collection the document
  count and the SHA-256 of both files) plus the backup's method, source, schema version and
  ``verified`` flag.

A backup is *verified* before anything relies on it: every ``.bson`` is decoded and counted
and the counts compared with the database's (taken under the migration lock), then the
checksums are written. :func:`verify` re-checks a backup later (counts and checksums).

:func:`restore` first verifies the whole backup and changes nothing if that fails; then it
puts every collection back (documents in their original order, options, indexes); only when
all of that succeeded does it drop the collections created since the backup. If writing
fails part-way it stops (drops nothing more) and raises :class:`RestoreError` whose
``manual_command`` restores by hand.

:func:`restore_catalog` restores an embedded catalog at the file level, without loading it
(so a catalog with a damaged file can be restored): under the catalog's file lock it reads
only what the restore keeps (the changelog, the lock document), builds the new content in
memory with :func:`restore`, and commits it as a save commits (temporary files, journal,
renames, new manifest). Failing before that commit, it changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import bson

from .. import schema as sch

MANIFEST = "manifest.json"
NAME_RE = re.compile(r"^(?P<db>.+)_(?P<ts>\d{8}_\d{6})(?:_(?P<n>\d+))?$")
#: never written to, nor restored from, a backup: the lock belongs to the running command
SKIP_DOCS = {sch.META: {sch.LOCK_DOC_ID}}
_INSERT_BATCH = 1000


class BackupError(Exception):
    """A backup could not be taken or did not verify (nothing was changed)."""


class RestoreError(Exception):
    """A restore failed. ``changed`` says whether the database was touched;
    ``manual_command`` is the command that restores by hand."""

    def __init__(self, message: str, *, manual_command: str, changed: bool):
        super().__init__(f"{message}; restore by hand with: {manual_command}")
        self.reason = message
        self.manual_command = manual_command
        self.changed = changed


@dataclass
class BackupResult:
    path: Path
    db_name: str
    method: str                      # "mongodump" or "builtin"
    created: datetime
    collections: dict                # name -> {"count", "bson_sha256", "metadata_sha256"}
    verified: bool = False
    rotated: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. a stale lock taken over

    @property
    def documents(self) -> int:
        return sum(c["count"] for c in self.collections.values())


@dataclass
class VerifyResult:
    path: Path
    ok: bool
    problems: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)


@dataclass
class RestoreResult:
    path: Path
    restored: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    documents: int = 0
    warnings: list[str] = field(default_factory=list)  # e.g. a stale lock taken over


@dataclass
class BackupInfo:
    path: Path
    db_name: str
    created: datetime | None
    good: bool
    method: str | None = None
    documents: int | None = None


# --------------------------------------------------------------------------- helpers

def default_root(home: str | Path | None = None) -> Path:
    """``<home>/backups`` (home defaults to ``.spine_docs``)."""
    return Path(home if home is not None else ".spine_docs") / "backups"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _new_dir(root: Path, db_name: str, when: datetime) -> Path:
    if root.exists() and not root.is_dir():
        raise BackupError(f"cannot back up into {root}: it is a file, not a directory "
                          "(--out names the directory that holds the backups)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"cannot create the backups directory {root}: {exc.strerror or exc}") from None
    base = f"{db_name}_{when.strftime('%Y%m%d_%H%M%S')}"
    # the counter only grows within a second, so names always sort in creation order
    taken = [int(m.group("n") or 1) for p in root.iterdir()
             if (m := NAME_RE.match(p.name)) and p.name.startswith(base)
             and m.group("db") == db_name]
    for n in range(max(taken, default=0) + 1, 10000):
        p = root / (base if n == 1 else f"{base}_{n}")
        try:
            p.mkdir()
            return p
        except FileExistsError:
            continue
        except OSError as exc:
            raise BackupError(f"cannot create a backup directory under {root}: {exc.strerror or exc}") from None
    raise BackupError(f"cannot create a backup directory under {root}")


def _dumpfmt():
    from .. import dumpfmt
    return dumpfmt


def _manifest_for_dir(path: Path, db_name: str) -> dict:
    """A dumpfmt manifest for a dump written by mongodump (which writes none)."""
    df = _dumpfmt()
    d = path / db_name
    manifest: dict = {"format": df.DUMP_FORMAT, "version": 1, "database": db_name,
                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "collections": {}}
    for name in df.list_collections(d):
        h = hashlib.sha256()
        count = size = 0
        for raw in df.iter_raw(d, name, hasher=h):
            count += 1
            size += len(raw)
        bson_path, meta_path = df.collection_paths(d, name)
        manifest["collections"][name] = {
            "count": count, "sha256": h.hexdigest(), "bytes": size,
            "metadata_sha256": _sha256(meta_path) if meta_path.is_file() else None,
            "bson": bson_path.name, "metadata": meta_path.name}
    return manifest


def _mongodump(db_url: str, out: Path) -> None:
    """Run mongodump with the URI in a private temporary config file."""
    exe = shutil.which("mongodump")
    if exe is None:
        raise BackupError("mongodump not found")
    fd, cfg = tempfile.mkstemp(prefix="spine-docs-mongodump-", suffix=".yaml")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("uri: " + json.dumps(db_url) + "\n")  # JSON string is valid YAML
        proc = subprocess.run([exe, f"--config={cfg}", f"--out={out}"],
                              capture_output=True, text=True, timeout=24 * 3600)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise BackupError(f"mongodump failed (exit {proc.returncode}): {sch.display_url(tail[0])}")
    finally:
        try:
            os.unlink(cfg)
        except OSError:
            pass


# --------------------------------------------------------------------------- backup

def backup(db, root: str | Path | None = None, *, db_url: str | None = None,
           keep: int | None = None, use_mongodump: bool | None = None,
           schema_version: int | None = None) -> BackupResult:
    """Back up ``db`` into a new ``<root>/<db>_<YYYYMMDD_HHMMSS>/`` and verify it.

    ``use_mongodump``: None = when on PATH and the database is a server (``db_url``
    needed); True = required; False = built-in writer. ``keep`` then rotates ``root``
    (see :func:`rotate`). Raises :class:`BackupError` if the backup cannot be taken or does
    not verify; a failed backup directory is removed.
    """
    root = Path(root) if root is not None else default_root()
    when = datetime.now(timezone.utc)
    path = _new_dir(root, db.name, when)
    is_server = sch._is_server(db)
    if use_mongodump is None:
        use_mongodump = bool(is_server and db_url and shutil.which("mongodump"))
    if use_mongodump and not (is_server and db_url):
        shutil.rmtree(path, ignore_errors=True)
        raise BackupError("mongodump needs a mongodb:// server URL")
    df = _dumpfmt()
    try:
        if use_mongodump:
            _mongodump(db_url, path)
            manifest = _manifest_for_dir(path, db.name)
            method = "mongodump"
        else:
            manifest = df.dump_database(db, path)
            method = "builtin"
        # verification 1: what was dumped is what the database holds (we hold the lock)
        problems = []
        for name in sch.collection_names(db):
            n = db[name].count_documents({})
            got = manifest["collections"].get(name, {}).get("count")
            if got != n:
                problems.append(f"{name}: {got} documents in the dump, {n} in the database")
        if problems:
            raise BackupError("backup did not verify (stop writers and retry): " + "; ".join(problems))
        manifest.update({"method": method, "schema_version": schema_version if schema_version is not None
                         else sch.db_version(db), "source": sch.display_url(db_url) if db_url else None,
                         "verified": False})
        df.atomic_write_bytes(path / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
        # verification 2: every file re-read, decoded, counted and hashed against the manifest
        try:
            df.verify_dump(path)
        except df.DumpError as exc:
            raise BackupError(str(exc)) from exc
        manifest["verified"] = True
        df.atomic_write_bytes(path / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
        collections = manifest["collections"]
    except BaseException as exc:
        shutil.rmtree(path, ignore_errors=True)
        if isinstance(exc, OSError):  # a full disk, a vanished or read-only directory
            gone = "the partial backup was removed" if not path.exists() else f"remove {path} by hand"
            raise BackupError(f"cannot write the backup {path}: {exc.strerror or exc}; {gone}") from exc
        raise
    result = BackupResult(path=path, db_name=db.name, method=method, created=when,
                          collections=collections, verified=True)
    if keep is not None:
        result.rotated = rotate(root, keep, db_name=db.name)
    return result


def verify(path: str | Path) -> VerifyResult:
    """Re-check a backup: manifest present and marked verified, every file decoded, counted
    and hashed against it (:func:`spine_docs.dumpfmt.verify_dump`)."""
    df = _dumpfmt()
    path = Path(path)
    res = VerifyResult(path=path, ok=False)
    try:
        manifest = df.verify_dump(path)
    except df.DumpError as exc:
        res.problems.append(str(exc))
        return res
    if not manifest.get("verified"):
        res.problems.append("backup was never verified (it was interrupted while being taken)")
    res.counts = {n: c.get("count") for n, c in manifest["collections"].items()}
    res.ok = not res.problems
    return res


# --------------------------------------------------------------------------- list / rotate

def list_backups(root: str | Path | None = None, *, db_name: str | None = None) -> list[BackupInfo]:
    """Backups under ``root`` (newest first). ``good``: has a verified manifest (checksums
    are not recomputed here; use :func:`verify`)."""
    root = Path(root) if root is not None else default_root()
    out = []
    if not root.is_dir():
        return out
    for p in root.iterdir():
        m = NAME_RE.match(p.name)
        if not p.is_dir() or not m or (db_name is not None and m.group("db") != db_name):
            continue
        created = datetime.strptime(m.group("ts"), "%Y%m%d_%H%M%S").replace(tzinfo=timezone.utc)
        good, method, docs = False, None, None
        try:
            manifest = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
            good = bool(manifest.get("verified"))
            method = manifest.get("method")
            docs = sum(c.get("count", 0) for c in (manifest.get("collections") or {}).values())
            created = datetime.fromisoformat(manifest["created"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        out.append(BackupInfo(path=p, db_name=m.group("db"), created=created, good=good,
                              method=method, documents=docs))
    # newest first, by the name alone (timestamp, then the same-second counter): a backup
    # whose manifest is missing still sorts where it was made
    out.sort(key=_name_order, reverse=True)
    return out


def _name_order(b: BackupInfo) -> tuple:
    m = NAME_RE.match(b.path.name)
    return (m.group("ts"), int(m.group("n") or 1)) if m else ("", 0)


def rotate(root: str | Path, keep: int, *, db_name: str | None = None) -> list[Path]:
    """Delete backups beyond the ``keep`` newest (per database), but never the newest good
    one, and never a directory that is not a spine-docs backup. Returns what was deleted."""
    if keep < 1:
        raise BackupError("--keep must be at least 1")
    by_db: dict[str, list[BackupInfo]] = {}
    for b in list_backups(root, db_name=db_name):
        by_db.setdefault(b.db_name, []).append(b)
    deleted = []
    for infos in by_db.values():
        newest_good = next((b for b in infos if b.good), None)
        for b in infos[keep:]:
            if b is newest_good:
                continue
            shutil.rmtree(b.path)
            deleted.append(b.path)
    return deleted


# --------------------------------------------------------------------------- restore

def manual_restore_command(path: str | Path, db_url: str | None, db_name: str | None = None, *,
                           elsewhere: bool = False) -> str:
    """The command an admin runs to restore ``path`` by hand: ``mongorestore`` for a server;
    else ``spine-docs migrate restore`` into ``db_url`` - or, with ``elsewhere`` (when that
    very command is what failed), into a new directory that then serves as the catalog."""
    path = Path(path)
    if db_url and re.match(r"^mongodb(\+srv)?://", db_url):
        ns = f" --nsInclude {shlex.quote(db_name + '.*')}" if db_name else ""
        return (f"mongorestore --uri {shlex.quote(sch.display_url(db_url))} --drop{ns} "
                f"--dir {shlex.quote(str(path))}")
    if elsewhere:
        return (f"spine-docs migrate restore --from {shlex.quote(str(path))} --db NEWDIR "
                "(a new directory), then use NEWDIR as the catalog")
    target = f" --db {shlex.quote(db_url)}" if db_url else ""
    return f"spine-docs migrate restore --from {shlex.quote(str(path))}{target}"


def restore(db, path: str | Path, *, db_url: str | None = None,
            keep_collections: Iterable[str] = (sch.CHANGELOG,), drop_new: bool = True,
            manual_command: str | None = None, verified: bool = False) -> RestoreResult:
    """Put the database back as it was in backup ``path`` (the caller holds :func:`writing`).

    Collections named in ``keep_collections`` (the migration changelog) are left as they
    are; the lock document is kept. The backup is verified first (unless ``verified``: the
    caller just did): if that fails nothing is touched. Raises :class:`RestoreError` (with
    ``manual_command``, default :func:`manual_restore_command`) on any failure.
    """
    path = Path(path)
    manual = manual_command or manual_restore_command(path, db_url, db.name)
    _check(path, manual)
    df = _dumpfmt()
    manifest = df.read_manifest(path)
    d = path / manifest["database"]
    keep = set(keep_collections)
    names = [n for n in sorted(manifest["collections"]) if n not in keep]
    try:
        metas = {n: df.read_metadata(d, n) for n in names}
    except df.DumpError as exc:
        raise RestoreError(f"cannot read backup metadata: {exc}; nothing was changed",
                           manual_command=manual, changed=False) from exc
    result = RestoreResult(path=path)
    lock_doc = db[sch.META].find_one({"_id": sch.LOCK_DOC_ID})
    # Stage 1: load everything somewhere that is not the live data. Failing here changes nothing.
    staged: dict[str, object] = {}
    try:
        if sch._is_server(db):
            for name in names:
                staged[name] = _stage_on_server(db, name, d, metas[name])
        else:  # mongomock/embedded: the catalog lives in memory anyway
            for name in names:
                skip = SKIP_DOCS.get(name, set())
                staged[name] = [doc for doc in map(bson.decode, df.iter_raw(d, name))
                                if doc.get("_id") not in skip]
    except Exception as exc:
        for tmp in staged.values():
            if isinstance(tmp, str):
                db.drop_collection(tmp)
        raise RestoreError(f"cannot load the backup: {type(exc).__name__}: {exc}; nothing was changed",
                           manual_command=manual, changed=False) from exc
    # Stage 2: swap in. Failing here stops at once: nothing more is dropped.
    current = None
    try:
        for name in names:
            current = name
            if isinstance(staged[name], str):
                db[staged[name]].rename(name, dropTarget=True)
            else:
                _replace_collection(db, name, staged[name], metas[name])
            result.restored.append(name)
        if lock_doc is not None:
            db[sch.META].replace_one({"_id": sch.LOCK_DOC_ID}, lock_doc, upsert=True)
        current = None
        if drop_new:
            for name in sch.collection_names(db):
                if name not in manifest["collections"] and name not in keep:
                    current = name
                    sch.execute(db, {"drop": name})
                    result.dropped.append(name)
    except Exception as exc:
        raise RestoreError(f"restore failed at collection {current!r}: {type(exc).__name__}: {exc}",
                           manual_command=manual, changed=True) from exc
    result.documents = sum(manifest["collections"][n]["count"] for n in names)
    return result


def _check(path: Path, manual: str) -> None:
    check = verify(path)
    if not check.ok:
        raise RestoreError("backup does not verify (" + "; ".join(check.problems) + "); nothing was changed",
                           manual_command=manual, changed=False)


def restore_catalog(root: str | Path, path: str | Path, *, manual_command: str,
                    before_commit: Callable[[object], None] | None = None) -> RestoreResult:
    """Put the embedded catalog in directory ``root`` back as it was in backup ``path``, at
    the file level: the catalog is not loaded, so one that no longer loads is restored too.

    Under the catalog's file lock (``store.replacing``) the new content is built in memory:
    the catalog's changelog when it can be read (else the backup's, and a warning says so),
    the lock document of its ``meta`` when that can be read, every other collection from the
    backup; ``before_commit(db)`` then adds to it (the runner records the restore); then it
    is committed as a save is, and every other collection of the catalog is dropped. A
    missing ``root`` is created. Raises :class:`RestoreError`; ``changed`` is True only when
    the commit itself failed after its commit point.
    """
    store = sch._store()
    path, root = Path(path), Path(root)
    _check(path, manual_command)
    result = None
    warnings: list[str] = []
    try:
        with store.replacing(root) as new:
            keep: tuple[str, ...] = ()
            for name in (sch.CHANGELOG, sch.META):  # meta only for its lock document
                try:
                    if new.load(name) and name == sch.CHANGELOG:
                        keep = (sch.CHANGELOG,)
                except store.StoreError as exc:
                    if name == sch.CHANGELOG:
                        warnings.append(f"the catalog's migration history could not be read ({exc}): "
                                        "it is now the backup's, plus this restore")
            result = restore(new.db, path, keep_collections=keep, manual_command=manual_command,
                             verified=True)
            result.dropped = sorted(set(result.dropped) | {
                n for n in new.collections if n not in new.db.list_collection_names()})
            if before_commit is not None:
                before_commit(new.db)
    except RestoreError as exc:  # raised before the commit: the catalog's files are untouched
        raise RestoreError(exc.reason if "nothing was changed" in exc.reason
                           else f"{exc.reason}; nothing was changed",
                           manual_command=manual_command, changed=False) from exc
    except store.StoreError as exc:
        raise RestoreError(f"cannot restore the catalog at {root}: {exc}", manual_command=manual_command,
                           changed=exc.committed) from exc
    result.warnings += warnings
    return result


def _index_docs(metadata: dict) -> list[dict]:
    return [{k: v for k, v in idx.items() if k not in ("v", "ns")}
            for idx in metadata.get("indexes") or [] if idx.get("name") != "_id_"]


def _options(metadata: dict) -> dict:
    options = dict(metadata.get("options") or {})
    options.pop("uuid", None)
    return options


def _stage_on_server(db, name: str, d: Path, metadata: dict) -> str:
    """Load one collection of the backup, byte for byte, into a scratch collection."""
    from bson.raw_bson import RawBSONDocument

    tmp = f"{name}__spine_docs_restore"
    db.drop_collection(tmp)
    sch.execute(db, {"create": tmp, **_options(metadata)})
    skip = SKIP_DOCS.get(name, set())
    batch = []
    for raw in _dumpfmt().iter_raw(d, name):
        doc = RawBSONDocument(raw)
        if doc.get("_id") in skip:
            continue
        batch.append(doc)
        if len(batch) >= _INSERT_BATCH:
            db[tmp].insert_many(batch, ordered=True, bypass_document_validation=True)
            batch = []
    if batch:
        db[tmp].insert_many(batch, ordered=True, bypass_document_validation=True)
    docs = _index_docs(metadata)
    if docs:
        sch.execute(db, {"createIndexes": tmp, "indexes": docs})
    return tmp


def _replace_collection(db, name: str, docs: list[dict], metadata: dict) -> None:
    """Drop and recreate one collection exactly as in the backup (order, options, indexes)."""
    if name in db.list_collection_names():
        sch.execute(db, {"drop": name})
    sch.execute(db, {"create": name, **_options(metadata)})
    for i in range(0, len(docs), _INSERT_BATCH):
        db[name].insert_many(docs[i:i + _INSERT_BATCH], ordered=True)
    idx = _index_docs(metadata)
    if idx:
        sch.execute(db, {"createIndexes": name, "indexes": idx})
