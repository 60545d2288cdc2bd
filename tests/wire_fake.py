"""A scripted MongoDB for wire-level tests: MockupDB (MongoDB's wire-protocol test server; it
speaks the protocol, it is not a database) answering every command the way an empty
database would, with per-test overrides, recording every request.

Default answers: cursors (find, aggregate, listCollections, listIndexes) are empty; inserts,
updates and deletes succeed; findAndModify finds a document with the ``_id`` it asked for
(an upsert finds none and inserts); any other command is ``{ok: 1}``. An override is a function of the request that answers it
(and returns True) or lets it through (returns None/False).

``step_hook`` is what the migration ``STEP`` (see :func:`migrations`) calls: a test sets it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Callable

import mockupdb
import pytest

from spine_docs import resources

WIRE_6_0 = {"maxWireVersion": 17, "minWireVersion": 0}  # a MongoDB 6.0 server
HANDSHAKE = {"ismaster", "isMaster", "hello"}

#: called by the test migration 0001 with the database (set by a test)
step_hook: Callable[[Any], None] = lambda db: None  # noqa: E731


class FakeServer:
    def __init__(self, port: int | None = None, **hello: Any):
        self.server = mockupdb.MockupDB(port=port, auto_ismaster={**WIRE_6_0, **hello})
        self.requests: list[tuple[str, dict]] = []
        self.overrides: list[Callable[[Any], bool | None]] = []
        self._mutex = threading.Lock()

    def start(self) -> "FakeServer":
        self.server.run()
        self.server.autoresponds(self._answer)
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def uri(self) -> str:
        return self.server.uri

    @property
    def address(self) -> str:
        return self.server.address_string

    def sent(self, name: str, collection: str | None = None) -> list[dict]:
        """The documents of the requests of command ``name`` (on ``collection``) so far."""
        with self._mutex:
            return [d for n, d in self.requests
                    if n.lower() == name.lower() and (collection is None or d.get(n) == collection)]

    def _answer(self, request: Any) -> bool | None:
        name = request.command_name
        if name is None or name in HANDSHAKE:
            return None  # the handshake: MockupDB's auto_ismaster answers it
        doc = dict(request.doc)
        with self._mutex:
            self.requests.append((name, doc))
        for override in list(self.overrides):
            if override(request):
                return True
        lower = name.lower()
        if lower in ("find", "aggregate", "listcollections", "listindexes"):
            return request.ok(cursor={"id": 0, "ns": f"{doc.get('$db')}.{doc.get(name)}", "firstBatch": []})
        if lower == "insert":
            return request.ok(n=len(doc.get("documents") or []))
        if lower == "update":
            return request.ok(n=1, nModified=1)
        if lower == "delete":
            return request.ok(n=1)
        if lower == "findandmodify":
            _id = (doc.get("query") or {}).get("_id")
            if doc.get("upsert"):  # nothing there: the upsert inserts (the value before is null)
                return request.ok(value=None, lastErrorObject={"n": 1, "updatedExisting": False, "upserted": _id})
            return request.ok(value={"_id": _id}, lastErrorObject={"n": 1, "updatedExisting": True})
        return request.ok()


STEP = '''description = "a step the test controls"


def up(db):
    import wire_fake
    wire_fake.step_hook(db)


def down(db):
    pass
'''
SECOND = '''description = "never reached: the tests stop at version 1"


def up(db):
    raise AssertionError("0002 must not run")


def down(db):
    pass
'''


def migrations(tmp_path: Path) -> tuple[Path, Path]:
    """A migrations directory (0001 calls :data:`step_hook`, 0002 is never run) and a
    schema.json at version 2, so that ``up --to 1`` has nothing to reconcile."""
    mdir = tmp_path / "migrations"
    mdir.mkdir()
    (mdir / "0001_controlled.py").write_text(STEP)
    (mdir / "0002_unreached.py").write_text(SECOND)
    data = json.loads(resources.schema_file().read_text())
    data["schema_version"] = 2
    sfile = tmp_path / "schema.json"
    sfile.write_text(json.dumps(data))
    return mdir, sfile


def scram_sha256(user: str, password: str, *, iterations: int = 4096):
    """An override playing a server's side of SCRAM-SHA-256 for ``user``/``password``: it
    checks the client's proof (so the password that reached the server is the right one)
    and answers "Authentication failed." (code 18) otherwise. Add ``saslSupportedMechs`` to
    the handshake: ``FakeServer(saslSupportedMechs=["SCRAM-SHA-256"])``."""
    import base64
    import hashlib
    import hmac

    from bson.binary import Binary

    salt = b"spine-docs-test-salt"
    state: dict[str, str] = {}
    verified: list[str] = []

    def h(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    def answer(request) -> bool | None:
        name = request.command_name
        if name == "saslStart":
            first = bytes(request.doc["payload"]).decode()
            bare = first.split(",", 2)[2]                      # n=user,r=nonce
            fields = dict(kv.split("=", 1) for kv in bare.split(","))
            if fields.get("n") != user:
                return request.command_err(code=18, errmsg="Authentication failed.")
            server_first = f"r={fields['r']}server-nonce,s={base64.b64encode(salt).decode()},i={iterations}"
            state.update(bare=bare, server_first=server_first)
            return request.ok(conversationId=1, done=False, payload=Binary(server_first.encode()))
        if name == "saslContinue":
            final = bytes(request.doc["payload"]).decode()
            without_proof, proof = final.rsplit(",p=", 1)
            auth_message = f"{state['bare']},{state['server_first']},{without_proof}"
            salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
            client_key = h(salted, "Client Key")
            signature = h(hashlib.sha256(client_key).digest(), auth_message)
            expected = bytes(a ^ b for a, b in zip(client_key, signature))
            if base64.b64decode(proof) != expected:
                return request.command_err(code=18, errmsg="Authentication failed.")
            verified.append(user)
            server_sig = base64.b64encode(h(h(salted, "Server Key"), auth_message)).decode()
            return request.ok(conversationId=1, done=True, payload=Binary(f"v={server_sig}".encode()))
        return None

    answer.verified = verified
    return answer


class Catalog:
    """An override that keeps what the client writes: ``insert``, ``update``, ``delete``,
    ``find``, ``aggregate`` and ``count`` are run on an in-memory mongomock database
    (:attr:`db`, which a test reads afterwards to see what "the server" holds) and answered
    in the server's reply format (duplicate keys as ``writeErrors``). Other commands fall
    through to :class:`FakeServer`'s defaults. Install it last: overrides added before it
    (a refused insert, a hang-up) see each request first."""

    def __init__(self) -> None:
        import mongomock

        self.db = mongomock.MongoClient(tz_aware=False)["spine_docs"]
        self._mutex = threading.Lock()

    def __call__(self, request: Any) -> bool | None:
        name = request.command_name
        lower = (name or "").lower()
        if lower not in ("insert", "update", "delete", "find", "aggregate", "count"):
            return None
        doc = dict(request.doc)
        try:
            with self._mutex:
                reply = getattr(self, "_" + lower)(self.db[doc[name]], doc)
        except Exception as exc:  # a request this fake cannot run: an error reply, never silence
            return request.fail(f"wire_fake.Catalog cannot run it: {type(exc).__name__}: {exc}")
        return request.ok(**reply)

    def apply(self, request: Any) -> dict:
        """Run a write request on the database without answering it (for a test that
        hangs up after the write landed); returns the reply it would have sent."""
        name = request.command_name
        doc = dict(request.doc)
        with self._mutex:
            return getattr(self, "_" + name.lower())(self.db[doc[name]], doc)

    @staticmethod
    def _insert(coll: Any, doc: dict) -> dict:
        import mongomock

        n, errors = 0, []
        for i, d in enumerate(doc.get("documents") or []):
            try:
                coll.insert_one(dict(d))
                n += 1
            except mongomock.DuplicateKeyError as exc:
                errors.append({"index": i, "code": 11000, "errmsg": f"E11000 duplicate key: {exc}"})
        return {"n": n, **({"writeErrors": errors} if errors else {})}

    @staticmethod
    def _update(coll: Any, doc: dict) -> dict:
        n = modified = 0
        upserted = []
        for i, u in enumerate(doc.get("updates") or []):
            if not any(str(k).startswith("$") for k in u["u"]):  # a replacement document
                r = coll.replace_one(u["q"], u["u"], upsert=bool(u.get("upsert")))
            else:
                fn = coll.update_many if u.get("multi") else coll.update_one
                r = fn(u["q"], u["u"], upsert=bool(u.get("upsert")))
            if r.upserted_id is not None:
                upserted.append({"index": i, "_id": r.upserted_id})
                n += 1
            else:
                n += r.matched_count
                modified += r.modified_count
        return {"n": n, "nModified": modified, **({"upserted": upserted} if upserted else {})}

    @staticmethod
    def _delete(coll: Any, doc: dict) -> dict:
        n = 0
        for d in doc.get("deletes") or []:
            n += (coll.delete_one if d.get("limit") else coll.delete_many)(d["q"]).deleted_count
        return {"n": n}

    @staticmethod
    def _find(coll: Any, doc: dict) -> dict:
        cur = coll.find(doc.get("filter") or {}, doc.get("projection"))
        if doc.get("sort"):
            cur = cur.sort(list(doc["sort"].items()))
        if doc.get("limit"):
            cur = cur.limit(abs(int(doc["limit"])))
        return {"cursor": {"id": 0, "ns": f"{doc.get('$db')}.{coll.name}", "firstBatch": list(cur)}}

    @staticmethod
    def _aggregate(coll: Any, doc: dict) -> dict:
        rows = list(coll.aggregate(list(doc.get("pipeline") or [])))
        return {"cursor": {"id": 0, "ns": f"{doc.get('$db')}.{coll.name}", "firstBatch": rows}}

    @staticmethod
    def _count(coll: Any, doc: dict) -> dict:
        return {"n": coll.count_documents(doc.get("query") or {})}


# --------------------------------------------------------------------------- fixtures
# (a test module takes them with ``from wire_fake import catalog, fake  # noqa: F401``)

@pytest.fixture
def fake():
    """A started :class:`FakeServer`, stopped after the test."""
    f = FakeServer().start()
    yield f
    f.stop()


@pytest.fixture
def catalog(fake):
    """A :class:`Catalog` answering ``fake``'s CRUD; last among the overrides, so that a
    test's own overrides (inserted first) see the requests first."""
    c = Catalog()
    fake.overrides.append(c)
    return c
