"""Supersede (schema version 6): a partial index on ``files.superseded_by``.

When a file arrives whose inputs and config name match another file's (any site) with a
newer production (``prod_version``) or SPINE version (``spine_version_key``), the older is
marked ``superseded_by: <newer _id>`` (``spine_docs/supersede.py``, run by ``inject``), and a
filter may ask for the latest versions only (``Filter.latest_only``: the superseded files are
left out as a residual condition, like the retired ones). The partial index holds only the
superseded files (few): the count of the latest files alone is the total minus them, and
they are found without a scan. No document changes: a catalog upgraded from version 5 marks
files superseded from its next inject on.

down() drops the index (the ``superseded_by`` fields stay: version 5 ignores them).
"""

from spine_docs.migrate import ops

description = "supersede: files {superseded_by: 1}, partial on superseded files"

UP = [
    {"createIndexes": "files", "indexes": [
        {"key": {"superseded_by": 1}, "partialFilterExpression": {"superseded_by": {"$exists": True}}}]},
]
DOWN = ops.inverse(UP)


def plan(db):
    return ops.pending(db, UP)


def up(db):
    ops.ensure(db, UP)


def plan_down(db):
    return ops.pending(db, DOWN)


def down(db):
    ops.ensure(db, DOWN)
