"""The catalog schema: reads ``schema.json``, creates what it declares, and gates on its version.

``schema.json`` (shipped with the package, see :mod:`spine_docs.resources`) declares
``schema_version``, every collection with its ``$jsonSchema`` validator (level and action) and
every index with its full options. This module

* loads and checks it (:func:`load_schema`, :data:`CODE_SCHEMA_VERSION`);
* turns index specs from ``schema.json`` and from ``listIndexes`` into one canonical form so
  they are compared **by spec, never by name** (:func:`index_identity`, :func:`index_option_diff`);
* sends the few schema commands there are (``create``, ``collMod``, ``createIndexes``,
  ``dropIndexes``) through one function, :func:`execute`, which works on a real server, on
  mongomock and on the embedded catalog (through the store's engine);
* initialises a fresh database (:func:`setup`) and stamps/reads its version
  (:func:`db_version`, :func:`stamp_version`);
* refuses to work against a database whose version differs from the code's
  (:func:`check_version` raises :class:`SchemaMismatch` whose message names the fixing command).

The full desired-vs-actual comparison and the migration runner live in
:mod:`spine_docs.migrate`; this module never prints.
"""

from __future__ import annotations

import copy
import getpass
import json
import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from . import resources

META = "meta"
SCHEMA_DOC_ID = "schema"
LOCK_DOC_ID = "migration_lock"
CHANGELOG = "changelog"

#: Keys of an index spec that are documentation or server bookkeeping, never part of the spec.
_INDEX_IGNORED = {"key", "name", "comment", "v", "ns", "background", "textIndexVersion",
                  "2dsphereIndexVersion", "dropDups", "clustered"}
#: Options with a default value equal to "absent".
_INDEX_DEFAULTS: dict[str, Any] = {"unique": False, "sparse": False, "hidden": False}
_TEXT_DEFAULTS: dict[str, Any] = {"default_language": "english", "language_override": "language"}


class SchemaError(Exception):
    """schema.json is missing or malformed, or a schema command failed."""


class SchemaMismatch(SchemaError):
    """The database's schema version is not the one this spine-docs needs.

    ``str(exc)`` is one line that names the command that fixes it.
    """

    def __init__(self, message: str, *, db_version: int, code_version: int, command: str | None):
        super().__init__(message)
        self.db_version = db_version
        self.code_version = code_version
        self.command = command


# --------------------------------------------------------------------------- loading

def load_schema(path: str | Path | None = None) -> dict:
    """Read and sanity-check ``schema.json`` (the shipped one when ``path`` is None).

    Returns the parsed dict; raises :class:`SchemaError` with one line when the file is
    missing or does not have the expected shape.
    """
    p = Path(path) if path is not None else resources.schema_file()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"schema file not found: {p}") from None
    except (OSError, ValueError) as exc:
        raise SchemaError(f"cannot read schema file {p}: {exc}") from None
    _validate_schema(data, p)
    return data


def _validate_schema(data: Any, p: Path) -> None:
    if not isinstance(data, dict):
        raise SchemaError(f"{p}: top level must be an object")
    v = data.get("schema_version")
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise SchemaError(f"{p}: schema_version must be a non-negative integer")
    colls = data.get("collections")
    if not isinstance(colls, dict):
        raise SchemaError(f"{p}: 'collections' must be an object")
    for name, spec in colls.items():
        if not isinstance(spec, dict):
            raise SchemaError(f"{p}: collection {name!r} must be an object")
        if "validator" in spec and not isinstance(spec["validator"], dict):
            raise SchemaError(f"{p}: collection {name!r}: validator must be an object")
        for i, idx in enumerate(spec.get("indexes", [])):
            if not isinstance(idx, dict) or not isinstance(idx.get("key"), (dict, list)) or not idx["key"]:
                raise SchemaError(f"{p}: collection {name!r} index #{i}: needs a non-empty 'key'")


def _code_version() -> int:
    try:
        return int(load_schema()["schema_version"])
    except SchemaError:  # a broken install; every command will report the real error
        return 0


#: The schema version this installed spine-docs needs (from the shipped schema.json).
CODE_SCHEMA_VERSION: int = _code_version()


def schema_version(schema: Mapping | None = None) -> int:
    return int((schema if schema is not None else load_schema())["schema_version"])


