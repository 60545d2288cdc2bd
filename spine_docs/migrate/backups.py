"""Backups in mongodump's layout: take, verify, rotate, restore.

A backup is a directory ``<root>/<db>_<YYYYMMDD_HHMMSS>/`` holding

* ``<db>/<collection>.bson`` + ``<db>/<collection>.metadata.json`` - mongodump's own layout,
  written by ``mongodump --db=<db>`` when it is on PATH and the database is a server (the
  URI and the password go in a temporary 0600 config file, :class:`ToolConfig`, never on
  the command line or in its environment), else by the built-in writer of
  :mod:`spine_docs.dumpfmt` (the code the embedded catalog persists with). ``mongorestore``
  reads either;
* ``manifest.json`` - :mod:`spine_docs.dumpfmt`'s manifest (per collection the document
  count and the SHA-256 of both files) plus the backup's method, source, schema version and
  ``verified`` flag.

A backup is *verified* before anything relies on it: every ``.bson`` is decoded and counted
and the counts compared with the database's (taken under the migration lock), then the
checksums are written. :func:`verify` re-checks a backup later (counts and checksums).

:func:`restore` first verifies the whole backup and changes nothing if that fails; then it
puts every collection back (documents in their original order, options, indexes; ``meta``
in place, so the lock document never leaves it; validators set after loading, so
``readWrite`` + ``collMod`` suffice); only when
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
import urllib.parse
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


# --------------------------------------------------------------------------- mongodump / mongorestore

_URI = re.compile(r"^(?P<scheme>mongodb(?:\+srv)?://)(?:(?P<user>[^:@/]*)(?::(?P<pw>[^@/]*))?@)?"
                  r"(?P<hosts>[^/?]*)(?:/(?P<db>[^?]*))?(?:\?(?P<query>.*))?$", re.IGNORECASE)
#: the name of the mongorestore config file a failed restore writes into the backup (0600)
RESTORE_CONFIG = "mongorestore.yaml"


@dataclass(frozen=True)
class ToolConfig:
    """What ``mongodump``/``mongorestore`` are given in their ``--config`` file (YAML, 0600):
    ``uri`` - the catalog's URI with the user name but no password and no database (the
    database goes apart: ``--db`` or ``--nsInclude``), ``authSource`` written out so that
    naming the database cannot change where the user authenticates; ``password`` - given
    only in the file. Its repr never shows the password."""
    uri: str
    password: str | None = field(default=None, repr=False)

    def yaml(self) -> str:
        """The config file's text (a JSON string is a YAML double-quoted scalar)."""
        text = "uri: " + json.dumps(self.uri) + "\n"
        if self.password is not None:
            text += "password: " + json.dumps(self.password) + "\n"
        return text

    def secrets(self) -> list[str]:
        """Every form of the password a message could carry."""
        p = self.password
        if not p:
            return []
        return sorted({p, urllib.parse.quote_plus(p), urllib.parse.quote(p, safe="")}, key=len, reverse=True)


def tool_config(db_url: str, *, username: str | None = None, password: str | None = None) -> ToolConfig:
    """The :class:`ToolConfig` for the server at ``db_url``; ``username``/``password`` are
    the credentials given apart from the URL (``SPINE_DOCS_USER``/``SPINE_DOCS_PASSWORD_FILE``).

    The URI's own password moves to the config's ``password``; the path (the database) is
    dropped; when there is a user and no ``authSource``, ``authSource`` is set to what a
    driver reads from this URL (its database, else ``admin``), because the tools
    authenticate against ``--db`` otherwise. (Not for ``mongodb+srv://``, whose DNS TXT
    record may name it.)"""
    m = _URI.match(db_url or "")
    if m is None:
        raise BackupError("mongodump and mongorestore need a mongodb:// server URL")
    user = m.group("user")
    pw = urllib.parse.unquote(m.group("pw")) if m.group("pw") else None
    if password is not None:
        if pw:
            raise BackupError("the password is given twice (in the URL and apart): keep one")
        pw = password
    if not user and username:
        user = urllib.parse.quote(username, safe="")
    query = [q for q in (m.group("query") or "").split("&") if q]
    if user and not m.group("scheme").lower().startswith("mongodb+srv") \
            and not any(q.lower().startswith("authsource=") for q in query):
        query.append("authSource=" + (m.group("db") or "admin"))
    uri = (m.group("scheme") + (user + "@" if user else "") + m.group("hosts") + "/"
           + ("?" + "&".join(query) if query else ""))
    return ToolConfig(uri=uri, password=pw)


