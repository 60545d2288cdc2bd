"""Riding out a failover: which errors an election causes, and calling an operation again
on them with bounded, exponential backoff.

One place for both users: the migration tool's bookkeeping (:mod:`spine_docs.migrate.durable`,
whose window is the client's server selection timeout) and ``inject``'s bulk writes
(:mod:`spine_docs.ingest`, whose window is ``failover_timeout_s``). The operation given to
:func:`retry` must be safe to run again: the caller makes it so (the migration tool's
records are keyed and idempotent; ``inject`` first drops the writes of its batch that
already landed).

Example::

    retry(lambda: coll.update_one({"_id": 1}, {"$set": {"x": 1}}), window=30)
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from pymongo.errors import AutoReconnect, OperationFailure, PyMongoError

T = TypeVar("T")

#: first pause between attempts, doubled each time up to MAX_BACKOFF_S
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0

# the codes the retryable-writes specification retries: HostUnreachable 6, HostNotFound 7,
# NetworkTimeout 89, ShutdownInProgress 91, ReadConcernMajorityNotAvailableYet 134,
# PrimarySteppedDown 189, ExceededTimeLimit 262, SocketException 9001, NotWritablePrimary
# 10107, LegacyNotPrimary 10058, InterruptedAtShutdown 11600, InterruptedDueToReplStateChange
# 11602, NotPrimaryNoSecondaryOk 13435, NotPrimaryOrSecondary 13436
RETRYABLE_CODES = frozenset({6, 7, 89, 91, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436})


def is_retryable(exc: BaseException) -> bool:
    """An error a failover causes (the same operation may succeed on the next primary):
    :class:`~pymongo.errors.AutoReconnect` and its subclasses (``NotPrimaryError``,
    ``ServerSelectionTimeoutError``, a reset connection), the ``RetryableWriteError`` label,
    the "not primary" and "shutting down" codes."""
    if isinstance(exc, AutoReconnect):
        return True
    if isinstance(exc, PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return True
    return isinstance(exc, OperationFailure) and exc.code in RETRYABLE_CODES


def retry(fn: Callable[[], T], *, window: float, first_backoff: float = FIRST_BACKOFF_S,
          max_backoff: float = MAX_BACKOFF_S, sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> T:
    """``fn()``, called again after a retryable error (see :func:`is_retryable`) with
    exponential backoff (``first_backoff`` doubled up to ``max_backoff``) until it succeeds
    or ``window`` seconds have passed; then the last error is raised. Any other error is
    raised at once. ``fn`` must be safe to call again.

    :param window: seconds to keep trying (size it for an election: 10-30 s).
    :return: what ``fn`` returns."""
    start = clock()
    pause = first_backoff
    while True:
        try:
            return fn()
        except PyMongoError as exc:
            if not is_retryable(exc) or clock() - start + pause > window:
                raise
        sleep(pause)
        pause = min(pause * 2, max_backoff)


def one_line(exc: BaseException) -> str:
    """An error as ``Type: first line`` without pymongo's topology dump."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    for cut in (", Timeout:", " (configured timeouts"):
        text = text.split(cut)[0]
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