# --------------------------------------------------------------------------- index specs

def index_key(spec: Mapping) -> list[tuple[str, Any]]:
    """The key of an index spec as an ordered list of (field, direction-or-type)."""
    key = spec["key"]
    items = list(key.items()) if isinstance(key, Mapping) else [tuple(kv) for kv in key]
    return [(str(k), _num(v)) for k, v in items]


def index_options(spec: Mapping) -> dict:
    """The creation options of an index spec (everything but key/name/comment/bookkeeping)."""
    return {k: copy.deepcopy(v) for k, v in spec.items() if k not in _INDEX_IGNORED}


def index_name(spec: Mapping) -> str:
    """The explicit name, else the name MongoDB would generate (``field_dir_field_dir``)."""
    if spec.get("name"):
        return str(spec["name"])
    return "_".join(f"{k}_{v}" for k, v in index_key(spec))


def index_document(spec: Mapping) -> dict:
    """The document sent in ``createIndexes.indexes`` for a spec from schema.json."""
    doc = {"key": dict(index_key(spec)), "name": index_name(spec)}
    doc.update(index_options(spec))
    return doc


def _num(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and float(v).is_integer():
        return int(v)
    return v


def _canon(v: Any) -> Any:
    """A hashable canonical form: dict key order ignored, 1 == 1.0 == Int64(1), True != 1."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, float)):
        return ("n", float(v))
    if isinstance(v, str):
        return ("s", v)
    if v is None:
        return ("z",)
    if isinstance(v, Mapping):
        return ("d", tuple(sorted((str(k), _canon(x)) for k, x in v.items())))
    if isinstance(v, (list, tuple)):
        return ("l", tuple(_canon(x) for x in v))
    return ("o", type(v).__name__, repr(v))


def _text_parts(spec: Mapping) -> tuple[list, tuple | None, list]:
    """Split a key into (before, text-fields-with-weights, after) for text indexes.

    schema.json writes ``{"name": "text", "path": "text"}``; listIndexes answers
    ``{"_fts": "text", "_ftsx": 1}`` plus ``weights``. Both map to the same identity.
    """
    key = index_key(spec)
    weights = spec.get("weights") or {}
    if any(k == "_fts" for k, _ in key):
        i = [k for k, _ in key].index("_fts")
        before = key[:i]
        after = [kv for kv in key[i + 1:] if kv[0] != "_ftsx"]
        text = tuple(sorted((str(k), float(w)) for k, w in weights.items()))
        return before, text, after
    if any(v == "text" for _, v in key):
        first = next(i for i, (_, v) in enumerate(key) if v == "text")
        last = max(i for i, (_, v) in enumerate(key) if v == "text")
        fields = {k: float(weights.get(k, 1)) for k, v in key if v == "text"}
        for k, w in weights.items():  # a weights-only field (e.g. "$**") is a text field too
            fields.setdefault(str(k), float(w))
        return key[:first], tuple(sorted(fields.items())), [kv for kv in key[last + 1:] if kv[1] != "text"]
    return key, None, []


def index_identity(spec: Mapping) -> tuple:
    """What an index *is* for pairing desired with actual: its key (text indexes normalised)."""
    before, text, after = _text_parts(spec)
    if text is None:
        return tuple((k, _canon(v)) for k, v in before)
    return (tuple((k, _canon(v)) for k, v in before), ("$text",), tuple((k, _canon(v)) for k, v in after))


def _comparable_options(spec: Mapping) -> dict:
    opts = {k: v for k, v in index_options(spec).items() if k not in ("weights",)}
    for k, default in _INDEX_DEFAULTS.items():
        if opts.get(k, default) == default:
            opts.pop(k, None)
    _, text, _ = _text_parts(spec)
    if text is not None:
        opts["weights"] = text
        for k, default in _TEXT_DEFAULTS.items():
            opts.setdefault(k, default)
    return opts


def index_option_diff(desired: Mapping, actual: Mapping) -> list[str]:
    """Names of the options in which ``actual`` (from listIndexes) differs from ``desired``.

    Empty list: same spec. ``collation`` is compared on the fields the desired spec names
    (the server fills in every default field of a collation).
    """
    d, a = _comparable_options(desired), _comparable_options(actual)
    diff = []
    for k in sorted(set(d) | set(a)):
        if k == "collation" and k in d and k in a and isinstance(a[k], Mapping):
            if any(_canon(a[k].get(ck)) != _canon(cv) for ck, cv in d[k].items()):
                diff.append(k)
            continue
        if k == "weights":
            if d.get(k) != a.get(k):
                diff.append(k)
            continue
        if _canon(d.get(k)) != _canon(a.get(k)):
            diff.append(k)
    return diff


def same_index(desired: Mapping, actual: Mapping) -> bool:
    """True when two index specs are the same by key and options (names ignored)."""
    return index_identity(desired) == index_identity(actual) and not index_option_diff(desired, actual)


# --------------------------------------------------------------------------- validators

def collection_spec_options(spec: Mapping) -> dict:
    """The ``create``/``collMod`` options a collection spec of schema.json asks for."""
    out: dict[str, Any] = {}
    if spec.get("validator"):
        out["validator"] = copy.deepcopy(spec["validator"])
        out["validationLevel"] = spec.get("validationLevel", "strict")
        out["validationAction"] = spec.get("validationAction", "error")
    return out


def validator_matches(desired: Mapping, actual_options: Mapping | None) -> bool:
    """Whether a collection's actual options carry the validator/level/action that ``desired``
    (options as from :func:`collection_spec_options`) asks for. No validator wanted: none present."""
    actual = dict(actual_options or {})
    if not desired.get("validator"):
        return not actual.get("validator")
    return (_canon(actual.get("validator")) == _canon(desired["validator"])
            and actual.get("validationLevel", "strict") == desired.get("validationLevel", "strict")
            and actual.get("validationAction", "error") == desired.get("validationAction", "error"))


# --------------------------------------------------------------------------- the store seam
#
# Every kind of database spine-docs opens (store.connect: a server, mongomock://, the
# embedded catalog) answers the same pymongo calls: create_collection(name, **options),
# command("collMod", ...), list_collections(), list_indexes(). On mongomock and the embedded
# catalog the store's engine accepts and records validators and index options.

def _store():
    from . import store  # store is above schema in the module order
    return store


def _is_server(db) -> bool:
    return bool(_store().is_server(db))


@contextmanager
def writing(db) -> Iterator[None]:
    """``store.writing(db)``: persist embedded-catalog writes (no-op elsewhere; nests)."""
    with _store().writing(db):
        yield


def refresh(db) -> None:
    """``store.refresh(db)``: see what another process saved to an embedded catalog."""
    _store().refresh(db)


def collection_names(db) -> list[str]:
    return sorted(n for n in db.list_collection_names() if not n.startswith("system."))


def collection_options(db, name: str) -> dict | None:
    """The options of collection ``name`` (``validator``, ``validationLevel``, ...) as
    ``listCollections`` reports them; None when the collection does not exist."""
    for info in db.list_collections(filter={"name": name}):
        return dict(info.get("options") or {})
    return None


def list_indexes(db, name: str) -> list[dict]:
    """``listIndexes`` of a collection as plain dicts (empty when it does not exist)."""
    if name not in db.list_collection_names():
        return []
    out = []
    for info in db[name].list_indexes():
        d = dict(info)
        d["key"] = dict(d["key"])
        out.append(d)
    return out


def execute(db, command: Mapping) -> None:
    """Send one schema command, in MongoDB's own command form.

    Supported: ``create`` (with validator options), ``collMod`` (validator options, or
    ``index: {name|keyPattern, expireAfterSeconds|hidden}``), ``createIndexes``,
    ``dropIndexes`` (one ``index`` name or key), ``drop``. The caller wraps calls in
    :func:`writing`.
    """
    cmd = dict(command)
    verb = next(iter(cmd))
    name = cmd.pop(verb)
    if verb == "create":
        db.create_collection(name, **cmd)
    elif verb == "collMod":
        db.command("collMod", name, **cmd)
    elif verb == "createIndexes":
        if _is_server(db):  # one command: the server builds them all in one collection scan
            docs = [{**doc, "name": doc.get("name") or index_name(doc)} for doc in cmd["indexes"]]
            db.command({"createIndexes": name, "indexes": docs})
            return
        for doc in cmd["indexes"]:
            opts = {k: v for k, v in doc.items() if k != "key"}
            db[name].create_index(list(doc["key"].items()), **opts)
    elif verb == "dropIndexes":
        index = cmd["index"]
        db[name].drop_index(index if isinstance(index, str) else list(dict(index).items()))
    elif verb == "drop":
        db.drop_collection(name)
    else:
        raise SchemaError(f"unsupported schema command {verb!r}")


# --------------------------------------------------------------------------- versions

def db_version(db) -> int:
    """The database's schema version: ``meta {_id: "schema"}.version``, 0 when unstamped."""
    doc = db[META].find_one({"_id": SCHEMA_DOC_ID})
    if not doc:
        return 0
    try:
        return int(doc.get("version") or 0)
    except (TypeError, ValueError):
        return 0


def stamp_version(db, version: int, *, by: str | None = None) -> None:
    """Write ``meta {_id: "schema", version}`` (the caller holds :func:`writing`)."""
    db[META].update_one(
        {"_id": SCHEMA_DOC_ID},
        {"$set": {"version": int(version), "updated": now(), "by": by or whoami()}},
        upsert=True,
    )


def is_empty(db) -> bool:
    """True when no collection of the database holds a document."""
    return not any(db[n].find_one({}, {"_id": 1}) is not None for n in collection_names(db))


def now() -> datetime:
    """UTC now at BSON's millisecond precision (what a stored date reads back as)."""
    t = datetime.now(timezone.utc)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def username() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def whoami() -> str:
    return f"{username()}@{socket.gethostname()}"


_CRED = re.compile(r"^(mongodb(?:\+srv)?://)([^:@/]+):([^@/]*)@")


def display_url(url: str) -> str:
    """A URL fit for a message: the password is replaced by ``****``."""
    return _CRED.sub(lambda m: f"{m.group(1)}{m.group(2)}:****@", str(url))


def fixing_command(db_ver: int, code_ver: int, db_url: str | None = None) -> str | None:
    """The spine-docs command that brings a database at ``db_ver`` to ``code_ver``."""
    db_arg = f" --db {_shell_quote(display_url(db_url))}" if db_url else ""
    if db_ver < code_ver:
        return f"spine-docs migrate up{db_arg}"
    if db_ver > code_ver:
        return f"spine-docs migrate down --to {code_ver}{db_arg}"
    return None


def _shell_quote(s: str) -> str:
    import shlex
    return shlex.quote(s)


def mismatch_message(db_ver: int, code_ver: int, db_url: str | None = None, *, empty: bool = False) -> str:
    """The one line shown when versions differ; it names the fixing command."""
    cmd = fixing_command(db_ver, code_ver, db_url)
    if db_ver < code_ver:
        if empty:
            setup_cmd = "spine-docs setup" + (f" --db {_shell_quote(display_url(db_url))}" if db_url else "")
            return f"database is not initialised (schema version 0), this spine-docs needs {code_ver}: run `{setup_cmd}`"
        return f"database schema version {db_ver}, this spine-docs needs {code_ver}: run `{cmd}`"
    return (f"database schema version {db_ver} is newer than this spine-docs ({code_ver}): "
            f"upgrade spine-docs, or with the newer spine-docs run `{cmd}`")


def check_version(db, schema: Mapping | None = None, *, db_url: str | None = None,
                  allow_empty: bool = False) -> int:
    """The startup gate of ``inject`` and the explorer.

    Returns the database version when it equals the code's; raises :class:`SchemaMismatch`
    (one line naming the fixing command, with ``db_url`` in it when given) otherwise.
    ``allow_empty=True`` lets a fresh, empty database through (returns 0) so the caller can
    run :func:`setup` on it.
    """
    refresh(db)
    code = schema_version(schema) if schema is not None else CODE_SCHEMA_VERSION
    have = db_version(db)
    if have == code:
        return have
    empty = have == 0 and is_empty(db)
    if empty and allow_empty:
        return 0
    raise SchemaMismatch(mismatch_message(have, code, db_url, empty=empty),
                         db_version=have, code_version=code,
                         command=fixing_command(have, code, db_url))


# --------------------------------------------------------------------------- setup

@dataclass
class SetupReport:
    """What :func:`setup` did. ``action``: ``initialised`` (fresh database) or ``current``
    (already at the code version; missing pieces created)."""

    action: str
    version: int
    created_collections: list[str] = field(default_factory=list)
    created_indexes: list[str] = field(default_factory=list)   # "collection.index_name"
    validators_set: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)             # left for `migrate up`
    commands: list[dict] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.commands)

    def summary(self) -> str:
        """One line, e.g. ``initialised at schema version 2: 5 collections, 18 indexes, 1 validator``."""
        head = (f"initialised at schema version {self.version}" if self.action == "initialised"
                else f"schema version {self.version}")
        made = [f"{len(self.created_collections)} collections" if self.created_collections else "",
                f"{len(self.created_indexes)} indexes" if self.created_indexes else "",
                f"{len(self.validators_set)} validator(s)" if self.validators_set else ""]
        made = [m for m in made if m]
        line = head + (": created " + ", ".join(made) if made else ": nothing to create")
        if self.drift:
            line += f"; {len(self.drift)} difference(s) from schema.json left for `spine-docs migrate up`"
        return line


