"""A real MongoDB server (``mongodb://``, ``mongodb+srv://``) through pymongo: connect and
ping, errors in one line with the password hidden, and how a connection is described."""

from __future__ import annotations

import re
import weakref
from typing import Any

import pymongo
import pymongo.database
from pymongo.errors import PyMongoError

from .common import DEFAULT_DB, StoreError

_SERVER_LABELS: dict[int, str] = {}  # id(client) -> redacted URI (pymongo clients compare by address)


def _redact(url: str) -> str:
    return re.sub(r"(://[^:@/]+):[^@/]*@", r"\1:***@", url)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for cut in (", Timeout:", " (configured timeouts"):
        if cut in text:
            text = text.split(cut)[0]
    return text[:300]


def connect(url: str, timeout_ms: int) -> Any:
    """The database of ``url`` (its path, else ``spine_docs``), pinged; :class:`StoreError`
    (one line, password hidden) when the URI is bad or the server does not answer."""
    shown = _redact(url)
    query = url.split("?", 1)[1].lower() if "?" in url else ""
    opts: dict[str, Any] = {"appname": "spine-docs", "tz_aware": False}
    if "serverselectiontimeoutms=" not in query:
        opts["serverSelectionTimeoutMS"] = timeout_ms
    if "connecttimeoutms=" not in query:
        opts["connectTimeoutMS"] = timeout_ms
    try:
        client = pymongo.MongoClient(url, **opts)
    except (PyMongoError, ValueError, TypeError) as exc:
        raise StoreError(f"bad MongoDB URI {shown}: {_one_line(exc)}") from None
    try:
        db = client.get_default_database(default=DEFAULT_DB)
        db.command("ping")
    except (PyMongoError, ValueError, TypeError) as exc:
        client.close()
        raise StoreError(f"cannot reach MongoDB at {shown}: {_one_line(exc)}") from None
    _SERVER_LABELS[id(client)] = shown
    weakref.finalize(client, _SERVER_LABELS.pop, id(client), None)
    return db


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