def server_tool_config(db, db_url: str | None = None) -> ToolConfig:
    """:func:`tool_config` for the server ``db`` is connected to (``db_url``, else the URI it
    was opened with), with the credentials it was opened with."""
    from ..store import server

    conn = server.connection_of(db)
    url = db_url or (conn[0] if conn else None)
    if not url:
        raise BackupError("mongodump and mongorestore need the server's mongodb:// URL")
    username, password = (conn[1], conn[2]) if conn and conn[2] is not None else (None, None)
    return tool_config(url, username=username, password=password)


def _write_config(path: Path, cfg: ToolConfig) -> None:
    """Write ``cfg`` to a new file ``path`` readable by its owner only (created 0600: the
    password is never in a file others can read, not even for a moment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, cfg.yaml().encode("utf-8"))
    finally:
        os.close(fd)


def _child_env(cfg: ToolConfig) -> dict[str, str]:
    """This process's environment without spine-docs' own settings (``SPINE_DOCS_DB`` may
    hold a password) and without any variable holding the password."""
    secrets = cfg.secrets()
    return {k: v for k, v in os.environ.items()
            if not k.startswith("SPINE_DOCS_") and not any(s in v for s in secrets)}


def _scrub(text: str, cfg: ToolConfig) -> str:
    text = sch.display_url(text)
    for s in cfg.secrets():
        text = text.replace(s, "****")
    return text


def mongodump_argv(exe: str, config: Path, db_name: str, out: Path) -> list[str]:
    """mongodump's arguments: the config file, the one database, the output directory. No
    ``--oplog``: mongodump accepts it only for a dump of the whole server."""
    return [exe, f"--config={config}", f"--db={db_name}", f"--out={out}"]


def _mongodump(cfg: ToolConfig, db_name: str, out: Path) -> None:
    """Run mongodump on database ``db_name`` with ``cfg`` in a private temporary config file."""
    exe = shutil.which("mongodump")
    if exe is None:
        raise BackupError("mongodump not found")
    tmpdir = Path(tempfile.mkdtemp(prefix="spine-docs-mongodump-"))  # 0700
    config = tmpdir / "config.yaml"
    try:
        _write_config(config, cfg)
        proc = subprocess.run(mongodump_argv(exe, config, db_name, out), capture_output=True, text=True,
                              env=_child_env(cfg), stdin=subprocess.DEVNULL, timeout=24 * 3600)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise BackupError(f"mongodump failed (exit {proc.returncode}): {_scrub(tail[0], cfg)}")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------- backup

def backup(db, root: str | Path | None = None, *, db_url: str | None = None,
           keep: int | None = None, use_mongodump: bool | None = None,
           schema_version: int | None = None, live: bool = False) -> BackupResult:
    """Back up ``db`` into a new ``<root>/<db>_<YYYYMMDD_HHMMSS>/`` and verify it.

    ``use_mongodump``: None = when on PATH and the database is a server; True = required;
    False = built-in writer. mongodump dumps the catalog's database only (``--db``), with
    the URI and password in a private config file (:class:`ToolConfig`). ``keep`` then
    rotates ``root`` (see :func:`rotate`).

    What the dump holds: on the embedded catalog and mongomock, the catalog as one committed
    state (the one in memory). On a server, every document as it was at some moment during
    the dump, not one point in time (``--oplog`` needs a dump of the whole server): a
    document written while the dump runs may be in it or not. ``live``: other processes may
    be writing (``spine-docs backup``): each collection's count in the dump must lie between
    its counts before and after the dump; otherwise (a migration, writers stopped) it must
    equal the count after. Raises :class:`BackupError` if the backup cannot be taken or does
    not verify; a failed backup directory is removed.
    """
    root = Path(root) if root is not None else default_root()
    is_server = sch._is_server(db)
    cfg = None
    if use_mongodump is None:
        use_mongodump = bool(is_server and shutil.which("mongodump"))
    if use_mongodump:
        if not is_server:
            raise BackupError("mongodump needs a mongodb:// server URL")
        cfg = server_tool_config(db, db_url)
    when = datetime.now(timezone.utc)
    path = _new_dir(root, db.name, when)
    df = _dumpfmt()
    try:
        before = _counts(db) if live else None
        if use_mongodump:
            _mongodump(cfg, db.name, path)
            manifest = _manifest_for_dir(path, db.name)
            method = "mongodump"
        else:
            manifest = df.dump_database(db, path)
            method = "builtin"
        # verification 1: what was dumped is what the database holds
        problems = _count_problems(manifest, before, _counts(db))
        if problems:
            raise BackupError("backup did not verify (" + ("documents were removed while it was taken; retry"
                                                           if live else "stop writers and retry")
                              + "): " + "; ".join(problems))
        manifest.update({"method": method, "schema_version": schema_version if schema_version is not None
                         else sch.db_version(db), "source": sch.display_url(db_url) if db_url else None,
                         "verified": False, "live": live})
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


def _counts(db) -> dict[str, int]:
    return {name: db[name].count_documents({}) for name in sch.collection_names(db)}


def _count_problems(manifest: dict, before: dict | None, after: dict) -> list[str]:
    """Each collection's count in the dump against the database's: equal to ``after``, or
    (``before`` given: writers ran meanwhile) between ``before`` and ``after``."""
    problems = []
    for name in sorted(set(after) | set(before or {}) | set(manifest["collections"])):
        got = manifest["collections"].get(name, {}).get("count")
        if before is None:
            if name in after and got != after[name]:
                problems.append(f"{name}: {got} documents in the dump, {after[name]} in the database")
            continue
        lo, hi = sorted((before.get(name, 0), after.get(name, 0)))
        if not lo <= (got or 0) <= hi:
            problems.append(f"{name}: {got or 0} documents in the dump, {before.get(name, 0)} in the database "
                            f"before and {after.get(name, 0)} after")
    return problems


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
    one, and never a directory that spine-docs did not write (see :func:`_made_here`), even
    when its name looks like a backup's. Returns what was deleted."""
    if keep < 1:
        raise BackupError("--keep must be at least 1")
    by_db: dict[str, list[BackupInfo]] = {}
    for b in list_backups(root, db_name=db_name):
        by_db.setdefault(b.db_name, []).append(b)
    deleted = []
    for infos in by_db.values():
        newest_good = next((b for b in infos if b.good), None)
        for b in infos[keep:]:
            if b is newest_good or not _made_here(b):
                continue
            shutil.rmtree(b.path)
            deleted.append(b.path)
    return deleted


def _made_here(b: BackupInfo) -> bool:
    """Whether ``b`` is a directory this module wrote: its manifest is a spine-docs dump of
    that database, or (a backup killed before its manifest) it holds nothing but the
    database's directory of dump files. Anything else under the backups directory is kept."""
    df = _dumpfmt()
    try:
        manifest = json.loads((b.path / MANIFEST).read_text(encoding="utf-8"))
        return manifest.get("format") == df.DUMP_FORMAT and manifest.get("database") == b.db_name
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError):
        return False
    entries = list(b.path.iterdir())
    if [e.name for e in entries] not in ([], [b.db_name]) or (entries and not entries[0].is_dir()):
        return False
    return all(f.is_file() and (f.name.endswith((".bson", ".metadata.json")) or f.name.startswith(".tmp-"))
               for e in entries for f in e.iterdir())


# --------------------------------------------------------------------------- restore

def manual_restore_command(path: str | Path, db_url: str | None, db_name: str | None = None, *,
                           elsewhere: bool = False, config: str | Path | None = None,
                           source_db: str | None = None) -> str:
    """The command an admin runs to restore ``path`` by hand.

    For a server: ``mongorestore --config=CONFIG`` (the URI and password in a 0600 file,
    see :func:`write_restore_config`; default ``<path>/mongorestore.yaml``) restoring every
    collection of ``db_name`` but the changelog (which keeps the record of what failed),
    then ``spine-docs migrate unlock --force``: mongorestore puts back ``meta`` as it was in
    the backup, with the lock document of the run that took it. Else ``spine-docs migrate
    restore`` into ``db_url`` - or, with ``elsewhere`` (when that very command is what
    failed), into a new directory that then serves as the catalog. ``source_db``: the
    backup's database when it is not ``db_name`` (``--nsFrom``/``--nsTo`` rename it)."""
    path = Path(path)
    if db_url and _URI.match(db_url):
        name = db_name or "spine_docs"
        src = source_db or name
        cfg = Path(config) if config is not None else path / RESTORE_CONFIG
        q = shlex.quote
        rename = f" --nsFrom={q(src + '.*')} --nsTo={q(name + '.*')}" if src != name else ""
        return (f"mongorestore --config={q(str(cfg))} --nsInclude={q(src + '.*')} "
                f"--nsExclude={q(src + '.' + sch.CHANGELOG)}{rename} --drop --dir={q(str(path))}, "
                f"then spine-docs migrate unlock --force --db {q(sch.display_url(db_url))}")
    if elsewhere:
        return (f"spine-docs migrate restore --from {shlex.quote(str(path))} --db NEWDIR "
                "(a new directory), then use NEWDIR as the catalog")
    target = f" --db {shlex.quote(db_url)}" if db_url else ""
    return f"spine-docs migrate restore --from {shlex.quote(str(path))}{target}"


