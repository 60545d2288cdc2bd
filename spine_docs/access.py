"""Who may do what to a catalog on a MongoDB server: three roles, users, credentials.

Roles (created in the catalog's own database by :func:`setup_roles`; each inherits the one
before it, and adds only what its commands need):

``spine_reader``
    the explorer and the read commands (``query``, ``facets``, ``attrs``, ``show``, ``runs``,
    ``migrate status``): ``find``, ``listCollections`` and ``listIndexes`` on the catalog,
    and writing ``saved_queries`` (saved queries live in the catalog).
``spine_writer``
    ``inject``: inserting and updating ``files`` and ``runs``. No index or schema change, no
    new collection (``spine-docs setup`` is an admin's job), and no ``remove`` anywhere but
    ``saved_queries``: nobody's run can be deleted (marking a dead run ``interrupted`` is an
    update).
``spine_admin``
    ``setup``, ``migrate`` (up/down/stamp/ack/unlock/backup/restore), ``backup``: every
    write, creating, dropping and renaming collections (a restore swaps collections in by
    rename), indexes and ``collMod`` (validators; a restore loads documents first and sets
    the validator after, so it needs no ``bypassDocumentValidation``): the built-in
    ``readWrite`` plus ``collMod``. It cannot manage users or roles: that stays with the
    server's own administrator, who runs ``spine-docs roles setup`` and ``spine-docs users add``.

Credentials: the password is in the ``--db``/``SPINE_DOCS_DB`` URL, or better in a file
named by ``SPINE_DOCS_PASSWORD_FILE`` (readable by its owner only, as ssh requires of a
key), with the user name from the URL (``mongodb://NAME@host/...``) or ``SPINE_DOCS_USER``.
:func:`connect` opens a catalog with them. No message shows the password.

The embedded catalog and mongomock have no users: :func:`require_server` says so.
"""

from __future__ import annotations

import os
import re
import stat
import urllib.parse
from pathlib import Path
from typing import Any

from pymongo.errors import OperationFailure, PyMongoError

from . import store
from .settings import Settings

READER, WRITER, ADMIN = "spine_reader", "spine_writer", "spine_admin"
#: ``--role`` value -> database role
ROLE_OF = {"reader": READER, "writer": WRITER, "admin": ADMIN}

#: each role's privileges beyond those it inherits: (collection, actions); "" is every
#: collection of the catalog's database (the database resource; system collections excluded)
PRIVILEGES: dict[str, list[tuple[str, list[str]]]] = {
    READER: [("", ["find", "listCollections", "listIndexes"]),
             ("saved_queries", ["insert", "update", "remove"])],
    WRITER: [("files", ["insert", "update"]),
             ("runs", ["insert", "update"]),
             ("file_versions", ["insert", "update"])],
    ADMIN: [("", ["insert", "update", "remove", "createCollection", "dropCollection",
                  "renameCollectionSameDB", "createIndex", "dropIndex", "collMod"])],
}
#: the role each one inherits (in creation order)
INHERITS: dict[str, str | None] = {READER: None, WRITER: READER, ADMIN: WRITER}

#: a password file larger than this is not a password file
MAX_PASSWORD_BYTES = 4096


class AccessError(store.StoreError):
    """Roles, users or credentials cannot be used as asked (one line, never the password)."""


# --------------------------------------------------------------------------- roles and users

def role_commands(db_name: str) -> list[dict]:
    """The ``createRole`` command of each role, in creation order (an inherited role first)."""
    out = []
    for name, parent in INHERITS.items():
        out.append({
            "createRole": name,
            "privileges": [{"resource": {"db": db_name, "collection": coll}, "actions": list(actions)}
                           for coll, actions in PRIVILEGES[name]],
            "roles": [{"role": parent, "db": db_name}] if parent else [],
        })
    return out


def require_server(db: Any, what: str = "roles and users") -> None:
    """Raise :class:`AccessError` unless ``db`` is on a MongoDB server."""
    if store.is_server(db):
        return
    if store.is_embedded(db):
        raise AccessError(f"the embedded catalog has no users: it is a directory ({store.catalog_path(db)}), "
                          f"guarded by its file permissions; {what} are for a MongoDB server (--db mongodb://...)")
    raise AccessError(f"{store.describe(db)} has no users: it lives in this process; "
                      f"{what} are for a MongoDB server (--db mongodb://...)")


def require_server_url(url: str, what: str = "roles and users") -> None:
    """:func:`require_server` from the URL alone, before anything is opened (so that a
    directory that holds no catalog is not created, nor reported as missing)."""
    directory = store.embedded_dir(url)
    if directory is not None:
        raise AccessError(f"the embedded catalog has no users: it is a directory ({directory}), "
                          f"guarded by its file permissions; {what} are for a MongoDB server (--db mongodb://...)")
    if url.startswith("mongomock://"):
        raise AccessError(f"{url} has no users: it lives in this process; "
                          f"{what} are for a MongoDB server (--db mongodb://...)")


def _majority(db: Any) -> dict:
    return {"w": "majority", "wtimeout": int(db.client.options.server_selection_timeout * 1000)}


def setup_roles(db: Any) -> list[tuple[str, str]]:
    """Create the three roles in ``db``'s database, or update them to these privileges when
    they exist (idempotent). Returns ``[(role, "created" | "updated")]`` in order."""
    require_server(db)
    names = [{"role": n, "db": db.name} for n in INHERITS]
    existing = {r["role"] for r in db.command({"rolesInfo": names}).get("roles", [])}
    done = []
    for cmd in role_commands(db.name):
        name = cmd["createRole"]
        body = {k: v for k, v in cmd.items() if k != "createRole"}
        if name in existing:
            db.command({"updateRole": name, **body, "writeConcern": _majority(db)})
            done.append((name, "updated"))
        else:
            db.command({**cmd, "writeConcern": _majority(db)})
            done.append((name, "created"))
    return done


_USER_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")


def add_user(db: Any, name: str, role: str, password: str) -> str:
    """Create user ``name`` in ``db``'s database with role ``reader``/``writer``/``admin``
    and ``password``, or update an existing one's password and role (idempotent). Returns
    ``"created"`` or ``"updated"``. Errors never carry the password."""
    require_server(db, "users")
    if role not in ROLE_OF:
        raise AccessError(f"unknown role {role!r}: choose reader, writer or admin")
    if not _USER_NAME.fullmatch(name or ""):
        raise AccessError(f"bad user name {name!r}: use letters, digits and . _ @ + - (at most 128)")
    if not password:
        raise AccessError("empty password: refused")
    roles = [{"role": ROLE_OF[role], "db": db.name}]
    found = None
    try:
        found = db.command({"usersInfo": {"user": name, "db": db.name}}).get("users", [])
        verb = "updateUser" if found else "createUser"
        db.command({verb: name, "pwd": password, "roles": roles, "writeConcern": _majority(db)})
    except OperationFailure as exc:
        if exc.code == 31:  # RoleNotFound
            raise AccessError(f"role {ROLE_OF[role]} does not exist in {db.name}: "
                              "run `spine-docs roles setup` first") from None
        raise AccessError(f"cannot {'update' if found else 'add'} user {name}: "
                          f"{_scrub(exc, password)}") from None
    except PyMongoError as exc:
        raise AccessError(f"cannot add user {name}: {_scrub(exc, password)}") from None
    return "updated" if found else "created"


def _scrub(exc: BaseException, *secrets: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text[:300]


# --------------------------------------------------------------------------- credentials

def read_password_file(path: str | os.PathLike) -> str:
    """The password in ``path`` (one trailing newline dropped). Refused, in one line, when
    the file is missing, not a regular file, readable or writable by group or others (as ssh
    refuses a key), empty or larger than :data:`MAX_PASSWORD_BYTES`."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise AccessError(f"password file {p}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise AccessError(f"password file {p}: not a regular file")
    if st.st_mode & 0o077:
        raise AccessError(f"password file {p} is open to others (mode {stat.S_IMODE(st.st_mode):04o}): "
                          f"refused; run `chmod 600 {p}`")
    if st.st_size > MAX_PASSWORD_BYTES:
        raise AccessError(f"password file {p}: over {MAX_PASSWORD_BYTES} bytes, not a password")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessError(f"password file {p}: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    if text.endswith("\n"):
        text = text[:-1].removesuffix("\r")
    if not text:
        raise AccessError(f"password file {p} is empty")
    return text


_URL_USER = re.compile(r"^mongodb(?:\+srv)?://([^:@/]+)(?::([^@/]*))?@", re.IGNORECASE)


def credentials(settings: Settings) -> dict[str, str]:
    """``{"username", "password"}`` for :func:`store.connect` when ``SPINE_DOCS_PASSWORD_FILE``
    is set and the catalog is a server; ``{}`` otherwise (a URL carries its own)."""
    url = settings.db_url
    if not re.match(r"^mongodb(\+srv)?://", url, re.IGNORECASE):
        return {}
    m = _URL_USER.match(url)
    url_user = urllib.parse.unquote_plus(m.group(1)) if m else None
    if settings.password_file is None:
        if settings.user and not (m and m.group(2)):
            raise AccessError("SPINE_DOCS_USER is set but no password is given: "
                              "set SPINE_DOCS_PASSWORD_FILE")
        return {}
    if m and m.group(2):
        raise AccessError("the password is given twice, in the --db URL and in SPINE_DOCS_PASSWORD_FILE: "
                          "remove it from the URL")
    if settings.user and url_user and settings.user != url_user:
        raise AccessError(f"two user names: {url_user!r} in the --db URL and {settings.user!r} "
                          "in SPINE_DOCS_USER: keep one")
    user = settings.user or url_user
    if not user:
        raise AccessError("SPINE_DOCS_PASSWORD_FILE needs a user name: set SPINE_DOCS_USER, "
                          "or put it in the URL (mongodb://NAME@host/...)")
    return {"username": user, "password": read_password_file(settings.password_file)}


def connect(settings: Settings, *, create: bool = True, failover: bool = False) -> Any:
    """:func:`store.connect` with the settings' timeouts and credentials. ``create``: see
    :func:`store.connect`. ``failover``: the operations after the quick connection check
    wait up to ``failover_timeout_s`` for a primary (commands that must ride out an
    election: migrate, roles, users)."""
    return store.connect(settings.db_url, timeout_ms=settings.connect_timeout_ms, create=create,
                         failover_timeout_ms=int(settings.failover_timeout_s * 1000) if failover else None,
                         **credentials(settings))