def setup_commands(db, schema: Mapping) -> tuple[list[dict], list[str]]:
    """Commands that create what is *missing* (collections, validators on new collections,
    indexes), never touching what exists with other options; plus a list of such drift."""
    commands: list[dict] = []
    drift: list[str] = []
    existing = set(db.list_collection_names())
    for cname, cspec in schema["collections"].items():
        want = collection_spec_options(cspec)
        if cname not in existing:
            commands.append({"create": cname, **want})
        else:
            opts = collection_options(db, cname)
            if not validator_matches(want, opts):
                if want.get("validator") and not (opts or {}).get("validator"):
                    commands.append({"collMod": cname, **want})
                else:
                    drift.append(f"{cname}: validator differs from schema.json")
        actual = list_indexes(db, cname) if cname in existing else []
        actual_names = {i["name"] for i in actual}
        new = []
        for ispec in cspec.get("indexes", []):
            same_key = [a for a in actual if index_identity(a) == index_identity(ispec)]
            if any(not index_option_diff(ispec, a) for a in same_key):
                continue
            if same_key:
                drift.append(f"{cname}.{same_key[0]['name']}: options differ from schema.json "
                             f"({', '.join(index_option_diff(ispec, same_key[0]))})")
                continue
            doc = index_document(ispec)
            if doc["name"] in actual_names:
                drift.append(f"{cname}.{doc['name']}: an index of that name has another key")
                continue
            new.append(doc)
        if new:
            commands.append({"createIndexes": cname, "indexes": new})
    return commands, drift


