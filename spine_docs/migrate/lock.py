"""The migration lock: one document ``meta {_id: "migration_lock"}``, taken atomically.

Taking it is a single ``find_one_and_update(..., upsert=True)`` on the fixed ``_id`` whose
filter matches only a free lock (expired lease) or our own: two takers can never both win
(the loser's upsert hits the duplicate ``_id`` and fails). There is no check-then-insert.

The document names its holder (user, host, pid, command) and carries a lease
(``expires``). A lock whose lease expired, or whose holder was a process of *this* host that
no longer exists, is taken over - again atomically, by compare-and-swap on its ``token`` -
and the takeover is reported as a warning. A lock held by a live process is waited for
(bounded), then :class:`LockBusy` says who holds it.

On a server the lease is timed by the server's clock (``$$NOW`` in an update pipeline,
and ``$$NOW`` in the filter's "expired" test), so two hosts whose clocks disagree cannot
both hold it; every lock write has majority write concern and is retried through a
failover (:mod:`.durable`). On the embedded catalog and mongomock (one process, one clock)
the lease is this host's time, and each attempt runs inside ``store.writing(db)`` (file
lock, reload, save), so processes sharing one catalog directory see each other's lock.

A lock is never lost silently: a renewal that fails (any error after the retries, or that
matches nothing because another process took the lock over) marks it :attr:`Lock.lost`
with the reason, and :meth:`Lock.check` raises :class:`LockLost`, which the runner calls at
every step boundary.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from .. import schema as sch
from ..runs import pid_alive  # one rule for "is that process still there" (runs and locks)
from . import durable as dur

DEFAULT_LEASE_S = 1800.0
DEFAULT_WAIT_S = 30.0


class LockError(Exception):
    pass


class LockLost(LockError):
    """The lock was taken over, or could not be renewed: stop before changing anything more."""


class LockBusy(LockError):
    """Another live process holds the lock; ``holder`` is its lock document."""

    def __init__(self, holder: dict | None, waited_s: float):
        self.holder = holder or {}
        self.waited_s = waited_s
        super().__init__(f"migration lock held by {describe_holder(self.holder)} "
                         f"(waited {waited_s:.0f}s; if that process is gone, run "
                         f"`spine-docs migrate unlock --force`)")


def describe_holder(doc: dict | None) -> str:
    if not doc:
        return "nobody"
    exp = doc.get("expires")
    exp_s = exp.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(exp, datetime) else "?"
    return (f"{doc.get('user', '?')}@{doc.get('host', '?')} pid {doc.get('pid', '?')} "
            f"({doc.get('command', '?')}, since {_fmt(doc.get('acquired'))}, lease until {exp_s})")


def _fmt(t) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(t, datetime) else "?"


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _lease(fields: dict, lease_s: float, *, server: bool, acquired: bool = False) -> dict | list:
    """The update that sets ``fields`` and a lease of ``lease_s`` from now: an update pipeline
    on the server's clock (``$$NOW``; values as ``$literal`` so that a ``$`` in a user or
    host name stays text), else ``$set`` with this host's time."""
    if server:
        lease = {"expires": {"$add": ["$$NOW", int(lease_s * 1000)]}}
        if acquired:
            lease["acquired"] = "$$NOW"
        return [{"$set": {**{k: {"$literal": v} for k, v in fields.items()}, **lease}}]
    now = sch.now()
    lease = {"expires": now + timedelta(seconds=lease_s)}
    if acquired:
        lease["acquired"] = now
    return {"$set": {**fields, **lease}}


def _expired(*, server: bool) -> dict:
    """A filter matching a lock whose lease has run out (by the server's clock on a server)."""
    if server:
        return {"$expr": {"$lt": ["$expires", "$$NOW"]}}
    return {"expires": {"$lt": sch.now()}}


