"""The migration lock: atomic, bounded wait, stale-lock takeover, two processes at once."""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
from datetime import timedelta

import pytest

from spine_docs import migrate, schema, store
from spine_docs.migrate import lock as lk

from test_migrate_helpers import BACKENDS, HEAD, NEXT, db, kind, legacy_documents, load_legacy, open_backend


def _put_lock(db, **fields):
    doc = {"_id": "migration_lock", "token": "other", "user": "bob", "host": "elsewhere", "pid": 4242,
           "command": "migrate up", "acquired": schema.now(), "expires": schema.now() + timedelta(hours=1)}
    doc.update(fields)
    with schema.writing(db):
        db.meta.replace_one({"_id": "migration_lock"}, doc, upsert=True)


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += max(s, 0.01)


def test_acquire_release_and_reacquire(db):
    with lk.acquire(db, command="test") as lock:
        h = migrate.holder(db)
        assert h["token"] == lock.token and h["host"] == socket.gethostname() and h["command"] == "test"
        assert h["expires"] > h["acquired"]
        lock.renew()
    assert migrate.holder(db) is None
    with lk.acquire(db) as again:
        assert again.warnings == []


def test_second_taker_waits_bounded_then_names_holder(db):
    _put_lock(db)
    clock = FakeClock()
    with pytest.raises(lk.LockBusy) as exc:
        lk.acquire(db, wait_s=5, poll_s=0.5, sleep=clock.sleep, clock=clock)
    msg = str(exc.value)
    assert "bob@elsewhere pid 4242" in msg and "migrate unlock --force" in msg
    assert 5 <= clock.t < 6                       # bounded: gave up after the wait
    assert migrate.holder(db)["token"] == "other"  # the holder's lock is untouched
    with pytest.raises(lk.LockBusy):
        migrate.up(db, lock_wait_s=0)
    assert schema.db_version(db) == 0


def test_expired_lease_is_taken_over_with_a_warning(db):
    _put_lock(db, expires=schema.now() - timedelta(seconds=1))
    lock = lk.acquire(db, wait_s=0)
    assert len(lock.warnings) == 1 and "expired" in lock.warnings[0] and "bob@elsewhere" in lock.warnings[0]
    assert migrate.holder(db)["token"] == lock.token
    lock.release()


def test_dead_pid_on_this_host_is_taken_over(db):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = proc.pid
    assert not lk.pid_alive(dead)
    _put_lock(db, host=socket.gethostname(), pid=dead)
    lock = lk.acquire(db, wait_s=0)
    assert "dead pid" in lock.warnings[0]
    lock.release()
    # a live pid on this host is respected
    import os
    _put_lock(db, host=socket.gethostname(), pid=os.getppid())
    with pytest.raises(lk.LockBusy):
        lk.acquire(db, wait_s=0)


def test_stale_lock_recovered_by_migrate_up(db, tmp_path):
    _put_lock(db, expires=schema.now() - timedelta(minutes=5))
    res = migrate.up(db, backup_root=tmp_path / "b")
    assert res.ok and res.final_version == HEAD
    assert any("stale migration lock" in w for w in res.warnings)
    assert migrate.holder(db) is None


def test_renew_fails_when_taken_over(db):
    lock = lk.acquire(db)
    migrate.unlock(db, force=True)
    with pytest.raises(lk.LockError, match="taken over"):
        lock.renew()


def _expire(db, token):
    """The lease of the lock ``token`` runs out (as if its holder had stalled)."""
    with schema.writing(db):
        assert db.meta.update_one({"_id": "migration_lock", "token": token},
                                  {"$set": {"expires": schema.now() - timedelta(seconds=1)}}).modified_count == 1


