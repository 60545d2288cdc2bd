"""``mongomock://[name][/db]``: in-memory engine databases. ``mongomock://`` is a fresh one on
every call; a named one is shared by every connect of that name in this process."""

from __future__ import annotations

import re
import threading
from typing import Any

from . import engine
from .common import DEFAULT_DB, StoreError

_MOCK_CLIENTS: dict[str, engine.Client] = {}
_REGISTRY_LOCK = threading.Lock()
_MOCK_NAME = re.compile(r"[A-Za-z0-9_.-]*")


def connect(url: str) -> Any:
    """The database of a ``mongomock://`` URL; :class:`StoreError` when the URL is bad."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    name, _sep, dbname = rest.partition("/")
    dbname = dbname.strip("/") or DEFAULT_DB
    if not _MOCK_NAME.fullmatch(name) or not re.fullmatch(r"[A-Za-z0-9_-]+", dbname):
        raise StoreError(f"bad mongomock URL {url!r}: use mongomock://[name][/database] "
                         "(letters, digits, '_', '-', '.')")
    with _REGISTRY_LOCK:
        if name:
            client = _MOCK_CLIENTS.get(name)
            if client is None:
                client = _MOCK_CLIENTS[name] = engine.Client()
        else:
            client = engine.Client()
    db = client.get_database(dbname)
    engine.database_store(db).label = (f"mongomock://{name}/{dbname}" if name
                                       else f"in-memory mongomock database {dbname!r}")
    return db


def describe(db: Any) -> str:
    """``mongomock://name/db``, else ``in-memory mongomock database 'db'`` (any mongomock db)."""
    st = engine.database_store(db)
    label = st.label if st is not None else None
    return label or f"in-memory mongomock database {db.name!r}"
