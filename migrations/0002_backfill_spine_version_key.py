"""Backfill ``spine_version_key`` and index it (schema version 2).

``spine_version_key`` is the sortable form of ``spine_version`` ("0.5" ->
"000000.000005.000000~", pre-releases before their release) that version ranges and
newest-version sorts use. Documents indexed before the key existed lack it (or hold null
although their version is known): this step computes it for them, in batches over ``_id``.
It only adds/sets that one field; every other field and every other document is untouched.

Idempotent and resumable: the filter selects only documents still to do, so a run that was
interrupted finishes the rest when started again.

down() drops the index and leaves the field in place: the key is derived data that version-1
code ignores, and removing it would only make the next upgrade recompute it.
"""

from spine_docs.migrate import ops
from spine_docs.spine import semver_key  # the extractor's own rule: old and new documents sort together

description = "backfill the sortable spine_version_key on older documents and index it"

BATCH_SIZE = 500

#: documents still to do: no key at all, or a null key although the version is known
#: (promoted fields are strings or null, so "not null" is "known")
FILTER = {"$or": [
    {"spine_version_key": {"$exists": False}},
    {"spine_version_key": None, "spine_version": {"$nin": [None]}},
]}

COMMANDS = [
    {"createIndexes": "files", "indexes": [{"key": {"spine_version_key": 1}, "name": "spine_version_key_1"}]},
]


def _update(doc):
    version = doc.get("spine_version")
    key = semver_key(version) if isinstance(version, str) else None
    if "spine_version_key" in doc and doc["spine_version_key"] == key:
        return None
    return {"$set": {"spine_version_key": key}}


def plan(db):
    n = ops.count(db, "files", FILTER)
    data = []
    if n:
        data.append({"bulkWrite": "files", "filter": FILTER,
                     "update": {"$set": {"spine_version_key": "<semver_key(spine_version)>"}},
                     "documents": n, "batchSize": BATCH_SIZE})
    return ops.pending(db, COMMANDS) + data


def up(db):
    ops.backfill(db, "files", FILTER, _update, batch_size=BATCH_SIZE,
                 projection={"spine_version": 1, "spine_version_key": 1})
    ops.ensure(db, COMMANDS)


def plan_down(db):
    return ops.pending(db, ops.inverse(COMMANDS))


def down(db):
    ops.ensure(db, ops.inverse(COMMANDS))