def setup(db, schema: Mapping | None = None, *, db_url: str | None = None) -> SetupReport:
    """Initialise a fresh database to the current schema, or complete a current one.

    * empty, unstamped database: create every collection (with its validator) and index of
      ``schema.json`` and stamp ``meta.schema.version``;
    * database already at the code version: create whatever is missing (idempotent; never
      drops or changes an existing index, drift is reported for ``spine-docs migrate up``);
    * anything else (older, newer, or unversioned with data): raises :class:`SchemaMismatch`
      naming ``spine-docs migrate up`` (which backs up first).
    """
    schema = schema if schema is not None else load_schema()
    code = schema_version(schema)
    with writing(db):
        have = db_version(db)
        empty = have == 0 and is_empty(db)
        if have != code and not empty:
            raise SchemaMismatch(mismatch_message(have, code, db_url),
                                 db_version=have, code_version=code,
                                 command=fixing_command(have, code, db_url))
        commands, drift = setup_commands(db, schema)
        report = SetupReport(action="initialised" if empty else "current", version=code,
                             drift=drift, commands=commands)
        for cmd in commands:
            execute(db, cmd)
            verb = next(iter(cmd))
            if verb == "create":
                report.created_collections.append(cmd[verb])
                if cmd.get("validator"):
                    report.validators_set.append(cmd[verb])
            elif verb == "collMod":
                report.validators_set.append(cmd[verb])
            elif verb == "createIndexes":
                report.created_indexes += [f"{cmd[verb]}.{d['name']}" for d in cmd["indexes"]]
        if empty:
            stamp_version(db, code)
            t = now()
            db[CHANGELOG].insert_one({
                "version": code, "name": "setup", "direction": "setup", "state": "applied",
                "checksum": None, "started": t, "finished": t, "duration_s": 0.0,
                "user": username(), "host": socket.gethostname(), "pid": os.getpid(), "error": None,
            })
    return report
