"""Create the catalog as spine-docs 0.1 defined it (schema version 1).

Collections ``files`` (with its $jsonSchema validator, level "moderate", action "warn"),
``runs``, ``meta``, ``saved_queries``, ``changelog`` and their indexes. On a database that
already holds documents (a catalog indexed before versioning existed) nothing is copied or
rewritten: existing collections get the validator and the missing indexes.

This file is frozen: later schema changes are new migrations, never edits here (the runner
records its checksum and reports an edit).
"""

from spine_docs.migrate import ops

description = "create the catalog: collections, files validator, indexes"

FILES_VALIDATOR = {"$jsonSchema": {
    "bsonType": "object",
    "title": "spine-docs file document",
    "required": ["_id", "site", "path", "name", "dir", "status", "ingest"],
    "properties": {
        "_id": {"bsonType": "string", "description": "<site>:<path>"},
        "site": {"bsonType": "string"},
        "path": {"bsonType": "string"},
        "name": {"bsonType": "string"},
        "dir": {"bsonType": "string"},
        "size": {"bsonType": ["int", "long", "null"]},
        "mtime": {"bsonType": ["date", "null"]},
        "checksum": {"bsonType": ["object", "null"]},
        "status": {"bsonType": "string", "enum": ["ok", "incomplete", "error"]},
        "error": {"bsonType": ["string", "null"]},
        "spine_version": {"bsonType": ["string", "null"]},
        "spine_version_key": {"bsonType": ["string", "null"]},
        "prod_version": {"bsonType": ["string", "null"]},
        "model": {"bsonType": ["string", "null"]},
        "dataset": {"bsonType": ["string", "null"]},
        "detector": {"bsonType": ["string", "null"]},
        "config": {"bsonType": ["string", "null"]},
        "run": {"bsonType": ["int", "long", "null"]},
        "run_max": {"bsonType": ["int", "long", "null"]},
        "subrun": {"bsonType": ["int", "long", "null"]},
        "subrun_max": {"bsonType": ["int", "long", "null"]},
        "event_min": {"bsonType": ["int", "long", "null"]},
        "event_max": {"bsonType": ["int", "long", "null"]},
        "num_events": {"bsonType": ["int", "long", "null"]},
        "inputs": {"bsonType": ["array", "null"], "items": {"bsonType": "string"}},
        "inputs_count": {"bsonType": ["int", "long", "null"]},
        "format": {"bsonType": ["string", "int", "long", "null"]},
        "format_version": {"bsonType": ["string", "int", "long", "double", "null"]},
        "complete": {"bsonType": ["bool", "null"]},
        "attrs": {"bsonType": "object"},
        "attr_types": {"bsonType": "object"},
        "info": {"bsonType": ["object", "null"]},
        "cfg": {"bsonType": ["object", "null"]},
        "cfg_error": {"bsonType": ["string", "null"]},
        "sidecar": {"bsonType": ["object", "null"]},
        "job": {"bsonType": ["object", "null"]},
        "structure": {"bsonType": ["object", "null"]},
        "provenance": {"bsonType": ["object", "null"]},
        "fingerprint": {"bsonType": ["string", "null"]},
        "ingest": {
            "bsonType": "object",
            "properties": {
                "first_seen": {"bsonType": ["date", "null"]},
                "last_seen": {"bsonType": ["date", "null"]},
                "times_seen": {"bsonType": ["int", "long", "null"]},
                "extractor_version": {"bsonType": ["string", "null"]},
                "run_id": {"bsonType": ["string", "null"]},
                "history": {"bsonType": ["array", "null"]},
            },
        },
    },
}}


def _ix(key, **options):
    return {"key": key, "name": "_".join(f"{k}_{v}" for k, v in key.items()), **options}


COMMANDS = [
    {"create": "files", "validator": FILES_VALIDATOR,
     "validationLevel": "moderate", "validationAction": "warn"},
    {"createIndexes": "files", "indexes": [
        _ix({"site": 1, "path": 1}, unique=True),
        _ix({"model": 1}),
        _ix({"dataset": 1, "run": 1, "subrun": 1}),
        _ix({"status": 1}),
        _ix({"mtime": -1, "_id": -1}),
        _ix({"fingerprint": 1}),
        _ix({"checksum.sha256": 1}, partialFilterExpression={"checksum.sha256": {"$exists": True}}),
        _ix({"ingest.last_seen": -1}),
        _ix({"detector": 1}),
        _ix({"config": 1}),
        _ix({"prod_version": 1}),
        _ix({"site": 1, "dir": 1}),
        _ix({"attrs.$**": 1}),
    ]},
    {"create": "runs"},
    {"createIndexes": "runs", "indexes": [_ix({"started": -1})]},
    {"create": "meta"},
    {"create": "saved_queries"},
    {"createIndexes": "saved_queries", "indexes": [_ix({"name": 1}, unique=True)]},
    {"create": "changelog"},
    {"createIndexes": "changelog", "indexes": [_ix({"version": 1, "started": -1}), _ix({"started": -1})]},
]

#: down() keeps every collection and document; it removes what up() added around them.
DOWN_COMMANDS = [
    {"collMod": "files", "validator": {}, "validationLevel": "strict", "validationAction": "error"},
] + [
    {"dropIndexes": c["createIndexes"], "index": d["key"]}
    for c in COMMANDS if "createIndexes" in c and c["createIndexes"] != "changelog"
    for d in c["indexes"]
]


def plan(db):
    return ops.pending(db, COMMANDS)


def up(db):
    ops.ensure(db, COMMANDS)


def plan_down(db):
    return ops.pending(db, DOWN_COMMANDS)


def down(db):
    ops.ensure(db, DOWN_COMMANDS)
