"""Lifecycle and lineage (schema version 4).

* ``status`` may also be ``missing``, ``changed`` or ``corrupt`` (set by ``spine-docs
  verify``), and the validator knows the optional ``verify``, ``retired`` and ``lineage``
  sub-documents (one ``collMod``, no document is rewritten);
* ``files_archive`` holds what ``spine-docs prune`` moves out of ``files`` (restored by
  ``spine-docs restore-files``), indexed by when and by path;
* ``lineage.parents.path`` (children are a query) and ``lineage.pending`` (a parent that
  arrives later finds the children waiting for it by name) are indexed on ``files``, and
  ``retired`` by a partial index holding only the retired files.

down() gives the version-3 validator back and drops the three new indexes of files; it drops
``files_archive`` only when it is empty (archived documents are never lost by a downgrade:
a non-empty archive stays, as an undeclared collection version 3 leaves alone).
"""

from spine_docs.migrate import ops

description = "lifecycle and lineage: verify statuses, files_archive, lineage indexes"

FILES_VALIDATOR = {
    "$jsonSchema": {
        "bsonType": "object",
        "title": "spine-docs file document",
        "required": [
            "_id",
            "site",
            "path",
            "name",
            "dir",
            "status",
            "ingest"
        ],
        "properties": {
            "_id": {
                "bsonType": "string",
                "description": "<site>:<path>"
            },
            "site": {
                "bsonType": "string"
            },
            "path": {
                "bsonType": "string"
            },
            "name": {
                "bsonType": "string"
            },
            "dir": {
                "bsonType": "string"
            },
            "size": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "mtime": {
                "bsonType": [
                    "date",
                    "null"
                ]
            },
            "checksum": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "status": {
                "bsonType": "string",
                "enum": [
                    "ok",
                    "incomplete",
                    "error",
                    "missing",
                    "changed",
                    "corrupt"
                ]
            },
            "error": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "spine_version": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "spine_version_key": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "prod_version": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "model": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "dataset": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "detector": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "config": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "run": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "run_max": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "subrun": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "subrun_max": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "event_min": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "event_max": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "num_events": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "inputs": {
                "bsonType": [
                    "array",
                    "null"
                ],
                "items": {
                    "bsonType": "string"
                }
            },
            "inputs_count": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "format": {
                "bsonType": [
                    "string",
                    "int",
                    "long",
                    "null"
                ]
            },
            "format_version": {
                "bsonType": [
                    "string",
                    "int",
                    "long",
                    "double",
                    "null"
                ]
            },
            "complete": {
                "bsonType": [
                    "bool",
                    "null"
                ]
            },
            "attrs": {
                "bsonType": "object"
            },
            "attr_types": {
                "bsonType": "object"
            },
            "info": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "cfg": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "cfg_error": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "sidecar": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "job": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "structure": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "provenance": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "fingerprint": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "verify": {
                "bsonType": [
                    "object",
                    "null"
                ],
                "description": "the last verdict of `spine-docs verify` that changed the status: {at, run_id, verdict, previous_status, missing_since}"
            },
            "retired": {
                "bsonType": [
                    "object",
                    "null"
                ],
                "description": "set by `spine-docs retire`: {reason, by, at}; absent on files in use"
            },
            "lineage": {
                "bsonType": [
                    "object",
                    "null"
                ],
                "description": "{parents: [{text, path, how}], pending: [names of unresolved parents]}"
            },
            "ingest": {
                "bsonType": "object",
                "properties": {
                    "first_seen": {
                        "bsonType": [
                            "date",
                            "null"
                        ]
                    },
                    "last_seen": {
                        "bsonType": [
                            "date",
                            "null"
                        ]
                    },
                    "times_seen": {
                        "bsonType": [
                            "int",
                            "long",
                            "null"
                        ]
                    },
                    "extractor_version": {
                        "bsonType": [
                            "string",
                            "null"
                        ]
                    },
                    "run_id": {
                        "bsonType": [
                            "string",
                            "null"
                        ]
                    },
                    "history": {
                        "bsonType": [
                            "array",
                            "null"
                        ]
                    }
                }
            }
        }
    }
}

#: schema version 3's validator, written out (what down() puts back)
FILES_VALIDATOR_V3 = {
    "$jsonSchema": {
        "bsonType": "object",
        "title": "spine-docs file document",
        "required": [
            "_id",
            "site",
            "path",
            "name",
            "dir",
            "status",
            "ingest"
        ],
        "properties": {
            "_id": {
                "bsonType": "string",
                "description": "<site>:<path>"
            },
            "site": {
                "bsonType": "string"
            },
            "path": {
                "bsonType": "string"
            },
            "name": {
                "bsonType": "string"
            },
            "dir": {
                "bsonType": "string"
            },
            "size": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "mtime": {
                "bsonType": [
                    "date",
                    "null"
                ]
            },
            "checksum": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "status": {
                "bsonType": "string",
                "enum": [
                    "ok",
                    "incomplete",
                    "error"
                ]
            },
            "error": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "spine_version": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "spine_version_key": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "prod_version": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "model": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "dataset": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "detector": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "config": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "run": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "run_max": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "subrun": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "subrun_max": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "event_min": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "event_max": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "num_events": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "inputs": {
                "bsonType": [
                    "array",
                    "null"
                ],
                "items": {
                    "bsonType": "string"
                }
            },
            "inputs_count": {
                "bsonType": [
                    "int",
                    "long",
                    "null"
                ]
            },
            "format": {
                "bsonType": [
                    "string",
                    "int",
                    "long",
                    "null"
                ]
            },
            "format_version": {
                "bsonType": [
                    "string",
                    "int",
                    "long",
                    "double",
                    "null"
                ]
            },
            "complete": {
                "bsonType": [
                    "bool",
                    "null"
                ]
            },
            "attrs": {
                "bsonType": "object"
            },
            "attr_types": {
                "bsonType": "object"
            },
            "info": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "cfg": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "cfg_error": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "sidecar": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "job": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "structure": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "provenance": {
                "bsonType": [
                    "object",
                    "null"
                ]
            },
            "fingerprint": {
                "bsonType": [
                    "string",
                    "null"
                ]
            },
            "ingest": {
                "bsonType": "object",
                "properties": {
                    "first_seen": {
                        "bsonType": [
                            "date",
                            "null"
                        ]
                    },
                    "last_seen": {
                        "bsonType": [
                            "date",
                            "null"
                        ]
                    },
                    "times_seen": {
                        "bsonType": [
                            "int",
                            "long",
                            "null"
                        ]
                    },
                    "extractor_version": {
                        "bsonType": [
                            "string",
                            "null"
                        ]
                    },
                    "run_id": {
                        "bsonType": [
                            "string",
                            "null"
                        ]
                    },
                    "history": {
                        "bsonType": [
                            "array",
                            "null"
                        ]
                    }
                }
            }
        }
    }
}

LINEAGE_INDEXES = [
    {"key": {"lineage.parents.path": 1}},
    {"key": {"lineage.pending": 1}},
    {"key": {"retired": 1}, "partialFilterExpression": {"retired": {"$exists": True}}},
]
ARCHIVE_INDEXES = [
    {"key": {"archived.at": -1}},
    {"key": {"path": 1, "site": 1}},
]

UP = [
    {"collMod": "files", "validator": FILES_VALIDATOR, "validationLevel": "moderate",
     "validationAction": "warn"},
    {"createIndexes": "files", "indexes": LINEAGE_INDEXES},
    {"create": "files_archive"},
    {"createIndexes": "files_archive", "indexes": ARCHIVE_INDEXES},
]
DOWN = [
    {"collMod": "files", "validator": FILES_VALIDATOR_V3, "validationLevel": "moderate",
     "validationAction": "warn"},
] + [{"dropIndexes": "files", "index": dict(i["key"])} for i in LINEAGE_INDEXES]


def _down_commands(db):
    archive_empty = "files_archive" not in db.list_collection_names() or \
        db.files_archive.estimated_document_count() == 0
    return DOWN + ([{"drop": "files_archive"}] if archive_empty else [])


def plan(db):
    return ops.pending(db, UP)


def up(db):
    ops.ensure(db, UP)


def plan_down(db):
    return ops.pending(db, _down_commands(db))


def down(db):
    ops.ensure(db, _down_commands(db))