def write_restore_config(path: str | Path, cfg: ToolConfig) -> Path:
    """Write the config file :func:`manual_restore_command` names into backup ``path``
    (0600; it holds the password: it goes when the backup is rotated out, or delete it
    after the restore)."""
    target = Path(path) / RESTORE_CONFIG
    _write_config(target, cfg)
    return target


def _server_manual(db, path: Path, db_url: str | None) -> str:
    """The manual restore of a server, with its config file written (or, when that cannot
    be written, the command naming a file the admin writes)."""
    try:
        source = _dumpfmt().read_manifest(path)["database"]
    except Exception:  # noqa: BLE001 - a damaged backup: its own name is the best guess
        source = db.name
    try:
        cfg = server_tool_config(db, db_url)
        url = db_url or cfg.uri
        write_restore_config(path, cfg)
    except (BackupError, OSError):
        url = db_url or "URL"
        return (manual_restore_command(path, url, db.name, config="CONFIG", source_db=source)
                + " (CONFIG: a file of mode 600 with the lines `uri: ...` and `password: ...`)")
    return manual_restore_command(path, url, db.name, source_db=source)


def restore(db, path: str | Path, *, db_url: str | None = None,
            keep_collections: Iterable[str] = (sch.CHANGELOG,), drop_new: bool = True,
            manual_command: str | None = None, verified: bool = False) -> RestoreResult:
    """Put the database back as it was in backup ``path`` (the caller holds :func:`writing`).

    Collections named in ``keep_collections`` (the migration changelog) are left as they
    are. ``meta`` is restored in place (its other documents deleted, the backup's inserted)
    and its lock document is never touched, so the lock stays held throughout. Every other
    collection is loaded into a scratch collection without its validator, which is set by
    ``collMod`` once loaded (no ``bypassDocumentValidation``: ``readWrite`` + ``collMod``
    suffice), then renamed over the live one.

    The backup is verified first (unless ``verified``: the caller just did): if that fails
    nothing is touched. Raises :class:`RestoreError` (with ``manual_command``, default
    :func:`manual_restore_command`; on a server its config file is then written into the
    backup) on any failure.
    """
    path = Path(path)
    server = sch._is_server(db)

    def manual() -> str:
        if manual_command is not None:
            return manual_command
        return _server_manual(db, path, db_url) if server else manual_restore_command(path, db_url, db.name)

    check = verify(path)
    if not check.ok:
        raise RestoreError("backup does not verify (" + "; ".join(check.problems) + "); nothing was changed",
                           manual_command=manual(), changed=False)
    df = _dumpfmt()
    manifest = df.read_manifest(path)
    d = path / manifest["database"]
    keep = set(keep_collections)
    names = [n for n in sorted(manifest["collections"]) if n not in keep]
    try:
        metas = {n: df.read_metadata(d, n) for n in names}
    except df.DumpError as exc:
        raise RestoreError(f"cannot read backup metadata: {exc}; nothing was changed",
                           manual_command=manual(), changed=False) from exc
    result = RestoreResult(path=path)
    # Stage 1: load everything somewhere that is not the live data. Failing here changes nothing.
    staged: dict[str, object] = {}
    try:
        for name in names:
            if name == sch.META:  # restored in place: small, and it holds the lock
                staged[name] = _read_docs(d, name)
            elif server:
                staged[name] = _stage_on_server(db, name, d, metas[name])
            else:  # mongomock/embedded: the catalog lives in memory anyway
                staged[name] = _read_docs(d, name)
    except Exception as exc:
        for tmp in staged.values():
            if isinstance(tmp, str):
                db.drop_collection(tmp)
        raise RestoreError(f"cannot load the backup: {type(exc).__name__}: {exc}; nothing was changed",
                           manual_command=manual(), changed=False) from exc
    # Stage 2: swap in. Failing here stops at once: nothing more is dropped.
    current = None
    try:
        for name in names:
            current = name
            if name == sch.META:
                _restore_meta(db, staged[name], metas[name])
            elif isinstance(staged[name], str):
                db[staged[name]].rename(name, dropTarget=True)
            else:
                _replace_collection(db, name, staged[name], metas[name])
            result.restored.append(name)
        current = None
        if drop_new:
            for name in sch.collection_names(db):
                if name not in manifest["collections"] and name not in keep and name != sch.META:
                    current = name
                    sch.execute(db, {"drop": name})
                    result.dropped.append(name)
    except Exception as exc:
        raise RestoreError(f"restore failed at collection {current!r}: {type(exc).__name__}: {exc}",
                           manual_command=manual(), changed=True) from exc
    result.documents = sum(manifest["collections"][n]["count"] for n in names)
    return result


