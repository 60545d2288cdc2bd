"""The migration runner: status, check, plan, up, down, stamp, history, acknowledge, unlock.

Every function takes a pymongo ``Database`` (server, mongomock or embedded catalog) and
returns a plain result object; nothing prints. Precondition failures raise
:class:`MigrationError` (one line); a step that fails at run time is *not* an exception: the
result says what failed, that it was recorded, and how the database was restored.

How ``up`` works (``down`` mirrors it):

1. load ``schema.json`` and ``migrations/`` (their highest version must agree);
2. take the migration lock (atomic, bounded wait, stale locks taken over with a warning);
3. re-read the database version under the lock (another process may have just migrated);
4. refuse if an applied migration's file changed since (checksum) until acknowledged;
5. back up and verify (skipped for an empty database, or with ``backup=False``);
6. run each pending step: changelog ``running`` -> ``up(db)`` -> stamp version ->
   changelog ``applied``; at the head, reconcile indexes/validators with ``schema.json``
   (an interrupt - Ctrl-C - is recorded as ``interrupted`` and re-raised without a
   restore: steps are idempotent, so ``up`` again resumes);
7. on a failure: changelog ``failed`` with the error, restore the backup (collections
   created since are dropped, the changelog is kept), earlier steps of this run are marked
   ``rolled_back``; a restore that fails stops and returns the manual restore command;
8. release the lock.

Two things stop a run at once, with one line (``RunResult.stopped``) and nothing more
changed, recorded or restored: the lock was lost (its heartbeat failed or another process
took it over; checked at every step boundary, before the version is stamped), or the
database is unreachable (an election that outlived the retries, a server that is gone).
Every bookkeeping write (changelog, version, lock) has majority write concern on a server
and is retried through a failover (:mod:`.durable`).
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from .. import schema as sch
from . import backups as bk
from . import durable
from . import lock as lk
from . import reconcile as rc
from .scripts import Migration, discover, head


class MigrationError(Exception):
    """A precondition failed; nothing was changed. ``str()`` is one line."""


class ChecksumMismatch(MigrationError):
    def __init__(self, changed: list["ChangedMigration"]):
        self.changed = changed
        names = ", ".join(c.name for c in changed)
        vs = " ".join(str(c.version) for c in changed)
        super().__init__(f"applied migration file(s) changed since they ran: {names}; review the change, "
                         f"then run `spine-docs migrate ack {vs}` to accept it")


# --------------------------------------------------------------------------- results

@dataclass
class ChangedMigration:
    version: int
    name: str
    recorded: str
    current: str


@dataclass
class MigrationInfo:
    version: int
    name: str
    description: str
    checksum: str
    reversible: bool


@dataclass
class StatusResult:
    db_version: int
    code_version: int
    head: int
    empty: bool
    pending: list[MigrationInfo]
    lock: dict | None
    drift: list[rc.Drift]
    changed: list[ChangedMigration]
    last_failure: dict | None
    unknown_versions: list[int] = field(default_factory=list)

    @property
    def lock_text(self) -> str:
        return lk.describe_holder(self.lock)

    @property
    def blocking_drift(self) -> list[rc.Drift]:
        return [d for d in self.drift if d.blocking]

    @property
    def drift_summary(self) -> dict[str, int]:
        return rc.summary(self.drift)

    @property
    def current(self) -> bool:
        return self.db_version == self.code_version and not self.blocking_drift and not self.changed


@dataclass
class CheckResult:
    ok: bool
    db_version: int
    code_version: int
    problems: list[str]
    warnings: list[str]

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


@dataclass
class PlanStep:
    version: int
    name: str
    description: str
    checksum: str
    direction: str
    commands: list[dict] | None      # None: the file declares no plan()


@dataclass
class Plan:
    direction: str
    from_version: int
    to_version: int
    steps: list[PlanStep]
    reconcile: list[dict]
    backup: str
    stamp: int | None
    notes: list[str] = field(default_factory=list)
    blocked: str | None = None       # why `up` would refuse (e.g. changed checksums)

    @property
    def empty(self) -> bool:
        return not self.steps and not self.reconcile

    def commands(self) -> list[dict]:
        """Every command in order: steps (with a marker per step), reconcile, stamp."""
        out: list[dict] = []
        for s in self.steps:
            out.append({"migration": f"{s.name}", "direction": s.direction, "description": s.description})
            out += s.commands or [{"note": "this migration declares no plan(); its code runs as written"}]
        out += self.reconcile
        if self.stamp is not None:
            out.append({"update": sch.META, "updates": [{"q": {"_id": sch.SCHEMA_DOC_ID},
                                                          "u": {"$set": {"version": self.stamp}}, "upsert": True}]})
        return out


@dataclass
class StepResult:
    version: int
    name: str
    direction: str
    state: str               # applied | failed
    duration_s: float
    error: str | None = None


@dataclass
class RunResult:
    direction: str
    from_version: int
    to_version: int
    final_version: int
    steps: list[StepResult] = field(default_factory=list)
    reconciled: list[dict] = field(default_factory=list)
    backup: bk.BackupResult | None = None
    backup_note: str = ""
    restored: bk.RestoreResult | None = None
    restore_error: str | None = None
    manual_restore: str | None = None
    warnings: list[str] = field(default_factory=list)
    stopped: str | None = None       # why the run stopped part-way (lock lost, database gone)

    @property
    def failed(self) -> StepResult | None:
        return next((s for s in self.steps if s.state == "failed"), None)

    @property
    def ok(self) -> bool:
        return self.failed is None and self.restore_error is None and self.stopped is None

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def nothing_to_do(self) -> bool:
        return not self.steps and not self.reconciled

    @property
    def message(self) -> str:
        """One line summing up what happened."""
        if self.stopped:
            return self.stopped
        if self.ok:
            if self.nothing_to_do:
                return f"database is at version {self.final_version}: nothing to do"
            applied = ", ".join(f"{s.name}" for s in self.steps) or "no migration"
            extra = f"; {len(self.reconciled)} schema command(s)" if self.reconciled else ""
            return f"{self.direction} {self.from_version} -> {self.final_version}: applied {applied}{extra}"
        f = self.failed
        what = f"{f.name} failed: {f.error}" if f else "reconcile failed"
        if self.restore_error:
            return (f"{what}; RESTORE FAILED ({self.restore_error}); nothing more was dropped; "
                    f"restore by hand: {self.manual_restore}")
        if self.restored is not None:
            return (f"{what}; the database was restored from {self.restored.path} "
                    f"(version {self.final_version}); the failure is recorded in the history")
        return f"{what}; no backup was taken: the database may be partly changed (version {self.final_version})"


@dataclass
class HistoryEntry:
    version: int
    name: str
    direction: str
    state: str
    checksum: str | None
    started: datetime | None
    finished: datetime | None
    duration_s: float | None
    user: str | None
    host: str | None
    pid: int | None
    error: str | None


# --------------------------------------------------------------------------- loading

def load(schema_file: str | Path | None = None, migrations_dir: str | Path | None = None) -> tuple[dict, list[Migration]]:
    """schema.json and the migrations, checked to agree (highest migration == schema_version)."""
    schema = sch.load_schema(schema_file)
    migs = discover(migrations_dir)
    if head(migs) != schema["schema_version"]:
        raise MigrationError(f"schema.json declares schema_version {schema['schema_version']} but the "
                             f"highest migration is {head(migs):04d}: they must be equal")
    return schema, migs


def _applied_checksums(db) -> dict[int, str]:
    """version -> checksum recorded when it was applied (or acknowledged/stamped)."""
    out: dict[int, str] = {}
    for e in durable.durable(db)[sch.CHANGELOG].find({"state": "applied"}).sort([("started", 1), ("_id", 1)]):
        d = e.get("direction")
        if d == "up" and e.get("checksum"):
            out[int(e["version"])] = e["checksum"]
        elif d == "down":
            out.pop(int(e["version"]), None)
        elif d in ("ack", "stamp"):
            for v, c in (e.get("checksums") or {}).items():
                out[int(v)] = c
    return out


def changed_migrations(db, migs: list[Migration], version: int | None = None) -> list[ChangedMigration]:
    """Applied migrations (<= database version) whose file checksum differs from the record."""
    version = _version(db) if version is None else version
    rec = _applied_checksums(db)
    out = []
    for m in migs:
        if m.version <= version and m.version in rec and rec[m.version] != m.checksum:
            out.append(ChangedMigration(m.version, m.name, rec[m.version], m.checksum))
    return out


def _info(m: Migration) -> MigrationInfo:
    return MigrationInfo(m.version, m.name, m.description, m.checksum, m.reversible)


def _is_empty(db) -> bool:
    for n in sch.collection_names(db):
        q = {"_id": {"$ne": sch.LOCK_DOC_ID}} if n == sch.META else {}
        if db[n].find_one(q, {"_id": 1}) is not None:
            return False
    return True


# --------------------------------------------------------------------------- read-only

def status(db, *, schema_file=None, migrations_dir=None) -> StatusResult:
    """Database version, code version, pending migrations, lock holder, drift, changed files."""
    sch.refresh(db)
    schema, migs = load(schema_file, migrations_dir)
    v = _version(db)
    empty = v == 0 and _is_empty(db)
    drift = [] if empty else rc.diff(schema, rc.snapshot(db))
    last_fail = durable.durable(db)[sch.CHANGELOG].find_one({"state": "failed"}, sort=[("started", -1), ("_id", -1)])
    return StatusResult(
        db_version=v, code_version=schema["schema_version"], head=head(migs), empty=empty,
        pending=[_info(m) for m in migs if m.version > v],
        lock=lk.holder(db), drift=drift, changed=changed_migrations(db, migs, v),
        last_failure=_entry(last_fail).__dict__ if last_fail else None,
        unknown_versions=list(range(head(migs) + 1, v + 1)),
    )


def check(db, *, schema_file=None, migrations_dir=None) -> CheckResult:
    """OK (exit 0) when the database is at the code version, matches schema.json (indexes and
    validators by spec) and no applied migration file changed; 1 otherwise."""
    st = status(db, schema_file=schema_file, migrations_dir=migrations_dir)
    problems, warnings = [], []
    if st.db_version != st.code_version:
        problems.append(sch.mismatch_message(st.db_version, st.code_version, empty=st.empty))
    problems += [f"drift: {d}" for d in st.blocking_drift]
    problems += [f"migration {c.name} changed since it was applied" for c in st.changed]
    warnings += [f"{d}" for d in st.drift if not d.blocking]
    if st.lock:
        warnings.append(f"migration lock held by {st.lock_text}")
    return CheckResult(ok=not problems, db_version=st.db_version, code_version=st.code_version,
                       problems=problems, warnings=warnings)


def plan(db, *, to: int | None = None, direction: str = "up", backup: bool = True,
         db_url: str | None = None, backup_root=None, schema_file=None, migrations_dir=None) -> Plan:
    """What ``up`` (or ``down``) would do, computed without writing anything at all (no lock,
    no changelog, no backup, no save of the embedded catalog)."""
    sch.refresh(db)
    schema, migs = load(schema_file, migrations_dir)
    cur = sch.db_version(db)
    target = _target(direction, to, cur, head(migs))
    empty = cur == 0 and _is_empty(db)
    if direction == "up":
        chosen = [m for m in migs if cur < m.version <= target]
    else:
        chosen = [m for m in reversed(migs) if target < m.version <= cur]
    steps = []
    structural: list[dict] = []
    notes: list[str] = []
    for m in chosen:
        cmds = m.plan(db, direction)
        if direction == "down" and not m.reversible:
            notes.append(f"{m.name} cannot be undone (no down()): `down` would refuse")
        steps.append(PlanStep(m.version, m.name, m.description, m.checksum, direction, cmds))
        structural += cmds or []
    reconcile: list[dict] = []
    if direction == "up" and target == head(migs):
        after = rc.simulate(rc.snapshot(db), structural)
        reconcile = rc.commands([d for d in rc.diff(schema, after) if d.blocking])
        if any(s.commands is None for s in steps):
            notes.append("a migration without plan() may change what reconcile has left to do")
    changed = changed_migrations(db, migs, cur)
    blocked = str(ChecksumMismatch(changed)) if changed and direction == "up" else None
    if direction == "down" and to is None:
        blocked = "down needs --to N"
    if not steps and not reconcile:
        bnote = "none (nothing to do)"
    elif not backup:
        bnote = "skipped (--no-backup)"
    elif empty:
        bnote = "skipped (empty database: a failure drops what was created)"
    else:
        root = Path(backup_root) if backup_root is not None else bk.default_root()
        how = (f"mongodump --db={db.name} --config=<temporary 0600 file holding the URI and password>"
               if sch._is_server(db) and bk.shutil.which("mongodump") else "built-in dump (mongodump layout)")
        bnote = f"{how} into {root}/{db.name}_<YYYYMMDD_HHMMSS>/, verified before the first change"
    return Plan(direction=direction, from_version=cur, to_version=target, steps=steps,
                reconcile=reconcile, backup=bnote, stamp=target if (steps and target != cur) else None,
                notes=notes, blocked=blocked)


def history(db, *, limit: int | None = None) -> list[HistoryEntry]:
    """Every recorded step, oldest first (``limit``: the newest N)."""
    sch.refresh(db)
    cur = durable.durable(db)[sch.CHANGELOG].find({}).sort([("started", -1), ("_id", -1)])
    if limit:
        cur = cur.limit(limit)
    return list(reversed([_entry(e) for e in cur]))


def _entry(e: dict) -> HistoryEntry:
    return HistoryEntry(
        version=int(e.get("version") or 0), name=e.get("name") or "", direction=e.get("direction") or "",
        state=e.get("state") or "", checksum=e.get("checksum"), started=e.get("started"),
        finished=e.get("finished"), duration_s=e.get("duration_s"), user=e.get("user"),
        host=e.get("host"), pid=e.get("pid"), error=e.get("error"))


def _target(direction: str, to: int | None, cur: int, top: int) -> int:
    if direction == "up":
        target = top if to is None else int(to)
        if target > top:
            raise MigrationError(f"no migration {target:04d}: the highest is {top:04d}")
        if target < cur:
            raise MigrationError(f"database is at version {cur}; to go back to {target} use `migrate down --to {target}`")
        if cur > top:
            raise MigrationError(sch.mismatch_message(cur, top))
        return target
    if direction == "down":
        if to is None:
            return cur
        target = int(to)
        if target < 0 or target > cur:
            raise MigrationError(f"down --to {target}: the database is at version {cur}; choose 0..{cur}")
        if cur > top:
            raise MigrationError(f"database version {cur} is newer than these migrations ({top}): "
                                 f"run down with the spine-docs that applied them")
        return target
    raise MigrationError(f"unknown direction {direction!r}")


# --------------------------------------------------------------------------- writing commands
#
# The bookkeeping (changelog entries, the version stamp) goes through durable.durable(db):
# majority write concern on a server, and durable.retry: a failover does not lose a record.

def _version(db) -> int:
    """The database's version, read with majority read concern on a server."""
    return sch.db_version(durable.durable(db))