@dataclass
class Lock:
    """A held lock. ``warnings`` lists takeovers that happened while acquiring it; ``lost``
    (with ``lost_reason``) says it can no longer be trusted to keep others out."""

    db: object
    token: str
    command: str
    lease_s: float
    warnings: list[str] = field(default_factory=list)
    released: bool = False
    lost: bool = False
    lost_reason: str | None = None

    def _lose(self, why: str) -> None:
        if not self.lost:
            self.lost_reason = why
        self.lost = True

    def check(self) -> None:
        """Raise :class:`LockLost` if the lock was lost (call at every step boundary)."""
        if self.lost:
            raise LockLost(f"the migration lock was lost: {self.lost_reason}")

    def renew(self, *, nested: bool = False) -> None:
        """Extend the lease. ``nested=True`` when the caller already holds
        ``store.writing(db)`` (the runner renews inside each step's write block, so on the
        embedded catalog no other process can see the lease expire during a step).
        Raises :class:`LockLost` (and marks the lock lost) when it cannot."""
        if nested:
            self._renew_raw()
            return
        with sch.writing(self.db):
            self._renew_raw()

    def _renew_raw(self) -> None:
        """One renewal, retried through a failover for at most ``lease_s / 3`` (so that the
        lease still has a third to run when we give up) and the retry window; any failure
        marks the lock lost and raises :class:`LockLost`."""
        window = min(self.lease_s / 3, dur.window_s(self.db))
        try:
            doc = dur.retry(lambda: dur.durable(self.db)[sch.META].find_one_and_update(
                {"_id": sch.LOCK_DOC_ID, "token": self.token},
                _lease({}, self.lease_s, server=dur.server_time(self.db)),
                projection={"_id": 1}, return_document=ReturnDocument.AFTER), db=self.db, window=window)
        except Exception as exc:
            self._lose(f"its lease could not be renewed ({dur.one_line(exc)})")
            raise LockLost(f"the migration lock was lost: {self.lost_reason}") from None
        if doc is None:
            self._lose("it was taken over by another process (lease expired or forced)")
            raise LockLost("the migration lock was taken over by another process (lease expired or forced)")

    @contextmanager
    def keep_alive(self) -> Iterator[None]:
        """On a server, renew the lease from a background thread every ``lease_s / 3`` while
        the block runs (a long data migration outlives any fixed lease). A renewal that
        fails (see :meth:`_renew_raw`) marks the lock lost and ends the heartbeat; the
        caller checks it at the next step boundary (:meth:`check`).
        Elsewhere the embedded catalog's file lock already keeps other processes out during
        a step."""
        if not sch._is_server(self.db):
            yield
            return
        stop = threading.Event()
        every = max(self.lease_s / 3, 0.05)

        def beat() -> None:
            while not self.lost and not stop.wait(every):
                try:
                    self._renew_raw()
                except Exception:  # noqa: BLE001 - _renew_raw marked the lock lost, with why
                    return

        t = threading.Thread(target=beat, name="spine-docs-lock-heartbeat", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=10)

    def release(self, *, drop_if_alone: bool = False) -> None:
        """Delete our lock document (retried through a failover). ``drop_if_alone``: when
        the collection holds nothing but our lock (it was created by taking the lock), drop
        the collection instead, so a rolled-back run leaves no trace. Safe against a
        concurrent taker: until the drop our lock document exists, after it the taker's
        upsert simply creates the collection."""
        if self.released:
            return

        def attempt() -> None:
            with sch.writing(self.db):
                meta = dur.durable(self.db)[sch.META]
                if (drop_if_alone and meta.find_one({"_id": sch.LOCK_DOC_ID, "token": self.token})
                        and meta.find_one({"_id": {"$ne": sch.LOCK_DOC_ID}}, {"_id": 1}) is None):
                    sch.execute(dur.durable(self.db), {"drop": sch.META})
                else:
                    meta.delete_one({"_id": sch.LOCK_DOC_ID, "token": self.token})

        dur.retry(attempt, db=self.db)
        self.released = True

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holder(db) -> dict | None:
    """The current lock document, or None when the lock is free."""
    return dur.durable(db)[sch.META].find_one({"_id": sch.LOCK_DOC_ID})


def is_stale(doc: dict, *, now: datetime | None = None, host: str | None = None) -> str | None:
    """Why a lock document may be taken over (``"expired"``/``"dead pid"``), else None."""
    now = now or sch.now()
    exp = doc.get("expires")
    if not isinstance(exp, datetime) or _aware(exp) <= now:
        return "expired"
    if doc.get("host") == (host or socket.gethostname()) and not pid_alive(doc.get("pid")):
        return "dead pid"
    return None


def _try_once(db, token: str, fields: dict, lease_s: float) -> tuple[bool, dict | None, str | None]:
    """One atomic attempt. Returns (acquired, current holder, takeover reason)."""
    server = dur.server_time(db)
    new = _lease({**fields, "token": token}, lease_s, server=server, acquired=True)
    meta = dur.durable(db)[sch.META]
    with sch.writing(db):
        try:
            got = dur.retry(lambda: meta.find_one_and_update(
                {"_id": sch.LOCK_DOC_ID, "$or": [_expired(server=server), {"token": token}]},
                new, upsert=True, return_document=ReturnDocument.BEFORE), db=db)
            # got is None: we inserted a fresh lock; else we replaced an expired one
            return True, got, ("expired" if got is not None and got.get("token") != token else None)
        except DuplicateKeyError:
            pass
        current = meta.find_one({"_id": sch.LOCK_DOC_ID})
        if current is None:
            return False, None, None  # released in between: retry at once
        if current.get("host") == socket.gethostname() and not pid_alive(current.get("pid")):
            got = dur.retry(lambda: meta.find_one_and_update(
                {"_id": sch.LOCK_DOC_ID, "token": current.get("token")},
                new, return_document=ReturnDocument.BEFORE), db=db)
            if got is not None:
                return True, got, "dead pid"
        return False, current, None


def acquire(db, *, command: str = "migrate", lease_s: float = DEFAULT_LEASE_S,
            wait_s: float = DEFAULT_WAIT_S, poll_s: float = 0.2,
            sleep: Callable[[float], None] = time.sleep,
            clock: Callable[[], float] = time.monotonic) -> Lock:
    """Take the migration lock, waiting at most ``wait_s`` seconds for a live holder.

    Raises :class:`LockBusy` (naming the holder) when it stays held.
    """
    token = uuid.uuid4().hex
    fields = {"user": sch.username(), "host": socket.gethostname(), "pid": os.getpid(), "command": command}
    start = clock()
    warnings: list[str] = []
    last = None
    while True:
        ok, prev, reason = _try_once(db, token, fields, lease_s)
        if ok:
            if reason:
                warnings.append(f"took over a stale migration lock ({reason}) from {describe_holder(prev)}")
            return Lock(db=db, token=token, command=command, lease_s=lease_s, warnings=warnings)
        if prev is not None:
            last = prev
        waited = clock() - start
        if waited >= wait_s:
            raise LockBusy(last, waited)
        sleep(min(poll_s, max(0.0, wait_s - waited)) if prev is not None else 0)


def force_unlock(db) -> dict | None:
    """Remove the lock whoever holds it; returns the removed document (None when free)."""
    with sch.writing(db):
        return dur.retry(lambda: dur.durable(db)[sch.META].find_one_and_delete({"_id": sch.LOCK_DOC_ID}), db=db)
