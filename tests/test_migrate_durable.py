"""A lock that cannot be silently lost, and bookkeeping that rides out a failover, on
mongomock and the embedded catalog (the wire-level side is tests/test_wire_lock.py)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from pymongo.errors import (AutoReconnect, DuplicateKeyError, NotPrimaryError, OperationFailure,
                            ServerSelectionTimeoutError)

from spine_docs import migrate, schema
from spine_docs.migrate import durable, lock as lk, runner

from test_migrate_helpers import BACKENDS, HEAD, db, kind  # noqa: F401  (fixtures)


class Clock:
    def __init__(self):
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.sleeps.append(s)
        self.t += s


def _failing(errors: list[BaseException], result="done"):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result
    return fn, calls


@pytest.mark.parametrize("error", [
    AutoReconnect("connection closed"),
    NotPrimaryError("not primary", {"code": 10107}),
    ServerSelectionTimeoutError("no primary"),
    OperationFailure("stepped down", code=189),
    OperationFailure("labelled", code=1, details={"errorLabels": ["RetryableWriteError"]}),
])
def test_retry_sends_again_after_an_error_an_election_causes(error, db):
    clock = Clock()
    fn, calls = _failing([error, error])
    assert durable.retry(fn, db=db, window=30, sleep=clock.sleep, clock=clock) == "done"
    assert len(calls) == 3
    assert clock.sleeps == [0.1, 0.2]                  # backoff doubles


@pytest.mark.parametrize("error", [OperationFailure("bad", code=2), DuplicateKeyError("dup", code=11000),
                                   OperationFailure("unauthorized", code=13)])
def test_retry_raises_any_other_error_at_once(error, db):
    clock = Clock()
    fn, calls = _failing([error])
    with pytest.raises(type(error)):
        durable.retry(fn, db=db, window=30, sleep=clock.sleep, clock=clock)
    assert len(calls) == 1 and clock.sleeps == []


def test_retry_gives_up_after_its_window(db):
    clock = Clock()
    fn, calls = _failing([AutoReconnect("down")] * 100)
    with pytest.raises(AutoReconnect):
        durable.retry(fn, db=db, window=5, sleep=clock.sleep, clock=clock)
    # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 = 3.1; the next pause (2.0) would pass 5 s
    assert clock.sleeps == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert len(calls) == 6


def test_the_shared_retry_loop_takes_its_pauses_from_the_caller():
    from spine_docs import retry

    clock = Clock()
    fn, calls = _failing([AutoReconnect("down")] * 100)
    with pytest.raises(AutoReconnect):
        retry.retry(fn, window=1, first_backoff=0.05, max_backoff=0.3, sleep=clock.sleep, clock=clock)
    # 0.05 + 0.1 + 0.2 + 0.3 + 0.3 = 0.95; the next pause (0.3) would pass 1 s
    assert clock.sleeps == [0.05, 0.1, 0.2, 0.3, 0.3]
    assert len(calls) == 6


def test_engine_catalogs_keep_this_hosts_clock_and_plain_concerns(db):
    assert durable.server_time(db) is False
    assert durable.durable(db) is db


def test_a_renewal_after_a_forced_unlock_marks_the_lock_lost(db):
    lock = lk.acquire(db)
    lock.check()                                      # held: nothing to say
    migrate.unlock(db, force=True)
    with pytest.raises(lk.LockLost, match="taken over"):
        lock.renew()
    assert lock.lost and "taken over" in lock.lost_reason
    with pytest.raises(lk.LockLost, match="lock was lost: it was taken over"):
        lock.check()


def test_a_renewal_that_raises_marks_the_lock_lost(db, monkeypatch):
    lock = lk.acquire(db)

    def broken(*a, **k):
        raise OperationFailure("disk full", code=14031)

    monkeypatch.setattr(lk.dur, "durable", lambda _db: {schema.META: type("C", (), {"find_one_and_update": broken})()})
    with pytest.raises(lk.LockLost, match="could not be renewed"):
        lock.renew()
    assert lock.lost and "disk full" in lock.lost_reason
    monkeypatch.undo()
    lock.release()


def test_a_lost_lock_stops_up_before_the_next_step(db, tmp_path, monkeypatch):
    """The lock is lost during the first step (another process forces it open): the run
    stops at the boundary, records that step interrupted, stamps nothing, restores nothing."""
    real_up = runner.Migration.load

    def load(self):
        mod = real_up(self)
        if self.version == 1:
            inner = mod.up

            def up(d):
                inner(d)
                with schema.writing(d):
                    d.meta.delete_one({"_id": "migration_lock"})   # `migrate unlock --force` meanwhile
            mod.up = up
        return mod

    monkeypatch.setattr(runner.Migration, "load", load)
    res = migrate.up(db, backup_root=tmp_path / "b")
    assert not res.ok and res.exit_code == 1
    assert res.message.startswith("stopped during 0001_initial: ") and "taken over" in res.message
    assert res.restored is None and res.final_version == 0
    assert schema.db_version(db) == 0
    (entry,) = [h for h in migrate.history(db) if h.version == 1]
    assert entry.state == "interrupted" and "not recorded as applied" in entry.error


def test_reconcile_runs_under_the_heartbeat(db, monkeypatch, tmp_path):
    res = migrate.up(db, backup_root=tmp_path / "b")
    assert res.ok and res.final_version == HEAD
    with schema.writing(db):
        db.files.drop_index([("size", 1), ("_id", 1)])   # drift: reconcile has work to do
    alive = {"now": False}
    executed_alive = []
    real_keep_alive = lk.Lock.keep_alive

    @contextmanager
    def keep_alive(self):
        with real_keep_alive(self):
            alive["now"] = True
            try:
                yield
            finally:
                alive["now"] = False

    real_execute = schema.execute

    def execute(d, command):
        executed_alive.append((next(iter(command)), alive["now"]))
        return real_execute(d, command)

    monkeypatch.setattr(lk.Lock, "keep_alive", keep_alive)
    monkeypatch.setattr(runner.sch, "execute", execute)
    res = migrate.up(db, backup_root=tmp_path / "b")
    assert res.ok and len(res.reconciled) == 1
    assert executed_alive == [("createIndexes", True)]
