"""The run log: one document per ``inject`` (and later ``verify``) in the ``runs`` collection.

A run is written ``running`` when it starts, gets a ``heartbeat`` while it writes, and ends
``done``, ``failed`` or ``interrupted``. A process that was killed (``kill -9``, a node that
died) cannot say so itself: :func:`reap` marks such runs ``interrupted``, and is called by
the next run, by ``spine-docs runs`` and by the explorer. A run is gone when

* it was started on this host and its pid no longer exists (or now belongs to a process
  started after the run), or
* its heartbeat (or start, before the first heartbeat) is older than :data:`STALE_AFTER`
  (any host: a process on another node cannot be asked).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from pymongo.errors import PyMongoError

from . import __version__, store

#: a running run whose heartbeat is older than this is taken to be gone
STALE_AFTER = timedelta(minutes=15)
#: how often a run refreshes its heartbeat (at most)
HEARTBEAT_EVERY = timedelta(seconds=60)
STATES = ("running", "done", "failed", "interrupted")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _process_start(pid: int) -> float | None:
    """When ``pid`` started (seconds since boot, Linux), or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: Any) -> bool:
    """Whether a process of this host has that pid (another user's counts as alive)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def start(db: Any, run_id: str, *, kind: str, site: str, started: datetime,
          details: Mapping[str, Any]) -> None:
    """Record a run as ``running`` (after reaping the runs whose process is gone)."""
    pid = os.getpid()
    doc = {
        "_id": run_id, "kind": kind, "site": site, "state": "running",
        "started": started, "finished": None, "heartbeat": started,
        "host": socket.gethostname(), "pid": pid, "pid_started": _process_start(pid),
        "user": user(), "spine_docs_version": __version__, **details,
    }
    with store.writing(db):
        reap(db)
        db.runs.insert_one(doc)


def heartbeat(db: Any, run_id: str, when: datetime | None = None) -> None:
    """Say the run is alive (call inside the caller's ``store.writing`` block when it has one)."""
    with store.writing(db):
        db.runs.update_one({"_id": run_id, "state": "running"},
                           {"$set": {"heartbeat": when or _now()}})


def end(db: Any, run_id: str, state: str, fields: Mapping[str, Any]) -> None:
    """Record how the run ended (``done``, ``failed`` or ``interrupted``)."""
    with store.writing(db):
        db.runs.update_one({"_id": run_id}, {"$set": {
            "state": state, "finished": _now(), **fields}})


def end_quietly(db: Any, run_id: str, state: str, fields: Mapping[str, Any]) -> None:
    """:func:`end`, for an ``except`` or ``finally``: the database may be what failed."""
    try:
        end(db, run_id, state, fields)
    except (PyMongoError, OSError, store.StoreError):
        pass


@contextlib.contextmanager
def ending(db: Any, run_id: str, fields: Callable[[], Mapping[str, Any]]) -> Iterator[None]:
    """The block is the run's work: the run ends ``done`` after it, or ``interrupted`` when
    the block raises (recorded best effort: the database may be what failed; the error goes
    on). ``fields()``: what the run log records with its end, asked for at the end."""
    try:
        yield
    except BaseException:
        end_quietly(db, run_id, "interrupted", fields())
        raise
    end(db, run_id, "done", fields())


def is_gone(run: Mapping[str, Any], *, now: datetime | None = None,
            host: str | None = None) -> bool:
    """Whether a ``running`` run's process has gone without recording its end."""
    if run.get("state") != "running":
        return False
    now = now or _now()
    host = host or socket.gethostname()
    pid = run.get("pid")
    if run.get("host") == host and isinstance(pid, int):
        if not pid_alive(pid):
            return True
        recorded, current = run.get("pid_started"), _process_start(pid)
        if recorded is not None and current is not None and abs(recorded - current) > 0.5:
            return True  # the pid was reused by a later process
    last = run.get("heartbeat") or run.get("started")
    if isinstance(last, datetime):
        if last.tzinfo is None:
            last = last.replace(tzinfo=timezone.utc)
        return now - last > STALE_AFTER
    return False


def reap(db: Any, *, now: datetime | None = None) -> list[str]:
    """Mark ``interrupted`` every ``running`` run whose process is gone; returns their ids.

    It writes only when there is something to mark; a reader that cannot write (a read-only
    catalog) still sees the right state through :func:`last`."""
    now = now or _now()
    gone = [r["_id"] for r in db.runs.find({"state": "running"},
                                           {"_id": 1, "host": 1, "pid": 1, "pid_started": 1,
                                            "heartbeat": 1, "started": 1, "state": 1})
            if is_gone(r, now=now)]
    if gone:
        with store.writing(db):
            db.runs.update_many({"_id": {"$in": gone}, "state": "running"}, {"$set": {
                "state": "interrupted", "finished": None, "interrupted_noticed": now,
                "note": "its process was gone (killed, or its node died) before it finished"}})
    return gone


def last(db: Any, limit: int = 10, *, kind: str | None = None) -> list[dict[str, Any]]:
    """The newest runs, newest first, without their problem lists; a ``running`` run whose
    process is gone is shown ``interrupted`` even when nobody has recorded it yet."""
    query = {"kind": kind} if kind else {}
    rows = list(db.runs.find(query, {"problems": 0}).sort("started", -1).limit(limit))
    now = _now()
    for r in rows:
        if is_gone(r, now=now):
            r["state"] = "interrupted"
    return rows