def _stamp(db, version: int) -> None:
    durable.retry(lambda: sch.stamp_version(durable.durable(db), version), db=db)


def _record(db, **fields) -> ObjectId:
    """Insert a changelog entry. Retried through a failover: a retry that finds the entry
    there (its earlier attempt landed, the reply was lost) counts as done."""
    doc = {"_id": ObjectId(), "version": None, "name": None, "direction": None, "state": None,
           "checksum": None, "started": sch.now(), "finished": None, "duration_s": None,
           "user": sch.username(), "host": socket.gethostname(), "pid": os.getpid(), "error": None}
    doc.update(fields)
    coll = durable.durable(db)[sch.CHANGELOG]

    def insert() -> None:
        try:
            coll.insert_one(doc)
        except DuplicateKeyError:
            if coll.find_one({"_id": doc["_id"]}, {"_id": 1}) is None:
                raise

    durable.retry(insert, db=db)
    return doc["_id"]


def _finish(db, entry_id, state: str, t0: float, error: str | None = None) -> float:
    dur = round(time.monotonic() - t0, 3)
    durable.retry(lambda: durable.durable(db)[sch.CHANGELOG].update_one({"_id": entry_id}, {"$set": {
        "state": state, "finished": sch.now(), "duration_s": dur, "error": error}}), db=db)
    return dur


