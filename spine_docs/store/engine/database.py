"""The engine's Database and Client: collections over BSON-bytes stores, recorded
collection options (``create``, ``collMod``, ``listCollections``) and more commands."""

from __future__ import annotations

import copy
from typing import Any

import bson
import mongomock
from mongomock import database as mm_database
from mongomock import filtering as mm_filtering
from mongomock import mongo_client as mm_client
from mongomock.command_cursor import CommandCursor
from pymongo.errors import CollectionInvalid, OperationFailure

from . import rawbson
from .collection import Collection
from .stores import ServerStore


_COMMAND_NOISE = ("comment", "writeConcern", "$db", "lsid", "$readPreference", "maxTimeMS")


class Database(mm_database.Database):
    """mongomock's Database with recorded collection options and more commands."""

    def get_collection(self, name, codec_options=None, read_preference=None, write_concern=None,
                       read_concern=None):
        if read_preference is not None:
            mm_database.read_preferences.ensure_read_preference_type("read_preference", read_preference)
        mm_database.mongomock_codec_options.is_supported(codec_options)
        try:
            return self._collection_accesses[name].with_options(
                codec_options=codec_options or self._codec_options,
                read_preference=read_preference or self.read_preference,
                read_concern=read_concern, write_concern=write_concern)
        except KeyError:
            self._ensure_valid_collection_name(name)
            collection = self._collection_accesses[name] = Collection(
                self, name=name, read_concern=read_concern, write_concern=write_concern,
                read_preference=read_preference or self.read_preference,
                codec_options=codec_options or self._codec_options, _db_store=self._store)
            return collection

    def create_collection(self, name, codec_options=None, read_preference=None,
                          write_concern=None, read_concern=None, session=None, check_exists=True,
                          **kwargs):
        if session:
            raise NotImplementedError("Mongomock does not handle sessions yet")
        self._ensure_valid_collection_name(name)
        if name in self.list_collection_names():
            if check_exists:
                raise CollectionInvalid("collection %s already exists" % name)
            raise OperationFailure(f"Collection {self.name}.{name} already exists.", 48)
        for k in _COMMAND_NOISE:
            kwargs.pop(k, None)
        if "viewOn" in kwargs:
            raise NotImplementedError("views are not supported by the mongomock shim")
        options = {k: copy.deepcopy(v) for k, v in kwargs.items() if v is not None}
        rawbson.encode(options)  # recorded options must be BSON
        col = self._store.create_collection(name)
        col.set_options(options)
        return self.get_collection(name, codec_options=codec_options, read_preference=read_preference,
                                   write_concern=write_concern, read_concern=read_concern)

    def list_collections(self, filter=None, session=None, nameOnly=False, authorizedCollections=None,
                         comment=None, **kwargs):
        if session:
            raise NotImplementedError("Mongomock does not handle sessions yet")
        docs = []
        for name in sorted(self._store.list_created_collection_names()):
            if name.startswith("system."):
                continue
            col = self._store[name]
            if nameOnly:
                docs.append({"name": name, "type": "collection"})
                continue
            docs.append({
                "name": name, "type": "collection", "options": copy.deepcopy(col.options),
                "info": {"readOnly": False, "uuid": bson.Binary(bytes.fromhex(col.uuid), 4)},
                "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            })
        if filter:
            docs = [d for d in docs if mm_filtering.filter_applies(filter, d)]
        return CommandCursor(docs)

    def list_collection_names(self, filter=None, session=None, comment=None, **kwargs):
        if session:
            raise NotImplementedError("Mongomock does not handle sessions yet")
        if filter:
            return [d["name"] for d in self.list_collections(filter=filter, nameOnly=True)]
        return super().list_collection_names()

    def with_options(self, codec_options=None, read_preference=None, write_concern=None,
                     read_concern=None):
        other = super().with_options(codec_options, read_preference, write_concern, read_concern)
        if other is self:
            return self
        return Database(self._client, self.name, self._store, read_preference=other.read_preference,
                         codec_options=other.codec_options, read_concern=other.read_concern)

    def command(self, command, value=1, check=True, allowable_errors=None, read_preference=None,
                codec_options=None, session=None, comment=None, **kwargs):
        if session:
            raise NotImplementedError("Mongomock does not handle sessions yet")
        if isinstance(command, str):
            cmd = {command: value}
        else:
            cmd = dict(command)
        cmd.update(kwargs)
        verb = next(iter(cmd))
        arg = cmd.pop(verb)
        for k in _COMMAND_NOISE:
            cmd.pop(k, None)
        name = verb.lower()
        ok = {"ok": 1.0}
        if name == "ping":
            return ok
        if name == "buildinfo":
            return {"version": mongomock.SERVER_VERSION, "versionArray":
                    mm_client._convert_version_to_list(mongomock.SERVER_VERSION),
                    "sysInfo": "spine-docs mongomock shim", "ok": 1.0}
        if name in ("hello", "ismaster"):
            return {"isWritablePrimary": True, "ismaster": True, "maxBsonObjectSize": 16777216,
                    "maxWireVersion": 17, "ok": 1.0}
        if name == "create":
            self.create_collection(arg, **cmd)
            return ok
        if name == "collmod":
            return self._coll_mod(arg, cmd)
        if name == "listcollections":
            batch = list(self.list_collections(filter=cmd.get("filter"),
                                               nameOnly=cmd.get("nameOnly", False)))
            return {"cursor": {"id": 0, "ns": f"{self.name}.$cmd.listCollections",
                               "firstBatch": batch}, "ok": 1.0}
        if name == "listindexes":
            batch = list(self[arg].list_indexes())
            return {"cursor": {"id": 0, "ns": f"{self.name}.{arg}", "firstBatch": batch}, "ok": 1.0}
        if name == "createindexes":
            for spec in cmd.get("indexes", []):
                spec = dict(spec)
                key = list(dict(spec.pop("key")).items())
                self[arg].create_index(key, **spec)
            return ok
        if name == "dropindexes":
            index = cmd.get("index")
            if index == "*":
                self[arg].drop_indexes()
            else:
                self[arg].drop_index(index)
            return ok
        if name == "drop":
            self.drop_collection(arg)
            return {"ns": f"{self.name}.{arg}", "ok": 1.0}
        if name == "count":
            return {"n": self[arg].count_documents(cmd.get("query") or {}), "ok": 1.0}
        if name == "dbstats":
            names = self.list_collection_names()
            return {"db": self.name, "collections": len(names),
                    "objects": sum(len(self._store[n]._documents) for n in names),
                    "dataSize": sum(self._store[n].raw_bytes() for n in names), "ok": 1.0}
        if name == "collstats":
            col = self._store[arg]
            return {"ns": f"{self.name}.{arg}", "count": len(col._documents),
                    "size": col.raw_bytes(), "nindexes": 1 + len(col.indexes), "ok": 1.0}
        raise NotImplementedError(f"command {verb!r} is not supported by the mongomock shim")

    def _coll_mod(self, name: str, opts: dict) -> dict:
        if name not in self.list_collection_names():
            raise OperationFailure(f"ns does not exist: {self.name}.{name}", 26)
        col = self._store[name]
        index = opts.pop("index", None)
        opts.pop("dryRun", None)
        new = copy.deepcopy(col.options)
        for k, v in opts.items():
            if v is None:
                new.pop(k, None)
            else:
                new[k] = copy.deepcopy(v)
        rawbson.encode(new)
        if index is not None:
            col.modify_index(index)
        col.set_options(new)
        return {"ok": 1.0}


class Client(mm_client.MongoClient):
    """mongomock's client, making the engine's databases over BSON-bytes stores; ``guard`` goes
    to every collection store (see :class:`.stores.CollectionStore`)."""

    def __init__(self, *, guard: Any = None, **kwargs):
        super().__init__(_store=ServerStore(guard), **kwargs)

    def get_database(self, name=None, codec_options=None, read_preference=None,
                     write_concern=None, read_concern=None):
        if name is None:
            return self.get_default_database(codec_options=codec_options,
                                             read_preference=read_preference,
                                             write_concern=write_concern, read_concern=read_concern)
        db = self._database_accesses.get(name)
        if db is None:
            db = self._database_accesses[name] = Database(
                self, name, read_preference=read_preference or self.read_preference,
                codec_options=codec_options or self._codec_options, _store=self._store[name],
                read_concern=read_concern)
        return db