@pytest.mark.parametrize("drop_if_alone", [False, True])
def test_an_old_holder_never_touches_the_lock_taken_over_from_it(db, drop_if_alone):
    old = lk.acquire(db, command="old")
    _expire(db, old.token)
    new = lk.acquire(db, command="new", wait_s=0)   # a takeover, not a forced unlock
    assert new.warnings and "expired" in new.warnings[0]
    taken = migrate.holder(db)
    assert taken["token"] == new.token and taken["command"] == "new"

    # the old holder's renewal fails and leaves the new lease as it was
    with pytest.raises(lk.LockError, match="taken over"):
        old.renew()
    with pytest.raises(lk.LockError, match="taken over"):
        old.renew(nested=True)
    assert old.lost
    assert migrate.holder(db) == taken
    # its release removes nothing (nor drops meta, whose only document is the new lock)
    old.release(drop_if_alone=drop_if_alone)
    assert "meta" in db.list_collection_names()
    assert migrate.holder(db) == taken
    with pytest.raises(lk.LockBusy):
        lk.acquire(db, wait_s=0)
    # the new holder's own renew and release still work
    new.renew()
    assert migrate.holder(db)["expires"] >= taken["expires"]
    new.release(drop_if_alone=drop_if_alone)
    assert migrate.holder(db) is None


def test_unlock_requires_force(db):
    _put_lock(db)
    with pytest.raises(migrate.MigrationError, match="--force"):
        migrate.unlock(db)
    removed = migrate.unlock(db, force=True)
    assert removed["token"] == "other" and migrate.holder(db) is None


def _racer(catalog: str, backups: str, barrier, out):
    from spine_docs import migrate, store

    db = store.connect(catalog)
    barrier.wait()
    res = migrate.up(db, backup_root=backups, lock_wait_s=120)
    out.put((res.ok, [s.version for s in res.steps if s.state == "applied"], res.message))


def test_two_processes_apply_each_step_exactly_once(tmp_path):
    db = open_backend("embedded", tmp_path)
    load_legacy(db, legacy_documents(tmp_path, n_extra=300))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(str(tmp_path / "catalog"), str(tmp_path / "b"), barrier, out))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(ok for ok, _, _ in results), results
    applied = sorted(v for _, vs, _ in results for v in vs)
    assert applied == list(range(1, HEAD + 1))                              # each step once, in one process or the other
    db = open_backend("embedded", tmp_path)
    hist = migrate.history(db)
    assert sorted((h.version, h.state) for h in hist if h.direction == "up") == [(v, "applied") for v in range(1, HEAD + 1)]
    assert schema.db_version(db) == HEAD and migrate.holder(db) is None
    assert db.files.count_documents({"spine_version_key": {"$exists": False}}) == 0


def test_lease_is_kept_alive_during_a_long_step_on_a_server(tmp_path, monkeypatch):
    """On a server a background heartbeat renews the lease while a step runs."""
    import threading

    from spine_docs.migrate import runner
    from test_migrate_helpers import migrations_copy

    db = store.connect("mongomock://")
    class ServerLike:  # the lock module sees a server; everything else stays mongomock
        def __getattr__(self, name):
            return getattr(schema, name)

        @staticmethod
        def _is_server(_db):
            return True

    monkeypatch.setattr(lk, "sch", ServerLike())
    renewed = threading.Event()
    count = {"n": 0}
    real = lk.Lock._renew_raw

    def counting(self):
        real(self)
        count["n"] += 1
        if count["n"] >= 2:
            renewed.set()

    monkeypatch.setattr(lk.Lock, "_renew_raw", counting)
    slow = ('description = "waits for two heartbeats"\n'
            'import threading\n'
            'EVENT = None\n'
            'def up(db):\n'
            '    assert EVENT.wait(20), "no heartbeat"\n')
    mdir, sfile = migrations_copy(tmp_path, {f"{NEXT}_slow.py": slow})
    orig_load = runner.Migration.load

    def load(self):
        mod = orig_load(self)
        if self.version == HEAD + 1:
            mod.EVENT = renewed
        return mod

    monkeypatch.setattr(runner.Migration, "load", load)
    res = runner.up(db, backup=False, migrations_dir=mdir, schema_file=sfile, lease_s=0.3)
    assert res.ok, res.message
    assert renewed.is_set() and migrate.holder(db) is None
