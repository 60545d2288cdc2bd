"""Bookkeeping that survives a failover: majority concerns, retries, the server's clock.

The migration tool's own records - the lock in ``meta``, the version stamp, the
``changelog`` - must not be lost, doubled or misdated when a replica set elects a new
primary, nor when two hosts' clocks disagree. Three decisions, each made here only:

* :func:`durable` - the database as the bookkeeping sees it: on a server with majority write
  concern (an acknowledged lock or record cannot be rolled back by an election, as a
  ``w: 1`` write can on a set with an arbiter) and majority read concern (a read sees only
  what cannot be rolled back); elsewhere the database itself.
* :func:`retry` - run an idempotent operation again on the errors an election causes
  (:func:`spine_docs.retry.is_retryable`; the retry loop itself is :mod:`spine_docs.retry`,
  shared with ``inject``), with backoff, for at most :func:`window_s` seconds: the client's
  server selection timeout, which ``spine-docs migrate`` sizes for an election
  (``SPINE_DOCS_FAILOVER_TIMEOUT_S``, default 30 s).
* :func:`server_time` - whether lease times come from the server's clock (``$$NOW`` in an
  update pipeline): yes on a server, where the lock's holders may run on hosts whose clocks
  disagree; no on the embedded catalog and mongomock (one process, one clock; the engine
  has no ``$$NOW`` in update pipelines: it would store null).
"""

from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

from pymongo import ReadPreference
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from .. import retry as _retry
from .. import store
from ..retry import is_retryable, one_line  # noqa: F401 - this module's users call them here

T = TypeVar("T")

#: the retry window when the client does not say (seconds): a typical election takes 10-12 s
DEFAULT_WINDOW_S = 30.0


def server_time(db: Any) -> bool:
    """Whether lease times are the server's (``$$NOW``) rather than this host's clock."""
    return store.is_server(db)


def window_s(db: Any) -> float:
    """How long to keep retrying: the client's server selection timeout (a server), else
    :data:`DEFAULT_WINDOW_S`."""
    if not store.is_server(db):
        return DEFAULT_WINDOW_S
    return float(db.client.options.server_selection_timeout)


def durable(db: Any) -> Any:
    """``db`` with majority write concern (``wtimeout`` = the retry window) and majority read
    concern on a server, reading from the primary; ``db`` itself elsewhere."""
    if not store.is_server(db):
        return db
    return db.with_options(
        write_concern=WriteConcern("majority", wtimeout=int(window_s(db) * 1000)),
        read_concern=ReadConcern("majority"),
        read_preference=ReadPreference.PRIMARY)


def retry(fn: Callable[[], T], *, db: Any, window: float | None = None,
          sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> T:
    """:func:`spine_docs.retry.retry` for at most ``window`` seconds (default
    :func:`window_s`): ``fn()`` again after a retryable error, with backoff; then the last
    error is raised. ``fn`` must be idempotent. Any other error is raised at once."""
    return _retry.retry(fn, window=window_s(db) if window is None else window,
                        sleep=sleep, clock=clock)