def _read_docs(d: Path, name: str) -> list[dict]:
    skip = SKIP_DOCS.get(name, set())
    return [doc for doc in map(bson.decode, _dumpfmt().iter_raw(d, name)) if doc.get("_id") not in skip]


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


_VALIDATION = ("validator", "validationLevel", "validationAction")


def _options(metadata: dict) -> dict:
    """The collection's ``create`` options, without its validation (see :func:`_validation`)."""
    options = dict(metadata.get("options") or {})
    options.pop("uuid", None)
    for k in _VALIDATION:
        options.pop(k, None)
    return options


def _validation(metadata: dict) -> dict:
    """The ``collMod`` fields that set the backup's validation once the documents are in
    (empty: none). Loading first and validating after needs no ``bypassDocumentValidation``."""
    options = metadata.get("options") or {}
    return {k: options[k] for k in _VALIDATION if k in options}


def _stage_on_server(db, name: str, d: Path, metadata: dict) -> str:
    """Load one collection of the backup, byte for byte, into a scratch collection created
    without a validator; its indexes and validation (``collMod``) follow the documents."""
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
            db[tmp].insert_many(batch, ordered=True)
            batch = []
    if batch:
        db[tmp].insert_many(batch, ordered=True)
    docs = _index_docs(metadata)
    if docs:
        sch.execute(db, {"createIndexes": tmp, "indexes": docs})
    if _validation(metadata):
        sch.execute(db, {"collMod": tmp, **_validation(metadata)})
    return tmp


def _replace_collection(db, name: str, docs: list[dict], metadata: dict) -> None:
    """Drop and recreate one collection exactly as in the backup (order, options, indexes)."""
    if name in db.list_collection_names():
        sch.execute(db, {"drop": name})
    sch.execute(db, {"create": name, **_options(metadata), **_validation(metadata)})
    for i in range(0, len(docs), _INSERT_BATCH):
        db[name].insert_many(docs[i:i + _INSERT_BATCH], ordered=True)
    idx = _index_docs(metadata)
    if idx:
        sch.execute(db, {"createIndexes": name, "indexes": idx})


def _restore_meta(db, docs: list[dict], metadata: dict) -> None:
    """``meta`` as in the backup, in place: the lock document is never deleted, renamed or
    rewritten, so the migration lock stays held (and visible to every other process)
    throughout. Validation first (the backup's, or none), then the documents, then the
    backup's indexes (those it lacks are dropped)."""
    if sch.META not in db.list_collection_names():
        sch.execute(db, {"create": sch.META, **_options(metadata), **_validation(metadata)})
    else:
        current = store_options(db, sch.META)
        want = _validation(metadata)
        if {k: current.get(k) for k in _VALIDATION if k in current} != want:
            sch.execute(db, {"collMod": sch.META, **(want or {"validator": {}})})
    meta = db[sch.META]
    meta.delete_many({"_id": {"$ne": sch.LOCK_DOC_ID}})
    docs = [doc for doc in docs if doc.get("_id") != sch.LOCK_DOC_ID]
    if docs:
        meta.insert_many(docs, ordered=True)
    wanted = {ix["name"]: ix for ix in _index_docs(metadata)}
    have = {ix["name"] for ix in meta.list_indexes()}
    for name in sorted(have - set(wanted) - {"_id_"}):
        sch.execute(db, {"dropIndexes": sch.META, "index": name})
    missing = [ix for n, ix in wanted.items() if n not in have]
    if missing:
        sch.execute(db, {"createIndexes": sch.META, "indexes": missing})


def store_options(db, name: str) -> dict:
    """The options of collection ``name`` (validator etc.; empty when it has none)."""
    return sch._store().collection_options(db, name)