def _finish_quietly(db, entry_id, state: str, t0: float, error: str) -> None:
    """:func:`_finish` on a way out (interrupted, lock lost): the database may be what failed."""
    try:
        with sch.writing(db):
            _finish(db, entry_id, state, t0, error)
    except Exception:  # noqa: BLE001 - the caller is already leaving with the real reason
        pass


def _error_text(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"[:2000]


def _stops(exc: BaseException) -> bool:
    """Whether ``exc`` must stop the run at once, without recording or restoring anything
    more: the lock is lost, or the database is unreachable (a retryable error that outlived
    its retries)."""
    return isinstance(exc, lk.LockLost) or durable.is_retryable(exc)


def up(db, *, to: int | None = None, backup: bool = True, db_url: str | None = None,
       backup_root=None, keep: int | None = None, schema_file=None, migrations_dir=None,
       lock_wait_s: float = lk.DEFAULT_WAIT_S, lease_s: float = lk.DEFAULT_LEASE_S,
       use_mongodump: bool | None = None) -> RunResult:
    """Apply pending migrations up to ``to`` (default: the code's version), then reconcile
    indexes/validators with schema.json. A fresh, empty database is initialised this way."""
    return _run(db, "up", to=to, backup=backup, db_url=db_url, backup_root=backup_root, keep=keep,
                schema_file=schema_file, migrations_dir=migrations_dir, lock_wait_s=lock_wait_s,
                lease_s=lease_s, use_mongodump=use_mongodump)


def down(db, *, to: int, backup: bool = True, db_url: str | None = None, backup_root=None,
         keep: int | None = None, schema_file=None, migrations_dir=None,
         lock_wait_s: float = lk.DEFAULT_WAIT_S, lease_s: float = lk.DEFAULT_LEASE_S,
         use_mongodump: bool | None = None) -> RunResult:
    """Undo applied migrations down to version ``to`` (each must have ``down()``)."""
    return _run(db, "down", to=to, backup=backup, db_url=db_url, backup_root=backup_root, keep=keep,
                schema_file=schema_file, migrations_dir=migrations_dir, lock_wait_s=lock_wait_s,
                lease_s=lease_s, use_mongodump=use_mongodump)


@dataclass
class _RunState:
    """What the lock's release and a stop need to know about a run in progress."""
    result: RunResult | None = None
    where: str = "the start (nothing was changed yet)"
    rolled_back: bool = False
    released: bool = False


def _run(db, direction: str, *, to, backup, db_url, backup_root, keep, schema_file, migrations_dir,
         lock_wait_s, lease_s, use_mongodump) -> RunResult:
    schema, migs = load(schema_file, migrations_dir)
    if direction == "down" and to is None:
        raise MigrationError("down needs --to N")
    sch.refresh(db)
    meta_existed = sch.META in db.list_collection_names()
    lock = lk.acquire(db, command=f"migrate {direction}", lease_s=lease_s, wait_s=lock_wait_s)
    run = _RunState()
    try:
        return _run_locked(db, direction, lock, run, schema=schema, migs=migs, to=to, backup=backup,
                           db_url=db_url, backup_root=backup_root, keep=keep, use_mongodump=use_mongodump)
    except Exception as exc:
        if not _stops(exc):
            raise
        return _stop(db, lock, run, exc)
    finally:
        # a rolled-back run on a database that had no `meta` leaves none behind
        _release(lock, run, drop_if_alone=run.rolled_back and not meta_existed)


def _run_locked(db, direction: str, lock: lk.Lock, run: _RunState, *, schema, migs, to, backup, db_url,
                backup_root, keep, use_mongodump) -> RunResult:
    """``_run`` once the lock is held: choose the steps, back up, run them, reconcile, and
    roll back on a failure."""
    top = head(migs)
    cur = _version(db)       # read under the lock: another process may just have migrated
    target = _target(direction, to, cur, top)
    if direction == "up":
        changed = changed_migrations(db, migs, cur)
        if changed:
            raise ChecksumMismatch(changed)
        chosen = [m for m in migs if cur < m.version <= target]
        reconcile_at_end = target == top
    else:
        chosen = [m for m in reversed(migs) if target < m.version <= cur]
        irreversible = [m.name for m in chosen if not m.reversible]
        if irreversible:
            raise MigrationError(f"cannot go down to {target}: {', '.join(irreversible)} cannot be undone")
        reconcile_at_end = False
    result = run.result = RunResult(direction=direction, from_version=cur, to_version=target,
                                    final_version=cur, warnings=list(lock.warnings))
    pending_schema = []
    if reconcile_at_end and not chosen:
        pending_schema = rc.commands([d for d in rc.diff(schema, rc.snapshot(db)) if d.blocking])
    if not chosen and not pending_schema:
        return result
    empty = cur == 0 and _is_empty(db)
    before = set(sch.collection_names(db))
    if not backup:
        result.backup_note = "skipped (--no-backup)"
    elif empty:
        result.backup_note = "skipped (empty database)"
    else:
        run.where = "the backup (nothing was changed yet)"
        try:
            result.backup = bk.backup(db, backup_root, db_url=db_url, use_mongodump=use_mongodump,
                                      schema_version=cur)
        except bk.BackupError as exc:
            raise MigrationError(f"backup failed, nothing was changed: {exc}") from exc
        result.backup_note = f"{result.backup.method} backup at {result.backup.path}"
    this_run: list[ObjectId] = []
    ok = all(_run_step(db, lock, run, m, direction, this_run) for m in chosen)
    if ok and reconcile_at_end:
        ok = _reconcile(db, lock, run, schema, top)
    if not ok:
        run.where = "the restore after the failure"
        _roll_back(db, result, before=before, empty=empty, db_url=db_url, this_run=this_run)
        run.rolled_back = result.restored is not None
    elif keep is not None and result.backup is not None:
        result.backup.rotated = bk.rotate(result.backup.path.parent, keep, db_name=db.name)
    return result


def _run_step(db, lock: lk.Lock, run: _RunState, m: Migration, direction: str, this_run: list) -> bool:
    """One step: changelog ``running`` -> the step (under the lock's heartbeat) -> check the
    lock is still ours -> stamp the version -> changelog ``applied``. False when the step
    failed (recorded; the caller rolls back). :class:`LockLost` and a lost database
    propagate (the caller stops)."""
    result = run.result
    lock.check()
    run.where = m.name
    new_version = m.version if direction == "up" else m.version - 1
    t0 = time.monotonic()
    with sch.writing(db):
        entry = _record(db, version=m.version, name=m.name, direction=direction,
                        state="running", checksum=m.checksum)
    try:
        with lock.keep_alive(), sch.writing(db):
            (m.up if direction == "up" else m.down)(db)
            lock.check()              # the heartbeat failed during the step
            lock.renew(nested=True)   # and nobody has taken the lock over
            _stamp(db, new_version)
            dur = _finish(db, entry, "applied", t0)
    except lk.LockLost as exc:
        _finish_quietly(db, entry, "interrupted", t0, f"{exc}: its changes were not recorded as applied")
        raise
    except Exception as exc:  # the step failed: record, then the caller restores
        err = _error_text(exc)
        result.steps.append(StepResult(m.version, m.name, direction, "failed",
                                       _record_failure(db, result, lambda: _finish(db, entry, "failed", t0, err), t0),
                                       err))
        return False
    except BaseException as exc:  # Ctrl-C, SystemExit: stop now; steps are idempotent,
        _finish_quietly(db, entry, "interrupted", t0,   # so `migrate up` again resumes here
                        f"interrupted ({type(exc).__name__}): run `spine-docs migrate up` again to resume")
        raise
    this_run.append(entry)
    result.steps.append(StepResult(m.version, m.name, direction, "applied", dur))
    result.final_version = new_version
    return True


def _record_failure(db, result: RunResult, record, t0: float) -> float:
    """Record a failure (retried); when that fails too, the run goes on to restore unless
    the database is gone (then it stops). Returns the step's duration."""
    try:
        with sch.writing(db):
            return record()
    except Exception as exc:
        if _stops(exc):
            raise
        result.warnings.append(f"the failure could not be recorded in the changelog: {durable.one_line(exc)}")
        return round(time.monotonic() - t0, 3)


def _reconcile(db, lock: lk.Lock, run: _RunState, schema: dict, top: int) -> bool:
    """At the head: bring indexes and validators in line with schema.json, under the
    lock's heartbeat. False when it failed (recorded)."""
    result = run.result
    lock.check()
    run.where = "reconcile with schema.json"
    name = "reconcile with schema.json"
    t0 = time.monotonic()
    try:
        with lock.keep_alive(), sch.writing(db):
            cmds = rc.commands([d for d in rc.diff(schema, rc.snapshot(db)) if d.blocking])
            for c in cmds:
                sch.execute(db, c)
            result.reconciled = cmds
            lock.check()
            if cmds:
                lock.renew(nested=True)
                _finish(db, _record(db, version=top, name=name, direction="reconcile", state="running",
                                    commands=[next(iter(c)) + " " + str(c[next(iter(c))]) for c in cmds]),
                        "applied", t0)
    except lk.LockLost:
        raise
    except Exception as exc:
        err = _error_text(exc)
        _record_failure(db, result, lambda: _record(db, version=top, name=name, direction="reconcile",
                                                    state="failed", error=err, finished=sch.now()), t0)
        result.steps.append(StepResult(top, name, "reconcile", "failed", round(time.monotonic() - t0, 3), err))
        return False
    return True


def _stop(db, lock: lk.Lock, run: _RunState, exc: BaseException) -> RunResult:
    """The run stops at once (lock lost, database gone): one line saying what happened and
    what to do; nothing more is changed, recorded or restored."""
    if isinstance(exc, lk.LockLost):
        why = (f"{exc}; nothing more was changed and nothing was restored (another process may hold "
               f"the lock now): see `spine-docs migrate status` before running `migrate {lock.command.split()[-1]}` again")
    else:
        why = (f"lost the database ({durable.one_line(exc)}); nothing more could be recorded or restored: "
               f"once it answers, see `spine-docs migrate status`")
        _release(lock, run, quiet=True)
        if not lock.released:
            why += (f"; the migration lock stays until its lease ends ({lock.lease_s / 60:g} min after its "
                    f"last renewal) or `spine-docs migrate unlock --force` once no migration runs")
    text = f"stopped during {run.where}: {why}"
    if run.result is None:
        raise MigrationError(text) from None
    run.result.stopped = text
    return run.result


def _release(lock: lk.Lock, run: _RunState, *, drop_if_alone: bool = False, quiet: bool = False) -> None:
    """Release the lock once (retried through a failover); a failure is a warning (none when
    ``quiet``: the caller says it), never an error that hides the run's own result."""
    if run.released:
        return
    run.released = True
    try:
        lock.release(drop_if_alone=drop_if_alone)
    except Exception as exc:  # noqa: BLE001 - reported; the lease ends it
        if run.result is not None and not quiet:
            run.result.warnings.append(
                f"the migration lock could not be released ({durable.one_line(exc)}): it ends with its lease "
                f"or `spine-docs migrate unlock --force`")


def _roll_back(db, result: RunResult, *, before: set, empty: bool, db_url, this_run: list) -> None:
    """After a failed step: put the database back as it was before this run."""
    if result.backup is None and not empty:
        return  # --no-backup: nothing to restore from; the message says so
    try:
        with sch.writing(db):
            if result.backup is not None:
                result.restored = bk.restore(db, result.backup.path, db_url=db_url)
            else:  # the database was empty: drop what this run created, empty the rest
                restored = bk.RestoreResult(path=Path("(empty database)"))
                for n in sch.collection_names(db):
                    if n == sch.CHANGELOG:
                        continue
                    if n not in before:
                        sch.execute(db, {"drop": n})
                        restored.dropped.append(n)
                    else:
                        db[n].delete_many({"_id": {"$ne": sch.LOCK_DOC_ID}} if n == sch.META else {})
                result.restored = restored
            durable.retry(lambda: durable.durable(db)[sch.CHANGELOG].update_many(
                {"_id": {"$in": this_run}}, {"$set": {"state": "rolled_back"}}), db=db)
            for s in result.steps:
                if s.state == "applied":
                    s.state = "rolled_back"
        result.final_version = _version(db)
    except bk.RestoreError as exc:
        result.restore_error = str(exc).split("; restore by hand with:")[0]
        result.manual_restore = exc.manual_command
        result.final_version = _version(db)


def stamp(db, version: int, *, schema_file=None, migrations_dir=None,
          lock_wait_s: float = lk.DEFAULT_WAIT_S) -> RunResult:
    """Record that the database is at ``version`` without running anything (adopt an existing
    database). The checksums of migrations 1..version are recorded as applied."""
    schema, migs = load(schema_file, migrations_dir)
    version = int(version)
    if not 0 <= version <= head(migs):
        raise MigrationError(f"stamp {version}: choose 0..{head(migs)}")
    lock = lk.acquire(db, command="migrate stamp", wait_s=lock_wait_s)
    try:
        cur = _version(db)
        t0 = time.monotonic()
        with sch.writing(db):
            _stamp(db, version)
            entry = _record(db, version=version, name=f"stamp {version}", direction="stamp", state="running",
                            checksums={str(m.version): m.checksum for m in migs if m.version <= version})
            dur = _finish(db, entry, "applied", t0)
        return RunResult(direction="stamp", from_version=cur, to_version=version, final_version=version,
                         steps=[StepResult(version, f"stamp {version}", "stamp", "applied", dur)],
                         warnings=list(lock.warnings))
    finally:
        lock.release()


@dataclass
class AckResult:
    """What ``acknowledge`` accepted (iterates like the list of changed migrations)."""
    changed: list[ChangedMigration]
    warnings: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter(self.changed)

    def __len__(self) -> int:
        return len(self.changed)


def acknowledge(db, versions: list[int] | None = None, *, schema_file=None, migrations_dir=None,
                lock_wait_s: float = lk.DEFAULT_WAIT_S) -> AckResult:
    """Accept the current file of changed applied migrations (all when ``versions`` is None):
    records their new checksums so ``up`` proceeds. Returns what was acknowledged."""
    _, migs = load(schema_file, migrations_dir)
    lock = lk.acquire(db, command="migrate ack", wait_s=lock_wait_s)
    try:
        changed = changed_migrations(db, migs)
        if versions is not None:
            unknown = set(versions) - {c.version for c in changed}
            if unknown:
                raise MigrationError(f"migration(s) {sorted(unknown)} did not change since they were applied")
            changed = [c for c in changed if c.version in set(versions)]
        if changed:
            t0 = time.monotonic()
            with sch.writing(db):
                entry = _record(db, version=max(c.version for c in changed),
                                name="acknowledge " + ", ".join(c.name for c in changed),
                                direction="ack", state="running",
                                checksums={str(c.version): c.current for c in changed})
                _finish(db, entry, "applied", t0)
        return AckResult(changed, list(lock.warnings))
    finally:
        lock.release()


def unlock(db, *, force: bool = False) -> dict | None:
    """Remove the migration lock (``force`` required); returns the removed holder or None."""
    if not force:
        raise MigrationError("unlock removes another process's lock: pass --force if that process is gone")
    return lk.force_unlock(db)


def backup(db, *, out=None, db_url: str | None = None, keep: int | None = None,
           use_mongodump: bool | None = None, live: bool = False,
           lock_wait_s: float = lk.DEFAULT_WAIT_S) -> bk.BackupResult:
    """``migrate backup`` and ``spine-docs backup``: a verified backup under ``out`` (default
    .spine_docs/backups), taken under the migration lock (renewed while it runs) so that no
    migration runs meanwhile. ``live`` (``spine-docs backup``): inject jobs may be writing;
    see :func:`bk.backup` for what the dump then holds. Raises :class:`bk.BackupError` (the
    backup removed) when the lock was lost during it."""
    lock = lk.acquire(db, command="backup" if live else "migrate backup", wait_s=lock_wait_s)
    try:
        with lock.keep_alive():
            res = bk.backup(db, out, db_url=db_url, keep=keep, use_mongodump=use_mongodump, live=live)
        if lock.lost:
            bk.shutil.rmtree(res.path, ignore_errors=True)
            raise bk.BackupError(f"the migration lock was lost during the backup ({lock.lost_reason}), so a "
                                 f"migration may have run meanwhile: the backup was removed; run it again")
        res.warnings += lock.warnings
        return res
    finally:
        lock.release()


def restore(db, from_dir, *, db_url: str | None = None, lock_wait_s: float = lk.DEFAULT_WAIT_S,
            schema_file=None) -> bk.RestoreResult:
    """``migrate restore --from DIR``: put the database back as in the backup, under the lock.
    The changelog is kept (and has at least schema.json's indexes) and a ``restore`` entry
    added. An embedded catalog is restored at the file level (:func:`bk.restore_catalog`).
    On failure the "restore by hand" of :class:`bk.RestoreError` is another way than this
    one (mongorestore, or a restore into a new directory)."""
    root = sch._store().catalog_path(db)
    # a server's is mongorestore, its config file written when needed (bk.restore's default)
    manual = None if sch._is_server(db) else bk.manual_restore_command(from_dir, db_url, db.name, elsewhere=True)
    lock = lk.acquire(db, command="migrate restore", wait_s=lock_wait_s)
    try:
        if root is not None:  # the lock document it holds is kept: released below
            res = _restore_files(root, from_dir, manual, schema_file)
        else:
            t0 = time.monotonic()
            with sch.writing(db):
                res = bk.restore(db, from_dir, db_url=db_url, manual_command=manual)
                _record_restore(db, from_dir, t0, schema_file)
        res.warnings += lock.warnings
        return res
    finally:
        lock.release()


def restore_url(db_url: str, from_dir, *, lock_wait_s: float = lk.DEFAULT_WAIT_S,
                timeout_ms: int = 5000, schema_file=None) -> bk.RestoreResult:
    """:func:`restore` into the database at ``db_url`` (what ``spine-docs migrate restore``
    calls). An embedded catalog that does not load - a damaged or truncated file - is
    restored at the file level without the migration lock (it cannot be read; the file lock
    keeps every other writer out); a directory without a catalog receives the backup."""
    store = sch._store()
    root = store.embedded_dir(db_url)
    if root is None:
        return restore(store.connect(db_url, timeout_ms=timeout_ms), from_dir, db_url=db_url,
                       lock_wait_s=lock_wait_s, schema_file=schema_file)
    try:
        db = store.connect(root, create=False)
    except store.StoreError as exc:
        manual = bk.manual_restore_command(from_dir, db_url, elsewhere=True)
        res = _restore_files(root, from_dir, manual, schema_file)
        if not isinstance(exc, store.NoCatalog):
            res.warnings.insert(0, f"the catalog did not load ({exc}); it was restored file by file")
        return res
    return restore(db, from_dir, db_url=db_url, lock_wait_s=lock_wait_s, schema_file=schema_file)


def _restore_files(root, from_dir, manual: str, schema_file) -> bk.RestoreResult:
    t0 = time.monotonic()
    return bk.restore_catalog(root, from_dir, manual_command=manual,
                              before_commit=lambda db: _record_restore(db, from_dir, t0, schema_file))


def _record_restore(db, from_dir, t0: float, schema_file) -> None:
    """The changelog after a restore: schema.json's indexes where missing (a restore into a
    new place has no changelog of its own), then the ``restore`` entry."""
    spec = sch.load_schema(schema_file)["collections"].get(sch.CHANGELOG)
    if spec is not None:
        commands, _drift = sch.setup_commands(db, {"collections": {sch.CHANGELOG: spec}})
        for c in commands:
            sch.execute(db, c)
    _finish(db, _record(db, version=_version(db), name=f"restore {Path(from_dir).name}",
                        direction="restore", state="running"), "applied", t0)
