"""A real MongoDB server (``mongodb://``, ``mongodb+srv://``) through pymongo: connect and
ping, errors in one line with the password hidden, and how a connection is described.

The password may be in the URI or given apart (read from ``SPINE_DOCS_PASSWORD_FILE`` by
:mod:`spine_docs.access`); either way no message of this module contains it."""

from __future__ import annotations

import contextlib
import re
import urllib.parse
import weakref
from typing import Any

import pymongo
import pymongo.database
from pymongo.errors import PyMongoError

from .common import DEFAULT_DB, StoreError

_SERVER_LABELS: dict[int, str] = {}  # id(client) -> redacted URI (pymongo clients compare by address)
#: id(client) -> (URI, user name given apart, password given apart): what mongodump and
#: mongorestore need to reach the same database as the client (see :func:`connection_of`)
_CONNECTIONS: dict[int, tuple[str, str | None, str | None]] = {}


def _redact(url: str) -> str:
    return re.sub(r"(://[^:@/]+):[^@/]*@", r"\1:***@", url)


def _secrets(url: str, password: str | None) -> list[str]:
    """Every form of the password(s) a message could carry: the URI's (as written and
    decoded) and the one given apart, each also percent-encoded."""
    plain = [password] if password else []
    m = re.search(r"://[^:@/]+:([^@/]*)@", url)
    if m and m.group(1):
        plain += [m.group(1), urllib.parse.unquote_plus(m.group(1))]
    out = [f(p) for p in plain for f in (str, urllib.parse.quote_plus, urllib.parse.quote)]
    return sorted({s for s in out if s}, key=len, reverse=True)


def _one_line(exc: BaseException, secrets: list[str] = ()) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for cut in (", Timeout:", " (configured timeouts"):
        if cut in text:
            text = text.split(cut)[0]
    text = _redact(text)
    for s in secrets:
        text = text.replace(s, "***")
    return text[:300]


def connect(url: str, timeout_ms: int, *, failover_timeout_ms: int | None = None,
            username: str | None = None, password: str | None = None) -> Any:
    """The database of ``url`` (its path, else ``spine_docs``), pinged within ``timeout_ms``;
    :class:`StoreError` (one line, password hidden) when the URI is bad or the server does
    not answer.

    ``failover_timeout_ms``: the client's server selection timeout for what follows (long
    commands that must wait out an election); the ping stays bounded by ``timeout_ms``.
    ``username``/``password``: credentials given apart from the URI (a URI's own user name
    is kept when ``username`` is None)."""
    shown = _redact(url)
    secrets = _secrets(url, password)
    query = url.split("?", 1)[1].lower() if "?" in url else ""
    opts: dict[str, Any] = {"appname": "spine-docs", "tz_aware": False}
    if "serverselectiontimeoutms=" not in query:
        opts["serverSelectionTimeoutMS"] = failover_timeout_ms or timeout_ms
    if "connecttimeoutms=" not in query:
        opts["connectTimeoutMS"] = timeout_ms
    if password is not None:
        opts["password"] = password
        if username is not None:
            opts["username"] = username
    try:
        client = pymongo.MongoClient(url, **opts)
    except (PyMongoError, ValueError, TypeError) as exc:
        raise StoreError(f"bad MongoDB URI {shown}: {_one_line(exc, secrets)}") from None
    try:
        db = client.get_default_database(default=DEFAULT_DB)
        # with a longer selection timeout for what follows, the check itself stays quick
        quick = failover_timeout_ms and "serverselectiontimeoutms=" not in query
        with pymongo.timeout(timeout_ms / 1000) if quick else contextlib.nullcontext():
            db.command("ping")
    except (PyMongoError, ValueError, TypeError) as exc:
        client.close()
        raise StoreError(f"cannot reach MongoDB at {shown}: {_one_line(exc, secrets)}") from None
    _SERVER_LABELS[id(client)] = shown
    _CONNECTIONS[id(client)] = (url, username if password is not None else None, password)
    weakref.finalize(client, _SERVER_LABELS.pop, id(client), None)
    weakref.finalize(client, _CONNECTIONS.pop, id(client), None)
    return db


def connection_of(db: Any) -> tuple[str, str | None, str | None] | None:
    """``(uri, username, password)`` that :func:`connect` opened ``db`` with (the user name
    and password given apart from the URI, else None), for a tool that must reach the same
    database (mongodump, mongorestore); None for a client this module did not open."""
    return _CONNECTIONS.get(id(db.client))


def is_server(db: Any) -> bool:
    """True for a real MongoDB server (pymongo), False for mongomock and the embedded catalog."""
    return isinstance(db, pymongo.database.Database)


def describe(db: Any) -> str:
    """The URI ``db`` was connected with (password hidden), else its hosts and name."""
    label = _SERVER_LABELS.get(id(db.client))
    if label:
        return label
    hosts = ",".join(f"{h}:{p}" for h, p in db.client.topology_description.server_descriptions())
    return f"mongodb://{hosts}/{db.name}"
