"""The runtime every executor shares: the collection a ``db`` argument names, ``find`` and
``aggregate`` with the server-only options (``allowDiskUse``, ``maxTimeMS``), the errors of
running a query (:func:`_running`), projections and dotted-path reads."""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

import mongomock
import pymongo.collection
from pymongo.errors import ExecutionTimeout, OperationFailure

from .errors import QueryError, QueryTimeout
from .filters import QUERY_OPERATORS

FILES = "files"

_COLLECTION_TYPES = (pymongo.collection.Collection, mongomock.collection.Collection)


def _collection(db: Any, name: str = FILES) -> Any:
    """``db[name]``; when ``db`` is already a collection, its sibling ``name``."""
    if isinstance(db, _COLLECTION_TYPES):
        return db if db.name == name else db.database[name]
    return db[name]


def _database(db: Any) -> Any:
    return db.database if isinstance(db, _COLLECTION_TYPES) else db


def _is_server(coll: Any) -> bool:
    return isinstance(coll, pymongo.collection.Collection)


# OperationFailure codes that are not the query's fault: Unauthorized, AuthenticationFailed,
# ShutdownInProgress, InterruptedAtShutdown, InterruptedDueToReplStateChange, PrimarySteppedDown.
_NOT_THE_QUERY = frozenset({13, 18, 91, 11600, 11602, 189})
_OPERATOR_RE = re.compile(r"\$[A-Za-z]+")
# What mongomock raises when it evaluates an operator given arguments of the wrong kind.
_EVALUATION_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError,
                      AssertionError, ArithmeticError, RecursionError, re.error)


def _not_supported(exc: BaseException) -> QueryError:
    named = _OPERATOR_RE.findall(str(exc))
    what = named[0] if named else "this query"
    return QueryError(f"{what} is not supported by the embedded catalog (a MongoDB server runs it)")


@contextmanager
def _running(coll: Any, max_time_ms: int | None) -> Iterator[None]:
    """Run a query: the server's time limit becomes :class:`QueryTimeout`; a query the database
    refuses (a bad ``where``, an operator the embedded catalog lacks) :class:`QueryError`
    with the database's one-line reason. Connection failures pass through."""
    try:
        yield
    except ExecutionTimeout as exc:
        raise QueryTimeout(max_time_ms) from exc
    except OperationFailure as exc:
        if exc.code in _NOT_THE_QUERY:
            raise
        text = str((exc.details or {}).get("errmsg") or exc).strip()
        text = (text.splitlines() or [type(exc).__name__])[0][:300]
        unknown = re.fullmatch(r"unknown (?:top level )?operator: (\$\w+)", text)
        if not _is_server(coll) and unknown and unknown.group(1) in QUERY_OPERATORS:
            raise _not_supported(exc) from exc  # MongoDB has it, mongomock does not
        raise QueryError(f"the database refused the query: {text}") from exc
    except NotImplementedError as exc:  # mongomock's missing features
        raise _not_supported(exc) from exc
    except _EVALUATION_ERRORS as exc:
        if _is_server(coll) or isinstance(exc, QueryError):
            raise
        # mongomock does not check the arguments of operators as a server does (a string for
        # $all, for $add in $expr, ...) and fails while evaluating them
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise QueryError(f"the embedded catalog cannot run this query: {first}") from exc


def _aggregate(coll: Any, pipeline: list[dict], max_time_ms: int | None = None) -> list[dict]:
    kwargs: dict[str, Any] = {}
    if _is_server(coll):
        kwargs["allowDiskUse"] = True
        if max_time_ms:
            kwargs["maxTimeMS"] = int(max_time_ms)
    with _running(coll, max_time_ms):
        return list(coll.aggregate(pipeline, **kwargs))


def _find(coll: Any, query: dict, projection: Any = None, *, sort: list | None = None,
          limit: int = 0, max_time_ms: int | None = None, batch_size: int | None = None) -> Any:
    kwargs: dict[str, Any] = {}
    if sort:
        kwargs["sort"] = sort
    if limit:
        kwargs["limit"] = limit
    if batch_size:
        kwargs["batch_size"] = batch_size
    if max_time_ms and _is_server(coll):
        kwargs["max_time_ms"] = int(max_time_ms)
    return coll.find(query, projection, **kwargs)


def _projection(columns: Iterable[str], *, with_id: bool = True) -> dict:
    """An inclusion projection; a dotted path under another listed path is dropped (MongoDB
    refuses such path collisions)."""
    cols = list(dict.fromkeys(columns))
    keep = [c for c in cols if not any(c.startswith(o + ".") for o in cols if o != c)]
    proj = {c: 1 for c in keep}
    if "_id" not in proj:
        if with_id:
            proj = {"_id": 1, **proj}
        else:
            proj["_id"] = 0
    return proj


def _get(doc: Mapping, dotted: str) -> Any:
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur
