"""Bookkeeping that survives a failover: majority concerns, retries, the server's clock.

The migration tool's own records - the lock in ``meta``, the version stamp, the
``changelog`` - must not be lost, doubled or misdated when a replica set elects a new
primary, nor when two hosts' clocks disagree. Three decisions, each made here only:

* :func:`durable` - the database as the bookkeeping sees it: on a server with majority write
  concern (an acknowledged lock or record cannot be rolled back by an election, as a
  ``w: 1`` write can on a set with an arbiter) and majority read concern (a read sees only
  what cannot be rolled back); elsewhere the database itself.
* :func:`retry` - run an idempotent operation again on the errors an election causes
  (:class:`~pymongo.errors.AutoReconnect` and its subclasses ``NotPrimaryError`` and
  ``ServerSelectionTimeoutError``, the ``RetryableWriteError`` label, the "not primary" and
  "shutting down" codes), with backoff, for at most :func:`window_s` seconds: the client's
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
from pymongo.errors import AutoReconnect, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from .. import store

T = TypeVar("T")

#: the retry window when the client does not say (seconds): a typical election takes 10-12 s
DEFAULT_WINDOW_S = 30.0
#: first pause between attempts, doubled each time up to MAX_BACKOFF_S
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0

# the codes the retryable-writes specification retries: HostUnreachable 6, HostNotFound 7,
# NetworkTimeout 89, ShutdownInProgress 91, ReadConcernMajorityNotAvailableYet 134,
# PrimarySteppedDown 189, ExceededTimeLimit 262, SocketException 9001, NotWritablePrimary
# 10107, LegacyNotPrimary 10058, InterruptedAtShutdown 11600, InterruptedDueToReplStateChange
# 11602, NotPrimaryNoSecondaryOk 13435, NotPrimaryOrSecondary 13436
_RETRYABLE_CODES = frozenset({6, 7, 89, 91, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436})


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


def is_retryable(exc: BaseException) -> bool:
    """An error a failover causes (the same operation may succeed on the next primary)."""
    if isinstance(exc, AutoReconnect):
        return True
    if isinstance(exc, PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return True
    return isinstance(exc, OperationFailure) and exc.code in _RETRYABLE_CODES


def retry(fn: Callable[[], T], *, db: Any, window: float | None = None,
          sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> T:
    """``fn()``, called again after a retryable error (see :func:`is_retryable`) with
    exponential backoff until it succeeds or ``window`` seconds (default :func:`window_s`)
    have passed; then the last error is raised. ``fn`` must be idempotent. Any other error
    is raised at once."""
    limit = window_s(db) if window is None else window
    start = clock()
    pause = FIRST_BACKOFF_S
    while True:
        try:
            return fn()
        except PyMongoError as exc:
            if not is_retryable(exc) or clock() - start + pause > limit:
                raise
        sleep(pause)
        pause = min(pause * 2, MAX_BACKOFF_S)


def one_line(exc: BaseException) -> str:
    """An error as ``Type: first line`` without pymongo's topology dump."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    for cut in (", Timeout:", " (configured timeouts"):
        text = text.split(cut)[0]
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
